package icmplimit

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := New(1, func(a [16]byte) uint32 { return uint32(a[15]) })
	c := &Config{Rate: 10, Burst: 3, Mask: 1 << 3}
	now := time.Unix(1000, 0)
	n := 0
	for i := 0; i < 10; i++ {
		if l.Allow(c, now, 3, false, [16]byte{15: 1}) {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d allowed at once with burst 3", n)
	}
	if !l.Allow(c, now, 3, true, [16]byte{15: 1}) {
		t.Error("an exempt message waited for the global bucket")
	}
	if !l.Allow(c, now, 4, false, [16]byte{15: 1}) {
		t.Error("a class outside the mask was limited")
	}
	if !l.Allow(c, now.Add(200*time.Millisecond), 3, false, [16]byte{15: 1}) {
		t.Error("no refill after 200 ms at 10/s")
	}
	// Per destination: one destination's bucket does not starve another.
	d := &Config{DestRate: 1, DestBurst: 1, Mask: 1 << 3}
	if !l.Allow(d, now, 3, false, [16]byte{15: 7}) || l.Allow(d, now, 3, false, [16]byte{15: 7}) {
		t.Error("per-destination burst 1")
	}
	if !l.Allow(d, now, 3, false, [16]byte{15: 8}) {
		t.Error("another destination starved")
	}
}
