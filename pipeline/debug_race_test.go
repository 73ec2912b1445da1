//go:build race || pipestack_debug

package pipeline

import (
	"strings"
	"testing"
)

// mustPanicDouble runs f and fails t unless it panics with the double
// release message, naming the test function as where the packet was first
// released.
func mustPanicDouble(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		msg, _ := r.(string)
		if !strings.Contains(msg, "released twice") {
			t.Fatalf("%s: recovered %v, want a double release panic", name, r)
		}
		if !strings.Contains(msg, "TestDoubleRelease") {
			t.Errorf("%s: the panic does not say where the first release was:\n%s", name, msg)
		}
	}()
	f()
}

// TestDoubleReleaseCaught: under -race every way of releasing a packet
// twice panics, and a packet got again from the pool after its release is
// a fresh one that may be released once more.
func TestDoubleReleaseCaught(t *testing.T) {
	pl := NewPool(64)
	mustPanicDouble(t, "Release twice", func() {
		p := pl.Get(100)
		p.Release()
		p.Release()
	})
	mustPanicDouble(t, "ReleaseBatch after Release", func() {
		p := pl.Get(100)
		p.Release()
		ReleaseBatch([]*Packet{p})
	})
	mustPanicDouble(t, "Release after ReleaseBatch", func() {
		p := pl.Get(3000)
		ReleaseBatch([]*Packet{p})
		p.Release()
	})
	mustPanicDouble(t, "the same packet twice in a batch", func() {
		p, q := pl.Get(100), pl.Get(100)
		ReleaseBatch([]*Packet{p, q, p})
	})
	mustPanicDouble(t, "an unpooled packet", func() {
		p := &Packet{}
		p.Release()
		p.Release()
	})

	// Reuse is not a double release.
	p := pl.Get(100)
	p.Release()
	q := pl.Get(100)
	if q != p {
		t.Fatalf("the pool did not hand back the released packet")
	}
	q.Release()
	batch := make([]*Packet, 8)
	pl.GetBatch(batch, 100)
	ReleaseBatch(batch)
	pl.GetBatch(batch, 100)
	ReleaseBatch(batch)
}
