//go:build unix

package plugin

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time this process used (user and system, all its
// threads: both ends of the stream, gRPC's goroutines, the GC).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
