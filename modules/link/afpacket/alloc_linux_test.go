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
			pipelinetest.TraceMallocs(t) // on failure, say where they came from
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
			// Warm up: pool, scratch, reader slots. A veth pair just set up
			// drops what it is given until the kernel's link watcher has
			// activated its queue (up to a second, more under load), so
			// the warm-up sends until 5,000 frames got through.
			pipelinetest.Eventually(t, 10*time.Second, func() bool {
				sendBatch(a, pool, b.LinkAddress(), ip, batch, 500)
				time.Sleep(time.Millisecond)
				return c.n.Load()+b.KernelDrops() >= 5000
			}, "warm-up: %d received", c.n.Load())
			for last := uint64(0); c.n.Load() != last; { // the last ones in flight
				last = c.n.Load()
				time.Sleep(20 * time.Millisecond)
			}
			// The same traffic twice: the first run, not counted, warms up
			// what the runtime makes once (OS threads for the locked
			// readers); the second is one counted window (no best-of-N).
			// Each sends 1,000 frames at a time until n were received,
			// with at most ~1,050 in flight. Under CPU starvation a block
			// ring's reader can fall 8 retired blocks behind (1 ms each)
			// and the kernel drops the rest: when nothing arrives for
			// 50 ms the next batch goes anyway, so that the window still
			// holds n received. (KernelDrops, a stats read that
			// allocates, is not called inside the window.)
			const n = 20000
			traffic := func() {
				start := c.n.Load()
				recv := func() uint64 { return c.n.Load() - start }
				deadline := time.Now().Add(10 * time.Second)
				for sent := uint64(0); recv() < n && time.Now().Before(deadline); {
					sendBatch(a, pool, b.LinkAddress(), ip, batch, 1000)
					sent += 1000
					want := min(sent-50, n)
					last, since := recv(), time.Now()
					for r := recv(); r < want && time.Since(since) < 50*time.Millisecond; r = recv() {
						// spin: no timers, no channels
						if r != last {
							last, since = r, time.Now()
						}
					}
				}
				if recv() < n {
					t.Fatalf("received %d of %d frames in 10 s (kernel drops %d, tx drops %d)", recv(), n, b.KernelDrops(), a.TxDropped.Load())
				}
			}
			traffic()
			allocs := pipelinetest.CountMallocs(traffic)
			if allocs != 0 {
				t.Logf("pool allocated %d buffers in all", pool.Allocated())
				t.Fatalf("%d heap allocations for %d packets sent and received; %s", allocs, n, pipelinetest.MallocStacks())
			}
		})
	}
}
