package tcp_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// untilResent advances the clock 1 ms at a time until the stack sends
// una again (at most 3 s) and returns the data segments sent meanwhile
// (a tail loss probe may come first) and those sent with it.
func untilResent(t *testing.T, p *peer, una uint32) (before, with []uint32) {
	t.Helper()
	for i := 0; i < 3000; i++ {
		p.clock.Advance(time.Millisecond)
		got := dataSeqs(p.read())
		for j, s := range got {
			if s == una {
				return append(before, got[:j]...), got[j:]
			}
		}
		before = append(before, got...)
	}
	t.Fatalf("%d never resent (sent %v)", una, before)
	return nil, nil
}

// The segments of got that carry data, by sequence number.
func dataSeqs(got []seg) []uint32 {
	var out []uint32
	for _, s := range got {
		if len(s.data) > 0 {
			out = append(out, s.seq)
		}
	}
	return out
}

// lossRecovery makes RACK take the first segment of a 10-segment burst
// for lost (three segments SACKed above it, no reordering seen yet) and
// returns the burst's first sequence number and the window before.
func lossRecovery(t *testing.T, p *peer, pc *pconn) (una uint32, cwnd, ssthresh int) {
	t.Helper()
	cwnd, ssthresh = tcp.Window(pc.c)
	una = burst(t, p, pc, 10)
	p.clock.Advance(rtt)
	for i := 2; i <= 4; i++ {
		p.send(pc.sackAck(una, una+1000, una+uint32(i)*1000))
	}
	if got := dataSeqs(p.read()); len(got) != 1 || got[0] != una {
		t.Fatalf("sent %v, want the first segment again", got)
	}
	if w, _ := tcp.Window(pc.c); w >= cwnd {
		t.Fatalf("cwnd %d in recovery, was %d", w, cwnd)
	}
	return una, cwnd, ssthresh
}

// Undo by DSACK (RFC 2883 §4, Linux's tcp_try_undo_dsack): the receiver
// reports the retransmission as a duplicate — the original was only
// delayed — so the halved window is restored, and the next burst goes out
// whole.
func TestUndoByDSACK(t *testing.T) {
	p, pc := sackConn(t)
	una, cwnd, ssthresh := lossRecovery(t, p, pc)
	p.clock.Advance(rtt)
	p.send(pc.sackAck(una + 10000)) // the late original: all acknowledged
	if w, _ := tcp.Window(pc.c); w >= cwnd {
		t.Fatalf("cwnd %d after recovery, was %d", w, cwnd)
	}
	p.send(pc.sackAck(una+10000, una, una+1000)) // the DSACK of the retransmission
	w, s := tcp.Window(pc.c)
	if w < cwnd || s < ssthresh {
		t.Fatalf("after the DSACK cwnd %d ssthresh %d, want ≥ %d, %d", w, s, cwnd, ssthresh)
	}
	burst(t, p, pc, 10) // fails unless the window is back
	p.n.WantCounters(t, "tcp", map[string]uint64{"undo_dsack": 1, "dsack_in": 1, "retransmits": 1})
}

// A DSACK for data never retransmitted (a duplicate made by the network)
// is not believed for an undo (Linux's tcp_dsack_seen: more duplicates
// than retransmissions is dubious).
func TestUndoNotForUnretransmittedDSACK(t *testing.T) {
	p, pc := sackConn(t)
	una, cwnd, _ := lossRecovery(t, p, pc)
	p.clock.Advance(rtt)
	p.send(pc.sackAck(una + 10000))
	p.send(pc.sackAck(una+10000, una+5000, una+7000)) // two segments never resent
	if w, _ := tcp.Window(pc.c); w >= cwnd {
		t.Fatalf("cwnd %d restored by a DSACK of what was never retransmitted", w)
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"undo_dsack": 0})
}

// tsConn is sackConn with timestamps (MSS 1012 less the 12 option bytes:
// 1000 bytes a segment).
func tsConn(t *testing.T) (*peer, *tsPeer) {
	t.Helper()
	p := newPeer(t, "")
	ln := p.listen()
	var ob wire.TCPOptionsBuilder
	ob.AddMSS(1012)
	ob.AddSACKPermittedTimestamps(1, 0)
	const iss = 1000
	p.send(seg{sport: 40001, dport: 80, seq: iss, flags: syn, wnd: 65535, opts: append([]byte(nil), ob.Bytes()...)})
	sa := p.one()
	tp := &tsPeer{pconn: pconn{p: p, sport: 40001, dport: 80, sndNxt: iss + 1, rcvNxt: sa.seq + 1}, tsval: 1, echo: sa.parsed.TSVal}
	p.clock.Advance(rtt)
	p.send(tp.ack(tp.rcvNxt, tp.echo))
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	tp.c = c
	c.Write(make([]byte, 1000))
	s := p.one()
	p.clock.Advance(rtt)
	p.send(tp.ack(s.seq+1000, s.parsed.TSVal))
	p.read()
	return p, tp
}

