package tcp_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline/wire"
)

const rtt = 10 * time.Millisecond

// sackConn is an accepted connection with SACK (MSS 1000, no timestamps)
// whose RTT the stack has measured once: 10 ms.
func sackConn(t *testing.T) (*peer, *pconn) {
	t.Helper()
	return sackConnWith(t, "")
}

// sackConnWith is sackConn with transport.tcp options (", key: value").
func sackConnWith(t *testing.T, tcpOpts string) (*peer, *pconn) {
	t.Helper()
	return sackConnScaled(t, tcpOpts, 0)
}

// sackConnScaled is sackConnWith whose peer offers window scale ws (0:
// none): its window field 65535 is then 65535 << ws bytes.
func sackConnScaled(t *testing.T, tcpOpts string, ws uint8) (*peer, *pconn) {
	t.Helper()
	p := newPeer(t, tcpOpts)
	ln := p.listen()
	var ob wire.TCPOptionsBuilder
	ob.AddMSS(1000)
	ob.AddSACKPermitted()
	if ws > 0 {
		ob.AddWindowScale(ws)
	}
	// The handshake takes one RTT too (its sample starts the estimator).
	const iss = 1000
	p.send(seg{sport: 40000, dport: 80, seq: iss, flags: syn, wnd: 65535, opts: append([]byte(nil), ob.Bytes()...)})
	sa := p.one()
	pc := &pconn{p: p, sport: 40000, dport: 80, sndNxt: iss + 1, rcvNxt: sa.seq + 1}
	p.clock.Advance(rtt)
	p.send(pc.seg(ack, nil))
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	pc.c = c
	pc.c.Write(make([]byte, 1000))
	s := p.one()
	p.clock.Advance(rtt)
	p.send(seg{sport: pc.sport, dport: 80, seq: pc.sndNxt, ack: s.seq + 1000, flags: ack, wnd: 65535})
	p.read()
	return p, pc
}

// sackAck is the peer's ACK of ackn with SACK blocks (pairs of left, right).
func (pc *pconn) sackAck(ackn uint32, blocks ...uint32) seg {
	var ob wire.TCPOptionsBuilder
	var bl []wire.TCPSACKBlock
	for i := 0; i+1 < len(blocks); i += 2 {
		bl = append(bl, wire.TCPSACKBlock{Left: blocks[i], Right: blocks[i+1]})
	}
	if len(bl) > 0 {
		ob.AddSACK(bl)
	}
	return seg{sport: pc.sport, dport: 80, seq: pc.sndNxt, ack: ackn, flags: ack, wnd: 65535, opts: append([]byte(nil), ob.Bytes()...)}
}

// burst writes n segments of 1000 bytes and returns their first sequence
// number.
func burst(t *testing.T, p *peer, pc *pconn, n int) uint32 {
	t.Helper()
	pc.c.Write(bytes.Repeat([]byte{5}, n*1000))
	segs := p.read()
	if len(segs) != n {
		t.Fatalf("%d segments, want %d: %v", len(segs), n, segs)
	}
	return segs[0].seq
}

// reorder delivers segments 2..n+1 of a burst first (one SACKing ACK
// each, one RTT after the burst), then segment 1 late by d, and returns
// what the stack sent meanwhile.
func reorder(t *testing.T, p *peer, pc *pconn, una uint32, n int, d time.Duration) []seg {
	t.Helper()
	p.clock.Advance(rtt)
	var sent []seg
	for i := 1; i <= n; i++ {
		p.send(pc.sackAck(una, una+1000, una+uint32(i+1)*1000))
		sent = append(sent, p.read()...)
	}
	p.clock.Advance(d)
	sent = append(sent, p.read()...)
	p.send(pc.sackAck(una + uint32(n+1)*1000))
	return append(sent, p.read()...)
}

// RACK (RFC 8985): reordering within the reordering window (min_RTT/4,
// widened by DSACK) is no loss, however many segments overtake.
func TestRACKReorderingNoSpuriousRetransmit(t *testing.T) {
	p, pc := sackConn(t)
	// Two segments overtake, 2 ms late (< 10 ms / 4): not lost. The late
	// segment also shows reordering (it was never retransmitted).
	una := burst(t, p, pc, 3)
	if got := reorder(t, p, pc, una, 2, 2*time.Millisecond); len(got) != 0 {
		t.Fatalf("sent %v", got)
	}
	// Reordering seen: eight segments overtaking the first by 2 ms are no
	// loss either (without RACK, three duplicate ACKs were).
	una = burst(t, p, pc, 9)
	if got := reorder(t, p, pc, una, 8, 2*time.Millisecond); len(got) != 0 {
		t.Fatalf("sent %v", got)
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"retransmits": 0, "fast_retransmits": 0, "dup_acks": 10})
	// Late by more than the window (3 ms > 2.5 ms): taken for a loss,
	// retransmitted when the reordering timer fires (the window and
	// Linux's 2 ms of TCP_TIMEOUT_MIN after the SACKs).
	una = burst(t, p, pc, 9)
	p.clock.Advance(rtt)
	for i := 1; i <= 8; i++ {
		p.send(pc.sackAck(una, una+1000, una+uint32(i+1)*1000))
	}
	p.none()
	p.clock.Advance(4 * time.Millisecond)
	p.none()
	p.clock.Advance(time.Millisecond)
	if got := p.read(); len(got) != 1 || got[0].seq != una || len(got[0].data) != 1000 {
		t.Fatalf("sent %v", got)
	}
	p.send(pc.sackAck(una + 9000)) // the original, late
	// The receiver reports the duplicate (DSACK below the ACK): the
	// window doubles, and a 3 ms reordering is no loss any more (the
	// spurious recovery halved cwnd: no undo yet, so a smaller burst).
	p.send(pc.sackAck(una+9000, una, una+1000))
	p.n.WantCounters(t, "tcp", map[string]uint64{"dsack_in": 1, "retransmits": 1})
	una = burst(t, p, pc, 4)
	if got := reorder(t, p, pc, una, 3, 3*time.Millisecond); len(got) != 0 {
		t.Fatalf("sent %v", got)
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"retransmits": 1, "rto_expired": 0})
}

