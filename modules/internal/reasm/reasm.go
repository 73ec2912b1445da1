// Package reasm is the fragment reassembly machinery network.ipv4 and
// network.ipv6 share: the queues of datagrams in progress, their ordering,
// duplicate, overlap and consistency checks, the memory accounting with its
// per-source fairness and eviction heap, and the timers. It is generic over
// the datagram key, the source a datagram is charged to and what a family
// keeps per fragment (like modules/internal/icmplimit is generic over the
// address type). What differs between the families stays in their modules:
// parsing and validating a fragment (IPv4: 8-byte offsets, DF/MF; IPv6:
// the Fragment header, atomic fragments), the key (IPv4: with the
// reassembly user; IPv6: source = its /64), building the datagram and the
// ICMP time exceeded message.
//
// # Memory under a flood
//
// Memory is charged per held buffer (its whole size, like Linux's truesize,
// so that tiny fragments cannot hold much more memory than they are charged
// for; fragments that arrived in a large buffer are copied into a small one)
// plus QueueOverhead per datagram, and bounded twice:
//
//   - per source: a source over its share (Limits.PerSource) makes room only
//     by evicting its own oldest datagrams, so one flooding source can never
//     take memory from another;
//   - globally: when Limits.MaxMemory is reached, room is made by evicting
//     the oldest datagram of the source that holds the most memory (a
//     max-heap of sources), never the datagram the fragment belongs to; when
//     the fragment's own source is the biggest and has nothing else to
//     evict, the next biggest pays. Only when no other datagram exists is
//     the new fragment refused.
//
// So a flood fills memory only up to the limits, its own oldest datagrams
// are what make room for it, and a legitimate datagram in progress from a
// source that holds less than the flooders survives — unlike Linux, which
// refuses every fragment (even of datagrams in progress) while over its
// 4 MiB threshold until the flood's queues time out, 30 s later.
//
// Any overlap or inconsistency (two different ends, data past the end)
// drops the whole datagram and keeps it as a tombstone until its deadline,
// so that its later fragments are dropped too (RFC 5722; for IPv4 in
// spirit); exact duplicates are dropped alone.
//
// # Drops
//
// Every fragment the reassembler refuses or discards — on arrival
// (duplicate, tombstone, no room) or later (its datagram overlapped, turned
// out inconsistent or too big, was evicted or timed out) — ends through
// Batch.Drop, so that it counts in the RX dropped of the link it came in on
// as well as under its reason. The reason counters count events: one
// reasm_timeout, reasm_evicted, reasm_overlap… per datagram, one
// reasm_duplicate or reasm_no_memory per fragment.
package reasm

