package tcp_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/tcp"
)

// closeToTimeWait closes pc from the application (FIN), has the peer ACK
// it and send its own FIN, and checks the ACK of that FIN.
func closeToTimeWait(t *testing.T, p *peer, pc *pconn) {
	t.Helper()
	pc.c.Close()
	f := p.one()
	want(t, f, ack|fin, pc.rcvNxt, pc.sndNxt)
	pc.rcvNxt++
	p.send(pc.seg(ack|fin, nil))
	pc.sndNxt++
	want(t, p.one(), ack, pc.rcvNxt, pc.sndNxt)
}

func timeWaitListed(p *peer, pc *pconn) bool {
	for _, s := range tcp.Sockets(p.n.Stack) {
		if s.State == "TIME-WAIT" && s.Remote.Port() == pc.sport {
			return true
		}
	}
	return false
}

// A connection the application closed waits out TIME-WAIT as a compact
// record, with the behaviour of a full one: listed by Sockets, a
// retransmitted FIN ACKed again (with the timestamps) and 2·MSL
// restarted, an old duplicate dropped by PAWS, a new SYN reopening the
// port with Linux's ISS, a reset ending it, the expiry after 60 s.
func TestCompactTimeWait(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, tsOpt(100, 0))
	closeToTimeWait(t, p, pc)
	if !timeWaitListed(p, pc) {
		t.Fatalf("not listed in TIME-WAIT: %v", tcp.Sockets(p.n.Stack))
	}
	p.clock.Advance(30 * time.Second)
	s := pc.seg(ack|fin, nil)
	s.seq--
	s.opts = tsOpt(200, 0)
	p.send(s)
	a := p.one()
	want(t, a, ack, pc.rcvNxt, pc.sndNxt)
	// TS.Recent is the last in-order segment's (the SYN's here: the
	// peer sent no timestamps since); a retransmitted FIN does not move
	// it, an in-window ACK does (Linux's tcp_timewait_state_process).
	if !a.parsed.HasTimestamps || a.parsed.TSEcr != 100 {
		t.Fatalf("ACK from TIME-WAIT has %+v", a.parsed)
	}
	b := pc.seg(ack, nil)
	b.opts = tsOpt(300, 0)
	p.send(b)
	p.none()
	p.clock.Advance(time.Second)
	s.opts = tsOpt(400, 0)
	p.send(s)
	if a := p.one(); a.parsed.TSEcr != 300 {
		t.Fatalf("ACK from TIME-WAIT echoes %d, want 300", a.parsed.TSEcr)
	}
	// PAWS: an old timestamp is not taken (an ACK answers, rate limited).
	s.opts = tsOpt(50, 0)
	p.send(s)
	p.read()
	p.clock.Advance(59 * time.Second)
	if !timeWaitListed(p, pc) {
		t.Fatal("TIME-WAIT ended before 2·MSL after the last FIN")
	}
	p.clock.Advance(time.Second + time.Millisecond)
	if timeWaitListed(p, pc) {
		t.Fatal("TIME-WAIT outlived 2·MSL")
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"paws_rejected": 1})

	// A new SYN (higher sequence number) reopens the port to the listener
	// with ISS = SND.NXT + 65537, as Linux's tcp_timewait_state_process.
	pc = p.accept(ln, 40001, nil)
	closeToTimeWait(t, p, pc)
	p.send(seg{sport: 40001, dport: 80, seq: pc.sndNxt + 100, flags: syn, wnd: 65535})
	sa := p.one()
	if sa.flags != syn|ack || sa.seq != pc.rcvNxt+65535+2 || sa.ack != pc.sndNxt+101 {
		t.Fatalf("SYN to TIME-WAIT answered %v, want SYN-ACK seq %d", sa, pc.rcvNxt+65537)
	}

	// A reset in window ends it.
	pc = p.accept(ln, 40002, nil)
	closeToTimeWait(t, p, pc)
	p.send(pc.seg(rst, nil))
	p.none()
	if timeWaitListed(p, pc) {
		t.Fatal("a reset did not end TIME-WAIT")
	}
	// Now nothing is there: a segment gets a reset.
	p.send(pc.seg(ack, nil))
	want(t, p.one(), rst, pc.rcvNxt, 0)
}

// heapAfterGC is the live heap.
func heapAfterGC() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Memory per TIME-WAIT entry (the live heap with 2,000 connections in
// TIME-WAIT and no application handle, less the heap before they were
// made): connections the application closed (compact records) against
// connections it only shut down for writing and dropped (full ones, as
// every TIME-WAIT connection was before).
func TestTimeWaitMemory(t *testing.T) {
	const n = 2000
	measure := func(closeApp bool) float64 {
		p := newPeer(t, "")
		ln := p.listen()
		pcs := make([]*pconn, n)
		before := heapAfterGC()
		for i := range pcs {
			pcs[i] = p.accept(ln, uint16(20000+i), mssOpt(1460))
		}
		for _, pc := range pcs {
			if closeApp {
				closeToTimeWait(t, p, pc)
				continue
			}
			pc.c.CloseWrite()
			p.one()
			pc.rcvNxt++
			p.send(pc.seg(ack|fin, nil))
			pc.sndNxt++
			p.one()
		}
		if !timeWaitListed(p, pcs[n-1]) {
			t.Fatal("not in TIME-WAIT")
		}
		for _, pc := range pcs {
			pc.c = nil
		}
		after := heapAfterGC()
		runtime.KeepAlive(pcs)
		runtime.KeepAlive(p)
		return float64(int64(after)-int64(before)) / n
	}
	compact := measure(true)
	full := measure(false)
	t.Logf("live heap per TIME-WAIT entry: compact %.0f bytes, full connection %.0f bytes", compact, full)
	// (Both include what the harness keeps per connection.)
	if compact > 500 || compact*4 > full {
		t.Fatalf("compact TIME-WAIT %.0f bytes an entry, a full connection %.0f: want ≤ 500 and a quarter", compact, full)
	}
}

// time_wait_max counts the compact records: beyond it a closing
// connection goes to CLOSED after its last ACK (time_wait_overflow), and
// a record that expires makes room again.
func TestCompactTimeWaitBound(t *testing.T) {
	p := newPeer(t, ", time_wait_max: 1")
	ln := p.listen()
	a := p.accept(ln, 41000, nil)
	closeToTimeWait(t, p, a)
	b := p.accept(ln, 41001, nil)
	closeToTimeWait(t, p, b)
	if !timeWaitListed(p, a) || timeWaitListed(p, b) {
		t.Fatalf("sockets %v", tcp.Sockets(p.n.Stack))
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"time_wait_overflow": 1})
	p.clock.Advance(61 * time.Second)
	c := p.accept(ln, 41002, nil)
	closeToTimeWait(t, p, c)
	if timeWaitListed(p, a) || !timeWaitListed(p, c) {
		t.Fatalf("sockets %v", tcp.Sockets(p.n.Stack))
	}
}
