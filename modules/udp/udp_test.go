package udp_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// exchange sends count datagrams of assorted sizes from client to server
// (an echo server) and checks that each comes back intact from server.
func exchange(t *testing.T, client net.PacketConn, server *net.UDPAddr, count int) {
	t.Helper()
	buf := make([]byte, 2048)
	sizes := []int{0, 1, 64, 512, 1000, 1472}
	for i := 0; i < count; i++ {
		want := payload(i, sizes[i%len(sizes)])
		if _, err := client.WriteTo(want, server); err != nil {
			t.Fatalf("datagram %d: write: %v", i, err)
		}
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := client.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: read: %v", i, err)
		}
		if from.String() != server.String() {
			t.Fatalf("datagram %d: echo from %v, want %v", i, from, server)
		}
		if !bytes.Equal(buf[:n], want) {
			t.Fatalf("datagram %d: echo of %d bytes differs from the %d sent", i, n, len(want))
		}
	}
}

// A UDP echo over net.PacketConn across the router, both ways.
func TestEchoAcrossRouter(t *testing.T) {
	pt.CheckGoroutines(t)
	tp := newTopo(t)
	const count = 300

	t.Run("a-to-b", func(t *testing.T) {
		srv := listen(t, tp.b, "10.0.2.2:7")
		done := echo(srv)
		cli := listen(t, tp.a, ":0")
		exchange(t, cli, srv.LocalAddr().(*net.UDPAddr), count)
		stopEcho(t, srv, done)
	})
	t.Run("b-to-a", func(t *testing.T) {
		srv := listen(t, tp.a, ":7007")
		done := echo(srv)
		cli := listen(t, tp.b, "10.0.2.2:0")
		exchange(t, cli, &net.UDPAddr{IP: net.IPv4(10, 0, 1, 2), Port: 7007}, count)
		stopEcho(t, srv, done)
	})
	for _, n := range []*pt.Node{tp.a, tp.b} {
		// The counters are added when a batch ends, after the datagram
		// was queued (and may have been read): the last batch's may
		// still be on its way.
		pt.Eventually(t, 2*time.Second, func() bool { return n.Counter("udp", "delivered") == 2*count }, "udp delivered")
		if got := n.Counter("udp", "delivered"); got != 2*count {
			t.Errorf("%s delivered %d datagrams, want %d (%s)", n.Name, got, 2*count, n.DumpCounters())
		}
		if got := n.Counter("udp", "sent"); got != 2*count {
			t.Errorf("%s sent %d datagrams, want %d", n.Name, got, 2*count)
		}
	}
	if got := tp.r.Counter("ipv4", "forwarded"); got != 4*count {
		t.Errorf("router forwarded %d, want %d", got, 4*count)
	}
}

// A connected socket from Dial: net.Conn, a source chosen by the route, an
// ephemeral port, and only its peer's datagrams.
func TestDialConnected(t *testing.T) {
	tp := newTopo(t)
	srv := listen(t, tp.b, ":9000")
	done := echo(srv)
	defer stopEcho(t, srv, done)

	c, err := udp.Dial(tp.a.Stack, "udp", "", "10.0.2.2:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var _ net.Conn = c
	la := c.LocalAddr().(*net.UDPAddr)
	if !la.IP.Equal(net.IPv4(10, 0, 1, 2)) || la.Port < 32768 || la.Port > 60999 {
		t.Errorf("local address %v, want 10.0.1.2 and an ephemeral port", la)
	}
	if ra := c.RemoteAddr(); ra == nil || ra.String() != "10.0.2.2:9000" {
		t.Errorf("remote address %v", ra)
	}
	buf := make([]byte, 100)
	for i := 0; i < 20; i++ {
		msg := []byte(fmt.Sprintf("hello %d", i))
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != string(msg) {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, msg)
		}
	}
	if _, err := c.WriteTo([]byte("x"), srv.LocalAddr()); !errors.Is(err, net.ErrWriteToConnected) {
		t.Errorf("WriteTo on a connected socket: %v, want ErrWriteToConnected", err)
	}

	// A datagram to the connected socket's port from another peer is not
	// for it: with no other socket on the port, it is answered with port
	// unreachable.
	other := listen(t, tp.b, ":0")
	if _, err := other.WriteTo([]byte("stranger"), la); err != nil {
		t.Fatal(err)
	}
	pt.Eventually(t, 5*time.Second, func() bool { return tp.a.Counter("udp", "no_port") == 1 },
		"the stranger's datagram was not refused (%s)", tp.a.DumpCounters())
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if n, err := c.Read(buf); err == nil {
		t.Errorf("connected socket received %q from a stranger", buf[:n])
	}

	// An unconnected socket may Read but not Write.
	if _, err := other.Write([]byte("x")); !errors.Is(err, syscall.EDESTADDRREQ) {
		t.Errorf("Write on an unconnected socket: %v, want EDESTADDRREQ", err)
	}
	if other.RemoteAddr() != nil {
		t.Errorf("unconnected socket has remote address %v", other.RemoteAddr())
	}
}

