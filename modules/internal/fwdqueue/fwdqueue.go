// Package fwdqueue is the bounded request queue of the transport
// forwarders (transport.tcp's and transport.udp's Forwarder): requests
// keyed by their flow, queued oldest first until the program takes them
// with Next, and each holding one of a bounded number of slots until it is
// answered (Release).
//
// The packet path adds requests under the queue's lock (Lock, then the
// *Locked methods), so that it can decide in one critical section what to
// do with a packet: join the request its flow holds, count it over the
// bound, or make a new request. The program side (Next, Release, Shut,
// Len) takes the lock itself.
package fwdqueue

import (
	"context"
	"sync"
)

// Queue holds requests R keyed by K. Its zero value is not ready: Init it.
// R is compared to tell a request from a newer one of the same key (a
// pointer, in practice).
type Queue[K comparable, R comparable] struct {
	mu        sync.Mutex
	max       int
	errClosed error

	held   map[K]R       // queued or handed out, not released
	queue  []R           // not handed out yet, oldest first
	closed bool          // Shut ran
	ready  chan struct{} // capacity 1: the queue is not empty
	done   chan struct{} // closed by Shut
}

// Init readies q to hold at most max requests (max > 0); Next returns
// errClosed once q is shut.
func (q *Queue[K, R]) Init(max int, errClosed error) {
	q.max, q.errClosed = max, errClosed
	q.held = map[K]R{}
	q.ready = make(chan struct{}, 1)
	q.done = make(chan struct{})
}

// Lock takes the queue's lock, for the *Locked methods.
func (q *Queue[K, R]) Lock() { q.mu.Lock() }

// Unlock releases the queue's lock.
func (q *Queue[K, R]) Unlock() { q.mu.Unlock() }

// ClosedLocked reports whether q is shut. Called with the lock held.
func (q *Queue[K, R]) ClosedLocked() bool { return q.closed }

// GetLocked returns the request held for k. Called with the lock held.
func (q *Queue[K, R]) GetLocked(k K) (R, bool) {
	r, ok := q.held[k]
	return r, ok
}

// FullLocked reports whether all slots are held. Called with the lock
// held.
func (q *Queue[K, R]) FullLocked() bool { return len(q.held) >= q.max }

// PushLocked holds r for k and queues it for Next. The caller checked
// that q is not shut, not full and holds nothing for k. Called with the
// lock held.
func (q *Queue[K, R]) PushLocked(k K, r R) {
	q.held[k] = r
	q.queue = append(q.queue, r)
	wake(q.ready)
}

// ReleaseLocked frees the slot r holds for k (nothing when k holds
// another request, or none). Called with the lock held.
func (q *Queue[K, R]) ReleaseLocked(k K, r R) {
	if cur, ok := q.held[k]; ok && cur == r {
		delete(q.held, k)
	}
}

// Release is ReleaseLocked taking the lock.
func (q *Queue[K, R]) Release(k K, r R) {
	q.mu.Lock()
	q.ReleaseLocked(k, r)
	q.mu.Unlock()
}

// Len returns the number of requests held (queued or handed out, not
// released).
func (q *Queue[K, R]) Len() int {
	q.mu.Lock()
	n := len(q.held)
	q.mu.Unlock()
	return n
}

// Next waits for the next request and returns it (the oldest first), or
// an error once ctx is done (ctx.Err()) or q is shut (errClosed). The
// request keeps its slot until it is released.
func (q *Queue[K, R]) Next(ctx context.Context) (R, error) {
	for {
		q.mu.Lock()
		if len(q.queue) > 0 {
			var zero R
			r := q.queue[0]
			q.queue[0] = zero
			q.queue = q.queue[1:]
			if len(q.queue) == 0 {
				q.queue = q.queue[:0:0]
			} else {
				wake(q.ready)
			}
			q.mu.Unlock()
			return r, nil
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			var zero R
			return zero, q.errClosed
		}
		select {
		case <-q.ready:
		case <-q.done:
		case <-ctx.Done():
			var zero R
			return zero, ctx.Err()
		}
	}
}

// Shut closes q: Next returns errClosed, waiting ones included. It returns
// the requests still queued, not handed out (they keep their slots until
// the caller releases them), the first time; nil after.
func (q *Queue[K, R]) Shut() []R {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	close(q.done)
	rs := q.queue
	q.queue = nil
	return rs
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
