package tcp_test

import (
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// A writer blocked on a full send buffer wakes up when an ACK leaves at
// least half as much free as is still queued — a third of a full buffer —
// not at every ACK (Linux's sk_stream_write_space: sk_stream_wspace >=
// sk_stream_min_wspace, tested in tcp_check_space after each ACK), so
// that it writes a burst per wake-up rather than a segment's worth.
func TestWriterWokenAtThirdFree(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40000, mssOpt(1000))
	if err := pc.c.SetWriteBuffer(12000); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := pc.c.Write(make([]byte, 12001)) // the buffer full, one byte more
		done <- err
	}()
	// The initial window's ten segments leave; the buffer holds 12,000.
	var sent uint32
	for deadline := time.Now().Add(5 * time.Second); sent < 10000; {
		for _, s := range p.read() {
			sent += uint32(len(s.data))
		}
		if time.Now().After(deadline) {
			t.Fatalf("sent %d of the first window", sent)
		}
		time.Sleep(time.Millisecond)
	}
	blocked := func(why string) {
		t.Helper()
		select {
		case err := <-done:
			t.Fatalf("%s: Write returned (%v)", why, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	blocked("the buffer full")
	// 1,000 acknowledged: 1,000 free against 11,000 queued.
	pc.p.send(seg{sport: pc.sport, dport: pc.dport, seq: pc.sndNxt, ack: pc.rcvNxt + 1000, flags: ack, wnd: 65535})
	p.read()
	blocked("1,000 of 12,000 free")
	// 3,000 acknowledged: 3,000 free against 9,000.
	pc.p.send(seg{sport: pc.sport, dport: pc.dport, seq: pc.sndNxt, ack: pc.rcvNxt + 3000, flags: ack, wnd: 65535})
	p.read()
	blocked("3,000 of 12,000 free")
	// 4,000 acknowledged: 4,000 free against 8,000 — a third.
	pc.p.send(seg{sport: pc.sport, dport: pc.dport, seq: pc.sndNxt, ack: pc.rcvNxt + 4000, flags: ack, wnd: 65535})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a third of the buffer free: Write still blocked")
	}
}

// One batch of a connection's segments with a corrupted and a malformed
// one among them (every checksum is verified before the connection is
// locked): the two are dropped and counted, the others are taken in
// order as one run.
func TestBatchVerifiedBeforeRun(t *testing.T) {
	p := newPeer(t, "")
	ln := p.listen()
	pc := p.accept(ln, 40001, mssOpt(1000))
	one := p.frame(pc.seg(ack|psh, []byte("first ")))
	bad := p.frame(seg{sport: pc.sport, dport: pc.dport, seq: pc.sndNxt + 6, ack: pc.rcvNxt, flags: ack | psh, wnd: 65535, data: []byte("XXXXX")})
	bad[len(bad)-1] ^= 0xff // the checksum no longer matches
	short := p.frame(seg{sport: pc.sport, dport: pc.dport, seq: pc.sndNxt + 6, ack: pc.rcvNxt, flags: ack, wnd: 65535})
	short = short[:len(short)-8] // cut inside the TCP header
	ip := wire.IPv4(short)
	ip.SetTotalLength(uint16(len(short))) // (the IP header says so)
	ip.SetChecksum(ip.CalculateChecksum())
	two := p.frame(seg{sport: pc.sport, dport: pc.dport, seq: pc.sndNxt + 6, ack: pc.rcvNxt, flags: ack | psh, wnd: 65535, data: []byte("second")})
	p.ep.InjectFrames([][]byte{one, bad, short, two})
	buf := make([]byte, 64)
	got := ""
	pc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < len("first second") {
		n, err := pc.c.Read(buf)
		if err != nil {
			t.Fatalf("read %q: %v", got, err)
		}
		got += string(buf[:n])
	}
	if got != "first second" {
		t.Fatalf("read %q", got)
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"bad_checksum": 1, "malformed": 1})
}