import (
	"container/heap"
	"sync"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// QueueOverhead is what a datagram in progress costs besides its fragments
// (its struct, map entry and list links): a datagram whose fragments were
// all dropped (a tombstone after an overlap) still counts against the
// memory limits.
const QueueOverhead = 256

// Limits are the reassembly limits of one generation.
type Limits struct {
	Timeout   time.Duration
	MaxMemory int // all datagrams
	PerSource int // all datagrams of one source
}

// Counters are the reassembly counters of a module's counter set.
type Counters struct {
	Fragments, OK, Duplicate, Overlap, Inconsistent *pipeline.Counter
	Malformed, TooBig, Timeout, Evicted             *pipeline.Counter
	SourceLimit, NoMemory, Discarded                *pipeline.Counter
}

// NewCounters gets the reassembly counters from cs, in this order:
// reasm_fragments, reasm_ok, reasm_duplicate, reasm_overlap,
// reasm_inconsistent, reasm_malformed, reasm_too_big, reasm_timeout,
// reasm_evicted, reasm_source_limit, reasm_no_memory, reasm_discarded.
// Malformed and TooBig are the family's to count (it validates fragments);
// the reassembler counts the rest.
func NewCounters(cs *pipeline.CounterSet) Counters {
	return Counters{
		Fragments: cs.Get("reasm_fragments"), OK: cs.Get("reasm_ok"),
		Duplicate: cs.Get("reasm_duplicate"), Overlap: cs.Get("reasm_overlap"),
		Inconsistent: cs.Get("reasm_inconsistent"), Malformed: cs.Get("reasm_malformed"),
		TooBig: cs.Get("reasm_too_big"), Timeout: cs.Get("reasm_timeout"),
		Evicted: cs.Get("reasm_evicted"), SourceLimit: cs.Get("reasm_source_limit"),
		NoMemory: cs.Get("reasm_no_memory"), Discarded: cs.Get("reasm_discarded"),
	}
}

// Fragment is one held fragment.
type Fragment[F any] struct {
	Pkt      *pipeline.Packet // Data() at the network header; held (stolen)
	Off, End int              // bytes [Off, End) of the datagram's fragmentable part
	Meta     F                // what the family needs to build the datagram
}

// Family is what a network protocol brings to the reassembler.
type Family[K, S comparable, F any] struct {
	// Source is the source a datagram is charged to.
	Source func(K) S
	// Build copies a complete datagram into one new packet from pool,
	// Data() at its network header: frags are sorted, do not overlap and
	// cover [0, end). The reassembler then copies the metadata of the
	// fragment that completed it and marks the network header. Build
	// returns nil when the datagram would exceed the family's bound (the
	// header of the first fragment plus end: the bound each fragment was
	// checked against used its own header), and for a size the pool
	// refuses (Pool.TryGet): the datagram is dropped, counted as
	// reasm_too_big.
	Build func(pool *pipeline.Pool, frags []Fragment[F], end int) *pipeline.Packet
	// Done, when set, sees a datagram Build made, after the metadata
	// copy and before its fragments are released (network.ipv6 records
	// the largest fragment's size for refragmentation).
	Done func(key K, out *pipeline.Packet, frags []Fragment[F])
	// Notify reports whether a datagram of this key whose first fragment
	// came gets TimeExceeded when it times out (nil: every one).
	Notify func(K) bool
	// TimeExceeded runs in a batch of the generation in force for the
	// first fragment of a datagram that timed out; it does not take
	// ownership of first.
	TimeExceeded func(b *pipeline.Batch, first *pipeline.Packet)
}

// queue is one datagram being reassembled.
type queue[K, S comparable, F any] struct {
	key      K
	frags    []Fragment[F] // sorted by Off, never overlapping
	received int           // bytes held
	end      int           // length of the fragmentable part, -1 until the last fragment came
	dead     bool          // dropped (overlap, inconsistency): a tombstone until its deadline
	mem      int           // bytes charged
	deadline time.Time
	src      *source[K, S, F]
	// The source's queues, oldest first, and all queues in creation order.
	prevS, nextS *queue[K, S, F]
	prev, next   *queue[K, S, F]
}

// source is the memory one source holds in reassembly.
type source[K, S comparable, F any] struct {
	key            S
	mem            int
	oldest, newest *queue[K, S, F]
	idx            int // in the heap
}

// sourceHeap is a max-heap of sources by memory held: its root is the
// biggest consumer.
type sourceHeap[K, S comparable, F any] []*source[K, S, F]

func (h sourceHeap[K, S, F]) Len() int           { return len(h) }
func (h sourceHeap[K, S, F]) Less(i, j int) bool { return h[i].mem > h[j].mem }
func (h sourceHeap[K, S, F]) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].idx = i; h[j].idx = j }
func (h *sourceHeap[K, S, F]) Push(x any) {
	s := x.(*source[K, S, F])
	s.idx = len(*h)
	*h = append(*h, s)
}
func (h *sourceHeap[K, S, F]) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	s.idx = -1
	return s
}

// Reassembler holds every datagram being reassembled. It is long-lived (a
// module keeps it in Context.Shared, so that a reload keeps datagrams in
// progress); each call brings the limits of the caller's generation. One
// mutex guards it: fragments are not the fast path.
type Reassembler[K, S comparable, F any] struct {
	fam     Family[K, S, F]
	mu      sync.Mutex
	clock   pipeline.Clock
	stack   *pipeline.Stack
	pool    *pipeline.Pool
	c       *Counters
	queues  map[K]*queue[K, S, F]
	sources map[S]*source[K, S, F]
	heap    sourceHeap[K, S, F]
	head    *queue[K, S, F] // oldest
	tail    *queue[K, S, F]
	mem     int
	timer   pipeline.Timer
	timerAt time.Time
	closed  bool
	freeQ   []*queue[K, S, F]
	freeS   []*source[K, S, F]
	expired []*pipeline.Packet // expire's fragments to drop, reused
	firsts  []*pipeline.Packet // expire's first fragments, reused
}

// New returns a reassembler whose timers run on clock and whose
// TimeExceeded messages go through stack (nil: none).
func New[K, S comparable, F any](fam Family[K, S, F], clock pipeline.Clock, stack *pipeline.Stack, pool *pipeline.Pool, c *Counters) *Reassembler[K, S, F] {
	return &Reassembler[K, S, F]{
		fam: fam, clock: clock, stack: stack, pool: pool, c: c,
		queues: map[K]*queue[K, S, F]{}, sources: map[S]*source[K, S, F]{},
	}
}

