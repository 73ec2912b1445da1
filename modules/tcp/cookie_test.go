package tcp_test

import (
	"io"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/tcp"
)

// A full SYN queue answers with a SYN cookie (RFC 4987, Linux's scheme):
// no state is kept, the ACK that returns the cookie makes an established
// connection (with the MSS, window scale and SACK the cookie and its
// timestamp carry), and an ACK with a forged cookie is reset.
func TestSYNCookies(t *testing.T) {
	p := newPeer(t, "")
	ln, err := tcp.ListenConfig{Backlog: 1}.Listen(p.n.Stack, "tcp4", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Port 1's handshake fills the SYN queue and stays half open.
	p.send(seg{sport: 1, dport: 80, seq: 10, flags: syn, wnd: 1000})
	p.one()
	// Port 2: a cookie, with timestamps encoding window scale 7 and SACK.
	p.send(seg{sport: 2, dport: 80, seq: 5000, flags: syn, wnd: 65535, opts: synOpts(777, 0)})
	sa := p.one()
	want(t, sa, syn|ack, sa.seq, 5001)
	if !sa.parsed.HasTimestamps || sa.parsed.TSVal&0x3f != 0x17 || !sa.parsed.SACKPermitted || !sa.parsed.HasWindowScale {
		t.Fatalf("cookie SYN-ACK options %+v", sa.parsed)
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"syncookies_sent": 1, "syn_queue_full": 1})
	p.clock.Advance(5 * time.Second)
	for _, s := range p.read() {
		if s.dport != 1 { // port 1's SYN-ACK is retransmitted
			t.Fatalf("nothing kept for port 2, yet %v", s)
		}
	}
	// A forged ACK (another ISN) is refused with a reset.
	p.send(seg{sport: 3, dport: 80, seq: 9001, ack: sa.seq + 12345, flags: ack, wnd: 1000, opts: tsOpt(780, sa.parsed.TSVal)})
	r := p.one()
	want(t, r, rst, sa.seq+12345, 0)
	// Port 2's cookie from another address or port is refused too.
	p.send(seg{sport: 4, dport: 80, seq: 5001, ack: sa.seq + 1, flags: ack, wnd: 1000, opts: tsOpt(780, sa.parsed.TSVal)})
	want(t, p.one(), rst, sa.seq+1, 0)
	p.n.WantCounters(t, "tcp", map[string]uint64{"syncookies_failed": 2, "syncookies_recv": 0})
	// The real ACK, with data: established, accepted, the data read.
	p.send(seg{sport: 2, dport: 80, seq: 5001, ack: sa.seq + 1, flags: ack | psh, wnd: 512, opts: tsOpt(781, sa.parsed.TSVal), data: []byte("hello")})
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.AcceptTCP()
	if err != nil || c.RemoteAddr().String() != "10.0.2.9:2" {
		t.Fatal(c, err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("%q %v", buf, err)
	}
	a := p.read()
	if len(a) == 0 || a[len(a)-1].ack != 5006 {
		t.Fatalf("ACK of the data: %v", a)
	}
	// The peer's window scale came back from the cookie: 512<<7 bytes of
	// window let 20 segments out (cwnd 10 allows 10 of MSS 1440).
	c.Write(make([]byte, 20000))
	out := p.read()
	if len(out) < 10 || len(out[0].data) != 1460-12 {
		t.Fatalf("sent %d segments: %v", len(out), out)
	}
	p.n.WantCounters(t, "tcp", map[string]uint64{"syncookies_recv": 1})
}
