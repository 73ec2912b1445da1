//go:build !unix

package pipelinetest

import "time"

// ProcessCPU is 0 where the process's CPU time cannot be read: a
// benchmark's cpu-ns/pkt metric is then left out.
func ProcessCPU() time.Duration { return 0 }