// Memory is the number of bytes held and of datagrams in progress (for
// tests and status).
func (r *Reassembler[K, S, F]) Memory() (bytes, queues int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mem, len(r.queues)
}

func truesize(p *pipeline.Packet) int { return p.Headroom() + p.Len() + p.Tailroom() }

// drop ends a fragment: through b.Drop (its link's RX dropped and reason)
// when there is a batch, else it counts reason and releases it.
func drop(b *pipeline.Batch, p *pipeline.Packet, reason *pipeline.Counter) {
	if b != nil {
		b.Drop(p, reason)
		return
	}
	if reason != nil {
		reason.Inc()
	}
	p.Release()
}

// Add takes ownership of f.Pkt, a fragment of datagram key validated by the
// family (0 <= f.Off <= f.End), carrying bytes [f.Off, f.End) of it (the
// last ones unless more), received at now in batch b. It returns the
// reassembled datagram (a new packet from the pool, never f.Pkt itself,
// metadata of f.Pkt, network header marked) when f completed one, or nil
// when f.Pkt was held
// or dropped (counted). Every packet it drops goes through b.Drop (b may be
// nil: then only the reason counts). The family counts Fragments itself.
func (r *Reassembler[K, S, F]) Add(b *pipeline.Batch, now time.Time, key K, f Fragment[F], more bool, lim *Limits) *pipeline.Packet {
	c := r.c
	pkt := f.Pkt
	off, end := f.Off, f.End
	if off < 0 || end < off {
		drop(b, pkt, c.Malformed)
		return nil
	}
	// A fragment in a large buffer is copied into a small one: memory is
	// charged by buffer, and a link that reads into large buffers (GSO)
	// must not make every fragment cost 64 KiB.
	if truesize(pkt) > pipeline.SmallDataSize+pipeline.DefaultHeadroom && pkt.Len() <= pipeline.SmallDataSize {
		q := r.pool.TryGet(pkt.Len())
		if q == nil {
			drop(b, pkt, c.NoMemory)
			return nil
		}
		buf, _ := q.Append(pkt.Len())
		copy(buf, pkt.Data())
		q.CopyMeta(pkt)
		q.SetNetworkHeader()
		// Released when Add returns, not now: the datagram Build takes
		// from the pool must never be the caller's own *Packet (a caller
		// that tells "not a fragment" from "reassembled" by comparing
		// pointers would take a datagram for its last fragment).
		defer pkt.Release()
		pkt = q
		f.Pkt = q
	}
	charge := truesize(pkt)

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		drop(b, pkt, nil)
		return nil
	}
	q := r.queues[key]
	if q == nil {
		charge += QueueOverhead
		q = r.newQueue(key, now.Add(lim.Timeout))
	}
	if q.dead {
		drop(b, pkt, c.Discarded)
		return nil
	}
	// Consistency: one end, no data past it.
	if !more {
		last := 0
		if n := len(q.frags); n > 0 {
			last = q.frags[n-1].End
		}
		if (q.end >= 0 && q.end != end) || last > end {
			r.kill(b, q)
			drop(b, pkt, c.Inconsistent)
			return nil
		}
	} else if q.end >= 0 && end > q.end {
		r.kill(b, q)
		drop(b, pkt, c.Inconsistent)
		return nil
	}
	// Position, duplicates and overlaps.
	i := len(q.frags)
	for i > 0 && q.frags[i-1].Off >= off {
		i--
	}
	if i < len(q.frags) && q.frags[i].Off == off && q.frags[i].End == end {
		drop(b, pkt, c.Duplicate)
		r.dropIfEmpty(q)
		return nil
	}
	if (i > 0 && q.frags[i-1].End > off) || (i < len(q.frags) && q.frags[i].Off < end) {
		// RFC 5722: a datagram with overlapping fragments is dropped,
		// with every fragment of it that arrives later.
		r.kill(b, q)
		drop(b, pkt, c.Overlap)
		return nil
	}
	// Room: first within the source's share, then globally.
	for q.src.mem+charge > lim.PerSource {
		v := q.src.oldest
		if v == q {
			v = q.nextS
		}
		if v == nil {
			// This datagram alone exceeds the source's share.
			r.drop(b, q)
			drop(b, pkt, c.SourceLimit)
			return nil
		}
		c.SourceLimit.Inc()
		r.drop(b, v)
	}
	for r.mem+charge > lim.MaxMemory {
		v := r.victim(q)
		if v == nil {
			drop(b, pkt, c.NoMemory)
			r.dropIfEmpty(q)
			return nil
		}
		c.Evicted.Inc()
		r.drop(b, v)
	}
	q.frags = append(q.frags, Fragment[F]{})
	copy(q.frags[i+1:], q.frags[i:])
	q.frags[i] = f
	q.received += end - off
	if !more {
		q.end = end
	}
	r.charge(q, charge)
	if q.end < 0 || q.received != q.end {
		return nil
	}
	out := r.fam.Build(r.pool, q.frags, q.end)
	if out == nil {
		c.TooBig.Inc()
		r.drop(b, q)
		return nil
	}
	out.CopyMeta(pkt)
	out.SetNetworkHeader()
	if r.fam.Done != nil {
		r.fam.Done(key, out, q.frags)
	}
	c.OK.Inc()
	r.remove(q)
	return out
}

