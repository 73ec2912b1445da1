package pipeline

import (
	"sync"
	"time"
)

// ManualClock is a Clock whose time moves only when Advance or Set is
// called; the timers due by then fire in time order (ties in the order
// they were armed or last reset) on the goroutine that moved the clock. It
// is what tests (pipelinetest) and `pipectl replay` (the capture's clock)
// drive a stack with.
type ManualClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	timers []*manualTimer
}

// NewManualClock returns a manual clock that reads start.
func NewManualClock(start time.Time) *ManualClock {
	return &ManualClock{now: start}
}

type manualTimer struct {
	c     *ManualClock
	when  time.Time
	seq   uint64
	f     func()
	armed bool
}

// Now implements Clock.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc implements Clock.
func (c *ManualClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &manualTimer{c: c, when: c.now.Add(d), f: f, armed: true, seq: c.seq}
	c.timers = append(c.timers, t)
	return t
}

func (t *manualTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.armed
	t.armed = false
	return was
}

func (t *manualTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.armed
	t.when = t.c.now.Add(d)
	t.c.seq++
	t.seq = t.c.seq
	if !t.armed {
		t.armed = true
		t.c.timers = append(t.c.timers, t)
	}
	return was
}

// Advance moves the clock forward by d, firing due timers in order.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	at := c.now.Add(d)
	c.mu.Unlock()
	c.Set(at)
}

// Set moves the clock to at (never back: an earlier at only fires what is
// already due), firing the timers due by then in time order, each on this
// goroutine with the clock reading its due time.
func (c *ManualClock) Set(at time.Time) {
	for {
		c.mu.Lock()
		var due *manualTimer
		live := c.timers[:0]
		for _, t := range c.timers {
			if !t.armed {
				continue
			}
			live = append(live, t)
			if !t.when.After(at) && (due == nil || t.when.Before(due.when) || (t.when.Equal(due.when) && t.seq < due.seq)) {
				due = t
			}
		}
		clear(c.timers[len(live):])
		c.timers = live
		if due == nil {
			if at.After(c.now) {
				c.now = at
			}
			c.mu.Unlock()
			return
		}
		due.armed = false
		if due.when.After(c.now) {
			c.now = due.when
		}
		c.mu.Unlock()
		due.f()
	}
}

var _ Clock = (*ManualClock)(nil)
