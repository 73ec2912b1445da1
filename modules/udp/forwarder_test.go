package udp_test

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// newFwd builds pipelinetest's transparent proxy (a client whose default
// routes go to a proxy stack with a transparent link, no address of its
// own; IP forwarding off) and a udp.Forwarder on the proxy.
func newFwd(t *testing.T, cfg udp.ForwarderConfig) (client, proxy *pt.Node, f *udp.Forwarder) {
	t.Helper()
	client, proxy = pt.NewProxyPair(t, "transport.udp", false, pipeline.Options{})
	f, err := udp.NewForwarder(proxy.Stack, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return client, proxy, f
}

func nextReq(t *testing.T, f *udp.Forwarder) *udp.ForwarderRequest {
	t.Helper()
	return pt.NextRequest(t, f.Next)
}

// TestForwarderFlow: datagrams to addresses nobody has (IPv4 and IPv6)
// reach the forwarder with their original destination; the datagrams sent
// before the request is accepted are read first, in order, then the
// flow's later ones; replies reach the client from the original
// destination. The proxy forwards nothing.
func TestForwarderFlow(t *testing.T) {
	pt.CheckGoroutines(t)
	client, proxy, f := newFwd(t, udp.ForwarderConfig{})
	for _, tc := range []struct{ network, dst string }{
		{"udp4", "198.51.100.53:53"},
		{"udp6", "[2001:db8::53]:5353"},
	} {
		t.Run(tc.network, func(t *testing.T) {
			c, err := udp.Dial(client.Stack, tc.network, "", tc.dst)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for i := 0; i < 3; i++ {
				if _, err := c.Write([]byte(fmt.Sprintf("q%d", i))); err != nil {
					t.Fatal(err)
				}
			}
			r := nextReq(t, f)
			if r.LocalAddr() != netip.MustParseAddrPort(tc.dst) {
				t.Fatalf("original destination %v, want %s", r.LocalAddr(), tc.dst)
			}
			if r.RemoteAddr() != c.LocalAddrPort() {
				t.Fatalf("source %v, want %v", r.RemoteAddr(), c.LocalAddrPort())
			}
			s, err := r.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.LocalAddr().String() != tc.dst || s.RemoteAddr().String() != c.LocalAddr().String() {
				t.Fatalf("flow socket %v ↔ %v", s.LocalAddr(), s.RemoteAddr())
			}
			if _, err := c.Write([]byte("q3")); err != nil {
				t.Fatal(err)
			}
			s.SetDeadline(time.Now().Add(5 * time.Second))
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 100)
			for i := 0; i < 4; i++ {
				n, err := s.Read(buf)
				if err != nil || string(buf[:n]) != fmt.Sprintf("q%d", i) {
					t.Fatalf("datagram %d: %q %v", i, buf[:n], err)
				}
				if _, err := s.Write([]byte(fmt.Sprintf("a%d", i))); err != nil {
					t.Fatal(err)
				}
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil || string(buf[:n]) != fmt.Sprintf("a%d", i) || from != netip.MustParseAddrPort(tc.dst) {
					t.Fatalf("reply %d: %q from %v, %v", i, buf[:n], from, err)
				}
			}
		})
	}
	if st := f.Stats(); st.Requests != 2 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
	if n := proxy.Counter("ipv4", "forwarded") + proxy.Counter("ipv6", "forwarded"); n != 0 {
		t.Fatalf("forwarded %d", n)
	}
}

// TestForwarderRejectDrop: Reject answers with port unreachable (the
// client's connected socket reads ECONNREFUSED), Drop sends nothing, and
// the flow's next datagram is a new request.
func TestForwarderRejectDrop(t *testing.T) {
	pt.CheckGoroutines(t)
	client, proxy, f := newFwd(t, udp.ForwarderConfig{})
	for _, dst := range []string{"192.0.2.1:9", "[2001:db8::1]:9"} {
		network := "udp4"
		if dst[0] == '[' {
			network = "udp6"
		}
		c, err := udp.Dial(client.Stack, network, "", dst)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("x"))
		r := nextReq(t, f)
		r.Reject()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 10)); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("%s: read after Reject: %v, want ECONNREFUSED", dst, err)
		}
		if _, err := r.Accept(); err == nil {
			t.Fatal("Accept after Reject succeeded")
		}
		sent := proxy.Counter("ipv4", "sent") + proxy.Counter("ipv6", "sent")
		c.Write([]byte("y"))
		r = nextReq(t, f)
		r.Drop()
		if n := proxy.Counter("ipv4", "sent") + proxy.Counter("ipv6", "sent"); n != sent {
			t.Fatalf("Drop sent %d packets", n-sent)
		}
		c.Write([]byte("z"))
		r = nextReq(t, f)
		s, err := r.Accept()
		if err != nil {
			t.Fatal(err)
		}
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 10)
		if n, err := s.Read(buf); err != nil || string(buf[:n]) != "z" {
			t.Fatalf("after Drop: %q %v", buf[:n], err)
		}
		s.Close()
		c.Close()
	}
}

// TestForwarderUDPLimits: at most MaxInFlight flows and PendingDatagrams
// per flow are held; the rest is dropped and counted.
func TestForwarderUDPLimits(t *testing.T) {
	pt.CheckGoroutines(t)
	client, _, f := newFwd(t, udp.ForwarderConfig{MaxInFlight: 1, PendingDatagrams: 2})
	a, err := udp.Dial(client.Stack, "udp4", "", "198.51.100.1:1000")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := udp.Dial(client.Stack, "udp4", "", "198.51.100.2:1000")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 0; i < 5; i++ {
		a.Write([]byte{byte(i)})
	}
	b.Write([]byte("b"))
	pt.Eventually(t, 5*time.Second, func() bool { st := f.Stats(); return st.Full+st.PendingFull >= 4 }, "datagrams did not arrive")
	st := f.Stats()
	if st.Requests != 1 || st.InFlight != 1 || st.PendingFull != 3 || st.Full != 1 {
		t.Fatalf("stats %+v, want 1 request holding 2 datagrams, 3 over, 1 new flow dropped", st)
	}
	r := nextReq(t, f)
	s, err := r.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 10)
	var got []byte
	for {
		n, err := s.Read(buf)
		if err != nil {
			break
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "\x00\x01" {
		t.Fatalf("read %q, want the 2 datagrams held", got)
	}
	b.Write([]byte("b"))
	if r := nextReq(t, f); r.LocalAddr().Addr() != netip.MustParseAddr("198.51.100.2") {
		t.Fatalf("request for %v", r.LocalAddr())
	} else {
		r.Drop()
	}
}
