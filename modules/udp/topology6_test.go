package udp_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// The IPv6 topology of pipelines/inmemory-*6*.yaml, all three files as they
// are, on one manual clock:
//
//	host6-a (SLAAC) ──(a)── router6 ──(b)── udp-host6 2001:db8:2::2
type topo6 struct {
	a, r, b *pt.Node
	clock   *pt.ManualClock
}

func newTopo6(t *testing.T) *topo6 {
	t.Helper()
	clock := pt.NewManualClock()
	opts := pipeline.Options{Clock: clock}
	a := pt.NewNode(t, "host6-a", readFile(t, "inmemory-host6-a.yaml"), opts)
	r := pt.NewNode(t, "router6", readFile(t, "inmemory-router6.yaml"), opts)
	b := pt.NewNode(t, "udp-host6", readFile(t, "inmemory-udp-host6.yaml"), opts)
	pt.Connect(t, a, "a", r, "a")
	pt.Connect(t, b, "b", r, "b")
	// DAD (1 s), solicitation, advertisement (≤ 3 s later), SLAAC DAD.
	for i := 0; i < 80; i++ {
		clock.Advance(100 * time.Millisecond)
		time.Sleep(time.Millisecond)
	}
	pt.Eventually(t, 5*time.Second, func() bool {
		c, err := udp.Dial(a.Stack, "udp6", "", "[2001:db8:2::2]:7")
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "host A did not configure itself (%s)", a.DumpCounters())
	return &topo6{a: a, r: r, b: b, clock: clock}
}

// UDP over IPv6 across a router: host A, configured by SLAAC, talks to host
// B's echo server; the datagrams carry valid checksums over the IPv6
// pseudo-header, and the source address is A's SLAAC address.
func TestUDP6EchoAcrossRouter(t *testing.T) {
	pt.CheckGoroutines(t)
	tp := newTopo6(t)
	srv, err := udp.ListenPacket(tp.b.Stack, "udp6", "[::]:7")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 8192)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			srv.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	c, err := udp.Dial(tp.a.Stack, "udp6", "", "[2001:db8:2::2]:7")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.LocalAddrPort().Addr(); got != netip.MustParseAddr("2001:db8:1::ff:fe00:a02") {
		t.Errorf("local address %s, want the SLAAC address", got)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := 0; i < 5; i++ {
		msg := bytes.Repeat([]byte{byte('a' + i)}, 100+i*300)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("echo %d: %v (%s | %s)", i, err, tp.a.DumpCounters(), tp.b.DumpCounters())
		}
		if !bytes.Equal(buf[:n], msg) {
			t.Fatalf("echo %d: %d bytes back", i, n)
		}
	}
	// A datagram bigger than the MTU is fragmented by the sender and
	// reassembled by the receiver.
	big := bytes.Repeat([]byte("0123456789"), 400)
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8192)
	n, err := c.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], big) {
		t.Fatalf("4000-byte echo: %d bytes, %v", n, err)
	}
	if tp.b.Counter("ipv6", "reasm_ok") == 0 || tp.a.Counter("ipv6", "frag_ok") == 0 {
		t.Errorf("no fragmentation seen (%s | %s)", tp.a.DumpCounters(), tp.b.DumpCounters())
	}
	if got := tp.r.Counter("ipv6", "forwarded"); got < 12 {
		t.Errorf("router forwarded %d", got)
	}
	srv.Close()
	<-done

	// Nobody listens on port 9: ICMPv6 port unreachable reaches the
	// connected socket as ECONNREFUSED.
	d, err := udp.Dial(tp.a.Stack, "udp6", "", "[2001:db8:2::2]:9")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Write([]byte("anyone?"))
	d.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := d.Read(buf); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("read after port unreachable: %v, want ECONNREFUSED", err)
	}
}

// IPv6 UDP forbids the zero checksum (RFC 8200 §8.1); a bad one is dropped
// too.
func TestUDP6Checksum(t *testing.T) {
	h := pt.NewNode(t, "host", `
name: host
modules: [{module: network.ipv6, router_solicitations: 0}, transport.udp]
links:
  - {name: eth0, module: link.channel, framing: ip, addresses: ["2001:db8:2::2/64"]}
`, pipeline.Options{})
	c, err := udp.ListenPacket(h.Stack, "udp6", "[2001:db8:2::2]:7")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mk := func(csum func(u wire.UDP, good uint16) uint16) []byte {
		src, dst := netip.MustParseAddr("2001:db8:2::9").As16(), netip.MustParseAddr("2001:db8:2::2").As16()
		p := make([]byte, 40+8+5)
		wire.IPv6(p).Encode(&wire.IPv6Fields{PayloadLength: 13, NextHeader: wire.ProtocolUDP, HopLimit: 64, Src: src, Dst: dst})
		u := wire.UDP(p[40:])
		u.Encode(&wire.UDPFields{SrcPort: 5, DstPort: 7, Length: 13})
		copy(u[8:], "hello")
		good := u.CalculateChecksum(wire.PseudoHeaderChecksum(wire.ProtocolUDP, src[:], dst[:], 13))
		u.SetChecksum(csum(u, good))
		return p
	}
	l := h.Link(t, "eth0")
	l.InjectFrames([][]byte{
		mk(func(_ wire.UDP, _ uint16) uint16 { return 0 }),
		mk(func(_ wire.UDP, g uint16) uint16 { return g ^ 1 }),
		mk(func(_ wire.UDP, g uint16) uint16 { return g }),
	})
	if got := h.Counter("udp", "bad_checksum"); got != 2 {
		t.Errorf("bad_checksum %d, want 2 (zero and wrong)", got)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 64)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "hello" || from != netip.MustParseAddrPort("[2001:db8:2::9]:5") {
		t.Errorf("read %q from %v: %v", buf[:n], from, err)
	}
	if a := c.LocalAddr().(*net.UDPAddr); a.String() != "[2001:db8:2::2]:7" {
		t.Errorf("local address %s", a)
	}
}
