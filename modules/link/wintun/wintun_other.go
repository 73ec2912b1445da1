//go:build !windows

package wintun

import (
	"fmt"
	"runtime"

	"github.com/pipestack/pipestack/pipeline"
)

const supported = false

func open(*pipeline.Context, *Module) (pipeline.LinkEndpoint, error) {
	return nil, fmt.Errorf("not supported on %s (Wintun is a Windows driver)", runtime.GOOS)
}
