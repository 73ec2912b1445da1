//go:build unix

package pipelinetest

import (
	"syscall"
	"time"
)

// ProcessCPU is the CPU time (user + system, all threads) the process has
// used so far, or 0 where it cannot be read: benchmarks on a shared machine
// report CPU time per packet, which drifts less than wall time.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
