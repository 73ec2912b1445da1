package tcp_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"syscall"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// The forwarder's topology is pipelinetest's transparent proxy (see
// pt.NewProxyPair), with IP forwarding on in the proxy: a tcp.Forwarder
// takes what arrives for any destination.
var (
	fwdClientConfig = pt.ProxyClientConfig("transport.tcp")
	fwdProxyConfig  = pt.ProxyConfig("transport.tcp", true)
)

type fwdTopo struct {
	client, proxy *pt.Node
	f             *tcp.Forwarder
}

func newFwdTopo(t testing.TB, cfg tcp.ForwarderConfig) *fwdTopo {
	t.Helper()
	c, p := pt.NewProxyPair(t, "transport.tcp", true, pipeline.Options{})
	f, err := tcp.NewForwarder(p.Stack, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &fwdTopo{client: c, proxy: p, f: f}
}

func next(t *testing.T, f *tcp.Forwarder) *tcp.ForwarderRequest {
	t.Helper()
	return pt.NextRequest(t, f.Next)
}

type fwdDial struct {
	c   *tcp.Conn
	err error
}

func dialAsync(s *pipeline.Stack, network, addr string) chan fwdDial {
	ch := make(chan fwdDial, 1)
	go func() {
		d := tcp.Dialer{Stack: s, Timeout: 20 * time.Second}
		c, err := d.DialTCP(context.Background(), network, addr)
		ch <- fwdDial{c, err}
	}()
	return ch
}

// TestForwarderAccept: a connection to an address nobody has (IPv4 and
// IPv6) reaches the forwarder with its original destination; accepted,
// the proxy's end has that destination as LocalAddr, the client's end
// sees it as RemoteAddr, and data flows both ways. The proxy forwards
// nothing although forwarding is on.
func TestForwarderAccept(t *testing.T) {
	pt.CheckGoroutines(t)
	tp := newFwdTopo(t, tcp.ForwarderConfig{})
	for _, tc := range []struct{ network, dst, client string }{
		{"tcp4", "198.51.100.7:80", "10.0.1.2"},
		{"tcp6", "[2001:db8::7]:443", "fd00:1::2"},
	} {
		t.Run(tc.network, func(t *testing.T) {
			dial := dialAsync(tp.client.Stack, tc.network, tc.dst)
			r := next(t, tp.f)
			if got, want := r.LocalAddr(), netip.MustParseAddrPort(tc.dst); got != want {
				t.Fatalf("original destination %v, want %v", got, want)
			}
			if got := r.RemoteAddr().Addr(); got != netip.MustParseAddr(tc.client) {
				t.Fatalf("remote %v, want %s", got, tc.client)
			}
			srv, err := r.Accept(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			res := <-dial
			if res.err != nil {
				t.Fatal(res.err)
			}
			cl := res.c
			defer cl.Close()
			if got := srv.LocalAddr().String(); got != tc.dst {
				t.Fatalf("accepted LocalAddr %s, want %s", got, tc.dst)
			}
			if got := cl.RemoteAddr().String(); got != tc.dst {
				t.Fatalf("client RemoteAddr %s, want %s", got, tc.dst)
			}
			if srv.RemoteAddr().String() != cl.LocalAddr().String() {
				t.Fatalf("proxy sees %s, client is %s", srv.RemoteAddr(), cl.LocalAddr())
			}
			cl.SetDeadline(time.Now().Add(20 * time.Second))
			srv.SetDeadline(time.Now().Add(20 * time.Second))
			go func() {
				io.Copy(srv, srv)
				srv.CloseWrite()
			}()
			data := bytes.Repeat([]byte("forwarded "), 100_000)
			go func() {
				cl.Write(data)
				cl.CloseWrite()
			}()
			got, err := io.ReadAll(cl)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("echo: %d of %d bytes, %v", len(got), len(data), err)
			}
		})
	}
	if n := tp.proxy.Counter("ipv4", "forwarded") + tp.proxy.Counter("ipv6", "forwarded"); n != 0 {
		t.Fatalf("the proxy forwarded %d packets", n)
	}
	if st := tp.f.Stats(); st.Requests != 2 || st.InFlight != 0 {
		t.Fatalf("stats %+v, want 2 requests, none in flight", st)
	}
}

// TestForwarderReject: a rejected request resets the client's connect
// (ECONNREFUSED), the reset coming from the original destination.
func TestForwarderReject(t *testing.T) {
	pt.CheckGoroutines(t)
	tp := newFwdTopo(t, tcp.ForwarderConfig{})
	for _, dst := range []string{"192.0.2.9:22", "[2001:db8::9]:22"} {
		network := "tcp4"
		if dst[0] == '[' {
			network = "tcp6"
		}
		dial := dialAsync(tp.client.Stack, network, dst)
		r := next(t, tp.f)
		r.Reject()
		res := <-dial
		if !errors.Is(res.err, syscall.ECONNREFUSED) {
			t.Fatalf("%s: dial after Reject: %v, want ECONNREFUSED", dst, res.err)
		}
		if _, err := r.Accept(context.Background()); err == nil {
			t.Fatal("Accept after Reject succeeded")
		}
	}
	if st := tp.f.Stats(); st.InFlight != 0 {
		t.Fatalf("in flight %d after rejects", st.InFlight)
	}
}

// TestForwarderDrop: a dropped request sends nothing; the client's
// retransmitted SYN (1 s later) is a new request, which is accepted.
func TestForwarderDrop(t *testing.T) {
	pt.CheckGoroutines(t)
	tp := newFwdTopo(t, tcp.ForwarderConfig{})
	dial := dialAsync(tp.client.Stack, "tcp4", "203.0.113.5:8080")
	r := next(t, tp.f)
	r.Drop()
	sent := tp.proxy.Counter("tcp", "tx")
	r2 := next(t, tp.f)
	if r2 == r || r2.LocalAddr() != r.LocalAddr() || r2.RemoteAddr() != r.RemoteAddr() {
		t.Fatalf("second request %v→%v, want a new one for %v→%v", r2.RemoteAddr(), r2.LocalAddr(), r.RemoteAddr(), r.LocalAddr())
	}
	if sent != 0 {
		t.Fatalf("the proxy sent %d segments for a dropped request", sent)
	}
	c, err := r2.Accept(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res := <-dial
	if res.err != nil {
		t.Fatal(res.err)
	}
	res.c.Close()
}

// TestForwarderLimits: MaxInFlight requests are held; more SYNs are
// dropped (counted), retransmitted SYNs of a held request are counted as
// duplicates, and an answered request frees its slot.
func TestForwarderLimits(t *testing.T) {
	pt.CheckGoroutines(t)
	tp := newFwdTopo(t, tcp.ForwarderConfig{MaxInFlight: 2})
	var dials []chan fwdDial
	for _, dst := range []string{"198.51.100.1:1", "198.51.100.2:2", "198.51.100.3:3"} {
		dials = append(dials, dialAsync(tp.client.Stack, "tcp4", dst))
		time.Sleep(20 * time.Millisecond) // in this order
	}
	deadline := time.Now().Add(10 * time.Second)
	for tp.f.Stats().Full == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := tp.f.Stats()
	if st.Requests != 2 || st.InFlight != 2 || st.Full != 1 {
		t.Fatalf("stats %+v, want 2 requests held, 1 dropped", st)
	}
	r1, r2 := next(t, tp.f), next(t, tp.f)
	// The held requests' SYNs come again after 1 s: duplicates; the third
	// client's is still over the bound.
	for tp.f.Stats().Duplicates < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := tp.f.Stats(); st.Duplicates < 2 || st.Requests != 2 {
		t.Fatalf("stats %+v after the retransmissions, want 2 duplicates and still 2 requests", st)
	}
	r1.Reject()
	r2.Reject()
	r3 := next(t, tp.f) // the third client's next SYN finds room
	if r3.LocalAddr().Port() != 3 {
		t.Fatalf("third request for %v", r3.LocalAddr())
	}
	r3.Reject()
	for i, d := range dials {
		if res := <-d; !errors.Is(res.err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %d: %v, want ECONNREFUSED", i, res.err)
		}
	}
}

// TestForwarderListenerFirst: a wildcard listener takes a connection to
// any address on a transparent link before the forwarder (Linux's AnyIP
// local route, gVisor's promiscuous NIC), and the forwarder's Close
// brings the resets back.
func TestForwarderListenerFirst(t *testing.T) {
	pt.CheckGoroutines(t)
	tp := newFwdTopo(t, tcp.ForwarderConfig{})
	ln, err := tcp.Listen(tp.proxy.Stack, "tcp", ":9")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dial := dialAsync(tp.client.Stack, "tcp4", "198.51.100.9:9")
	s, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.LocalAddr().String(); got != "198.51.100.9:9" {
		t.Fatalf("listener's connection LocalAddr %s", got)
	}
	s.Close()
	if res := <-dial; res.err != nil {
		t.Fatal(res.err)
	} else {
		res.c.Close()
	}
	if n := tp.f.Stats().Requests; n != 0 {
		t.Fatalf("forwarder saw %d requests", n)
	}
	tp.f.Close()
	if _, err := tp.f.Next(context.Background()); !errors.Is(err, tcp.ErrForwarderClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	res := <-dialAsync(tp.client.Stack, "tcp4", "198.51.100.9:10")
	if !errors.Is(res.err, syscall.ECONNREFUSED) {
		t.Fatalf("without forwarder: %v, want ECONNREFUSED", res.err)
	}
}
