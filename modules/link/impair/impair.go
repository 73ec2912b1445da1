// Package impair is link.impair: a wrapper around any link that impairs
// what crosses it — loss, duplication, reordering, delay with jitter —
// from a seeded random source, so that a test (or a lab: this kernel has no
// netem) gets the same impairment on every run. It is what the TCP tests
// put on a router hop; users put it in a pipeline the same way:
//
//	links:
//	  - name: wan
//	    module: link.impair
//	    inner: {module: link.tun, device: tun0}
//	    loss: 0.01          # fraction of packets dropped
//	    duplicate: 0.005    # fraction sent twice
//	    reorder: 0.01       # fraction held back by reorder_delay, so later ones overtake
//	    reorder_delay: 2ms
//	    delay: 20ms         # added to every packet
//	    jitter: 1ms         # uniform 0..jitter more (never reorders by itself: FIFO per due time)
//	    direction: both     # out (what the stack writes, the default), in (what it receives), both
//	    seed: 42            # 0: the stack's random source (Stack.Rand)
//
// Delayed packets wait in a queue ordered by due time, released by one timer
// of the stack's clock. The counters (pipectl stats): impair_dropped,
// impair_duplicated, impair_reordered, impair_delayed, beside the wrapped
// link's own.
package impair

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Options are the impairment.
type Options struct {
	Loss, Duplicate, Reorder float64
	ReorderDelay             time.Duration
	Delay, Jitter            time.Duration
	In, Out                  bool
	Seed                     uint64
	Clock                    pipeline.Clock
}

// Endpoint wraps a link endpoint.
type Endpoint struct {
	inner pipeline.LinkEndpoint
	o     Options

	rmu sync.Mutex
	rng *rand.Rand

	out, in queue

	Dropped, Duplicated, Reordered, Delayed atomic.Uint64
}

// maxHeld bounds the delayed packets of one direction (netem's limit).
const maxHeld = 10000

// queue holds delayed packets of one direction, by due time.
type queue struct {
	e     *Endpoint
	mu    sync.Mutex
	held  []held
	seq   uint64
	timer pipeline.Timer
	due   time.Time // the timer's, zero when not armed
	send  func(pkts []*pipeline.Packet)
	batch []*pipeline.Packet
	stop  bool
}

type held struct {
	due time.Time
	seq uint64
	pkt *pipeline.Packet
}

// New wraps inner.
func New(inner pipeline.LinkEndpoint, o Options) *Endpoint {
	if o.Clock == nil {
		o.Clock = pipeline.SystemClock{}
	}
	if !o.In && !o.Out {
		o.Out = true
	}
	e := &Endpoint{inner: inner, o: o, rng: rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))}
	e.out.e, e.in.e = e, e
	e.out.send = func(p []*pipeline.Packet) { inner.WritePackets(p) }
	return e
}

// Inner is the wrapped endpoint.
func (e *Endpoint) Inner() pipeline.LinkEndpoint { return e.inner }

// MTU implements pipeline.LinkEndpoint.
func (e *Endpoint) MTU() int { return e.inner.MTU() }

// MaxHeaderLength implements pipeline.LinkEndpoint.
func (e *Endpoint) MaxHeaderLength() int { return e.inner.MaxHeaderLength() }

// LinkAddress implements pipeline.LinkEndpoint.
func (e *Endpoint) LinkAddress() wire.MAC { return e.inner.LinkAddress() }

// Capabilities implements pipeline.LinkEndpoint.
func (e *Endpoint) Capabilities() pipeline.LinkCapabilities { return e.inner.Capabilities() }

// SetMTU implements pipeline.LinkMTUSetter when the wrapped link does.
func (e *Endpoint) SetMTU(mtu int) error {
	if ms, ok := e.inner.(pipeline.LinkMTUSetter); ok {
		return ms.SetMTU(mtu)
	}
	return fmt.Errorf("link %T cannot change its mtu", e.inner)
}

// tap sits between the wrapped link and the stack's dispatcher.
type tap struct {
	e *Endpoint
	d pipeline.NetworkDispatcher
}

func (t *tap) DeliverNetworkPackets(pkts []*pipeline.Packet) {
	if !t.e.o.In {
		t.d.DeliverNetworkPackets(pkts)
		return
	}
	t.e.impair(&t.e.in, pkts)
	t.d.DeliverNetworkPackets(pkts)
}

// LinkDown passes the wrapped link's report on.
func (t *tap) LinkDown(err error) {
	if ld, ok := t.d.(pipeline.LinkStateDispatcher); ok {
		ld.LinkDown(err)
	}
}

// Attach implements pipeline.LinkEndpoint.
func (e *Endpoint) Attach(d pipeline.NetworkDispatcher) {
	if d == nil {
		e.inner.Attach(nil)
		e.in.mu.Lock()
		e.in.stop = true
		e.in.mu.Unlock()
		return
	}
	e.in.mu.Lock()
	e.in.stop = false
	e.in.send = d.DeliverNetworkPackets
	e.in.mu.Unlock()
	e.inner.Attach(&tap{e: e, d: d})
}

