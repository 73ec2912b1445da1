package tcp_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// A peer drives one stack (10.0.2.2 on link eth0, bare IP) segment by
// segment from 10.0.2.9, on a manual clock: what the stack sends is read
// back from the link as it is queued, so every test sees exact segments at
// exact times.
type peer struct {
	t     *testing.T
	n     *pt.Node
	ep    *channel.Endpoint
	clock *pipeline.ManualClock
	addr  netip.Addr // the peer's
	stack netip.Addr // the stack's
}

const stackAddr, peerAddr = "10.0.2.2", "10.0.2.9"

func newPeer(t *testing.T, tcpOpts string) *peer {
	t.Helper()
	return newPeerPool(t, tcpOpts, nil)
}

// newPeerPool is newPeer with the stack's packets from pool (nil: the
// default pool).
func newPeerPool(t *testing.T, tcpOpts string, pool *pipeline.Pool) *peer {
	t.Helper()
	clock := pt.NewManualClock()
	cfg := fmt.Sprintf(`
name: host
modules:
  - network.ipv4
  - {module: transport.tcp%s}
links:
  - {name: eth0, module: link.channel, framing: ip, addresses: [10.0.2.2/24]}
routes:
  - {to: default, via: 10.0.2.1, link: eth0}
`, tcpOpts)
	n := pt.NewNode(t, "host", cfg, pipeline.Options{Clock: clock, Seed: 1, Pool: pool})
	return &peer{t: t, n: n, ep: n.Link(t, "eth0"), clock: clock,
		addr: netip.MustParseAddr(peerAddr), stack: netip.MustParseAddr(stackAddr)}
}

// seg is a segment as the peer sends or reads it.
type seg struct {
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	wnd          uint16
	urg          uint16 // the urgent pointer (sent with URG)
	opts         []byte
	data         []byte
	parsed       wire.TCPOptions
	// for read segments
	when time.Time
}

func (s seg) String() string {
	f := ""
	for i, n := range []string{"F", "S", "R", "P", "."} {
		if s.flags&(1<<i) != 0 {
			f += n
		}
	}
	return fmt.Sprintf("%d>%d [%s] seq %d ack %d win %d len %d", s.sport, s.dport, f, s.seq, s.ack, s.wnd, len(s.data))
}

// frame builds the IPv4 packet of s from the peer to the stack.
func (p *peer) frame(s seg) []byte {
	hl := wire.TCPMinimumSize + (len(s.opts)+3)&^3
	total := wire.IPv4MinimumSize + hl + len(s.data)
	b := make([]byte, total)
	ip := wire.IPv4(b)
	ip.Encode(&wire.IPv4Fields{TotalLength: uint16(total), ID: 1, TTL: 64, Protocol: wire.ProtocolTCP, Src: p.addr.As4(), Dst: p.stack.As4()})
	t := wire.TCP(b[wire.IPv4MinimumSize:])
	t.Encode(&wire.TCPFields{SrcPort: s.sport, DstPort: s.dport, Seq: s.seq, Ack: s.ack, Flags: s.flags, Window: s.wnd, UrgentPointer: s.urg, Options: s.opts})
	copy(t[hl:], s.data)
	t.SetChecksum(t.CalculateChecksum(wire.IPv4PseudoChecksum(ip, uint16(len(t)))))
	return b
}

func (p *peer) send(s seg) { p.ep.InjectFrames([][]byte{p.frame(s)}) }

// read returns every segment the stack has sent since the last read.
func (p *peer) read() []seg {
	p.t.Helper()
	var out []seg
	for _, f := range pt.Drain(p.ep) {
		ip := wire.IPv4(f)
		if ip.Check() != nil || ip.Protocol() != wire.ProtocolTCP {
			continue
		}
		t := wire.TCP(ip.Payload())
		if t.Check() != nil {
			p.t.Fatalf("malformed TCP from the stack: % x", f)
		}
		if !t.IsChecksumValid(wire.IPv4PseudoChecksum(ip, uint16(len(t)))) {
			p.t.Fatalf("bad checksum from the stack: % x", f)
		}
		o, _ := wire.ParseTCPOptions(t.Options())
		out = append(out, seg{sport: t.SrcPort(), dport: t.DstPort(), seq: t.Seq(), ack: t.Ack(), flags: t.Flags(),
			wnd: t.Window(), opts: append([]byte(nil), t.Options()...), data: append([]byte(nil), t.Payload()...),
			parsed: o, when: p.clock.Now()})
	}
	return out
}

