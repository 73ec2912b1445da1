package tcp_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline/wire"
)

func TestPassiveOpenOptions(t *testing.T) {
	p := newPeer(t, "")
	p.listen()
	p.send(seg{sport: 40000, dport: 80, seq: 1000, flags: syn, wnd: 64240, opts: synOpts(5555, 0)})
	sa := p.one()
	want(t, sa, syn|ack, sa.seq, 1001)
	o := sa.parsed
	if !o.HasMSS || o.MSS != 1460 || !o.SACKPermitted || !o.HasTimestamps || o.TSEcr != 5555 || !o.HasWindowScale || o.WindowScale != 5 {
		t.Fatalf("SYN-ACK options %+v", o)
	}
	// Linux's layout: MSS, SACK-permitted+TS, NOP, WS.
	if len(sa.opts) != 20 || sa.opts[4] != wire.TCPOptionSACKPermitted || sa.opts[16] != wire.TCPOptionNOP {
		t.Fatalf("SYN-ACK option bytes % x", sa.opts)
	}
	// The first window is the initial receive buffer (64 KiB, auto-tuning
	// grows it), in whole segments, as Linux's 65160.
	if sa.wnd > 65535 || sa.wnd < 65535-1460 {
		t.Fatalf("SYN-ACK window %d, want the 64 KiB initial buffer", sa.wnd)
	}
	// Without options: only MSS in the answer.
	p.send(seg{sport: 40001, dport: 80, seq: 7, flags: syn, wnd: 8192})
	sa = p.one()
	if o := sa.parsed; !o.HasMSS || o.SACKPermitted || o.HasTimestamps || o.HasWindowScale {
		t.Fatalf("SYN-ACK to a bare SYN has %+v", o)
	}
}

func TestNoSocketResets(t *testing.T) {
	p := newPeer(t, "")
	// SYN to a closed port: <SEQ=0><ACK=SEG.SEQ+1><CTL=RST,ACK>.
	p.send(seg{sport: 40000, dport: 81, seq: 1000, flags: syn, wnd: 1000})
	want(t, p.one(), rst|ack, 0, 1001)
	// An ACK: <SEQ=SEG.ACK><CTL=RST>.
	p.send(seg{sport: 40000, dport: 81, seq: 1000, ack: 777, flags: ack, wnd: 1000})
	want(t, p.one(), rst, 777, 0)
	// Data without ACK: ACK = SEQ + LEN (+1 for FIN).
	p.send(seg{sport: 40000, dport: 81, seq: 1000, flags: psh | fin, wnd: 1000, data: []byte("abc")})
	want(t, p.one(), rst|ack, 0, 1004)
	// A reset is never answered; nor is a bad checksum.
	p.send(seg{sport: 40000, dport: 81, seq: 1000, flags: rst})
	p.none()
	f := p.frame(seg{sport: 40000, dport: 81, seq: 1000, flags: syn})
	f[len(f)-1] ^= 0xff
	f[wire.IPv4MinimumSize+16] ^= 1
	p.ep.InjectFrames([][]byte{f})
	p.none()
	// A data offset beyond the segment: malformed.
	f = p.frame(seg{sport: 40000, dport: 81, seq: 1000, flags: syn})
	f[wire.IPv4MinimumSize+12] = 0xf0
	p.ep.InjectFrames([][]byte{f})
	p.none()
	p.n.WantCounters(t, "tcp", map[string]uint64{"no_socket": 4, "reset_out": 3, "bad_checksum": 1, "malformed": 1})
}

func TestListenerACKGetsReset(t *testing.T) {
	p := newPeer(t, "")
	p.listen()
	p.send(seg{sport: 40000, dport: 80, seq: 5, ack: 99, flags: ack, wnd: 1000})
	want(t, p.one(), rst, 99, 0)
	p.send(seg{sport: 40000, dport: 80, seq: 5, flags: rst})
	p.none()
}