// WritePackets implements pipeline.LinkEndpoint: the batch is impaired,
// what passes at once is written by the wrapped link.
func (e *Endpoint) WritePackets(pkts []*pipeline.Packet) int {
	held := 0
	if e.o.Out {
		held = e.impair(&e.out, pkts)
	}
	// Held packets count as sent (they leave later); lost ones are the
	// link's drops, as a lossy cable's would be.
	return e.inner.WritePackets(pkts) + held
}

// impair decides each packet's fate: dropped (slot nil), held (slot nil,
// queued), or left in place to go now; a duplicate goes into the queue or,
// without delay, right after the batch.
func (e *Endpoint) impair(q *queue, pkts []*pipeline.Packet) (held int) {
	now := e.o.Clock.Now()
	var dups [8]*pipeline.Packet
	nd := 0
	e.rmu.Lock()
	for i, p := range pkts {
		if p == nil {
			continue
		}
		if e.o.Loss > 0 && e.rng.Float64() < e.o.Loss {
			pkts[i] = nil
			p.Release()
			e.Dropped.Add(1)
			continue
		}
		delay := e.o.Delay
		if e.o.Jitter > 0 {
			delay += time.Duration(e.rng.Int64N(int64(e.o.Jitter) + 1))
		}
		if e.o.Reorder > 0 && e.rng.Float64() < e.o.Reorder {
			delay += e.o.ReorderDelay
			e.Reordered.Add(1)
		}
		dup := e.o.Duplicate > 0 && e.rng.Float64() < e.o.Duplicate
		if dup {
			e.Duplicated.Add(1)
			c := p.Clone()
			if delay > 0 || nd == len(dups) {
				q.push(now.Add(delay), c)
			} else {
				dups[nd] = c
				nd++
			}
		}
		if delay > 0 {
			pkts[i] = nil
			e.Delayed.Add(1)
			q.push(now.Add(delay), p)
			held++
		}
	}
	e.rmu.Unlock()
	if nd > 0 {
		q.send(dups[:nd])
	}
	return held
}

// push queues p until due and arms the timer.
func (q *queue) push(due time.Time, p *pipeline.Packet) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stop {
		p.Release()
		return
	}
	if len(q.held) >= maxHeld {
		// A peer sending faster than the delay drains: drop at the tail,
		// as netem does at its limit, rather than hold without bound.
		p.Release()
		q.e.Dropped.Add(1)
		return
	}
	q.seq++
	h := held{due: due, seq: q.seq, pkt: p}
	i := sort.Search(len(q.held), func(i int) bool { return q.held[i].due.After(due) })
	q.held = append(q.held, held{})
	copy(q.held[i+1:], q.held[i:])
	q.held[i] = h
	q.armLocked()
}

func (q *queue) armLocked() {
	if len(q.held) == 0 {
		return
	}
	first := q.held[0].due
	if !q.due.IsZero() && !first.Before(q.due) {
		return
	}
	q.due = first
	d := first.Sub(q.e.o.Clock.Now())
	if d < 0 {
		d = 0
	}
	if q.timer == nil {
		q.timer = q.e.o.Clock.AfterFunc(d, q.fire)
	} else {
		q.timer.Reset(d)
	}
}

// fire releases what is due, in order.
func (q *queue) fire() {
	q.mu.Lock()
	now := q.e.o.Clock.Now()
	q.due = time.Time{}
	k := 0
	for k < len(q.held) && !q.held[k].due.After(now) {
		k++
	}
	batch := q.batch[:0]
	for _, h := range q.held[:k] {
		batch = append(batch, h.pkt)
	}
	n := copy(q.held, q.held[k:])
	clear(q.held[n:])
	q.held = q.held[:n]
	q.armLocked()
	send, stop := q.send, q.stop
	q.batch = nil
	q.mu.Unlock()
	if len(batch) > 0 {
		if stop || send == nil {
			pipeline.ReleaseBatch(batch)
		} else {
			send(batch)
		}
	}
	clear(batch)
	q.mu.Lock()
	q.batch = batch[:0]
	q.mu.Unlock()
}

// Close implements pipeline.LinkEndpoint: held packets are released.
func (e *Endpoint) Close() error {
	for _, q := range []*queue{&e.out, &e.in} {
		q.mu.Lock()
		q.stop = true
		if q.timer != nil {
			q.timer.Stop()
		}
		for _, h := range q.held {
			h.pkt.Release()
		}
		q.held = nil
		q.mu.Unlock()
	}
	return e.inner.Close()
}

// LinkCounters implements pipeline.LinkCounterReader: the impairment's
// counters and the wrapped link's.
func (e *Endpoint) LinkCounters() []pipeline.CounterValue {
	cs := []pipeline.CounterValue{
		{Name: "impair_dropped", Value: e.Dropped.Load()},
		{Name: "impair_duplicated", Value: e.Duplicated.Load()},
		{Name: "impair_reordered", Value: e.Reordered.Load()},
		{Name: "impair_delayed", Value: e.Delayed.Load()},
	}
	if r, ok := e.inner.(pipeline.LinkCounterReader); ok {
		cs = append(cs, r.LinkCounters()...)
	}
	return cs
}

var (
	_ pipeline.LinkEndpoint      = (*Endpoint)(nil)
	_ pipeline.LinkMTUSetter     = (*Endpoint)(nil)
	_ pipeline.LinkCounterReader = (*Endpoint)(nil)
)