// one reads exactly one segment.
func (p *peer) one() seg {
	p.t.Helper()
	got := p.read()
	if len(got) != 1 {
		p.t.Fatalf("want 1 segment, got %d: %v", len(got), got)
	}
	return got[0]
}

// none checks that nothing was sent.
func (p *peer) none() {
	p.t.Helper()
	if got := p.read(); len(got) != 0 {
		p.t.Fatalf("want no segment, got %v", got)
	}
}

const (
	fin = wire.TCPFlagFin
	syn = wire.TCPFlagSyn
	rst = wire.TCPFlagRst
	psh = wire.TCPFlagPsh
	ack = wire.TCPFlagAck
)

// synOpts are Linux's SYN options: MSS 1460, SACK-permitted, timestamps,
// window scale 7.
func synOpts(tsval, tsecr uint32) []byte {
	var ob wire.TCPOptionsBuilder
	ob.AddMSS(1460)
	ob.AddSACKPermittedTimestamps(tsval, tsecr)
	ob.AddWindowScale(7)
	return append([]byte(nil), ob.Bytes()...)
}

func tsOpt(tsval, tsecr uint32) []byte {
	var ob wire.TCPOptionsBuilder
	ob.AddTimestamps(tsval, tsecr)
	return append([]byte(nil), ob.Bytes()...)
}

func mssOpt(mss uint16) []byte {
	var ob wire.TCPOptionsBuilder
	ob.AddMSS(mss)
	return append([]byte(nil), ob.Bytes()...)
}

// conn is an established connection between the peer and the stack, as
// the peer tracks it.
type pconn struct {
	p              *peer
	sport, dport   uint16
	sndNxt, rcvNxt uint32 // the peer's
	c              *tcp.Conn
}

func (pc *pconn) seg(flags uint8, data []byte) seg {
	return seg{sport: pc.sport, dport: pc.dport, seq: pc.sndNxt, ack: pc.rcvNxt, flags: flags, wnd: 65535, data: data}
}

// sendData sends data (ACK|PSH) and advances the peer's sequence.
func (pc *pconn) sendData(data []byte) {
	pc.p.send(pc.seg(ack|psh, data))
	pc.sndNxt += uint32(len(data))
}

// accept makes an established passive connection without options other
// than MSS (mss 0: none): the peer's SYN, the SYN-ACK, the ACK, Accept.
func (p *peer) accept(ln *tcp.Listener, sport uint16, opts []byte) *pconn {
	p.t.Helper()
	const iss = 1000
	p.send(seg{sport: sport, dport: 80, seq: iss, flags: syn, wnd: 65535, opts: opts})
	sa := p.one()
	if sa.flags != syn|ack || sa.ack != iss+1 {
		p.t.Fatalf("want SYN-ACK for %d, got %v", iss+1, sa)
	}
	pc := &pconn{p: p, sport: sport, dport: 80, sndNxt: iss + 1, rcvNxt: sa.seq + 1}
	p.send(pc.seg(ack, nil))
	p.none()
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.AcceptTCP()
	if err != nil {
		p.t.Fatal(err)
	}
	pc.c = c
	return pc
}

func (p *peer) listen() *tcp.Listener {
	p.t.Helper()
	ln, err := tcp.Listen(p.n.Stack, "tcp4", ":80")
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { ln.Close() })
	return ln
}

// dial starts an active open from the stack to the peer's port and
// returns the SYN and a channel with Dial's result.
func (p *peer) dial(port uint16, d tcp.Dialer) (seg, dialCh) {
	p.t.Helper()
	ch := make(chan dialResult, 1)
	d.Stack = p.n.Stack
	go func() {
		c, err := d.DialTCP(context.Background(), "tcp4", fmt.Sprintf("%s:%d", peerAddr, port))
		ch <- dialResult{c, err}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for p.ep.Pending() == 0 {
		if time.Now().After(deadline) {
			p.t.Fatal("no SYN")
		}
		time.Sleep(time.Millisecond)
	}
	return p.one(), ch
}

type dialResult struct {
	c   *tcp.Conn
	err error
}

type dialCh chan dialResult

func (r dialCh) wait(t *testing.T) dialResult {
	t.Helper()
	select {
	case d := <-r:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("Dial did not return")
		return dialResult{}
	}
}

// want checks a segment's flags, seq and ack.
func want(t *testing.T, s seg, flags uint8, seq, ackn uint32) {
	t.Helper()
	if s.flags != flags || s.seq != seq || (flags&ack != 0 && s.ack != ackn) {
		t.Fatalf("got %v, want flags %#x seq %d ack %d", s, flags, seq, ackn)
	}
}
