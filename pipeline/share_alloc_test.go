//go:build !race

package pipeline

import (
	"testing"

	"github.com/pipestack/pipestack/internal/alloctest"
)

// TestShareZeroAllocs: sharing a packet and releasing both handles
// allocates nothing once the pool is warm: mallocs counted over 10,000
// rounds (alloctest.Count: the process's, with the collector held off).
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
	n := alloctest.Count(func() {
		for i := 0; i < 10000; i++ {
			round()
		}
	})
	if n != 0 {
		t.Fatalf("%d allocations over 10,000 shares", n)
	}
}
