//go:build race || pipestack_debug

package pipeline

import (
	"fmt"
	"runtime"
	"strings"
)

// debugChecks turns on the packet ownership checks: with the race
// detector on (go test -race) or the pipestack_debug build tag, a packet
// released twice panics, naming where it was first released. Normal builds
// compile the checks out (debug_norace.go).
const debugChecks = true

// debugState is what a packet carries for the checks: whether it is
// released (it sits in, or was dropped by, its pool), and the call stack
// of that release.
type debugState struct {
	released bool
	pcs      [16]uintptr
}

// markReleased records a release of p, panicking when p is already
// released: two holders believed they owned it, and one of them may still
// be using a buffer the pool now hands out again.
func (p *Packet) markReleased() {
	if p.dbg.released {
		panic("pipeline: Packet released twice (double Release or ReleaseBatch); first released at:\n" + formatStack(p.dbg.pcs[:]))
	}
	p.dbg.released = true
	clear(p.dbg.pcs[:])
	runtime.Callers(3, p.dbg.pcs[:])
}

func formatStack(pcs []uintptr) string {
	var b strings.Builder
	frames := runtime.CallersFrames(pcs)
	for {
		f, more := frames.Next()
		if f.PC == 0 {
			break
		}
		fmt.Fprintf(&b, "\t%s\n\t\t%s:%d\n", f.Function, f.File, f.Line)
		if !more {
			break
		}
	}
	return b.String()
}
