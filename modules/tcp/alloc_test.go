//go:build !race

// The race detector changes allocation behaviour, so the exact zero-alloc
// proofs run only without -race.

package tcp_test

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestBulkZeroAllocs proves that a bulk transfer between two stacks
// allocates nothing per segment once warm — the writer's copy into the
// send buffer, segment building and checksums, IPv4 both ways, the link,
// demultiplexing, ACK processing and congestion control, the receive
// buffer and Read's copy-out, the timer wheel (delayed ACKs fire on it) —
// over 24 MiB (about 17,000 data segments and their ACKs), counting every
// allocation of the process.
//
// Everything runs on the test's goroutine: it writes while the send buffer
// has room, moves the links' packets across by hand, reads what arrived,
// and moves the manual clock on when nothing moves (delayed ACKs). No
// goroutine blocks, so nothing of the scheduler's is counted; the stacks'
// work is all there is.
func TestBulkZeroAllocs(t *testing.T) {
	clock := pt.NewManualClock()
	a := pt.NewNode(t, "host-a", hostConfig("host-a", "a", "10.0.1.2/24", "10.0.1.1", ""), pipeline.Options{Clock: clock})
	b := pt.NewNode(t, "host-b", hostConfig("host-b", "a", "10.0.1.3/24", "10.0.1.1", ""), pipeline.Options{Clock: clock})
	la, lb := a.Link(t, "a"), b.Link(t, "a")
	pbuf := make([]*pipeline.Packet, 64)
	dirs := [2][2]*channel.Endpoint{{la, lb}, {lb, la}}
	move := func() int {
		buf := pbuf
		moved := 0
		for _, d := range dirs {
			for {
				n := d[0].Read(buf[:])
				if n == 0 {
					break
				}
				for _, p := range buf[:n] {
					p.ResetMeta()
				}
				d[1].InjectPackets(buf[:n])
				moved += n
			}
		}
		return moved
	}
	ln, err := tcp.Listen(b.Stack, "tcp4", ":5001")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialed := make(chan *tcp.Conn, 1)
	go func() {
		c, err := tcp.Dial(a.Stack, "tcp4", "10.0.1.3:5001")
		if err != nil {
			t.Error(err)
		}
		dialed <- c
	}()
	var c *tcp.Conn
	for c == nil {
		move()
		select {
		case c = <-dialed:
		default:
			time.Sleep(time.Millisecond)
		}
	}
	if c == nil {
		t.FailNow()
	}
	defer c.Close()
	move()
	s, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	chunk := make([]byte, 16<<10)
	buf := make([]byte, 64<<10)
	written, received := 0, 0
	run := func(n int) {
		for target := received + n; received < target; {
			// The send buffer (1 MiB) never holds more than 512 KiB here:
			// Write does not block.
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
	run(32 << 20) // warm: the pool, batches and queues at their working size
	segs := a.Counter("tcp", "tx")
	pooled := pipeline.DefaultPool.Allocated()
	m := pt.CountMallocs(func() { run(24 << 20) })
	pooled = pipeline.DefaultPool.Allocated() - pooled
	segs = a.Counter("tcp", "tx") - segs
	if segs < 10000 {
		t.Fatalf("only %d segments measured", segs)
	}
	if m != 0 {
		t.Fatalf("%d mallocs (%d pool buffers) over %d segments sent (24 MiB), want 0", m, pooled, segs)
	}
	t.Logf("0 mallocs over %d segments sent", segs)
}
