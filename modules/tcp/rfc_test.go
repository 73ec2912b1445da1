package tcp_test

// Packetdrill-style conformance checks of the input path: exact segments
// in, exact segments (or none) and states out, against RFC 9293 §3.10.7,
// RFC 5961, RFC 7323 and Linux's choices where the RFCs leave one (the
// README's "Conformance" section lists them).

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// noData checks that c has nothing to read (within 20 ms).
func noData(t *testing.T, c *tcp.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 100)
	if n, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %q %v, want nothing", buf[:n], err)
	}
}

// established is a stack with a listener on :80 and one connection
// accepted from the peer's port 40000 (its SYN with opts).
func established(t *testing.T, opts []byte) (*peer, *pconn) {
	t.Helper()
	p := newPeer(t, "")
	return p, p.accept(p.listen(), 40000, opts)
}

// sackOpts are MSS 1460 and SACK-permitted.
func sackOpts() []byte {
	var ob wire.TCPOptionsBuilder
	ob.AddMSS(1460)
	ob.AddSACKPermitted()
	return append([]byte(nil), ob.Bytes()...)
}

func wantState(t *testing.T, c *tcp.Conn, st string) {
	t.Helper()
	if got := c.State(); got != st {
		t.Fatalf("state %s, want %s", got, st)
	}
}

// A reset carrying the sequence number of the peer's FIN (RCV.NXT−1) ends
// CLOSE-WAIT, LAST-ACK and CLOSING: some stacks send their reset after
// the FIN with the FIN's number (Linux's tcp_reset_check, RFC 5961 §3.2
// "extended to match RCV.NXT−1 after a FIN"). Elsewhere RCV.NXT−1 is
// outside the window and the reset is ignored.
func TestResetAtFINSequence(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, mssOpt(1460))
	p.send(seg{sport: pc.sport, dport: 80, seq: pc.sndNxt - 1, flags: rst})
	p.none()
	wantState(t, pc.c, "ESTABLISHED")
	p.send(pc.seg(ack|fin, nil))
	pc.sndNxt++
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
	wantState(t, pc.c, "CLOSE-WAIT")
	p.send(seg{sport: pc.sport, dport: 80, seq: pc.sndNxt - 1, flags: rst})
	p.none()
	wantState(t, pc.c, "CLOSED")

	// LAST-ACK, a reset with ACK.
	pc = p.accept(ln, 40001, mssOpt(1460))
	p.send(pc.seg(ack|fin, nil))
	pc.sndNxt++
	p.one()
	pc.c.Close()
	want(t, p.one(), ack|fin, pc.rcvNxt, pc.sndNxt)
	wantState(t, pc.c, "LAST-ACK")
	p.send(seg{sport: pc.sport, dport: 80, seq: pc.sndNxt - 1, ack: pc.rcvNxt, flags: rst | ack})
	p.none()
	wantState(t, pc.c, "CLOSED")
	p.n.WantCounters(t, "tcp", map[string]uint64{"reset_in": 2, "challenge_acks": 0})
}

// RFC 5961 §5.2 bounds an old ACK by MAX.SND.WND; Linux (since 6.2, "do
// not accept ACK of bytes we never sent") by the bytes acknowledged so
// far too: while nothing was acknowledged, an ACK below SND.UNA names
// bytes that were never sent and draws a challenge ACK, its text dropped.
func TestOldACKOfBytesNeverSent(t *testing.T) {
	p, pc := established(t, mssOpt(1460))
	s := pc.seg(ack|psh, []byte("evil"))
	s.ack = pc.rcvNxt - 100
	p.send(s)
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
	noData(t, pc.c)
	p.n.WantCounters(t, "tcp", map[string]uint64{"challenge_acks": 1})

	// Once 1000 bytes were acknowledged, an ACK 100 below SND.UNA is an
	// old (reordered) one: ignored, its text taken.
	pc.c.Write(bytes.Repeat([]byte{1}, 1000))
	if d := p.one(); len(d.data) != 1000 {
		t.Fatalf("sent %v", d)
	}
	pc.rcvNxt += 1000
	p.send(pc.seg(ack, nil))
	p.clock.Advance(time.Second)
	s = pc.seg(ack|psh, []byte("good"))
	s.ack = pc.rcvNxt - 100
	p.send(s)
	pc.sndNxt += 4
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
	buf := make([]byte, 10)
	if n, _ := pc.c.Read(buf); string(buf[:n]) != "good" {
		t.Fatalf("read %q", buf[:n])
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"challenge_acks": 1})
}

