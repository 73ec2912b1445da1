package afpacket

import (
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

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
			s := pipelinetest.NewStalled()
			b.Attach(s)
			t.Cleanup(s.Resume) // before b.Close, which waits for the reader
			a.Attach(&counter{})
			for _, name := range []string{"rx_kernel_dropped", "rx_ring_freezes"} {
				if v, ok := pipelinetest.LinkCounter(b, name); !ok || v != 0 {
					t.Fatalf("before the burst: %s = %d (present %t), want 0", name, v, ok)
				}
			}

			const sent = 20000
			sendBatch(a, pool, b.LinkAddress(), markedUDP(1, 1), make([]*pipeline.Packet, 64), sent)
			var drops uint64
			pipelinetest.Eventually(t, 5*time.Second, func() bool {
				drops, _ = pipelinetest.LinkCounter(b, "rx_kernel_dropped")
				return drops > 0
			}, "no rx_kernel_dropped after %d frames into a stalled reader: %v", sent, b.LinkCounters())
			if freezes, _ := pipelinetest.LinkCounter(b, "rx_ring_freezes"); mode == ModeBlock && freezes == 0 {
				t.Errorf("mode block: a full ring and no rx_ring_freezes: %v", b.LinkCounters())
			}
			if got := b.KernelDrops(); got < drops {
				t.Errorf("KernelDrops() = %d after LinkCounters showed %d: the totals went back", got, drops)
			}
			s.Resume()
			pipelinetest.Eventually(t, 5*time.Second, func() bool { return s.Delivered() > 0 }, "nothing delivered after release")
			time.Sleep(100 * time.Millisecond)
			drops, _ = pipelinetest.LinkCounter(b, "rx_kernel_dropped")
			t.Logf("%s: %d frames sent, %d delivered, %d dropped by the kernel: %v", mode, sent, s.Delivered(), drops, b.LinkCounters())
			// Every frame is delivered or counted (here exactly: the veth
			// itself drops none); some slack for the veth's backlog.
			if n := s.Delivered() + drops; n > sent || n < sent*9/10 {
				t.Errorf("delivered %d + kernel drops %d = %d, want %d (a few less at most)", s.Delivered(), drops, n, sent)
			}
		})
	}
}
