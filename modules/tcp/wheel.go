package tcp

import (
	"sync"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// The timer wheel: every timer of every connection of a stack (retransmit,
// delayed ACK, persist, keepalive, FIN-WAIT-2, TIME-WAIT) is one entry per
// connection on one hashed wheel of 1 ms ticks, driven by a single timer of
// the stack's clock that is armed for the earliest entry. A connection
// keeps its deadlines itself and files one entry, at the earliest of them;
// when it fires the connection runs every timer that is due and files the
// next. Entries are intrusive (fields of the connection): scheduling never
// allocates.
const (
	wheelTick  = int64(time.Millisecond)
	wheelSlots = 4096
)

type wheel struct {
	clock pipeline.Clock
	epoch time.Time

	mu      sync.Mutex
	slots   [wheelSlots]*conn
	cur     int64 // last tick processed
	count   int
	timer   pipeline.Timer
	armedAt int64 // tick the clock timer is set for; 0: none
	closed  bool
	due     []*conn
	fires   uint64 // clock timer firings (tests)

	// run processes the connections whose entry is due, on the clock
	// timer's goroutine (the table sets it: one Stack.Do for them all).
	run func(due []*conn)
}

func newWheel(clock pipeline.Clock) *wheel {
	w := &wheel{clock: clock, epoch: clock.Now()}
	return w
}

// now is the clock's reading in ns since the wheel's epoch.
func (w *wheel) nowNS(t time.Time) int64 { return t.Sub(w.epoch).Nanoseconds() }

// schedule files c's entry for the instant at (ns since the epoch; 0
// removes it). Called with c.mu held.
func (w *wheel) schedule(c *conn, at int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c.wIn {
		w.unlink(c)
	}
	if at == 0 || w.closed {
		return
	}
	tick := (at + wheelTick - 1) / wheelTick
	if tick <= w.cur {
		tick = w.cur + 1
	}
	c.wTick = tick
	s := int(tick % wheelSlots)
	c.wNext = w.slots[s]
	c.wPrev = nil
	if c.wNext != nil {
		c.wNext.wPrev = c
	}
	w.slots[s] = c
	c.wIn = true
	w.count++
	if w.armedAt == 0 || tick < w.armedAt {
		w.arm(tick)
	}
}

func (w *wheel) unlink(c *conn) {
	s := int(c.wTick % wheelSlots)
	if c.wPrev != nil {
		c.wPrev.wNext = c.wNext
	} else {
		w.slots[s] = c.wNext
	}
	if c.wNext != nil {
		c.wNext.wPrev = c.wPrev
	}
	c.wNext, c.wPrev, c.wIn = nil, nil, false
	w.count--
}

// arm sets the clock timer for tick. Called with mu held.
func (w *wheel) arm(tick int64) {
	w.armedAt = tick
	d := time.Duration(tick*wheelTick - w.nowNS(w.clock.Now()))
	if d < 0 {
		d = 0
	}
	if w.timer == nil {
		w.timer = w.clock.AfterFunc(d, w.fire)
		return
	}
	w.timer.Reset(d)
}

// fire is the clock timer's function: it takes every due entry off the
// wheel, re-arms the timer for the next one and runs the due connections.
func (w *wheel) fire() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	now := w.nowNS(w.clock.Now()) / wheelTick
	w.armedAt = 0
	w.fires++
	due := w.due[:0]
	if now > w.cur {
		span := now - w.cur
		if span > wheelSlots {
			span = wheelSlots
		}
		for i := int64(1); i <= span; i++ {
			s := int((w.cur + i) % wheelSlots)
			for c := w.slots[s]; c != nil; {
				next := c.wNext
				if c.wTick <= now {
					w.unlink(c)
					due = append(due, c)
				}
				c = next
			}
		}
		w.cur = now
	}
	if next := w.earliest(); next != 0 {
		w.arm(next)
	}
	w.due = nil
	w.mu.Unlock()
	if len(due) > 0 {
		w.run(due)
	}
	clear(due)
	w.mu.Lock()
	if w.due == nil {
		w.due = due[:0]
	}
	w.mu.Unlock()
}

// earliest finds the tick of the earliest entry (0: none). The first slot
// after cur holding an entry due within one turn gives it; entries further
// away are compared as they are met. Called with mu held.
func (w *wheel) earliest() int64 {
	if w.count == 0 {
		return 0
	}
	var far int64
	for i := int64(1); i <= wheelSlots; i++ {
		tick := w.cur + i
		for c := w.slots[int(tick%wheelSlots)]; c != nil; c = c.wNext {
			if c.wTick == tick {
				return tick
			}
			if far == 0 || c.wTick < far {
				far = c.wTick
			}
		}
	}
	return far
}

// close stops the clock timer; later schedules do nothing.
func (w *wheel) close() {
	w.mu.Lock()
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
}