// handshakes makes n connections from ports 41000… (left in the accept
// queue) and returns them as the peer tracks them.
func handshakes(p *peer, n int) []*pconn {
	p.t.Helper()
	var out []*pconn
	for i := 0; i < n; i++ {
		port := uint16(41000 + i)
		p.send(seg{sport: port, dport: 80, seq: 1000, flags: syn, wnd: 65535})
		sa := p.one()
		pc := &pconn{p: p, sport: port, dport: 80, sndNxt: 1001, rcvNxt: sa.seq + 1}
		p.send(pc.seg(ack, nil))
		out = append(out, pc)
	}
	p.none()
	return out
}

// challengeRound sends an in-window reset (not at RCV.NXT) to every
// connection and counts the challenge ACKs.
func challengeRound(p *peer, pcs []*pconn) int {
	n := 0
	for i, pc := range pcs {
		p.send(seg{sport: pc.sport, dport: 80, seq: pc.sndNxt + 10, flags: rst})
		if i%100 == 99 {
			n += len(p.read()) // the link's queue holds 1024
		}
	}
	return n + len(p.read())
}

// The stack-wide challenge ACK budget is a side channel (CVE-2016-5696:
// an off-path host that exhausts it on its own connections learns
// whether its guess of another connection's sequence numbers drew one).
// As Linux since 6.0 there is none by default, only the per-connection
// 500 ms limit.
func TestChallengeACKNoGlobalLimit(t *testing.T) {
	p := newPeer(t, "")
	ln, err := tcp.ListenConfig{Backlog: 2000}.Listen(p.n.Stack, "tcp4", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pcs := handshakes(p, 1100)
	p.clock.Advance(time.Millisecond) // the rate limit's clock is not at its zero
	if n := challengeRound(p, pcs); n != len(pcs) {
		t.Fatalf("%d challenge ACKs for %d connections in one second", n, len(pcs))
	}
	// The per-connection limit holds.
	p.clock.Advance(100 * time.Millisecond)
	if n := challengeRound(p, pcs[:10]); n != 0 {
		t.Fatalf("%d challenge ACKs within 500 ms", n)
	}
}

// A configured budget is drawn each second at random from
// [limit/2, limit·3/2) (Linux's tcp_challenge_ack_limit since 4.7), so
// that counting the challenge ACKs does not tell how many others were
// sent.
func TestChallengeACKLimitRandomized(t *testing.T) {
	p := newPeer(t, ", challenge_ack_limit: 10")
	p.listen()
	pcs := handshakes(p, 20)
	seen := map[int]bool{}
	for i := 0; i < 12; i++ {
		p.clock.Advance(time.Second)
		n := challengeRound(p, pcs)
		if n < 5 || n > 14 {
			t.Fatalf("second %d: %d challenge ACKs, want 5..14", i, n)
		}
		seen[n] = true
	}
	if len(seen) < 2 {
		t.Fatalf("the same number of challenge ACKs every second: %v", seen)
	}
}

// PAWS ignores a TS.Recent of zero (Linux's tcp_paws_check: "some OSes
// send SYN and SYN-ACK with tsval=0, then valid values"): a TSval more
// than 2^31 after it is taken, not dropped as old.
func TestPAWSZeroTSRecent(t *testing.T) {
	p, pc := established(t, synOpts(0, 0))
	s := pc.seg(ack|psh, []byte("x"))
	s.opts = tsOpt(0x90000000, 0)
	p.send(s)
	pc.sndNxt++
	a := p.one()
	want(t, a, ack, pc.rcvNxt, pc.sndNxt)
	// TS.Recent moved: the ACK echoes it.
	if !a.parsed.HasTimestamps || a.parsed.TSEcr != 0x90000000 {
		t.Fatalf("ACK echoes %+v", a.parsed)
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"paws_rejected": 0})
}