func (r *Reassembler[K, S, F]) newQueue(key K, deadline time.Time) *queue[K, S, F] {
	var q *queue[K, S, F]
	if n := len(r.freeQ); n > 0 {
		q = r.freeQ[n-1]
		r.freeQ = r.freeQ[:n-1]
	} else {
		q = &queue[K, S, F]{}
	}
	q.key, q.end, q.deadline = key, -1, deadline
	r.queues[key] = q
	sk := r.fam.Source(key)
	s := r.sources[sk]
	if s == nil {
		if n := len(r.freeS); n > 0 {
			s = r.freeS[n-1]
			r.freeS = r.freeS[:n-1]
			*s = source[K, S, F]{key: sk}
		} else {
			s = &source[K, S, F]{key: sk}
		}
		r.sources[sk] = s
		heap.Push(&r.heap, s)
	}
	q.src = s
	q.prevS = s.newest
	if s.newest != nil {
		s.newest.nextS = q
	} else {
		s.oldest = q
	}
	s.newest = q
	q.prev = r.tail
	if r.tail != nil {
		r.tail.next = q
	} else {
		r.head = q
	}
	r.tail = q
	r.armTimer(deadline)
	return q
}

func (r *Reassembler[K, S, F]) charge(q *queue[K, S, F], n int) {
	q.mem += n
	q.src.mem += n
	r.mem += n
	heap.Fix(&r.heap, q.src.idx)
}

// victim is the datagram to evict to make room for a fragment of q: the
// oldest of the biggest consumer (or of the next biggest when the biggest is
// q's source with nothing but q), never q itself.
func (r *Reassembler[K, S, F]) victim(q *queue[K, S, F]) *queue[K, S, F] {
	pick := func(s *source[K, S, F]) *queue[K, S, F] {
		v := s.oldest
		if v == q {
			v = q.nextS
		}
		return v
	}
	if len(r.heap) == 0 {
		return nil
	}
	if v := pick(r.heap[0]); v != nil {
		return v
	}
	var best *queue[K, S, F]
	bestMem := -1
	for _, i := range []int{1, 2} {
		if i < len(r.heap) && r.heap[i].mem > bestMem {
			if v := pick(r.heap[i]); v != nil {
				best, bestMem = v, r.heap[i].mem
			}
		}
	}
	return best
}

// kill drops a datagram's fragments (in batch b, nil: released) and keeps
// the queue as a tombstone until its deadline, so that the rest of the
// datagram is discarded too.
func (r *Reassembler[K, S, F]) kill(b *pipeline.Batch, q *queue[K, S, F]) {
	freed := 0
	for _, f := range q.frags {
		freed += truesize(f.Pkt)
		drop(b, f.Pkt, nil)
	}
	clear(q.frags)
	q.frags = q.frags[:0]
	q.dead = true
	if q.mem == 0 {
		// A queue made for this very fragment: charge its overhead now.
		r.charge(q, QueueOverhead)
		return
	}
	r.charge(q, -freed)
}

func (r *Reassembler[K, S, F]) dropIfEmpty(q *queue[K, S, F]) {
	if len(q.frags) == 0 && !q.dead {
		r.remove(q)
	}
}

// drop unlinks a queue and drops its fragments in batch b (nil: released).
func (r *Reassembler[K, S, F]) drop(b *pipeline.Batch, q *queue[K, S, F]) {
	for _, f := range q.frags {
		if f.Pkt != nil {
			drop(b, f.Pkt, nil)
		}
	}
	r.unlink(q)
}

