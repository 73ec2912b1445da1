package bench

import "github.com/pipestack/pipestack/pipelinetest"

// processCPU is the process's CPU time so far (0 where it cannot be read:
// the cpu-ns/pkt metric is then left out).
var processCPU = pipelinetest.ProcessCPU