// RFC 1337 / Linux's tcp_timewait_state_process: a reset at RCV.NXT ends
// TIME-WAIT (tcp_rfc1337 = 0), but not one PAWS rejects (an old
// duplicate: TS.Recent is younger than 60 s, TCP_PAWS_MSL); that one is
// dropped without an answer.
func TestTimeWaitResetPAWS(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, synOpts(5000, 0))
	closeToTimeWait(t, p, pc)
	// TS.Recent is the SYN's 5000; older by one is old here (Linux's
	// TIME-WAIT has no PAWS slack).
	for _, ts := range []uint32{4000, 4999} {
		r := seg{sport: pc.sport, dport: 80, seq: pc.sndNxt, flags: rst, opts: tsOpt(ts, 0)}
		p.send(r)
		p.none()
		if !timeWaitListed(p, pc) {
			t.Fatalf("a reset with TSval %d ended TIME-WAIT", ts)
		}
	}
	r := seg{sport: pc.sport, dport: 80, seq: pc.sndNxt, flags: rst, opts: tsOpt(5001, 0)}
	p.send(r)
	p.none()
	if timeWaitListed(p, pc) {
		t.Fatal("a reset in window did not end TIME-WAIT")
	}

	// A connection the application still holds (a full one, not the
	// compact record): the same.
	pc = p.accept(ln, 40001, synOpts(5000, 0))
	pc.c.CloseWrite()
	want(t, p.one(), ack|fin, pc.rcvNxt, pc.sndNxt)
	pc.rcvNxt++
	p.send(pc.seg(ack|fin, nil))
	pc.sndNxt++
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
	wantState(t, pc.c, "TIME-WAIT")
	r = seg{sport: pc.sport, dport: 80, seq: pc.sndNxt, flags: rst, opts: tsOpt(4000, 0)}
	p.send(r)
	p.none()
	wantState(t, pc.c, "TIME-WAIT")
	// 60 s later TS.Recent is too old to reject a reset.
	p.clock.Advance(59 * time.Second)
	p.send(pc.seg(ack, nil)) // keeps TIME-WAIT, not TS.Recent
	p.clock.Advance(2 * time.Second)
	p.send(r)
	p.none()
	wantState(t, pc.c, "CLOSED")
}

// Options with bad lengths (RFC 9293 §3.2, MUST-7; Linux's
// tcp_parse_options): a known option of the wrong length is skipped, a
// length below 2 or past the end stops the walk (what came before is
// kept).
func TestBadOptionLengths(t *testing.T) {
	p := newPeer(t, "")
	p.listen()
	mss1000 := []byte{wire.TCPOptionMSS, 4, 0x03, 0xe8}
	ws7 := []byte{wire.TCPOptionNOP, wire.TCPOptionWindowScale, 3, 7}
	for i, tc := range []struct {
		opts    []byte
		ws, ts  bool
		badOpts uint64
	}{
		// TS of length 9: skipped; WS after it seen.
		{append(append(append([]byte{}, mss1000...), wire.TCPOptionTimestamps, 9, 0, 0, 0, 1, 0, 0, 0), ws7...), true, false, 0},
		// An unknown option of length 1: the walk stops before WS.
		{append(append(append([]byte{}, mss1000...), 30, 1), ws7...), false, false, 1},
		// TS claiming 10 bytes where 4 are left: stops, WS before it kept.
		{append(append(append([]byte{}, mss1000...), ws7...), wire.TCPOptionTimestamps, 10, 0, 0), true, false, 2},
		// Length 0: stops.
		{append(append(append([]byte{}, mss1000...), wire.TCPOptionSACKPermitted, 0), ws7...), false, false, 3},
	} {
		p.send(seg{sport: uint16(40000 + i), dport: 80, seq: 1000, flags: syn, wnd: 65535, opts: tc.opts})
		sa := p.one()
		want(t, sa, syn|ack, sa.seq, 1001)
		if o := sa.parsed; o.HasWindowScale != tc.ws || o.HasTimestamps != tc.ts || o.SACKPermitted {
			t.Fatalf("case %d: SYN-ACK options %+v", i, o)
		}
		p.n.WantCounters(t, "tcp", map[string]uint64{"bad_options": tc.badOpts})
		pc := &pconn{p: p, sport: uint16(40000 + i), dport: 80, sndNxt: 1001, rcvNxt: sa.seq + 1}
		p.send(pc.seg(ack, nil))
	}
}

