//go:build !linux

package afpacket

import (
	"fmt"
	"runtime"

	"github.com/pipestack/pipestack/pipeline"
)

const supported = false

// Endpoint is the AF_PACKET link endpoint; it exists only on Linux.
type Endpoint struct{ pipeline.LinkEndpoint }

// New fails: AF_PACKET is a Linux socket family.
func New(o Options) (*Endpoint, error) {
	return nil, fmt.Errorf("not supported on %s (AF_PACKET is a Linux socket family)", runtime.GOOS)
}