func checkTimeout(t *testing.T, err error) {
	t.Helper()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("error %v (%T) is not a net.Error with Timeout()", err, err)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("error %v does not wrap os.ErrDeadlineExceeded", err)
	}
}

func TestReadDeadline(t *testing.T) {
	pt.CheckGoroutines(t)
	n := hostAlone(t, "")
	c := listen(t, n, ":5000")
	buf := make([]byte, 64)

	start := time.Now()
	c.SetReadDeadline(start.Add(50 * time.Millisecond))
	_, _, err := c.ReadFrom(buf)
	checkTimeout(t, err)
	if el := time.Since(start); el < 50*time.Millisecond {
		t.Errorf("timed out after %v, before the deadline", el)
	}

	// A deadline in the past fails at once, even with data queued.
	n.Link(t, "eth0").InjectFrames([][]byte{pt.UDP4("10.0.9.9", "10.0.2.2", 1234, 5000, 64, []byte("queued"))})
	c.SetReadDeadline(time.Now().Add(-time.Second))
	_, _, err = c.ReadFrom(buf)
	checkTimeout(t, err)

	// No deadline: the queued datagram is read.
	c.SetReadDeadline(time.Time{})
	k, from, err := c.ReadFrom(buf)
	if err != nil || string(buf[:k]) != "queued" || from.String() != "10.0.9.9:1234" {
		t.Fatalf("read %q from %v, %v", buf[:k], from, err)
	}

	// A deadline set while a read is blocked applies to it.
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrom(buf)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	select {
	case err := <-errc:
		checkTimeout(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("a deadline set during a blocked read did not end it")
	}

	// Write deadline in the past: writes fail with a timeout.
	c.SetWriteDeadline(time.Now().Add(-time.Second))
	_, err = c.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(10, 0, 2, 9), Port: 1})
	checkTimeout(t, err)
	c.SetDeadline(time.Time{})
	if _, err := c.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(10, 0, 2, 9), Port: 1}); err != nil {
		t.Errorf("write after clearing the deadline: %v", err)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	pt.CheckGoroutines(t)
	n := hostAlone(t, "")
	c, err := udp.ListenPacket(n.Stack, "udp", ":5001")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() {
			_, _, err := c.ReadFrom(make([]byte, 10))
			errc <- err
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("blocked read ended with %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not unblock ReadFrom")
		}
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(10, 0, 2, 9), Port: 1}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %v, want net.ErrClosed", err)
	}
	// The port is free again.
	listen(t, n, ":5001")
}

