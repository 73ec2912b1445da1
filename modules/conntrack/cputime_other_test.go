//go:build !unix

package conntrack

import "time"

// processCPU is 0 where the process's CPU time cannot be read: the
// cpu-ns/pkt metric is then left out.
func processCPU() time.Duration { return 0 }
