//go:build !linux

package tun

import (
	"fmt"
	"runtime"

	"github.com/pipestack/pipestack/pipeline"
)

// supported fails: TUN devices are opened the Linux way only (Windows has
// link.wintun).
func supported() error { return fmt.Errorf("not supported on %s", runtime.GOOS) }

func open(options) (pipeline.LinkEndpoint, error) { return nil, supported() }
