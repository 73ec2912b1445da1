//go:build !race

// The race detector changes allocation behaviour, so the exact zero-alloc
// proofs run only without -race.

package tcp_test

import (
	"testing"

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
	h := newHandPipe(a.Link(t, "a"), b.Link(t, "a"))
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
	h.until(t, func() bool {
		select {
		case c = <-dialed:
			return true
		default:
			return false
		}
	})
	if c == nil {
		t.FailNow()
	}
	defer c.Close()
	h.move()
	s, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The send buffer (1 MiB) never holds more than 512 KiB here: Write
	// does not block.
	m, segs, pooled := newHandBulk(t, h, clock, c, s).mallocs(a)
	if m != 0 {
		t.Fatalf("%d mallocs (%d pool buffers) over %d segments sent (24 MiB), want 0", m, pooled, segs)
	}
	t.Logf("0 mallocs over %d segments sent", segs)
}
