//go:build !race

package icmplimit

import (
	"runtime"
	"testing"
	"time"
)

// TestAllowZeroAllocs: the limiter allocates nothing per message.
func TestAllowZeroAllocs(t *testing.T) {
	c := &Config{Rate: 1000, Burst: 50, Jitter: 50, Mask: 1 << bit, DestInterval: time.Second, DestBurst: 6}
	l := New(1, Hash16)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.Mallocs
	for i := 0; i < 20000; i++ {
		l.Allow(c, t0.Add(time.Duration(i)*time.Millisecond), bit, [16]byte{0x20, 1, 14: byte(i >> 8), 15: byte(i)}, 1)
	}
	runtime.ReadMemStats(&ms)
	if n := ms.Mallocs - before; n != 0 {
		t.Errorf("%d allocations for 20,000 messages", n)
	}
}
