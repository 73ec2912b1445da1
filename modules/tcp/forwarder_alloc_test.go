//go:build !race

package tcp_test

import (
	"context"
	"testing"

	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestForwarderBulkZeroAllocs: a connection the forwarder accepted (to an
// address the proxy does not have, over its transparent link) is an
// ordinary connection on the data path: 24 MiB from the client to the
// proxy's end allocate nothing, counted over every allocation of the
// process as TestBulkZeroAllocs does.
func TestForwarderBulkZeroAllocs(t *testing.T) {
	clock := pt.NewManualClock()
	a := pt.NewNode(t, "client", fwdClientConfig, pipeline.Options{Clock: clock})
	b := pt.NewNode(t, "proxy", fwdProxyConfig, pipeline.Options{Clock: clock})
	f, err := tcp.NewForwarder(b.Stack, tcp.ForwarderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := newHandPipe(a.Link(t, "a"), b.Link(t, "a"))
	dialed := make(chan *tcp.Conn, 1)
	go func() {
		c, err := tcp.Dial(a.Stack, "tcp4", "198.51.100.80:5001")
		if err != nil {
			t.Error(err)
		}
		dialed <- c
	}()
	accepted := make(chan *tcp.Conn, 1)
	go func() {
		r, err := f.Next(context.Background())
		if err != nil {
			t.Error(err)
			accepted <- nil
			return
		}
		s, err := r.Accept(context.Background())
		if err != nil {
			t.Error(err)
		}
		accepted <- s
	}()
	var c, s *tcp.Conn
	h.until(t, func() bool {
		select {
		case c = <-dialed:
		case s = <-accepted:
		default:
		}
		return c != nil && s != nil
	})
	if c == nil || s == nil {
		t.Fatal("no connection")
	}
	defer c.Close()
	defer s.Close()
	if got := s.LocalAddr().String(); got != "198.51.100.80:5001" {
		t.Fatalf("LocalAddr %s", got)
	}
	m, segs, _ := newHandBulk(t, h, clock, c, s).mallocs(a)
	if m != 0 {
		t.Fatalf("%d mallocs over %d segments sent (24 MiB), want 0", m, segs)
	}
	if n := b.Counter("ipv4", "forwarded"); n != 0 {
		t.Fatalf("the proxy forwarded %d packets", n)
	}
	t.Logf("0 mallocs over %d segments sent to the forwarded connection", segs)
}