// Without reordering seen, DupThresh SACKed segments make RACK's window
// zero (RFC 8985 §6.2 step 4): a single loss is resent on the ACK that
// SACKs the third segment above it, one RTT after it was sent, and only
// that segment; the ACK of all ends recovery.
func TestSACKSingleLossOneRTT(t *testing.T) {
	p, pc := sackConn(t)
	una := burst(t, p, pc, 10)
	sent := p.clock.Now()
	p.clock.Advance(rtt)
	hole := una + 2000
	p.send(pc.sackAck(hole, hole+1000, hole+2000))
	p.send(pc.sackAck(hole, hole+1000, hole+3000))
	p.none()
	p.send(pc.sackAck(hole, hole+1000, hole+4000))
	r := p.one()
	if r.seq != hole || len(r.data) != 1000 || r.when.Sub(sent) != rtt {
		t.Fatalf("retransmission %v at %v, want seq %d one RTT after", r, r.when.Sub(sent), hole)
	}
	for i := 5; i <= 7; i++ {
		p.send(pc.sackAck(hole, hole+1000, hole+uint32(i)*1000))
	}
	p.none() // nothing else is taken for lost
	p.clock.Advance(rtt)
	p.send(pc.sackAck(una + 10000))
	p.clock.Advance(2 * time.Second)
	p.none()
	p.n.WantCounters(t, "tcp", map[string]uint64{"fast_retransmits": 1, "retransmits": 1, "rto_expired": 0, "rack_lost": 1})
}

// The tail loss probe (RFC 8985 §7): the last two segments of a burst
// lost, no ACK to tell: the last segment is resent 2·SRTT after the last
// ACK (long before the RTO of 210 ms), its SACK shows the other hole,
// which RACK resends at once.
func TestTailLossProbe(t *testing.T) {
	p, pc := sackConn(t)
	una := burst(t, p, pc, 10)
	p.clock.Advance(rtt)
	p.send(pc.sackAck(una + 8000))
	p.none()
	acked := p.clock.Now()
	var probe seg
	for i := 0; i < 300; i++ {
		p.clock.Advance(time.Millisecond)
		if got := p.read(); len(got) > 0 {
			if len(got) != 1 {
				t.Fatalf("probe %v", got)
			}
			probe = got[0]
			break
		}
	}
	if probe.seq != una+9000 || len(probe.data) != 1000 {
		t.Fatalf("probe %v, want the last segment", probe)
	}
	if d := probe.when.Sub(acked); d != 2*rtt+2*time.Millisecond {
		t.Fatalf("probe after %v, want 2·SRTT + 2 ms", d)
	}
	p.clock.Advance(rtt)
	p.send(pc.sackAck(una+8000, una+9000, una+10000))
	r := p.one()
	if r.seq != una+8000 || len(r.data) != 1000 {
		t.Fatalf("repair %v", r)
	}
	p.clock.Advance(rtt)
	p.send(pc.sackAck(una + 10000))
	p.clock.Advance(2 * time.Second)
	p.none()
	p.n.WantCounters(t, "tcp", map[string]uint64{"tlp_probes": 1, "retransmits": 2, "rto_expired": 0})
}

// DSACK (RFC 2883): data received twice is reported as the first SACK
// block of the next ACK, below the cumulative ACK or inside the block
// that follows.
func TestDSACKSent(t *testing.T) {
	p, pc := sackConn(t)
	d := bytes.Repeat([]byte{1}, 100)
	pc.sendData(d)
	p.read()
	pc.sndNxt -= 100
	pc.sendData(d) // again
	a := p.one()
	if a.ack != pc.rcvNxt && a.ack != pc.sndNxt {
		t.Fatalf("ack %v", a)
	}
	if a.parsed.NumSACK != 1 || a.parsed.SACK[0] != (wire.TCPSACKBlock{Left: pc.sndNxt - 100, Right: pc.sndNxt}) {
		t.Fatalf("DSACK %+v", a.parsed)
	}
	// Out of order twice: the duplicate, then the range it lies in.
	s := pc.seg(ack, d)
	s.seq += 100
	p.send(s)
	p.read()
	p.send(s)
	a = p.one()
	blk := wire.TCPSACKBlock{Left: pc.sndNxt + 100, Right: pc.sndNxt + 200}
	if a.parsed.NumSACK != 2 || a.parsed.SACK[0] != blk || a.parsed.SACK[1] != blk {
		t.Fatalf("DSACK %+v", a.parsed)
	}
	// Sent once: the next ACK has the range only.
	s.seq += 200
	p.send(s)
	a = p.one()
	if a.parsed.NumSACK != 2 || a.parsed.SACK[0].Left != pc.sndNxt+300 {
		t.Fatalf("SACK %+v", a.parsed)
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"dsack_out": 2})
}
