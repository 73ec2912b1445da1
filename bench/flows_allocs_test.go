package bench

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// TestForwardFlowsZeroAllocs proves the zero in the benchmarks' allocs/op
// column exactly for pipestack, one flow and many (-benchmem rounds down,
// so "0 allocs/op" alone would allow one allocation every few packets, and
// testing.AllocsPerRun rounds its average down too: this counts every
// allocation of the whole run and requires none):
// after a warm-up pass over every flow, forwarding batches of 64 packets
// of 64 or 4,096 flows in round robin (IPv4 and IPv6, IP and Ethernet
// links, checked as in the benchmarks) allocates nothing.
func TestForwardFlowsZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	for _, v6 := range []bool{false, true} {
		for _, eth := range []bool{false, true} {
			for _, flows := range flowCounts {
				name := fmt.Sprintf("v6=%t/eth=%t/%dflows", v6, eth, flows)
				t.Run(name, func(t *testing.T) {
					setup, size := setupForward4, 46
					if v6 {
						setup, size = setupForward6, 62
					}
					// A manual clock: no timer of the stack's (DAD, NUD,
					// ...) fires during the count; forwarding reads the
					// clock, it does not wait for it.
					clock := pipelinetest.NewManualClock()
					in, out, fs, check := setup(t, eth, size, flows, pipeline.Options{Clock: clock})
					clock.Advance(0)
					pass := forwardPass(t, in, out, fs, check)
					for range fs.warmBatches() {
						pass(batchSize)
					}
					// Twice round every flow (at least 20 batches).
					runs := max(20, 2*fs.warmBatches())
					if a := totalAllocs(runs, func() { pass(batchSize) }); a != 0 {
						t.Fatalf("%d allocations in %d batches of %d packets, want 0", a, runs, batchSize)
					}
				})
			}
		}
	}
}

// totalAllocs runs f runs times on one P and returns the number of heap
// allocations made meanwhile (testing.AllocsPerRun without the division).
func totalAllocs(runs int, f func()) uint64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f() // as AllocsPerRun: a first call outside the count
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&m1)
	return m1.Mallocs - m0.Mallocs
}
