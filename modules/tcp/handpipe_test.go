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

// handPipe joins two in-memory links and moves their packets across by
// hand, on the test's goroutine (the bulk harness of TestBulkZeroAllocs,
// TestForwarderBulkZeroAllocs and TestTSOInMemory): no goroutine blocks,
// so nothing of the scheduler's is counted, and with a manual clock no
// timer fires because the machine (or -race) is slow.
type handPipe struct {
	a, b *channel.Endpoint
	buf  []*pipeline.Packet
	// toB, when set, takes each run of packets a wrote and returns what
	// b receives (a NIC's segmentation, losses); it owns the packets.
	// Otherwise they pass as they are.
	toB func(run []*pipeline.Packet) []*pipeline.Packet
}

func newHandPipe(a, b *channel.Endpoint) *handPipe {
	return &handPipe{a: a, b: b, buf: make([]*pipeline.Packet, 64)}
}

// move moves what both links have written and returns how many packets
// it read.
func (h *handPipe) move() int {
	moved := 0
	for _, d := range [2][2]*channel.Endpoint{{h.a, h.b}, {h.b, h.a}} {
		for {
			n := d[0].Read(h.buf)
			if n == 0 {
				break
			}
			moved += n
			run := h.buf[:n]
			if d[0] == h.a && h.toB != nil {
				run = h.toB(run)
			} else {
				for _, p := range run {
					p.ResetMeta()
				}
			}
			d[1].InjectPackets(run)
		}
	}
	return moved
}

// until moves packets until done reports true (a handshake on another
// goroutine), at most 10,000 rounds a millisecond apart.
func (h *handPipe) until(t testing.TB, done func() bool) {
	t.Helper()
	for i := 0; i < 10000; i++ {
		h.move()
		if done() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no connection after 10,000 rounds")
}

// handBulk moves bytes from c to s through a handPipe: c writes while it
// is less than 512 KiB ahead of what s has read (Write never blocks), the
// packets are moved, s reads what arrived, and when nothing moved the
// manual clock moves on by a delayed ACK's 40 ms.
type handBulk struct {
	t                 testing.TB
	h                 *handPipe
	clock             *pipeline.ManualClock
	c, s              *tcp.Conn
	chunk, buf        []byte
	written, received int
}

func newHandBulk(t testing.TB, h *handPipe, clock *pipeline.ManualClock, c, s *tcp.Conn) *handBulk {
	return &handBulk{t: t, h: h, clock: clock, c: c, s: s, chunk: make([]byte, 16<<10), buf: make([]byte, 64<<10)}
}

// run moves n bytes more.
func (k *handBulk) run(n int) {
	for target := k.received + n; k.received < target; {
		for k.written-k.received < 512<<10 {
			if _, err := k.c.Write(k.chunk); err != nil {
				k.t.Fatal(err)
			}
			k.written += len(k.chunk)
		}
		m := k.h.move()
		for tcp.Buffered(k.s) > 0 {
			r, err := k.s.Read(k.buf)
			if err != nil {
				k.t.Fatal(err)
			}
			k.received += r
		}
		if m == 0 {
			k.clock.Advance(40 * time.Millisecond)
		}
	}
}

// mallocs is the exact zero-allocation proof of steady-state bulk: the
// rings grown to their bounds, 32 MiB to warm the pool, batches and
// queues to their working size, then every allocation of the process
// over 24 MiB (the garbage collector off), with the segments sender
// sent meanwhile (at least 10,000, or the test fails) and the buffers
// the default pool allocated.
func (k *handBulk) mallocs(sender *pt.Node) (mallocs, segs, pooled uint64) {
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	tcp.GrowBuffers(k.c)
	tcp.GrowBuffers(k.s)
	k.run(32 << 20)
	segs = sender.Counter("tcp", "tx")
	pooled = pipeline.DefaultPool.Allocated()
	mallocs = pt.CountMallocs(func() { k.run(24 << 20) })
	pooled = pipeline.DefaultPool.Allocated() - pooled
	segs = sender.Counter("tcp", "tx") - segs
	if segs < 10000 {
		k.t.Fatalf("only %d segments measured", segs)
	}
	return mallocs, segs, pooled
}
