package afpacket

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// stalled is a NetworkDispatcher whose deliveries wait until release is
// closed: the link's reader stops after its first batch, as a reader does
// that the stack cannot keep up with.
type stalled struct {
	release chan struct{}
	once    sync.Once
	n       atomic.Uint64
}

func (s *stalled) resume() { s.once.Do(func() { close(s.release) }) }

func (s *stalled) DeliverNetworkPackets(pkts []*pipeline.Packet) {
	<-s.release
	for _, p := range pkts {
		if p != nil {
			s.n.Add(1)
		}
	}
	pipeline.ReleaseBatch(pkts)
}

func linkCounter(e *Endpoint, name string) (uint64, bool) {
	for _, c := range e.LinkCounters() {
		if c.Name == name {
			return c.Value, true
		}
	}
	return 0, false
}

// A burst far larger than the receive ring (or, in mode mmsg, the socket
// buffer) while the reader is stalled: the kernel drops what does not fit,
// and LinkCounters shows it as rx_kernel_dropped (in mode block the ring
// also froze: rx_ring_freezes). Without it those frames appear in no
// counter at all.
func TestKernelDropsInLinkCounters(t *testing.T) {
	for _, mode := range []string{ModeMmsg, ModeRing, ModeBlock} {
		t.Run(mode, func(t *testing.T) {
			l := newLab(t)
			pool := pipeline.NewPool(1 << 16)
			a := l.open(t, "va", Options{Mode: mode, Pool: pool})
			b := l.open(t, "vb", Options{Mode: mode, Pool: pool, SocketBuffer: 64 << 10,
				Ring: RingConfig{BlockSize: 128 << 10, Blocks: 2}})
			s := &stalled{release: make(chan struct{})}
			b.Attach(s)
			t.Cleanup(s.resume) // before b.Close, which waits for the reader
			a.Attach(&counter{})
			for _, name := range []string{"rx_kernel_dropped", "rx_ring_freezes"} {
				if v, ok := linkCounter(b, name); !ok || v != 0 {
					t.Fatalf("before the burst: %s = %d (present %t), want 0", name, v, ok)
				}
			}

			const sent = 20000
			sendBatch(a, pool, b.LinkAddress(), markedUDP(1, 1), make([]*pipeline.Packet, 64), sent)
			var drops uint64
			pipelinetest.Eventually(t, 5*time.Second, func() bool {
				drops, _ = linkCounter(b, "rx_kernel_dropped")
				return drops > 0
			}, "no rx_kernel_dropped after %d frames into a stalled reader: %v", sent, b.LinkCounters())
			if freezes, _ := linkCounter(b, "rx_ring_freezes"); mode == ModeBlock && freezes == 0 {
				t.Errorf("mode block: a full ring and no rx_ring_freezes: %v", b.LinkCounters())
			}
			if got := b.KernelDrops(); got < drops {
				t.Errorf("KernelDrops() = %d after LinkCounters showed %d: the totals went back", got, drops)
			}
			s.resume()
			pipelinetest.Eventually(t, 5*time.Second, func() bool { return s.n.Load() > 0 }, "nothing delivered after release")
			time.Sleep(100 * time.Millisecond)
			drops, _ = linkCounter(b, "rx_kernel_dropped")
			t.Logf("%s: %d frames sent, %d delivered, %d dropped by the kernel: %v", mode, sent, s.n.Load(), drops, b.LinkCounters())
			// Every frame is delivered or counted (here exactly: the veth
			// itself drops none); some slack for the veth's backlog.
			if n := s.n.Load() + drops; n > sent || n < sent*9/10 {
				t.Errorf("delivered %d + kernel drops %d = %d, want %d (a few less at most)", s.n.Load(), drops, n, sent)
			}
		})
	}
}
