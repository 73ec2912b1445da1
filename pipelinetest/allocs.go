package pipelinetest

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
)

var mallocMetrics = []metrics.Sample{
	{Name: "/gc/heap/allocs:objects"},
	{Name: "/gc/heap/tiny/allocs:objects"},
}

// Mallocs returns the number of heap allocations made by the program so far
// (objects plus tiny allocations: what runtime.MemStats.Mallocs counts).
//
// It reads runtime/metrics rather than runtime.ReadMemStats on purpose:
// ReadMemStats stops the world, and restarting it may start an OS thread,
// which allocates — the measurement would count its own allocations.
func Mallocs() uint64 {
	s := make([]metrics.Sample, len(mallocMetrics))
	copy(s, mallocMetrics)
	metrics.Read(s)
	var n uint64
	for _, v := range s {
		if v.Value.Kind() == metrics.KindUint64 {
			n += v.Value.Uint64()
		}
	}
	return n
}

// CountMallocs runs f and returns how many heap allocations happened
// meanwhile (in any goroutine: keep others quiet). Run it outside -race.
func CountMallocs(f func()) uint64 {
	before := Mallocs()
	f()
	return Mallocs() - before
}

// ForwardZeroAllocs proves that a node forwards without allocating: it
// injects batches of 64 copies of frame on in and reads them from out — 100
// warm-up batches that fill the pools, then 200 counted ones (12,800
// packets) with the collector off (its own work, which may start an OS
// thread, is not the packet path's) — and fails t unless every batch comes
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
	const batches = 200 // 12,800 packets
	if m := CountMallocs(func() { run(batches) }); m != 0 {
		t.Fatalf("%d mallocs over %d forwarded packets, want 0", m, batches*len(frames))
	}
}