// Closing the stack closes its sockets.
func TestStackCloseClosesSockets(t *testing.T) {
	n := hostAlone(t, "")
	c := listen(t, n, ":5002")
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrom(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	n.Stack.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("read ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("closing the stack did not unblock ReadFrom")
	}
	if _, err := udp.ListenPacket(n.Stack, "udp", ":5003"); err == nil {
		t.Error("ListenPacket on a closed stack succeeded")
	}
}

// A datagram for a closed port gets ICMP port unreachable, on the wire.
func TestPortUnreachable(t *testing.T) {
	tp := newTopo(t)
	c := listen(t, tp.a, "10.0.1.2:4444")
	msg := []byte("anyone on 9999?")
	if _, err := c.WriteTo(msg, &net.UDPAddr{IP: net.IPv4(10, 0, 2, 2), Port: 9999}); err != nil {
		t.Fatal(err)
	}
	orig := pt.UDP4("10.0.1.2", "10.0.2.2", 4444, 9999, 63, msg) // as B received it
	icmp := tp.aICMP.Wait(t, 5*time.Second)
	pt.CheckIPv4(t, icmp, pt.SrcAddr("10.0.2.2"), pt.DstAddr("10.0.1.2"),
		pt.ICMP(wire.ICMPv4DstUnreachable, wire.ICMPv4PortUnreachable, func(m wire.ICMPv4) error {
			q := m.Payload()
			if len(q) < len(orig) {
				return fmt.Errorf("quote of %d bytes, want the whole %d-byte datagram", len(q), len(orig))
			}
			qip := wire.IPv4(q)
			if qip.Check() != nil || qip.Protocol() != wire.ProtocolUDP ||
				!bytes.Equal(q[wire.IPv4MinimumSize:len(orig)], orig[wire.IPv4MinimumSize:]) {
				return fmt.Errorf("the error does not quote the datagram: % x", q)
			}
			return nil
		}))
	if got := tp.b.Counter("udp", "no_port"); got != 1 {
		t.Errorf("no_port %d, want 1", got)
	}
}

// Broadcasts: delivered to a socket bound to the port (wildcard), and
// never answered with an ICMP error when nobody listens.
func TestBroadcast(t *testing.T) {
	n := hostAlone(t, "")
	link := n.Link(t, "eth0")
	c := listen(t, n, ":67")
	link.InjectFrames([][]byte{
		pt.UDP4("10.0.2.7", "10.0.2.255", 68, 67, 64, []byte("subnet")),
		pt.UDP4("10.0.2.7", "255.255.255.255", 68, 67, 64, []byte("limited")),
		pt.UDP4("10.0.2.7", "10.0.2.255", 68, 99, 64, []byte("nobody")),
		pt.UDP4("10.0.2.7", "255.255.255.255", 68, 99, 64, []byte("nobody")),
	})
	buf := make([]byte, 64)
	for _, want := range []string{"subnet", "limited"} {
		c.SetReadDeadline(time.Now().Add(time.Second))
		k, _, err := c.ReadFrom(buf)
		if err != nil || string(buf[:k]) != want {
			t.Fatalf("read %q, %v; want %q", buf[:k], err, want)
		}
	}
	if out := readOut(t, n, "eth0"); len(out) != 0 {
		t.Errorf("%d packets sent in answer to broadcasts", len(out))
	}
	if got := n.Counter("udp", "broadcast_no_port"); got != 2 {
		t.Errorf("broadcast_no_port %d, want 2", got)
	}
	if got := n.Counter("udp", "no_port"); got != 0 {
		t.Errorf("no_port %d, want 0", got)
	}
}

func TestChecksums(t *testing.T) {
	n := hostAlone(t, "")
	link := n.Link(t, "eth0")
	c := listen(t, n, "10.0.2.2:53")

	bad := pt.UDP4("10.0.9.9", "10.0.2.2", 1000, 53, 64, []byte("bad checksum"))
	bad[len(bad)-1] ^= 0xff
	zero := pt.UDP4("10.0.9.9", "10.0.2.2", 1000, 53, 64, []byte("no checksum"))
	wire.UDP(zero[wire.IPv4MinimumSize:]).SetChecksum(0)
	short := pt.UDP4("10.0.9.9", "10.0.2.2", 1000, 53, 64, []byte("length field too long"))
	wire.UDP(short[wire.IPv4MinimumSize:]).SetLength(200)
	padded := pt.UDP4("10.0.9.9", "10.0.2.2", 1000, 53, 64, []byte("trailing bytes"))
	u := wire.UDP(padded[wire.IPv4MinimumSize:])
	u.SetLength(u.Length() - 6) // "trailing" is the datagram, " bytes" beyond it
	u.SetChecksum(0)
	u.SetChecksum(u[:u.Length()].CalculateChecksum(wire.IPv4PseudoChecksum(wire.IPv4(padded), u.Length())))

	link.InjectFrames([][]byte{bad, zero, short, padded})
	buf := make([]byte, 64)
	for _, want := range []string{"no checksum", "trailing"} {
		c.SetReadDeadline(time.Now().Add(time.Second))
		k, _, err := c.ReadFrom(buf)
		if err != nil || string(buf[:k]) != want {
			t.Fatalf("read %q, %v; want %q", buf[:k], err, want)
		}
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if k, _, err := c.ReadFrom(buf); err == nil {
		t.Errorf("unexpected datagram %q", buf[:k])
	}
	for name, want := range map[string]uint64{"rx": 4, "delivered": 2, "bad_checksum": 1, "malformed": 1, "no_port": 0} {
		if got := n.Counter("udp", name); got != want {
			t.Errorf("udp.%s = %d, want %d", name, got, want)
		}
	}
	if out := readOut(t, n, "eth0"); len(out) != 0 {
		t.Errorf("%d packets sent in answer to bad datagrams", len(out))
	}
}

// A reload of the pipeline keeps an open socket working, and its new
// receive_queue applies at once.
func TestReloadKeepsSocket(t *testing.T) {
	tp := newTopo(t)
	srv := listen(t, tp.b, ":7")
	done := echo(srv)
	defer stopEcho(t, srv, done)
	cli := listen(t, tp.a, ":0")
	exchange(t, cli, &net.UDPAddr{IP: net.IPv4(10, 0, 2, 2), Port: 7}, 10)

	before := tp.b.Stack.Generation().Seq()
	cfg := strings.Replace(readFile(t, "inmemory-udp-host.yaml"), "receive_queue: 256", "receive_queue: 2", 1)
	if err := tp.b.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if tp.b.Stack.Generation().Seq() == before {
		t.Fatal("the reload built no new generation")
	}
	exchange(t, cli, &net.UDPAddr{IP: net.IPv4(10, 0, 2, 2), Port: 7}, 10)

	// The new limit: a burst of 10 to a socket nobody reads keeps 2.
	idle := listen(t, tp.b, ":8")
	for i := 0; i < 10; i++ {
		cli.WriteTo([]byte("burst"), &net.UDPAddr{IP: net.IPv4(10, 0, 2, 2), Port: 8})
	}
	pt.Eventually(t, 5*time.Second, func() bool { return tp.b.Counter("udp", "receive_queue_full") == 8 },
		"receive_queue_full: %s", tp.b.DumpCounters())
	_ = idle
	// And a reload that fails keeps everything.
	if err := tp.b.Reload(strings.Replace(cfg, "receive_queue: 2", "receive_queue: -1", 1)); err == nil {
		t.Fatal("a reload with receive_queue -1 succeeded")
	}
	exchange(t, cli, &net.UDPAddr{IP: net.IPv4(10, 0, 2, 2), Port: 7}, 5)
}

func TestReceiveQueueFull(t *testing.T) {
	n := hostAlone(t, ", receive_queue: 4")
	c := listen(t, n, ":1000")
	frames := make([][]byte, 10)
	for i := range frames {
		frames[i] = pt.UDP4("10.0.9.9", "10.0.2.2", uint16(2000+i), 1000, 64, []byte{byte(i)})
	}
	n.Link(t, "eth0").InjectFrames(frames)
	if got := n.Counter("udp", "receive_queue_full"); got != 6 {
		t.Errorf("receive_queue_full %d, want 6", got)
	}
	buf := make([]byte, 8)
	for i := 0; i < 4; i++ {
		_, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil || from.Port() != uint16(2000+i) || buf[0] != byte(i) {
			t.Fatalf("datagram %d: %v from %v (%d)", i, err, from, buf[0])
		}
	}
}

func TestBindConflicts(t *testing.T) {
	n := hostAlone(t, "")
	inUse := func(address string) {
		t.Helper()
		c, err := udp.ListenPacket(n.Stack, "udp4", address)
		if err == nil {
			c.Close()
			t.Fatalf("listen %s succeeded, want EADDRINUSE", address)
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("listen %s: %v, want EADDRINUSE", address, err)
		}
	}
	listen(t, n, ":9000")
	inUse(":9000")
	inUse("10.0.2.2:9000")
	inUse("0.0.0.0:9000")
	listen(t, n, "10.0.2.2:9001")
	inUse("10.0.2.2:9001")
	inUse(":9001")
	// Different specific addresses share a port.
	listen(t, n, "10.0.2.255:9001")
	// A connected socket takes its local address and port too.
	d, err := udp.Dial(n.Stack, "udp", "10.0.2.2:9002", "10.0.9.9:53")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	inUse(":9002")

	if _, err := udp.ListenPacket(n.Stack, "udp4", "10.9.9.9:1"); !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Errorf("binding a foreign address: %v, want EADDRNOTAVAIL", err)
	}
	for _, bad := range []struct{ network, address string }{
		{"udp4", "[2001:db8::1]:1"}, {"udp6", "10.0.2.2:1"}, {"tcp", ":1"}, {"udp", "example.com:1"}, {"udp", "[::1]:1"}, {"udp", ":http"}, {"udp", "10.0.2.2"},
	} {
		if c, err := udp.ListenPacket(n.Stack, bad.network, bad.address); err == nil {
			c.Close()
			t.Errorf("listen %s %s succeeded", bad.network, bad.address)
		}
	}

	// Ephemeral ports are distinct.
	seen := map[uint16]bool{}
	for i := 0; i < 200; i++ {
		c := listen(t, n, ":0")
		p := c.LocalAddrPort().Port()
		if p < 32768 || p > 60999 || seen[p] {
			t.Fatalf("ephemeral port %d (duplicate %v)", p, seen[p])
		}
		seen[p] = true
	}
}

func TestMessageTooLong(t *testing.T) {
	n := hostAlone(t, "")
	c := listen(t, n, ":0")
	to := netip.MustParseAddrPort("10.0.2.9:9")
	if _, err := c.WriteToUDPAddrPort(make([]byte, 65508), to); !errors.Is(err, syscall.EMSGSIZE) {
		t.Errorf("65508-byte datagram: %v, want EMSGSIZE", err)
	}
	if _, err := c.WriteToUDPAddrPort(make([]byte, 1472), to); err != nil {
		t.Errorf("1472-byte datagram: %v", err)
	}
	out := readOut(t, n, "eth0")
	if len(out) != 1 || len(out[0]) != 1500 {
		t.Fatalf("sent %d packets, want one of 1500 bytes", len(out))
	}
	pt.CheckIPv4(t, out[0], pt.SrcAddr("10.0.2.2"), pt.DstAddr("10.0.2.9"), pt.TTL(64))
	ip := wire.IPv4(out[0])
	u := wire.UDP(ip.Payload())
	if u.Check() != nil || !u.IsChecksumValid(wire.IPv4PseudoChecksum(ip, u.Length())) || u.Checksum() == 0 {
		t.Errorf("sent datagram has a bad or no checksum")
	}
	if got := u.SrcPort(); got != c.LocalAddrPort().Port() {
		t.Errorf("source port %d, want %d", got, c.LocalAddrPort().Port())
	}
	// Over the MTU: fragmented by network.ipv4 (offsets in 8-byte units,
	// all but the last with MF, sizes adding up).
	if _, err := c.WriteToUDPAddrPort(make([]byte, 4000), to); err != nil {
		t.Fatalf("4000-byte datagram: %v", err)
	}
	frags := readOut(t, n, "eth0")
	total := 0
	for i, f := range frags {
		ip := wire.IPv4(f)
		pt.CheckIPv4(t, f)
		if len(f) > 1500 || int(ip.FragmentOffset()) != total || ip.MoreFragments() != (i < len(frags)-1) {
			t.Errorf("fragment %d: len %d offset %d MF %v", i, len(f), ip.FragmentOffset(), ip.MoreFragments())
		}
		total += len(ip.Payload())
	}
	if len(frags) != 3 || total != 4008 {
		t.Errorf("%d fragments carrying %d bytes, want 3 carrying 4008", len(frags), total)
	}
}

func TestNoUDPConfigured(t *testing.T) {
	n := pt.NewNode(t, "bare", `
name: bare
modules: [network.ipv4]
links:
  - {name: eth0, module: link.channel, addresses: [10.0.2.2/24]}
`, pipeline.Options{})
	if _, err := udp.ListenPacket(n.Stack, "udp", ":1"); err == nil || !strings.Contains(err.Error(), "transport.udp") {
		t.Errorf("ListenPacket on a stack without transport.udp: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ entry, want string }{
		{"{module: transport.udp, receive_queue: 0}", ""},
		{"{module: transport.udp, receive_queue: 70000}", "receive_queue 70000 out of range 1..65536"},
		{"{module: transport.udp, receive_queue: -3}", "receive_queue -3 out of range 1..65536"},
		{"{module: transport.udp, receive_queu: 3}", "receive_queu"},
	} {
		text := fmt.Sprintf("name: x\nmodules: [network.ipv4, %s]\nlinks:\n  - {name: l, module: link.channel}\n", tc.entry)
		cfg, err := pipeline.ParseConfig("udp.yaml", []byte(text))
		if err == nil {
			err = pipeline.Check(cfg)
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.entry, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "transport.udp") || !strings.HasPrefix(err.Error(), "udp.yaml:2:")):
			t.Errorf("%s: error %v, want one at udp.yaml:2 naming transport.udp and %q", tc.entry, err, tc.want)
		}
	}
}

