package pmtu

import (
	"testing"
	"time"
)

func TestCache(t *testing.T) {
	c := New[[4]byte]()
	now := time.Unix(1000, 0)
	a, b := [4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}
	if _, _, ok := c.Get(a, now); ok {
		t.Fatal("empty cache answered")
	}
	if !c.Update(a, 1400, false, now, time.Minute, 2) {
		t.Fatal("first update ignored")
	}
	if c.Update(a, 1450, false, now, time.Minute, 2) || c.Update(a, 1400, false, now, time.Minute, 2) {
		t.Error("a path MTU went up, or an equal report counted as a change")
	}
	if !c.Update(a, 1300, false, now, time.Minute, 2) {
		t.Error("a lower path MTU ignored")
	}
	if !c.Update(a, 1300, true, now, time.Minute, 2) {
		t.Error("the same MTU, now locked, ignored")
	}
	if m, locked, ok := c.Get(a, now); !ok || m != 1300 || !locked {
		t.Errorf("get %d %v %v, want 1300 locked", m, locked, ok)
	}
	// Bounded: a third destination evicts one.
	c.Update(b, 1200, false, now, time.Minute, 2)
	c.Update([4]byte{10, 0, 0, 3}, 1100, false, now, time.Minute, 2)
	if c.Len() != 2 {
		t.Errorf("%d entries, max 2", c.Len())
	}
	// Expiry: a later, larger report is taken once the old one is gone.
	later := now.Add(time.Minute)
	if _, _, ok := c.Get([4]byte{10, 0, 0, 3}, later); ok {
		t.Error("an expired entry answered")
	}
	if !c.Update(a, 1450, false, later, time.Minute, 2) {
		t.Error("a report after expiry ignored")
	}
	if m, locked, _ := c.Get(a, later); m != 1450 || locked {
		t.Errorf("after expiry %d locked %v", m, locked)
	}
}