// The peer's MSS option: 0 is ignored (536, RFC 9293 §3.7.1; Linux keeps
// its default clamp); a tiny one is raised to our floor of 64 payload
// bytes (Linux: tcp_min_snd_mss 48 including options).
func TestPeerMSSExtremes(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	for i, tc := range []struct {
		mss  uint16
		want int
	}{{0, 536}, {1, 64}, {100, 100}} {
		pc := p.accept(ln, uint16(40000+i), mssOpt(tc.mss))
		pc.c.Write(bytes.Repeat([]byte{1}, 2000))
		segs := p.read()
		if len(segs) == 0 || len(segs[0].data) != tc.want {
			t.Fatalf("MSS %d: first segment %v, want %d bytes", tc.mss, segs, tc.want)
		}
		pc.c.Close()
		p.read()
	}
}

// Data on a SYN to a listener is not taken (Linux without TCP Fast
// Open): the SYN-ACK acknowledges the SYN only and the peer resends it.
// A SYN with FIN is dropped, as Linux's tcp_rcv_state_process.
func TestDataOnSYN(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	p.send(seg{sport: 40000, dport: 80, seq: 1000, flags: syn, wnd: 65535, data: []byte("hello")})
	sa := p.one()
	want(t, sa, syn|ack, sa.seq, 1001)
	pc := &pconn{p: p, sport: 40000, dport: 80, sndNxt: 1001, rcvNxt: sa.seq + 1}
	p.send(pc.seg(ack, nil))
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	noData(t, c)
	p.send(seg{sport: 40001, dport: 80, seq: 1000, flags: syn | fin, wnd: 65535})
	p.none()
}

// An ACK of what was never sent (SEG.ACK > SND.NXT): an ACK, at most
// every 500 ms, and the segment dropped, its text not taken (RFC 9293
// §3.10.7.4, RFC 5961 §5.2), in ESTABLISHED as in the other synchronized
// states (Linux 6.18 does so too: an older Linux dropped it silently in
// ESTABLISHED).
func TestACKAboveSNDNXT(t *testing.T) {
	p, pc := established(t, mssOpt(1460))
	p.clock.Advance(time.Millisecond) // the rate limit's clock is not at its zero
	s := pc.seg(ack|psh, []byte("x"))
	s.ack = pc.rcvNxt + 1000
	p.send(s)
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
	p.send(s)
	p.none()
	noData(t, pc.c)
	p.clock.Advance(500 * time.Millisecond)
	pc.c.CloseWrite()
	want(t, p.one(), ack|fin, pc.rcvNxt, pc.sndNxt)
	wantState(t, pc.c, "FIN-WAIT-1")
	p.send(s)
	want(t, p.one(), ack, pc.rcvNxt+1, pc.sndNxt)
	noData(t, pc.c)
	wantState(t, pc.c, "FIN-WAIT-1")
	p.n.WantCounters(t, "tcp", map[string]uint64{"challenge_acks": 2, "challenge_acks_limited": 1})
}