// remove unlinks a queue and releases its fragments.
func (r *Reassembler[K, S, F]) remove(q *queue[K, S, F]) {
	for _, f := range q.frags {
		if f.Pkt != nil {
			f.Pkt.Release()
		}
	}
	r.unlink(q)
}

func (r *Reassembler[K, S, F]) unlink(q *queue[K, S, F]) {
	delete(r.queues, q.key)
	s := q.src
	if q.prevS != nil {
		q.prevS.nextS = q.nextS
	} else {
		s.oldest = q.nextS
	}
	if q.nextS != nil {
		q.nextS.prevS = q.prevS
	} else {
		s.newest = q.prevS
	}
	if q.prev != nil {
		q.prev.next = q.next
	} else {
		r.head = q.next
	}
	if q.next != nil {
		q.next.prev = q.prev
	} else {
		r.tail = q.prev
	}
	s.mem -= q.mem
	r.mem -= q.mem
	if s.oldest == nil {
		heap.Remove(&r.heap, s.idx)
		delete(r.sources, s.key)
		r.freeS = append(r.freeS, s)
	} else {
		heap.Fix(&r.heap, s.idx)
	}
	clear(q.frags)
	*q = queue[K, S, F]{frags: q.frags[:0]}
	r.freeQ = append(r.freeQ, q)
}

// armTimer makes sure the sweep timer fires no later than at.
func (r *Reassembler[K, S, F]) armTimer(at time.Time) {
	if r.timer != nil && !r.timerAt.IsZero() && !at.Before(r.timerAt) {
		return
	}
	d := at.Sub(r.clock.Now())
	if d < 0 {
		d = 0
	}
	r.timerAt = at
	if r.timer == nil {
		r.timer = r.clock.AfterFunc(d, r.expire)
		return
	}
	r.timer.Reset(d)
}

// expire runs on the clock's timer: it drops every datagram past its
// deadline and, for those whose first fragment arrived and that the family
// wants notified, calls TimeExceeded through the generation in force; the
// fragments are dropped in that batch, so that they count in their links'
// RX dropped. Then it re-arms for the next deadline.
func (r *Reassembler[K, S, F]) expire() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	now := r.clock.Now()
	r.timerAt = time.Time{}
	firsts, expired := r.firsts[:0], r.expired[:0]
	var next time.Time
	for q := r.head; q != nil; {
		nq := q.next
		if now.Before(q.deadline) {
			if next.IsZero() || q.deadline.Before(next) {
				next = q.deadline
			}
			q = nq
			continue
		}
		if !q.dead {
			r.c.Timeout.Inc()
			if len(q.frags) > 0 && q.frags[0].Off == 0 && (r.fam.Notify == nil || r.fam.Notify(q.key)) {
				firsts = append(firsts, q.frags[0].Pkt)
				q.frags[0].Pkt = nil
			}
		}
		for _, f := range q.frags {
			if f.Pkt != nil {
				expired = append(expired, f.Pkt)
			}
		}
		r.unlink(q)
		q = nq
	}
	if !next.IsZero() {
		r.timerAt = next
		r.timer.Reset(next.Sub(now))
	}
	// The slices are reused by the next expire, which runs after this
	// one returns (the timer is re-armed only under the lock, and fires
	// one callback at a time: a later callback waits for the lock, and
	// the slices are taken back from r before it is released).
	r.firsts, r.expired = nil, nil
	r.mu.Unlock()
	if len(firsts)+len(expired) > 0 {
		ran := r.stack != nil && r.stack.Do(func(b *pipeline.Batch) {
			for _, p := range firsts {
				if r.fam.TimeExceeded != nil {
					r.fam.TimeExceeded(b, p)
				}
				b.Drop(p, nil)
			}
			for _, p := range expired {
				b.Drop(p, nil)
			}
		})
		if !ran {
			for _, p := range firsts {
				p.Release()
			}
			for _, p := range expired {
				p.Release()
			}
		}
	}
	clear(firsts)
	clear(expired)
	r.mu.Lock()
	r.firsts, r.expired = firsts[:0], expired[:0]
	r.mu.Unlock()
}

// Close releases every held fragment and stops the timer (the stack closes
// shared objects after its links).
func (r *Reassembler[K, S, F]) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.timer != nil {
		r.timer.Stop()
	}
	for r.head != nil {
		r.remove(r.head)
	}
	return nil
}
