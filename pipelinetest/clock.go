// Package pipelinetest has what tests of pipestack and of its modules share:
// a manual clock, packet builders and checkers, in-memory topologies of
// stacks on link.channel, a collecting transport module and a goroutine-leak
// check. It is imported by tests only (it imports the channel link module,
// which the core package never does).
package pipelinetest

import (
	"sort"
	"sync"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// ManualClock is a pipeline.Clock whose time moves only when Advance is
// called; timers due by then fire, in order, on the goroutine calling
// Advance.
type ManualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer
}

// NewManualClock starts at a fixed instant.
func NewManualClock() *ManualClock {
	return &ManualClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// Now implements pipeline.Clock.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

type manualTimer struct {
	c     *ManualClock
	when  time.Time
	f     func()
	armed bool
}

// AfterFunc implements pipeline.Clock.
func (c *ManualClock) AfterFunc(d time.Duration, f func()) pipeline.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &manualTimer{c: c, when: c.now.Add(d), f: f, armed: true}
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
	if !t.armed {
		t.armed = true
		t.c.timers = append(t.c.timers, t)
	}
	return was
}

// Advance moves time forward by d, firing due timers in time order.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].when.Before(c.timers[j].when) })
		var due *manualTimer
		live := c.timers[:0]
		for _, t := range c.timers {
			if !t.armed {
				continue
			}
			if due == nil && !t.when.After(end) {
				due = t
				continue
			}
			live = append(live, t)
		}
		c.timers = live
		if due == nil {
			c.now = end
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

var _ pipeline.Clock = (*ManualClock)(nil)