// A FIN beyond the window is not acceptable: an ACK, the state stays.
func TestFINPastWindow(t *testing.T) {
	p, pc := established(t, mssOpt(1460))
	s := pc.seg(ack|fin, nil)
	s.seq += 1 << 20
	p.send(s)
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
	wantState(t, pc.c, "ESTABLISHED")
	p.send(pc.seg(ack|fin, nil))
	pc.sndNxt++
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
	wantState(t, pc.c, "CLOSE-WAIT")
	if _, err := pc.c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read %v, want EOF", err)
	}
}

// Zero-window probes as Linux sends them (tcp_xmit_probe_skb: no data at
// SND.UNA−1) are out of the window: answered with an ACK of RCV.NXT and
// the window, at most every 500 ms (tcp_oow_rate_limited).
func TestZeroWindowProbeReceived(t *testing.T) {
	p, pc := established(t, mssOpt(1460))
	p.clock.Advance(time.Millisecond) // the rate limit's clock is not at its zero
	probe := pc.seg(ack, nil)
	probe.seq--
	p.send(probe)
	a := p.one()
	want(t, a, ack, pc.rcvNxt, pc.sndNxt)
	if a.wnd == 0 {
		t.Fatal("window 0")
	}
	p.send(probe)
	p.none()
	p.clock.Advance(500 * time.Millisecond)
	p.send(probe)
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
}

// Resets with ACK: to a listener ignored (RFC 9293 §3.10.7.2); in
// SYN-SENT one whose ACK is not acceptable ignored (never answered), the
// open goes on; a SYN-ACK with a wrong ACK gets <SEQ=SEG.ACK><CTL=RST>.
func TestResetsListenAndSynSent(t *testing.T) {
	p := newPeer(t, "")
	p.listen()
	p.send(seg{sport: 40000, dport: 80, seq: 5, ack: 99, flags: rst | ack})
	p.none()
	s, ch := p.dial(9000, tcp.Dialer{KeepAlive: -1})
	p.send(seg{sport: 9000, dport: s.sport, seq: 1, ack: s.seq + 7, flags: rst | ack})
	p.none()
	p.send(seg{sport: 9000, dport: s.sport, seq: 1, ack: s.seq, flags: syn | ack, wnd: 100})
	want(t, p.one(), rst, s.seq, 0)
	p.send(seg{sport: 9000, dport: s.sport, seq: 1, flags: rst})
	p.none()
	p.send(seg{sport: 9000, dport: s.sport, seq: 1, ack: s.seq + 1, flags: syn | ack, wnd: 100})
	want(t, p.one(), ack, s.seq+1, 2)
	r := ch.wait(t)
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.c.Close()
}

// Urgent data (RFC 6093): delivered in line, the urgent pointer ignored,
// as Linux with SO_OOBINLINE. (Linux's default takes the byte before the
// pointer out of the stream for recv(MSG_OOB), which Go cannot call: a Go
// program on Linux loses it. See the README.)
func TestUrgentDataInline(t *testing.T) {
	p, pc := established(t, mssOpt(1460))
	const urg = wire.TCPFlagUrg
	for _, tc := range []struct {
		data string
		ptr  uint16
	}{{"abc!", 4}, {"defg", 1000}, {"", 3}, {"hij", 0}} {
		s := pc.seg(ack|psh|urg, []byte(tc.data))
		s.urg = tc.ptr
		p.send(s)
		pc.sndNxt += uint32(len(tc.data))
	}
	p.clock.Advance(time.Second)
	p.read()
	got, err := io.ReadAll(io.LimitReader(pc.c, 11))
	if err != nil || string(got) != "abc!defghij" {
		t.Fatalf("read %q %v", got, err)
	}
}

