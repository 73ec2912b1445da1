//go:build race || pipestack_debug

package pipeline

import "testing"

// TestDoubleReleaseSharedCaught: a shared handle released twice panics
// under -race, as any packet does.
func TestDoubleReleaseSharedCaught(t *testing.T) {
	pl := NewPool(64)
	p := pl.Get(100)
	v := p.Share()
	mustPanicDouble(t, "shared handle twice", func() {
		v.Release()
		v.Release()
	})
	p.Release()
}
