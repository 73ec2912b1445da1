package fwdqueue

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

var errClosed = errors.New("closed")

type req struct{ id int }

func newQueue(max int) *Queue[int, *req] {
	q := new(Queue[int, *req])
	q.Init(max, errClosed)
	return q
}

// push adds r under k as the packet path does; it reports false when q is
// shut, full, or holds k already.
func push(q *Queue[int, *req], k int, r *req) bool {
	q.Lock()
	defer q.Unlock()
	if _, held := q.GetLocked(k); held || q.ClosedLocked() || q.FullLocked() {
		return false
	}
	q.PushLocked(k, r)
	return true
}

func TestOrder(t *testing.T) {
	q := newQueue(8)
	for i := range 5 {
		if !push(q, i, &req{i}) {
			t.Fatalf("push %d refused", i)
		}
	}
	for i := range 5 {
		r, err := q.Next(context.Background())
		if err != nil || r.id != i {
			t.Fatalf("Next = %v, %v; want request %d", r, err, i)
		}
	}
	// Handed out is still held until released.
	if n := q.Len(); n != 5 {
		t.Fatalf("Len = %d after Next, want 5", n)
	}
}

func TestBound(t *testing.T) {
	q := newQueue(2)
	a, b := &req{1}, &req{2}
	if !push(q, 1, a) || !push(q, 2, b) {
		t.Fatal("push under the bound refused")
	}
	if push(q, 3, &req{3}) {
		t.Fatal("push over the bound accepted")
	}
	q.Lock()
	if !q.FullLocked() {
		t.Error("FullLocked = false with max requests held")
	}
	if r, ok := q.GetLocked(1); !ok || r != a {
		t.Errorf("GetLocked(1) = %v, %v; want a", r, ok)
	}
	q.Unlock()
	// Taking one out does not free its slot; releasing it does.
	if r, _ := q.Next(context.Background()); r != a {
		t.Fatalf("Next = %v, want a", r)
	}
	if push(q, 3, &req{3}) {
		t.Fatal("push accepted while the handed-out request holds its slot")
	}
	q.Release(1, a)
	if !push(q, 3, &req{3}) {
		t.Fatal("push refused after Release")
	}
	if n := q.Len(); n != 2 {
		t.Fatalf("Len = %d, want 2", n)
	}
}

func TestReleaseOther(t *testing.T) {
	q := newQueue(4)
	old, cur := &req{1}, &req{2}
	if !push(q, 1, cur) {
		t.Fatal("push refused")
	}
	// An old request of the same key (answered late) frees nothing.
	q.Release(1, old)
	q.Release(7, old) // no request under 7
	if n := q.Len(); n != 1 {
		t.Fatalf("Len = %d after releasing another request, want 1", n)
	}
	q.Release(1, cur)
	q.Release(1, cur) // twice: nothing more
	if n := q.Len(); n != 0 {
		t.Fatalf("Len = %d, want 0", n)
	}
}

func TestNextCancelled(t *testing.T) {
	q := newQueue(4)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r, err := q.Next(ctx); r != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Next(cancelled) = %v, %v; want context.Canceled", r, err)
	}
	// A cancelled context still gets what is queued.
	a := &req{1}
	push(q, 1, a)
	if r, err := q.Next(ctx); r != a || err != nil {
		t.Fatalf("Next(cancelled) with a request queued = %v, %v; want it", r, err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := q.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %v, want context.DeadlineExceeded", err)
	}
}

// TestWaitersWoken: a waiting Next gets a request pushed later, and every
// waiter gets one of several pushed at once.
func TestWaitersWoken(t *testing.T) {
	q := newQueue(16)
	const n = 4
	// A lost wake-up leaves a waiter asleep: it fails at the deadline
	// instead of hanging the test.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := make(chan *req, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := q.Next(ctx)
			if err != nil {
				t.Errorf("waiting Next: %v", err)
				return
			}
			got <- r
		}()
	}
	time.Sleep(10 * time.Millisecond) // let them wait
	for i := range n {
		push(q, i, &req{i})
	}
	wg.Wait()
	close(got)
	seen := map[int]bool{}
	for r := range got {
		seen[r.id] = true
	}
	if len(seen) != n {
		t.Fatalf("waiters got %v, want %d distinct requests", seen, n)
	}
}