// In SYN-RECEIVED the retransmitted SYN gets the SYN-ACK again, at most
// every 500 ms (Linux's tcp_check_req: a SYN flood on one 4-tuple is
// not reflected). An in-window SYN that is not the SYN again: a
// challenge ACK (RFC 5961 §4 as for synchronized states; Linux resets
// the request instead).
func TestSYNInSynReceived(t *testing.T) {
	p := newPeer(t, "")
	p.listen()
	p.clock.Advance(time.Millisecond) // the rate limit's clock is not at its zero
	p.send(seg{sport: 40000, dport: 80, seq: 1000, flags: syn, wnd: 65535})
	sa := p.one()
	p.send(seg{sport: 40000, dport: 80, seq: 1000, flags: syn, wnd: 65535})
	want(t, p.one(), syn|ack, sa.seq, 1001)
	for i := 0; i < 10; i++ {
		p.send(seg{sport: 40000, dport: 80, seq: 1000, flags: syn, wnd: 65535})
	}
	p.none()
	p.clock.Advance(500 * time.Millisecond)
	p.send(seg{sport: 40000, dport: 80, seq: 1010, flags: syn, wnd: 65535})
	want(t, p.one(), ack, sa.seq+1, 1001)
}

// Duplicates arriving in one run (a spurious go-back-N retransmission)
// are reported as one DSACK block when they touch (RFC 2883 §4, Linux's
// tcp_dsack_extend): the sender counts every duplicate segment from it.
func TestDSACKRunOfDuplicates(t *testing.T) {
	p, pc := established(t, sackOpts())
	start := pc.sndNxt
	pc.sendData(bytes.Repeat([]byte{1}, 100))
	pc.sendData(bytes.Repeat([]byte{2}, 100))
	p.read()
	a, b := pc.seg(ack, bytes.Repeat([]byte{1}, 100)), pc.seg(ack, bytes.Repeat([]byte{2}, 100))
	a.seq, b.seq = start, start+100
	p.ep.InjectFrames([][]byte{p.frame(a), p.frame(b)})
	d := p.one()
	want(t, d, ack, pc.rcvNxt, pc.sndNxt)
	if d.parsed.NumSACK != 1 || d.parsed.SACK[0] != (wire.TCPSACKBlock{Left: start, Right: start + 200}) {
		t.Fatalf("DSACK %+v, want [%d, %d)", d.parsed.SACK[:d.parsed.NumSACK], start, start+200)
	}
}

// A SYN-ACK whose TSecr is not a TSval we sent between the first SYN and
// now is reset and the open goes on (Linux's PAWSActiveRejected); one
// echoing the SYN's completes it.
func TestSynSentTSecrCheck(t *testing.T) {
	p := newPeer(t, "")
	s, ch := p.dial(9000, tcp.Dialer{KeepAlive: -1})
	tsval := s.parsed.TSVal
	p.clock.Advance(10 * time.Millisecond)
	for _, ecr := range []uint32{tsval - 1, tsval + 11} {
		p.send(seg{sport: 9000, dport: s.sport, seq: 5000, ack: s.seq + 1, flags: syn | ack, wnd: 65535, opts: synOpts(100, ecr)})
		want(t, p.one(), rst, s.seq+1, 0)
	}
	p.send(seg{sport: 9000, dport: s.sport, seq: 5000, ack: s.seq + 1, flags: syn | ack, wnd: 65535, opts: synOpts(100, tsval+10)})
	want(t, p.one(), ack, s.seq+1, 5001)
	r := ch.wait(t)
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.c.Close()
	p.n.WantCounters(t, "tcp", map[string]uint64{"paws_rejected": 2})
}

// A reset at the right edge of the highest out-of-order range resets
// only when SACK blocks told the peer where it is (Linux's
// tcp_validate_incoming); without SACK it draws a challenge ACK.
func TestResetAtSACKEdge(t *testing.T) {
	for _, sack := range []bool{false, true} {
		opts := mssOpt(1460)
		if sack {
			opts = sackOpts()
		}
		p, pc := established(t, opts)
		p.clock.Advance(time.Millisecond) // the rate limit's clock is not at its zero
		s := pc.seg(ack, []byte("later"))
		s.seq += 100
		p.send(s)
		p.one() // the duplicate ACK
		p.send(seg{sport: pc.sport, dport: 80, seq: pc.sndNxt + 105, flags: rst})
		if sack {
			p.none()
			wantState(t, pc.c, "CLOSED")
			continue
		}
		want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
		wantState(t, pc.c, "ESTABLISHED")
	}
}