// Several goroutines send and receive at once, on several sockets and on one
// shared socket (run with -race).
func TestConcurrentSockets(t *testing.T) {
	pt.CheckGoroutines(t)
	tp := newTopo(t)
	srv := listen(t, tp.b, ":7")
	// Two goroutines serve the same socket.
	done1, done2 := echo(srv), echo(srv)
	const clients, perClient, window = 4, 200, 4
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			c, err := udp.ListenPacket(tp.a.Stack, "udp4", ":0")
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			to := netip.MustParseAddrPort("10.0.2.2:7")
			got := map[string]bool{}
			buf := make([]byte, 128)
			// A sender goroutine and this receiver run at once, with at
			// most window datagrams in flight (so no queue overflows).
			credit := make(chan struct{}, window)
			for k := 0; k < window; k++ {
				credit <- struct{}{}
			}
			stop := make(chan struct{})
			sendErr := make(chan error, 1)
			go func() {
				for k := 0; k < perClient; k++ {
					select {
					case <-credit:
					case <-stop:
						sendErr <- nil
						return
					}
					msg := fmt.Sprintf("client %d datagram %d %s", id, k, strings.Repeat("x", k%50))
					if _, err := c.WriteToUDPAddrPort([]byte(msg), to); err != nil {
						sendErr <- err
						return
					}
				}
				sendErr <- nil
			}()
			fail := func(err error) {
				close(stop)
				<-sendErr
				errs <- err
			}
			for len(got) < perClient {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					fail(fmt.Errorf("client %d: %d of %d echoes: %v", id, len(got), perClient, err))
					return
				}
				if from != to || !strings.HasPrefix(string(buf[:n]), fmt.Sprintf("client %d ", id)) {
					fail(fmt.Errorf("client %d got %q from %v", id, buf[:n], from))
					return
				}
				got[string(buf[:n])] = true
				credit <- struct{}{}
			}
			if err := <-sendErr; err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	stopEcho(t, srv, done1)
	<-done2
	if t.Failed() {
		t.Logf("a: %s\nb: %s\nr: %s", tp.a.DumpCounters(), tp.b.DumpCounters(), tp.r.DumpCounters())
	}
}

