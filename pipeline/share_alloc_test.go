//go:build !race

package pipeline

import (
	"runtime"
	"testing"
)

// TestShareZeroAllocs: sharing a packet and releasing both handles
// allocates nothing once the pool is warm: mallocs counted over 10,000
// rounds.
func TestShareZeroAllocs(t *testing.T) {
	pl := NewPool(64)
	round := func() {
		p := pl.Get(LargeDataSize - 512)
		p.Append(1000)
		v := p.Share()
		v.Push(40)
		p.Release()
		v.Release()
	}
	for i := 0; i < 100; i++ {
		round()
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for i := 0; i < 10000; i++ {
		round()
	}
	runtime.ReadMemStats(&m1)
	if n := m1.Mallocs - m0.Mallocs; n != 0 {
		t.Fatalf("%d allocations over 10,000 shares", n)
	}
}