func TestActiveOpenAndData(t *testing.T) {
	p := newPeer(t, "")
	s, ch := p.dial(8080, tcp.Dialer{KeepAlive: -1})
	if s.flags != syn || s.dport != 8080 || s.sport < 32768 || s.sport > 60999 {
		t.Fatalf("SYN %v", s)
	}
	o := s.parsed
	if !o.HasMSS || o.MSS != 1460 || !o.SACKPermitted || !o.HasTimestamps || o.TSEcr != 0 || !o.HasWindowScale {
		t.Fatalf("SYN options %+v", o)
	}
	p.send(seg{sport: 8080, dport: s.sport, seq: 5000, ack: s.seq + 1, flags: syn | ack, wnd: 65535, opts: synOpts(100, o.TSVal)})
	a := p.one()
	want(t, a, ack, s.seq+1, 5001)
	r := ch.wait(t)
	if r.err != nil {
		t.Fatal(r.err)
	}
	c := r.c
	defer c.Close()
	if c.State() != "ESTABLISHED" {
		t.Fatal(c.State())
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	d := p.one()
	want(t, d, ack|psh, s.seq+1, 5001)
	if string(d.data) != "hello" || !d.parsed.HasTimestamps || d.parsed.TSEcr != 100 {
		t.Fatalf("data %v %+v", d, d.parsed)
	}
	// The window is scaled by 5 (for the 1 MiB buffer): the 64 KiB
	// initial buffer in whole segments.
	if w := int(d.wnd) << 5; w > 64<<10 || w < 64<<10-1460 {
		t.Fatalf("window field %d (%d bytes)", d.wnd, w)
	}
	pc := &pconn{p: p, sport: 8080, dport: s.sport, sndNxt: 5001, rcvNxt: s.seq + 6, c: c}
	pc.sendData([]byte("world"))
	a = p.one() // quick ACK at the start
	want(t, a, ack, s.seq+6, 5006)
	buf := make([]byte, 10)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "world" {
		t.Fatalf("read %q %v", buf[:n], err)
	}
}

func TestSimultaneousOpen(t *testing.T) {
	p := newPeer(t, "")
	s, ch := p.dial(9000, tcp.Dialer{KeepAlive: -1})
	// The peer's own SYN crosses ours.
	p.send(seg{sport: 9000, dport: s.sport, seq: 300, flags: syn, wnd: 65535, opts: mssOpt(1460)})
	sa := p.one()
	want(t, sa, syn|ack, s.seq, 301)
	// Its SYN-ACK completes the open.
	p.send(seg{sport: 9000, dport: s.sport, seq: 300, ack: s.seq + 1, flags: syn | ack, wnd: 65535, opts: mssOpt(1460)})
	r := ch.wait(t)
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.c.Close()
	if r.c.State() != "ESTABLISHED" {
		t.Fatal(r.c.State())
	}
}

func TestConnectRefused(t *testing.T) {
	p := newPeer(t, "")
	s, ch := p.dial(9001, tcp.Dialer{})
	p.send(seg{sport: 9001, dport: s.sport, seq: 0, ack: s.seq + 1, flags: rst | ack})
	r := ch.wait(t)
	if !errors.Is(r.err, syscall.ECONNREFUSED) {
		t.Fatalf("err %v", r.err)
	}
	// An ACK for something else in SYN-SENT gets a reset, the open goes on.
	s, ch = p.dial(9002, tcp.Dialer{})
	p.send(seg{sport: 9002, dport: s.sport, seq: 1, ack: s.seq + 100, flags: syn | ack})
	want(t, p.one(), rst, s.seq+100, 0)
	p.send(seg{sport: 9002, dport: s.sport, seq: 1, ack: s.seq + 1, flags: syn | ack})
	want(t, p.one(), ack, s.seq+1, 2)
	if r := ch.wait(t); r.err != nil {
		t.Fatal(r.err)
	}
}

func TestSYNRetriesTimeOut(t *testing.T) {
	p := newPeer(t, "")
	s, ch := p.dial(9003, tcp.Dialer{})
	start := p.clock.Now()
	var at []time.Duration
	for i := 0; i < 6; i++ {
		p.clock.Advance(time.Duration(1<<i) * time.Second)
		r := p.one()
		want(t, r, syn, s.seq, 0)
		at = append(at, r.when.Sub(start))
	}
	wantAt := []time.Duration{1, 3, 7, 15, 31, 63}
	for i := range at {
		if at[i] != wantAt[i]*time.Second {
			t.Fatalf("SYN retransmissions at %v, want %v s", at, wantAt)
		}
	}
	p.clock.Advance(64 * time.Second)
	if r := ch.wait(t); !errors.Is(r.err, syscall.ETIMEDOUT) {
		t.Fatalf("err %v", r.err)
	}
	p.none()
}

func TestPassiveCloseAndHalfClose(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, mssOpt(1460))
	// The peer half-closes; we read EOF but can still write.
	p.send(pc.seg(ack|fin, nil))
	pc.sndNxt++
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
	buf := make([]byte, 10)
	if _, err := pc.c.Read(buf); err != io.EOF {
		t.Fatalf("read after FIN: %v", err)
	}
	if pc.c.State() != "CLOSE-WAIT" {
		t.Fatal(pc.c.State())
	}
	pc.c.Write([]byte("bye"))
	d := p.one()
	want(t, d, ack|psh, pc.rcvNxt, pc.sndNxt)
	pc.rcvNxt += 3
	pc.c.Close()
	f := p.one()
	want(t, f, ack|fin, pc.rcvNxt, pc.sndNxt)
	if pc.c.State() != "LAST-ACK" {
		t.Fatal(pc.c.State())
	}
	pc.rcvNxt++
	p.send(pc.seg(ack, nil))
	if pc.c.State() != "CLOSED" {
		t.Fatal(pc.c.State())
	}
	// The 4-tuple is free: a segment now draws a reset.
	p.send(pc.seg(ack, nil))
	want(t, p.one(), rst, pc.rcvNxt, 0)
}

