//go:build !linux

package bench

import "time"

// threadCPU: not read here (BenchmarkFilterSetCost then times its chunks
// with the wall clock and says so).
func threadCPU() (time.Duration, bool) { return 0, false }