type tsPeer struct {
	pconn
	tsval, echo uint32
}

// ack is the peer's ACK of ackn echoing tsecr, with SACK blocks.
func (tp *tsPeer) ack(ackn, tsecr uint32, blocks ...uint32) seg {
	tp.tsval++
	var ob wire.TCPOptionsBuilder
	ob.AddTimestamps(tp.tsval, tsecr)
	var bl []wire.TCPSACKBlock
	for i := 0; i+1 < len(blocks); i += 2 {
		bl = append(bl, wire.TCPSACKBlock{Left: blocks[i], Right: blocks[i+1]})
	}
	if len(bl) > 0 {
		ob.AddSACK(bl)
	}
	return seg{sport: tp.sport, dport: 80, seq: tp.sndNxt, ack: ackn, flags: ack, wnd: 65535, opts: append([]byte(nil), ob.Bytes()...)}
}

// Eifel (RFC 3522, Linux's tcp_try_undo_loss): after a timeout, an ACK
// echoing the timestamp of the original transmission shows the timeout
// was spurious (the path stalled, nothing was lost): the window comes
// back and the rest of the flight is not sent again.
func TestUndoSpuriousRTOByTimestamps(t *testing.T) {
	p, tp := tsConn(t)
	cwnd, _ := tcp.Window(tp.c)
	tp.c.Write(bytes.Repeat([]byte{7}, 10*1000))
	segs := p.read()
	if len(segs) != 10 {
		t.Fatalf("%d segments", len(segs))
	}
	una, orig := segs[0].seq, segs[0].parsed.TSVal
	// The tail loss probe resends the last segment, then the RTO the first.
	if probe, rto := untilResent(t, p, una); len(probe) != 1 || probe[0] != una+9000 || len(rto) != 1 {
		t.Fatalf("probe %v, timeout %v", probe, rto)
	}
	// The originals were only delayed: their ACKs arrive now.
	p.send(tp.ack(una+5000, orig))
	if got := p.read(); len(dataSeqs(got)) != 0 {
		t.Fatalf("after an ACK of the originals sent %v (go-back-N after a spurious timeout)", got)
	}
	if w, _ := tcp.Window(tp.c); w < cwnd {
		t.Fatalf("cwnd %d, want %d restored", w, cwnd)
	}
	p.send(tp.ack(una+10000, orig))
	p.clock.Advance(time.Second)
	if got := p.read(); len(dataSeqs(got)) != 0 {
		t.Fatalf("sent %v", got)
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"undo_timestamps": 1, "rto_expired": 1, "retransmits": 2})
}

// The RTO with SACK (Linux's tcp_enter_loss): what the peer SACKed is not
// sent again; only the segments missing at the receiver go, as the
// window grows from one segment.
func TestRTOKeepsSACKed(t *testing.T) {
	p, pc := sackConn(t)
	una := burst(t, p, pc, 10)
	p.clock.Advance(rtt)
	// Segments 1..3 are lost; 4..10 arrive (RACK resends 1..3 under PRR).
	for i := 4; i <= 10; i++ {
		p.send(pc.sackAck(una, una+3000, una+uint32(i)*1000))
	}
	re := dataSeqs(p.read())
	if len(re) == 0 || re[0] != una {
		t.Fatalf("recovery sent %v", re)
	}
	// The retransmissions are lost too: the RTO fires.
	if before, sent := untilResent(t, p, una); len(before) != 0 || len(sent) != 1 {
		t.Fatalf("before the timeout %v, with it %v, want the first segment alone", before, sent)
	}
	p.clock.Advance(rtt)
	p.send(pc.sackAck(una+1000, una+3000, una+10000))
	got := dataSeqs(p.read())
	p.clock.Advance(rtt)
	p.send(pc.sackAck(una+3000, una+3000, una+10000))
	got = append(got, dataSeqs(p.read())...)
	if len(got) != 2 || got[0] != una+1000 || got[1] != una+2000 {
		t.Fatalf("after the timeout sent %v, want only segments 2 and 3", got)
	}
	p.send(pc.sackAck(una + 10000))
	p.clock.Advance(2 * time.Second)
	if got := p.read(); len(dataSeqs(got)) != 0 {
		t.Fatalf("sent %v", got)
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"rto_expired": 1, "sack_reneging": 0})
}