func TestActiveCloseTimeWait(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, mssOpt(1460))
	pc.c.CloseWrite()
	f := p.one()
	want(t, f, ack|fin, pc.rcvNxt, pc.sndNxt)
	pc.rcvNxt++
	p.send(pc.seg(ack, nil))
	if pc.c.State() != "FIN-WAIT-2" {
		t.Fatal(pc.c.State())
	}
	// Data still flows to us after our FIN.
	pc.sendData([]byte("late"))
	p.one()
	buf := make([]byte, 10)
	if n, _ := pc.c.Read(buf); string(buf[:n]) != "late" {
		t.Fatalf("read %q", buf[:n])
	}
	p.send(pc.seg(ack|fin, nil))
	pc.sndNxt++
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
	if pc.c.State() != "TIME-WAIT" {
		t.Fatal(pc.c.State())
	}
	// A retransmitted FIN is ACKed again and restarts the timer.
	p.clock.Advance(30 * time.Second)
	p.send(seg{sport: pc.sport, dport: 80, seq: pc.sndNxt - 1, ack: pc.rcvNxt, flags: ack | fin, wnd: 100})
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
	p.clock.Advance(59 * time.Second)
	if pc.c.State() != "TIME-WAIT" {
		t.Fatal("TIME-WAIT ended before 2 MSL after the last FIN")
	}
	p.clock.Advance(time.Second)
	if pc.c.State() != "CLOSED" {
		t.Fatal(pc.c.State())
	}
	pc.c.Close()
}

func TestSimultaneousClose(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, mssOpt(1460))
	pc.c.CloseWrite()
	f := p.one()
	want(t, f, ack|fin, pc.rcvNxt, pc.sndNxt)
	// The peer's FIN crosses ours (it has not seen ours).
	p.send(pc.seg(ack|fin, nil))
	pc.sndNxt++
	want(t, p.one(), ack, pc.rcvNxt+1, pc.sndNxt)
	if pc.c.State() != "CLOSING" {
		t.Fatal(pc.c.State())
	}
	pc.rcvNxt++
	p.send(pc.seg(ack, nil))
	if pc.c.State() != "TIME-WAIT" {
		t.Fatal(pc.c.State())
	}
	pc.c.Close()
}

func TestTimeWaitBound(t *testing.T) {
	p := newPeer(t, ", time_wait_max: 1")
	ln := p.listen()
	for i, wantState := range []string{"TIME-WAIT", "CLOSED"} {
		pc := p.accept(ln, uint16(41000+i), mssOpt(1460))
		pc.c.CloseWrite()
		p.one()
		pc.rcvNxt++
		p.send(pc.seg(ack|fin, nil))
		pc.sndNxt++
		p.one()
		if pc.c.State() != wantState {
			t.Fatalf("connection %d: %s, want %s", i, pc.c.State(), wantState)
		}
		pc.c.Close()
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"time_wait_overflow": 1})
}

