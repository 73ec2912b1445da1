//go:build unix

package conntrack

import (
	"syscall"
	"time"
)

// processCPU is the process's CPU time so far (user + system, all
// threads), or 0 where it cannot be read: on a shared machine a
// benchmark's CPU time per packet drifts less than its wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
