package pipelinetest

import "runtime/metrics"

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