func TestResetChecks(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, mssOpt(1460))
	// In the window but not RCV.NXT: a challenge ACK, nothing else.
	p.send(seg{sport: pc.sport, dport: 80, seq: pc.sndNxt + 100, flags: rst})
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
	if pc.c.State() != "ESTABLISHED" {
		t.Fatal(pc.c.State())
	}
	// Outside the window: ignored.
	p.send(seg{sport: pc.sport, dport: 80, seq: pc.sndNxt + 1<<30, flags: rst})
	p.none()
	// A SYN in ESTABLISHED: a challenge ACK (rate limited per connection:
	// 500 ms since the last one).
	p.clock.Advance(time.Second)
	p.send(seg{sport: pc.sport, dport: 80, seq: pc.sndNxt + 5, flags: syn, wnd: 100})
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
	p.send(seg{sport: pc.sport, dport: 80, seq: pc.sndNxt + 5, flags: syn, wnd: 100})
	p.none()
	// Exactly RCV.NXT: reset.
	p.send(seg{sport: pc.sport, dport: 80, seq: pc.sndNxt, flags: rst})
	p.none()
	buf := make([]byte, 1)
	if _, err := pc.c.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after reset: %v", err)
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"challenge_acks": 2, "challenge_acks_limited": 1, "reset_in": 1})
}

func TestRetransmissionTimeout(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, mssOpt(1460))
	pc.c.Write([]byte("data"))
	d := p.one()
	start := d.when
	// The handshake measured an RTT of ~0 on the manual clock: RTO is
	// the 200 ms floor plus it, rounded up to 201 ms as Linux's, then
	// doubles.
	var at []time.Duration
	for i := 0; i < 4; i++ {
		p.clock.Advance(time.Duration(201<<i) * time.Millisecond)
		r := p.one()
		if r.seq != d.seq || string(r.data) != "data" {
			t.Fatalf("retransmission %v", r)
		}
		at = append(at, r.when.Sub(start))
	}
	for i, w := range []time.Duration{201, 603, 1407, 3015} {
		if at[i] != w*time.Millisecond {
			t.Fatalf("retransmissions at %v", at)
		}
	}
	// The ACK stops the timer.
	pc.rcvNxt += 4
	p.send(pc.seg(ack, nil))
	p.clock.Advance(10 * time.Second)
	p.none()
}

func TestRetransmissionsGiveUp(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, mssOpt(1460))
	pc.c.Write([]byte("x"))
	p.one()
	for i := 0; i < 16; i++ {
		p.clock.Advance(120 * time.Second)
	}
	if pc.c.State() != "CLOSED" {
		t.Fatal(pc.c.State())
	}
	if _, err := pc.c.Read(make([]byte, 1)); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("err %v", err)
	}
	got := p.read()
	if len(got) != 15 {
		t.Fatalf("%d retransmissions, want 15 (tcp_retries2)", len(got))
	}
}

func TestFastRetransmit(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, mssOpt(1000))
	data := bytes.Repeat([]byte{7}, 5000)
	pc.c.Write(data)
	segs := p.read()
	if len(segs) != 5 {
		t.Fatalf("%d segments of 1000 (IW 10)", len(segs))
	}
	// Segment 1 is lost: three duplicate ACKs for it.
	una := segs[0].seq
	for i := 0; i < 2; i++ {
		p.send(seg{sport: pc.sport, dport: 80, seq: pc.sndNxt, ack: una, flags: ack, wnd: 65535})
		p.none()
	}
	p.send(seg{sport: pc.sport, dport: 80, seq: pc.sndNxt, ack: una, flags: ack, wnd: 65535})
	r := p.one()
	if r.seq != una || len(r.data) != 1000 {
		t.Fatalf("fast retransmission %v", r)
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"fast_retransmits": 1, "dup_acks": 3})
	// The ACK of everything ends recovery.
	p.send(seg{sport: pc.sport, dport: 80, seq: pc.sndNxt, ack: una + 5000, flags: ack, wnd: 65535})
	p.clock.Advance(5 * time.Second)
	p.none()
}