// A receiver that reneges (the RTO finds the first segment SACKed) has
// every SACK mark forgotten: everything is resent (RFC 2018 §8, Linux's
// TCPSACKReneging).
func TestRTOSACKReneging(t *testing.T) {
	p, pc := sackConn(t)
	una := burst(t, p, pc, 4)
	p.clock.Advance(rtt)
	p.send(pc.sackAck(una, una, una+4000)) // SACKs all, acknowledges nothing
	p.read()
	if probe, sent := untilResent(t, p, una); len(probe) != 1 || len(sent) != 1 {
		t.Fatalf("probe %v, timeout %v", probe, sent)
	}
	p.clock.Advance(rtt)
	p.send(pc.sackAck(una + 1000))
	if got := dataSeqs(p.read()); len(got) != 2 || got[0] != una+1000 {
		t.Fatalf("after the reneging timeout sent %v, want segments 2 and 3", got)
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"sack_reneging": 1})
}

// PRR (RFC 6937): in recovery the sender sends in proportion to what is
// delivered — ssthresh/RecoverFS of it (6,000/10,000 bytes here) while
// pipe is above ssthresh, then no faster than what is delivered up to
// ssthresh (PRR-SSRB) — rather than sending nothing, as RFC 6675's pipe
// alone does, until pipe falls below ssthresh, and then a burst.
func TestPRRProportionalSends(t *testing.T) {
	p, pc := sackConnWith(t, ", congestion_control: newreno") // ssthresh = flight/2
	pc.c.Write(bytes.Repeat([]byte{5}, 30*1000))
	segs := p.read()
	if len(segs) != 10 {
		t.Fatalf("%d segments, want 10 (cwnd: the warm-up's one segment did not grow it)", len(segs))
	}
	una := segs[0].seq
	p.clock.Advance(rtt)
	var perAck []int
	for i := 2; i <= 10; i++ {
		p.send(pc.sackAck(una, una+1000, una+uint32(i)*1000))
		perAck = append(perAck, len(dataSeqs(p.read())))
	}
	// The first two SACKs free room in cwnd: a new segment each (12 in
	// flight). The third starts recovery (ssthresh 6,000, RecoverFS
	// 10,000): the retransmission (prr_out 0). Then ⌈6000·delivered/10000⌉
	// − prr_out bytes may go, whole segments only: 200, 800 (none), then
	// pipe (6,000) is at ssthresh and nothing goes; below it SSRB lets one
	// segment out per segment SACKed.
	want := []int{1, 1, 1, 0, 0, 0, 1, 1, 1}
	for i := range want {
		if perAck[i] != want[i] {
			t.Fatalf("segments sent per ACK %v, want %v", perAck, want)
		}
	}
}

// RACK's minimum RTT is windowed (Linux's tcp_min_rtt over
// tcp_min_rtt_wlen): once the path's RTT has grown from 10 ms to 40 ms
// for longer than min_rtt_window, the reordering window follows
// (40/4 = 10 ms), so a segment 7 ms late is no loss; with the lifetime
// minimum (10/4 = 2.5 ms) it was.
func TestMinRTTWindowed(t *testing.T) {
	p, pc := sackConnWith(t, ", min_rtt_window: 1s")
	una := burst(t, p, pc, 3)
	reorder(t, p, pc, una, 2, 2*time.Millisecond) // reordering seen
	const slow = 40 * time.Millisecond
	for i := 0; i < 30; i++ { // 1.2 s of 40 ms samples
		una = burst(t, p, pc, 1)
		p.clock.Advance(slow)
		p.send(pc.sackAck(una + 1000))
		p.read()
	}
	una = burst(t, p, pc, 9)
	p.clock.Advance(slow)
	for i := 1; i <= 8; i++ {
		p.send(pc.sackAck(una, una+1000, una+uint32(i+1)*1000))
	}
	p.clock.Advance(7 * time.Millisecond)
	if got := p.read(); len(got) != 0 {
		t.Fatalf("sent %v: a 7 ms reordering taken for a loss", got)
	}
	p.send(pc.sackAck(una + 9000))
	p.n.WantCounters(t, "tcp", map[string]uint64{"retransmits": 0, "rack_lost": 0})
}

// A lost retransmission is found by RACK (RFC 8985 §6.2: the
// retransmission is older than new data since delivered) and sent once
// more, without waiting for the RTO.
func TestRACKLostRetransmission(t *testing.T) {
	p, pc := sackConn(t)
	pc.c.Write(bytes.Repeat([]byte{5}, 30*1000))
	segs := p.read()
	una := segs[0].seq
	p.clock.Advance(rtt)
	var re []seg
	for i := 2; i <= 11; i++ {
		p.send(pc.sackAck(una, una+1000, una+uint32(i)*1000))
		re = append(re, p.read()...)
	}
	// re holds the retransmission of the first segment (lost again) and
	// new data sent after it; one RTT later the new data is SACKed.
	var newer []uint32
	for _, s := range re {
		if s.seq != una && len(s.data) > 0 {
			newer = append(newer, s.seq)
		}
	}
	if len(newer) == 0 {
		t.Fatalf("recovery sent %v", re)
	}
	p.clock.Advance(rtt)
	got := dataSeqs(p.read())
	for _, s := range newer {
		p.send(pc.sackAck(una, una+1000, s+1000))
		got = append(got, dataSeqs(p.read())...)
	}
	p.clock.Advance(3 * time.Millisecond)
	got = append(got, dataSeqs(p.read())...)
	found := false
	for _, s := range got {
		found = found || s == una
	}
	if !found {
		t.Fatalf("the lost retransmission was not sent again (sent %v; %s)", got, tcp.DebugState(pc.c))
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"rto_expired": 0})
}