func TestShut(t *testing.T) {
	q := newQueue(4)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := q.Next(context.Background())
			errs <- err
		}()
	}
	time.Sleep(10 * time.Millisecond)
	if rs := q.Shut(); len(rs) != 0 {
		t.Fatalf("Shut of an empty queue returned %v", rs)
	}
	for range 2 {
		select {
		case err := <-errs:
			if err != errClosed {
				t.Fatalf("waiting Next = %v, want errClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Shut did not wake a waiting Next")
		}
	}
	if _, err := q.Next(context.Background()); err != errClosed {
		t.Fatalf("Next after Shut = %v, want errClosed", err)
	}
	if push(q, 1, &req{1}) {
		t.Fatal("push after Shut accepted")
	}
	if rs := q.Shut(); rs != nil {
		t.Fatalf("second Shut = %v, want nil", rs)
	}
}

func TestShutReturnsQueued(t *testing.T) {
	q := newQueue(4)
	a, b, c := &req{1}, &req{2}, &req{3}
	push(q, 1, a)
	push(q, 2, b)
	push(q, 3, c)
	if r, _ := q.Next(context.Background()); r != a {
		t.Fatalf("Next = %v, want a", r)
	}
	rs := q.Shut()
	if len(rs) != 2 || rs[0] != b || rs[1] != c {
		t.Fatalf("Shut = %v, want [b c] (the ones not handed out)", rs)
	}
	// They hold their slots until the caller releases them.
	if n := q.Len(); n != 3 {
		t.Fatalf("Len = %d after Shut, want 3", n)
	}
	for i, r := range rs {
		q.Release(i+2, r)
	}
	q.Release(1, a)
	if n := q.Len(); n != 0 {
		t.Fatalf("Len = %d, want 0", n)
	}
}

// TestConcurrent: producers push while consumers take and release, as
// the packet path and the program do. Every request pushed is handed out
// exactly once, the slots never exceed the bound, and once all are
// released the queue holds nothing. Run it with -race.
func TestConcurrent(t *testing.T) {
	const max, producers, consumers, perProducer = 8, 3, 3, 1000
	q := newQueue(max)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var prod sync.WaitGroup
	for p := range producers {
		prod.Add(1)
		go func() {
			defer prod.Done()
			for i := 0; i < perProducer; {
				k := p*perProducer + i
				q.Lock()
				if n := len(q.held); n > max {
					t.Errorf("%d slots held, bound %d", n, max)
				}
				ok := !q.FullLocked()
				if ok {
					q.PushLocked(k, &req{k})
				}
				q.Unlock()
				if !ok {
					if ctx.Err() != nil {
						t.Errorf("producer %d stuck at %d: the queue stays full", p, i)
						return
					}
					runtime.Gosched() // full: a consumer releases one
					continue
				}
				i++
			}
		}()
	}
	got := make(chan int, producers*perProducer)
	var cons sync.WaitGroup
	for range consumers {
		cons.Add(1)
		go func() {
			defer cons.Done()
			for {
				r, err := q.Next(ctx)
				if err != nil {
					if err != errClosed {
						t.Errorf("Next: %v", err)
					}
					return
				}
				got <- r.id
				q.Release(r.id, r)
			}
		}()
	}
	prod.Wait()
	// Every request pushed comes out: wait for the count, then shut.
	seen := make(map[int]bool, producers*perProducer)
	for len(seen) < producers*perProducer {
		select {
		case id := <-got:
			if seen[id] {
				t.Fatalf("request %d handed out twice", id)
			}
			seen[id] = true
		case <-ctx.Done():
			t.Fatalf("%d of %d requests handed out", len(seen), producers*perProducer)
		}
	}
	if rs := q.Shut(); len(rs) != 0 {
		t.Fatalf("Shut returned %d requests after all were taken", len(rs))
	}
	cons.Wait()
	select {
	case id := <-got:
		t.Fatalf("request %d handed out again", id)
	default:
	}
	if n := q.Len(); n != 0 {
		t.Fatalf("Len = %d after every request was released", n)
	}
}