func TestOutOfOrderAndSACK(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, sackOpts())
	// Bytes 100..200 first: an immediate duplicate ACK with a SACK block.
	s := pc.seg(ack, bytes.Repeat([]byte{2}, 100))
	s.seq += 100
	p.send(s)
	d := p.one()
	want(t, d, ack, pc.rcvNxt, pc.sndNxt)
	if d.parsed.NumSACK != 1 || d.parsed.SACK[0] != (wire.TCPSACKBlock{Left: pc.sndNxt + 100, Right: pc.sndNxt + 200}) {
		t.Fatalf("SACK %+v", d.parsed)
	}
	// Then 0..100: everything is acknowledged at once.
	pc.sendData(bytes.Repeat([]byte{1}, 100))
	pc.sndNxt += 100
	a := p.one()
	want(t, a, ack, pc.rcvNxt, pc.sndNxt)
	if a.parsed.NumSACK != 0 {
		t.Fatal("SACK after the hole filled")
	}
	buf := make([]byte, 300)
	n, _ := io.ReadAtLeast(pc.c, buf, 200)
	if n != 200 || buf[0] != 1 || buf[99] != 1 || buf[100] != 2 || buf[199] != 2 {
		t.Fatalf("read %d % x", n, buf[:n])
	}
}

func TestPAWS(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, synOpts(1000, 0))
	s := pc.seg(ack|psh, []byte("new"))
	s.opts = tsOpt(2000, 0)
	p.send(s)
	pc.sndNxt += 3
	p.one()
	// An old timestamp: dropped, answered with an ACK.
	old := pc.seg(ack|psh, []byte("old"))
	old.opts = tsOpt(1500, 0)
	p.send(old)
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
	p.n.WantCounters(t, "tcp", map[string]uint64{"paws_rejected": 1})
	buf := make([]byte, 10)
	if n, _ := pc.c.Read(buf); string(buf[:n]) != "new" {
		t.Fatalf("read %q", buf[:n])
	}
}

func TestZeroWindowProbe(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, mssOpt(1460))
	// The peer's window closes.
	s := pc.seg(ack, nil)
	s.wnd = 0
	p.send(s)
	pc.c.Write([]byte("blocked"))
	p.none()
	// Probes: an ACK at SND.UNA-1, backing off from the RTO.
	var at []time.Duration
	start := p.clock.Now()
	for i := 0; i < 3; i++ {
		p.clock.Advance(time.Duration(201<<i) * time.Millisecond)
		pr := p.one()
		want(t, pr, ack, pc.rcvNxt-1, pc.sndNxt)
		if len(pr.data) != 0 {
			t.Fatal("probe with data")
		}
		at = append(at, pr.when.Sub(start))
		// The peer answers with its window still closed.
		p.send(s)
	}
	for i, w := range []time.Duration{201, 603, 1407} {
		if at[i] != w*time.Millisecond {
			t.Fatalf("probes at %v", at)
		}
	}
	// The window opens: the data goes.
	s.wnd = 1000
	p.send(s)
	d := p.one()
	if string(d.data) != "blocked" {
		t.Fatalf("after the window opened: %v", d)
	}
}

func TestKeepalive(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, mssOpt(1460))
	pc.c.SetKeepAlivePeriod(10 * time.Second)
	pc.c.SetKeepAlive(true)
	p.clock.Advance(10 * time.Second)
	pr := p.one()
	want(t, pr, ack, pc.rcvNxt-1, pc.sndNxt)
	// Answered: the connection lives, the next probe after idle again.
	p.send(pc.seg(ack, nil))
	p.clock.Advance(9 * time.Second)
	p.none()
	p.clock.Advance(time.Second)
	p.one()
	// Unanswered: 9 probes, then a reset and ETIMEDOUT.
	for i := 0; i < 8; i++ {
		p.clock.Advance(10 * time.Second)
		p.one()
	}
	p.clock.Advance(10 * time.Second)
	want(t, p.one(), rst|ack, pc.rcvNxt, pc.sndNxt)
	if _, err := pc.c.Read(make([]byte, 1)); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("err %v", err)
	}
}

func TestDelayedACK(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, mssOpt(1000))
	// The first 16 segments are ACKed at once (quick ACKs).
	for i := 0; i < 16; i++ {
		pc.sendData(make([]byte, 100))
		p.one()
	}
	go io.Copy(io.Discard, pc.c)
	pc.sendData(make([]byte, 100))
	p.none()
	p.clock.Advance(39 * time.Millisecond)
	p.none()
	p.clock.Advance(time.Millisecond)
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
	// Two full-sized segments: ACKed at once.
	pc.sendData(make([]byte, 1000))
	pc.sendData(make([]byte, 1000))
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
	p.n.WantCounters(t, "tcp", map[string]uint64{"delayed_acks": 1})
}