// HyStart++ on a connection (tcp.cc.cubic): the ACKs' RTT samples and
// round trips reach the algorithm, so a queue building up (the RTT going
// from 10 ms to 20 ms) ends slow start's doubling; with hystart: false
// it doubles on.
func TestHyStartConnection(t *testing.T) {
	run := func(opts string) []int {
		p, pc := sackConnScaled(t, opts, 7) // a window of 8 MiB: cwnd, not the peer, limits the sender
		pc.c.SetWriteBuffer(1 << 20)        // the writer stays ahead
		go pc.c.Write(make([]byte, 4<<20))  // more than the send buffer: it blocks
		var flight []seg
		for i := 0; i < 1000 && len(flight) < 11; i++ {
			time.Sleep(time.Millisecond)
			flight = append(flight, p.read()...)
		}
		var cw []int
		for r := 0; r < 6; r++ {
			d := rtt
			if r >= 3 {
				d = 2 * rtt
			}
			p.clock.Advance(d)
			var next []seg
			for _, s := range flight {
				p.send(pc.sackAck(s.seq + uint32(len(s.data))))
				next = append(next, p.read()...)
			}
			flight = next
			w, _ := tcp.Window(pc.c)
			cw = append(cw, w)
		}
		return cw
	}
	on := run(", congestion_control: cubic")
	off := run(", congestion_control: {module: tcp.cc.cubic, hystart: false}")
	// (Slow start doubles cwnd a round, CSS adds a quarter of it.)
	if on[2] != off[2] || off[5]-off[4] < 60000 || on[5]-on[4] > (off[5]-off[4])/3 {
		t.Fatalf("cwnd per round with HyStart++ %v, without %v", on, off)
	}
}

// Partial undo (Linux's tcp_try_undo_partial): in recovery, an ACK that
// echoes the timestamp of the original transmission fills the hole (the
// original was only delayed) with no retransmission outstanding any
// more: the window of before comes back and recovery ends.
func TestUndoPartialByTimestamps(t *testing.T) {
	p, tp := tsConn(t)
	cwnd, _ := tcp.Window(tp.c)
	tp.c.Write(bytes.Repeat([]byte{7}, 10*1000))
	segs := p.read()
	if len(segs) != 10 {
		t.Fatalf("%d segments", len(segs))
	}
	una, orig := segs[0].seq, segs[0].parsed.TSVal
	p.clock.Advance(rtt)
	for i := 2; i <= 4; i++ {
		p.send(tp.ack(una, segs[i-1].parsed.TSVal, una+1000, una+uint32(i)*1000))
	}
	if got := dataSeqs(p.read()); len(got) == 0 || got[0] != una {
		t.Fatalf("recovery sent %v", got)
	}
	// The original arrives: it and 2..4 are acknowledged, echoing its
	// timestamp (older than the retransmission's). 5..10 are still out.
	p.send(tp.ack(una+4000, orig))
	if w, _ := tcp.Window(tp.c); w < cwnd {
		t.Fatalf("cwnd %d after the partial ACK, want %d restored", w, cwnd)
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"undo_timestamps": 1})
}

// With more out-of-order ranges than SACK blocks, the ACK reports the
// range of the segment that triggered it, then the ranges most recently
// extended (RFC 2018 §4, Linux's selective_acks), not the lowest ones
// (which an older ACK reported already).
func TestSACKBlocksMostRecent(t *testing.T) {
	p, pc := sackConn(t)
	d := bytes.Repeat([]byte{3}, 100)
	var last seg
	for i := 1; i <= 5; i++ { // five ranges, each above the last
		s := pc.seg(ack|psh, d)
		s.seq += uint32(i) * 1000
		p.send(s)
		last = p.one()
	}
	o := last.parsed
	if o.NumSACK != 4 {
		t.Fatalf("%d SACK blocks", o.NumSACK)
	}
	for k, i := range []uint32{5, 4, 3, 2} {
		if l := pc.sndNxt + i*1000; o.SACK[k].Left != l {
			t.Fatalf("SACK blocks %+v, want ranges 5, 4, 3, 2", o.SACK[:o.NumSACK])
		}
	}
}
