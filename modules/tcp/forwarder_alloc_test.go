//go:build !race

package tcp_test

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/link/channel"
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
	la, lb := a.Link(t, "a"), b.Link(t, "a")
	pbuf := make([]*pipeline.Packet, 64)
	dirs := [2][2]*channel.Endpoint{{la, lb}, {lb, la}}
	move := func() int {
		moved := 0
		for _, d := range dirs {
			for {
				n := d[0].Read(pbuf)
				if n == 0 {
					break
				}
				for _, p := range pbuf[:n] {
					p.ResetMeta()
				}
				d[1].InjectPackets(pbuf[:n])
				moved += n
			}
		}
		return moved
	}
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
	for i := 0; (c == nil || s == nil) && i < 10000; i++ {
		move()
		select {
		case c = <-dialed:
		case s = <-accepted:
		default:
			time.Sleep(time.Millisecond)
		}
	}
	if c == nil || s == nil {
		t.Fatal("no connection")
	}
	defer c.Close()
	defer s.Close()
	if got := s.LocalAddr().String(); got != "198.51.100.80:5001" {
		t.Fatalf("LocalAddr %s", got)
	}
	chunk := make([]byte, 16<<10)
	buf := make([]byte, 64<<10)
	written, received := 0, 0
	run := func(n int) {
		for target := received + n; received < target; {
			for written-received < 512<<10 {
				if _, err := c.Write(chunk); err != nil {
					t.Fatal(err)
				}
				written += len(chunk)
			}
			m := move()
			for tcp.Buffered(s) > 0 {
				k, err := s.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				received += k
			}
			if m == 0 {
				clock.Advance(40 * time.Millisecond)
			}
		}
	}
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	tcp.GrowBuffers(c)
	tcp.GrowBuffers(s)
	run(32 << 20)
	segs := a.Counter("tcp", "tx")
	m := pt.CountMallocs(func() { run(24 << 20) })
	segs = a.Counter("tcp", "tx") - segs
	if segs < 10000 {
		t.Fatalf("only %d segments measured", segs)
	}
	if m != 0 {
		t.Fatalf("%d mallocs over %d segments sent (24 MiB), want 0", m, segs)
	}
	if n := b.Counter("ipv4", "forwarded"); n != 0 {
		t.Fatalf("the proxy forwarded %d packets", n)
	}
	t.Logf("0 mallocs over %d segments sent to the forwarded connection", segs)
}