// One batch with datagrams for several sockets, interleaved: each socket
// gets its own, in order; the demultiplexer tells connected, bound and
// wildcard sockets apart.
func TestBatchDemux(t *testing.T) {
	n := hostAlone(t, "")
	s1 := listen(t, n, "10.0.2.2:6000")
	s2 := listen(t, n, "10.0.2.255:6000")
	s3 := listen(t, n, ":6002")
	d, err := udp.Dial(n.Stack, "udp4", "10.0.2.2:6001", "10.0.9.9:53")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	dg := func(src string, sport uint16, dst string, dport uint16, msg string) []byte {
		return pt.UDP4(src, dst, sport, dport, 64, []byte(msg))
	}
	n.Link(t, "eth0").InjectFrames([][]byte{
		dg("10.0.9.9", 1, "10.0.2.2", 6000, "a1"),
		dg("10.0.9.9", 1, "10.0.2.255", 6000, "b1"),
		dg("10.0.9.9", 1, "10.0.2.2", 6000, "a2"),
		dg("10.0.9.9", 53, "10.0.2.2", 6001, "d1"),
		dg("10.0.9.8", 53, "10.0.2.2", 6001, "not for d"),
		dg("10.0.9.9", 1, "10.0.2.2", 6002, "w1"),
		dg("10.0.9.9", 1, "255.255.255.255", 6002, "w2"),
		dg("10.0.9.9", 1, "10.0.2.2", 6000, "a3"),
		dg("10.0.9.9", 1, "255.255.255.255", 6000, "nobody"),
		dg("10.0.9.9", 53, "10.0.2.2", 6001, "d2"),
	})
	buf := make([]byte, 64)
	for _, tc := range []struct {
		c    *udp.Conn
		want []string
	}{{s1, []string{"a1", "a2", "a3"}}, {s2, []string{"b1"}}, {s3, []string{"w1", "w2"}}, {d, []string{"d1", "d2"}}} {
		for _, want := range tc.want {
			tc.c.SetReadDeadline(time.Now().Add(time.Second))
			k, _, err := tc.c.ReadFrom(buf)
			if err != nil || string(buf[:k]) != want {
				t.Fatalf("%v: read %q, %v; want %q", tc.c.LocalAddr(), buf[:k], err, want)
			}
		}
		tc.c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		if k, _, err := tc.c.ReadFrom(buf); err == nil {
			t.Errorf("%v: extra datagram %q", tc.c.LocalAddr(), buf[:k])
		}
	}
	out := readOut(t, n, "eth0")
	if len(out) != 1 {
		t.Fatalf("%d packets sent, want one port unreachable", len(out))
	}
	pt.CheckIPv4(t, out[0], pt.DstAddr("10.0.9.8"), pt.ICMP(wire.ICMPv4DstUnreachable, wire.ICMPv4PortUnreachable))
	for name, want := range map[string]uint64{"rx": 10, "delivered": 8, "no_port": 1, "broadcast_no_port": 1} {
		if got := n.Counter("udp", name); got != want {
			t.Errorf("udp.%s = %d, want %d", name, got, want)
		}
	}
}

// A connected socket learns of port unreachable from the ICMP error the
// peer sends back (through network.ipv4 and TransportErrorHandler) and
// reports ECONNREFUSED on its next read, as Linux does.
func TestConnRefused(t *testing.T) {
	tp := newTopo(t)
	c, err := udp.Dial(tp.a.Stack, "udp", "", "10.0.2.2:9999") // nobody listens
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("anyone?")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	if _, err := c.Read(buf); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("read after sending to a closed port: %v, want ECONNREFUSED (%s)", err, tp.a.DumpCounters())
	}
}
