//go:build !race && !pipestack_debug

package pipeline

import (
	"testing"
	"unsafe"
)

// TestDebugStateFree: in normal builds the ownership checks take no space
// in a Packet (and debugChecks, a false constant, compiles them out).
func TestDebugStateFree(t *testing.T) {
	if s := unsafe.Sizeof(debugState{}); s != 0 || debugChecks {
		t.Errorf("debugState is %d bytes, debugChecks %v in a normal build", s, debugChecks)
	}
}
