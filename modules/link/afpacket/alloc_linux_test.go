//go:build linux && !race

// Allocation counts are exact only without the race detector: this file is
// left out of -race builds (.ci/run runs it on its own, outside -race).

package afpacket

import (
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// No heap allocation per packet on either path: 20,000 packets written
// through one endpoint and read by another (its reader thread included).
func TestZeroAllocs(t *testing.T) {
	for _, v := range variants {
		t.Run(v.String(), func(t *testing.T) {
			l := newLab(t)
			pool := pipeline.NewPool(1 << 16)
			// The pool's working set grows with what is in flight (a ring
			// block holds many frames): fill it first, so that only what
			// happens per packet is counted.
			fill := make([]*pipeline.Packet, 4096)
			pool.GetBatch(fill, 100)
			pipeline.ReleaseBatch(fill)
			a, b, c := pair(t, l, v, pool)
			ip := markedUDP(1, 1)
			batch := make([]*pipeline.Packet, 64)
			// Warm up: pool, scratch, reader slots.
			sendBatch(a, pool, b.LinkAddress(), ip, batch, 5000)
			pipelinetest.Eventually(t, 5*time.Second, func() bool { return c.n.Load()+b.KernelDrops() >= 5000 }, "warm-up: %d received", c.n.Load())
			// The same traffic twice: the first run also warms up what the
			// runtime makes once (OS threads for the locked readers).
			const n = 20000
			var allocs uint64
			for round := 0; round < 2; round++ {
				start := c.n.Load()
				deadline := time.Now().Add(10 * time.Second)
				allocs = pipelinetest.CountMallocs(func() {
					for i := 0; i < n/1000; i++ {
						sendBatch(a, pool, b.LinkAddress(), ip, batch, 1000)
						for c.n.Load() < start+uint64(i+1)*1000-50 && time.Now().Before(deadline) {
							// spin: no timers, no channels
						}
					}
					for c.n.Load() < start+n && time.Now().Before(deadline) {
					}
				})
				if got := c.n.Load() - start; got != n {
					t.Fatalf("received %d of %d frames (kernel drops %d, tx drops %d)", got, n, b.KernelDrops(), a.TxDropped.Load())
				}
			}
			if allocs != 0 {
				t.Logf("pool allocated %d buffers in all", pool.Allocated())
				t.Fatalf("%d heap allocations for %d packets sent and received", allocs, n)
			}
		})
	}
}