func TestUnreadDataCloseResets(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, mssOpt(1460))
	pc.sendData([]byte("unread"))
	p.one()
	pc.c.Close()
	want(t, p.one(), rst|ack, pc.rcvNxt, pc.sndNxt)
}

func TestAcceptQueueFull(t *testing.T) {
	p := newPeer(t, ", syncookies: false") // cookies: cookie_test.go
	ln, err := tcp.ListenConfig{Backlog: 1}.Listen(p.n.Stack, "tcp4", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// One SYN at a time fits the SYN queue of 1.
	p.send(seg{sport: 1, dport: 80, seq: 10, flags: syn, wnd: 1000})
	sa := p.one()
	p.send(seg{sport: 2, dport: 80, seq: 10, flags: syn, wnd: 1000})
	p.none()
	p.send(seg{sport: 1, dport: 80, seq: 11, ack: sa.seq + 1, flags: ack, wnd: 1000})
	// Now the accept queue is full: the next handshake's ACK is dropped
	// and the SYN-ACK retransmitted.
	p.send(seg{sport: 3, dport: 80, seq: 10, flags: syn, wnd: 1000})
	sa3 := p.one()
	p.send(seg{sport: 3, dport: 80, seq: 11, ack: sa3.seq + 1, flags: ack, wnd: 1000})
	p.none()
	p.clock.Advance(time.Second)
	want(t, p.one(), syn|ack, sa3.seq, 11)
	p.n.WantCounters(t, "tcp", map[string]uint64{"syn_queue_full": 1, "accept_queue_full": 1})
	c, err := ln.AcceptTCP()
	if err != nil || c.RemoteAddr().String() != "10.0.2.9:1" {
		t.Fatal(c, err)
	}
}

// Segments of a stream arriving in a random order, duplicated and
// overlapping, are put back together byte for byte.
func TestReassemblyRandomOrder(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	var ob wire.TCPOptionsBuilder
	ob.AddMSS(1460)
	ob.AddSACKPermitted()
	pc := p.accept(ln, 40000, append([]byte(nil), ob.Bytes()...))
	data := blob(300 << 10)
	rng := rand.New(rand.NewPCG(1, 2))
	base := pc.sndNxt
	type piece struct{ off, n int }
	var pieces []piece
	for off := 0; off < len(data); {
		n := 1 + rng.IntN(1400)
		n = min(n, len(data)-off)
		pieces = append(pieces, piece{off, n})
		// Overlaps: some pieces also sent widened.
		if rng.IntN(4) == 0 {
			lo := max(0, off-rng.IntN(700))
			pieces = append(pieces, piece{lo, min(len(data), off+n+rng.IntN(700)) - lo})
		}
		off += n
	}
	// Shuffle within windows of 40 pieces (what fits the window), and
	// duplicate some.
	for i := 0; i < len(pieces); i += 40 {
		w := pieces[i:min(i+40, len(pieces))]
		rng.Shuffle(len(w), func(a, b int) { w[a], w[b] = w[b], w[a] })
	}
	got := make([]byte, 0, len(data))
	buf := make([]byte, 64<<10)
	for i, pc2 := range pieces {
		s := seg{sport: pc.sport, dport: 80, seq: base + uint32(pc2.off), ack: pc.rcvNxt, flags: ack, wnd: 65535, data: data[pc2.off : pc2.off+pc2.n]}
		p.send(s)
		if rng.IntN(10) == 0 {
			p.send(s)
		}
		p.read()
		if i%50 == 0 {
			pc.c.SetReadDeadline(time.Now().Add(time.Millisecond))
			for {
				n, err := pc.c.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
		}
	}
	// Anything left in a hole: send the whole stream once more in order.
	for off := 0; off < len(data); off += 1400 {
		p.send(seg{sport: pc.sport, dport: 80, seq: base + uint32(off), ack: pc.rcvNxt, flags: ack, wnd: 65535, data: data[off:min(off+1400, len(data))]})
		p.read()
		pc.c.SetReadDeadline(time.Now().Add(time.Millisecond))
		for {
			n, err := pc.c.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
	}
	if !bytes.Equal(got, data) {
		i := 0
		for i < len(got) && got[i] == data[i] {
			i++
		}
		t.Fatalf("%d of %d bytes, first difference at %d", len(got), len(data), i)
	}
}

// icmp4 builds an ICMPv4 error from the peer quoting quoted (an IPv4
// packet the stack sent: its header and first 8 bytes).
func (p *peer) icmp4(typ, code uint8, rest uint32, quoted []byte) []byte {
	q := quoted[:min(len(quoted), wire.IPv4MinimumSize+8)]
	total := wire.IPv4MinimumSize + wire.ICMPv4MinimumSize + len(q)
	b := make([]byte, total)
	wire.IPv4(b).Encode(&wire.IPv4Fields{TotalLength: uint16(total), ID: 9, TTL: 64, Protocol: wire.ProtocolICMP, Src: p.addr.As4(), Dst: p.stack.As4()})
	m := wire.ICMPv4(b[wire.IPv4MinimumSize:])
	m.Encode(&wire.ICMPv4Fields{Type: typ, Code: code, Rest: rest})
	copy(m.Payload(), q)
	m.SetChecksum(m.CalculateChecksum())
	return b
}

// quote is the IPv4 packet of a segment the stack sent, as it left: from
// the stack, with DF set (network.ipv4 sets it on what it sends and takes
// a fragmentation-needed message only about a packet that had it).
func (p *peer) quote(s seg) []byte {
	f := p.frame(s)
	ip := wire.IPv4(f)
	src, dst := ip.Src(), ip.Dst()
	copy(f[12:16], dst[:])
	copy(f[16:20], src[:])
	ip.SetFlagsFragmentOffset(ip.Flags()|wire.IPv4FlagDontFragment, 0)
	ip.SetChecksum(ip.CalculateChecksum())
	return f
}

// ICMP errors reach the connection only when the quoted sequence number is
// one it has in flight (RFC 5927); port unreachable ends a connect with
// ECONNREFUSED; fragmentation needed lowers the MSS and resends at once.
func TestICMPErrors(t *testing.T) {
	p := newPeer(t, "")
	s, ch := p.dial(9100, tcp.Dialer{})
	// A forged error quoting another sequence number: ignored.
	bad := s
	bad.seq += 1 << 20
	p.ep.InjectFrames([][]byte{p.icmp4(wire.ICMPv4DstUnreachable, wire.ICMPv4PortUnreachable, 0, p.quote(bad))})
	p.n.WantCounters(t, "tcp", map[string]uint64{"icmp_out_of_window": 1})
	p.ep.InjectFrames([][]byte{p.icmp4(wire.ICMPv4DstUnreachable, wire.ICMPv4PortUnreachable, 0, p.quote(s))})
	if r := ch.wait(t); !errors.Is(r.err, syscall.ECONNREFUSED) {
		t.Fatalf("err %v", r.err)
	}

	ln := p.listen()
	pc := p.accept(ln, 40000, mssOpt(1460))
	pc.c.Write(bytes.Repeat([]byte{1}, 3000))
	segs := p.read()
	if len(segs) != 3 || len(segs[0].data) != 1460 {
		t.Fatalf("before: %v", segs)
	}
	p.ep.InjectFrames([][]byte{p.icmp4(wire.ICMPv4DstUnreachable, wire.ICMPv4FragmentationNeeded, wire.ICMPv4FragNeededRest(1000), p.quote(segs[0]))})
	after := p.read()
	if len(after) == 0 || len(after[0].data) != 960 || after[0].seq != segs[0].seq {
		t.Fatalf("after fragmentation needed (MTU 1000): %v", after)
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"pmtu_updates": 1})
}

// After a timeout the sender resends from SND.UNA, but its bare ACKs keep
// the highest sequence number sent: numbered at the resend point they
// would fall before the peer's RCV.NXT and be dropped as out of window
// (two stacks stalled that way, each dropping the other's ACKs).
func TestACKSequenceAfterTimeout(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, mssOpt(1000))
	pc.c.Write(bytes.Repeat([]byte{3}, 3000))
	segs := p.read()
	if len(segs) != 3 {
		t.Fatalf("%d segments", len(segs))
	}
	p.clock.Advance(201 * time.Millisecond)
	r := p.one()
	if r.seq != segs[0].seq {
		t.Fatalf("retransmission %v", r)
	}
	// The peer got all three (its ACKs were lost) and sends data: our
	// ACK is numbered after the third segment.
	pc.sendData([]byte("x"))
	a := p.one()
	want(t, a, ack, segs[2].seq+1000, pc.sndNxt)
}
