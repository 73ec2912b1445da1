//go:build !linux

package filter

import "time"

// threadCPU: not measured here (BenchmarkSetBatch then uses the wall
// clock).
func threadCPU() (time.Duration, bool) { return 0, false }
