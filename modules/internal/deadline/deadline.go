// Package deadline is the read or write deadline of a socket (net.Conn's
// SetReadDeadline/SetWriteDeadline) shared by transport.udp and
// transport.tcp.
package deadline

import (
	"sync"
	"time"
)

// Deadline is a read or write deadline: a channel closed once the deadline
// has passed, and the timer that closes it. Deadlines are wall-clock times
// (net.Conn's contract), so they use the real clock, not the stack's.
type Deadline struct {
	mu      sync.Mutex
	when    time.Time     // zero: none
	ch      chan struct{} // closed once when has passed; nil before any deadline
	expired bool          // ch is closed
	timer   *time.Timer
}

// Channel returns the channel that is closed when the deadline passes (nil:
// no deadline was ever set, which blocks forever in a select).
func (d *Deadline) Channel() <-chan struct{} {
	d.mu.Lock()
	ch := d.ch
	d.mu.Unlock()
	return ch
}

func (d *Deadline) Set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.when = t
	if t.IsZero() {
		if d.timer != nil {
			d.timer.Stop()
		}
		if d.expired {
			d.ch, d.expired = make(chan struct{}), false
		}
		return
	}
	if d.ch == nil || d.expired {
		d.ch, d.expired = make(chan struct{}), false
	}
	wait := time.Until(t)
	if wait <= 0 {
		d.expireLocked()
		return
	}
	if d.timer == nil {
		d.timer = time.AfterFunc(wait, d.fire)
	} else {
		d.timer.Reset(wait)
	}
}

// fire is the timer's function. A timer that was re-armed later, or whose
// deadline was cleared, may still fire once: it checks the time.
func (d *Deadline) fire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.when.IsZero() {
		return
	}
	if wait := time.Until(d.when); wait > 0 {
		d.timer.Reset(wait)
		return
	}
	d.expireLocked()
}

func (d *Deadline) expireLocked() {
	if !d.expired {
		close(d.ch)
		d.expired = true
	}
}

func (d *Deadline) Stop() {
	d.mu.Lock()
	if d.timer != nil {
		d.timer.Stop()
	}
	d.mu.Unlock()
}
