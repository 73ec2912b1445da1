package pipelinetest

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/pipestack/pipestack/internal/alloctest"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
)

// CountMallocs runs f once and returns how many heap allocations happened
// meanwhile, in any goroutine (keep the others quiet, or count them in),
// exactly: runtime.ReadMemStats around f, which flushes every P's
// allocation cache, minus an empty window measured the same way, with the
// collector off and on one OS thread (internal/alloctest says why each).
// Run it outside -race, which allocates on its own. Every zero-allocation
// test in the repository counts with it. Pools are not trimmed during the
// window (pipeline.HoldTrim says why).
func CountMallocs(f func()) uint64 {
	defer pipeline.HoldTrim()()
	return alloctest.Count(f)
}

// SparePackets puts k more free packets of each size class in pl (takes
// them and gives them back), so that the stack's own background packets
// (an IPv6 node's DAD and router solicitations in its first seconds, a
// timer's) do not find the pool exactly as large as the measured traffic
// needs and make it grow inside a zero-allocation window: the pool's
// high-water mark, not a per-packet cost.
func SparePackets(pl *pipeline.Pool, k int) {
	ps := make([]*pipeline.Packet, 0, 2*k)
	for range k {
		ps = append(ps, pl.Get(64), pl.Get(pipeline.LargeDataSize))
	}
	pipeline.ReleaseBatch(ps)
}

// ForwardZeroAllocs proves that a node forwards without allocating: it
// injects batches of 64 copies of frame on in and reads them from out — 100
// warm-up batches that fill the pools, then 200 counted ones (12,800
// packets, one CountMallocs window) — and fails t unless every batch comes
// out whole, check (on each forwarded frame) returns nil and no heap
// allocation happened. warm, when not nil, runs after the warm-up. Run it
// outside -race, which changes allocation behaviour.
func ForwardZeroAllocs(t testing.TB, n *Node, in, out *channel.Endpoint, frame []byte, check func(frame []byte) error, warm func()) {
	t.Helper()
	frames := make([][]byte, 64)
	for i := range frames {
		frames[i] = frame
	}
	buf := make([]*pipeline.Packet, 64)
	run := func(batches int) {
		for i := 0; i < batches; i++ {
			in.InjectFrames(frames)
			k := out.Read(buf)
			if k != len(frames) {
				t.Fatalf("forwarded %d of %d (%s)", k, len(frames), n.DumpCounters())
			}
			for _, p := range buf[:k] {
				if err := check(p.Data()); err != nil {
					t.Fatal(err)
				}
			}
			pipeline.ReleaseBatch(buf[:k])
		}
	}
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	run(100)
	if warm != nil {
		warm()
	}
	SparePackets(n.Stack.Pool(), 128)
	const batches = 200 // 12,800 packets
	if m := CountMallocs(func() { run(batches) }); m != 0 {
		t.Fatalf("%d mallocs over %d forwarded packets (%.2f per %d-packet batch), want 0\n%s",
			m, batches*len(frames), float64(m)/batches, len(frames), MallocStacks())
	}
}

// TraceMallocs makes the CountMallocs windows that follow, until t ends,
// record the stack of every heap allocation, for MallocStacks: a failing
// zero-allocation test then says where its allocations came from. Call it
// before the warm-up (it runs the collector).
func TraceMallocs(t testing.TB) { t.Cleanup(alloctest.Trace()) }

// MallocStacks returns, under TraceMallocs, the allocating stacks of the
// last CountMallocs window that allocated, with the objects each allocated;
// empty when none did.
func MallocStacks() string { return alloctest.Stacks() }
