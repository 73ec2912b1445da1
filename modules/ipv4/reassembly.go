package ipv4

import (
	"container/heap"
	"sync"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Reassembly users: the same fragment key used for local delivery and for
// the defragmentation service are separate queues (Linux's defrag users).
const (
	userLocal  uint8 = iota // reassembly for local delivery
	userDefrag              // Defragment / defragment_forwarded
)

// queueOverhead is what a queue costs besides its fragments (its struct,
// map entry and list links): a queue whose fragments were all dropped (a
// tombstone after an overlap) still counts against the memory limits.
const queueOverhead = 256

// reasmLimits are the reassembly limits of one generation.
type reasmLimits struct {
	timeout   time.Duration
	maxMemory int // all queues
	perSource int // all queues of one source address
}

type fragKey struct {
	src, dst [4]byte
	id       uint16
	proto    uint8
	user     uint8
}

type fragment struct {
	pkt      *pipeline.Packet // Data() at the IPv4 header; held (stolen)
	off, end int              // payload bytes [off, end) of the datagram
}

// fragQueue is one datagram being reassembled.
type fragQueue struct {
	key      fragKey
	frags    []fragment // sorted by off, never overlapping
	received int        // payload bytes held
	end      int        // payload length, -1 until the last fragment came
	dead     bool       // dropped (overlap, inconsistency): a tombstone until its deadline
	mem      int        // bytes charged
	deadline time.Time
	src      *fragSource
	// The source's queues, oldest first, and all queues in creation order.
	prevS, nextS *fragQueue
	prev, next   *fragQueue
}

// fragSource is the memory one source address holds in reassembly.
type fragSource struct {
	addr           [4]byte
	mem            int
	oldest, newest *fragQueue
	idx            int // in the heap
}

// srcHeap is a max-heap of sources by memory held: its root is the biggest
// consumer.
type srcHeap []*fragSource

func (h srcHeap) Len() int           { return len(h) }
func (h srcHeap) Less(i, j int) bool { return h[i].mem > h[j].mem }
func (h srcHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].idx = i; h[j].idx = j }
func (h *srcHeap) Push(x any)        { s := x.(*fragSource); s.idx = len(*h); *h = append(*h, s) }
func (h *srcHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	s.idx = -1
	return s
}

// reassembler holds every datagram being reassembled. It is long-lived
// (Context.Shared "network.ipv4/reassembly"): a reload keeps in-flight
// datagrams; each call brings the limits of the caller's generation. One
// mutex guards it: fragments are not the fast path.
//
// Memory is charged per held buffer (its whole size, like Linux's truesize,
// so that tiny fragments cannot hold much more memory than they are
// charged for; fragments that arrived in a large buffer are copied into a
// small one) plus queueOverhead per queue, and bounded twice:
//
//   - per source: a source over its share (perSource) makes room only by
//     evicting its own oldest datagrams, so one flooding source can never
//     take memory from another;
//   - globally: when maxMemory is reached, room is made by evicting the
//     oldest datagram of the source that holds the most memory (a max-heap
//     of sources), never the datagram the fragment belongs to; when the
//     fragment's own source is the biggest and has nothing else to evict,
//     the next biggest pays. Only when no other datagram exists is the new
//     fragment refused.
//
// So a flood fills memory only up to the limits, its own oldest queues are
// what make room for it, and a legitimate datagram in progress from a source
// that holds less than the flooders survives — unlike Linux, which refuses
// every fragment (even of datagrams in progress) while over its 4 MiB
// threshold until the flood's queues time out, 30 s later.
type reassembler struct {
	mu      sync.Mutex
	clock   pipeline.Clock
	stack   *pipeline.Stack
	pool    *pipeline.Pool
	c       *counters
	queues  map[fragKey]*fragQueue
	sources map[[4]byte]*fragSource
	heap    srcHeap
	head    *fragQueue // oldest
	tail    *fragQueue
	mem     int
	timer   pipeline.Timer
	timerAt time.Time
	closed  bool
	freeQ   []*fragQueue
}

func newReassembler(clock pipeline.Clock, stack *pipeline.Stack, pool *pipeline.Pool, c *counters) *reassembler {
	return &reassembler{
		clock: clock, stack: stack, pool: pool, c: c,
		queues: map[fragKey]*fragQueue{}, sources: map[[4]byte]*fragSource{},
	}
}

// Memory is the number of bytes held (for tests and status).
func (r *reassembler) Memory() (bytes, queues int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mem, len(r.queues)
}

func truesize(p *pipeline.Packet) int { return p.Headroom() + p.Len() + p.Tailroom() }

// add takes ownership of a fragment (Data() at its IPv4 header, validated
// and trimmed to its total length). It returns the reassembled datagram (a
// new packet from the pool, metadata of the fragment that completed it,
// network header marked) when pkt completed one, or nil when pkt was held
// or dropped (counted).
func (r *reassembler) add(now time.Time, pkt *pipeline.Packet, user uint8, lim *reasmLimits) *pipeline.Packet {
	c := r.c
	c.reasmFragments.Inc()
	h := wire.IPv4(pkt.Data())
	hl := h.HeaderLength()
	off := int(h.FragmentOffset())
	plen := len(h.Payload())
	end := off + plen
	mf := h.MoreFragments()
	if plen == 0 || (mf && plen%8 != 0) {
		c.reasmMalformed.Inc()
		pkt.Release()
		return nil
	}
	if hl+end > 0xffff {
		c.reasmTooBig.Inc()
		pkt.Release()
		return nil
	}
	// A fragment in a large buffer is copied into a small one: memory is
	// charged by buffer, and a link that reads into large buffers (GSO)
	// must not make every fragment cost 64 KiB.
	if truesize(pkt) > pipeline.SmallDataSize+pipeline.DefaultHeadroom && pkt.Len() <= pipeline.SmallDataSize {
		q := r.pool.Get(pkt.Len())
		b, _ := q.Append(pkt.Len())
		copy(b, pkt.Data())
		q.CopyMeta(pkt)
		q.SetNetworkHeader()
		pkt.Release()
		pkt = q
		h = wire.IPv4(pkt.Data())
	}
	key := fragKey{src: h.Src(), dst: h.Dst(), id: h.ID(), proto: h.Protocol(), user: user}
	charge := truesize(pkt)

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		pkt.Release()
		return nil
	}
	q := r.queues[key]
	if q == nil {
		charge += queueOverhead
		q = r.newQueue(key, now.Add(lim.timeout))
	}
	if q.dead {
		c.reasmDiscarded.Inc()
		pkt.Release()
		return nil
	}
	// Consistency (RFC 791, RFC 5722 in spirit): one end, no data past it.
	if !mf {
		last := 0
		if n := len(q.frags); n > 0 {
			last = q.frags[n-1].end
		}
		if (q.end >= 0 && q.end != end) || last > end {
			c.reasmInconsistent.Inc()
			r.kill(q)
			pkt.Release()
			return nil
		}
	} else if q.end >= 0 && end > q.end {
		c.reasmInconsistent.Inc()
		r.kill(q)
		pkt.Release()
		return nil
	}
	// Position, duplicates and overlaps.
	i := len(q.frags)
	for i > 0 && q.frags[i-1].off >= off {
		i--
	}
	if i < len(q.frags) && q.frags[i].off == off && q.frags[i].end == end {
		c.reasmDuplicate.Inc()
		pkt.Release()
		r.dropIfEmpty(q)
		return nil
	}
	if (i > 0 && q.frags[i-1].end > off) || (i < len(q.frags) && q.frags[i].off < end) {
		c.reasmOverlap.Inc()
		r.kill(q)
		pkt.Release()
		return nil
	}
	// Room: first within the source's share, then globally.
	for q.src.mem+charge > lim.perSource {
		v := q.src.oldest
		if v == q {
			v = q.nextS
		}
		if v == nil {
			// This datagram alone exceeds the source's share.
			c.reasmSourceLimit.Inc()
			r.remove(q)
			pkt.Release()
			return nil
		}
		c.reasmSourceLimit.Inc()
		r.remove(v)
	}
	for r.mem+charge > lim.maxMemory {
		v := r.victim(q)
		if v == nil {
			c.reasmNoMemory.Inc()
			pkt.Release()
			r.dropIfEmpty(q)
			return nil
		}
		c.reasmEvicted.Inc()
		r.remove(v)
	}
	q.frags = append(q.frags, fragment{})
	copy(q.frags[i+1:], q.frags[i:])
	q.frags[i] = fragment{pkt: pkt, off: off, end: end}
	q.received += plen
	if !mf {
		q.end = end
	}
	r.charge(q, charge)
	if q.end < 0 || q.received != q.end {
		return nil
	}
	out := r.build(q, pkt)
	c.reasmOK.Inc()
	r.remove(q)
	return out
}

// build copies a complete datagram into one buffer: the first fragment's
// header (options included) followed by every payload.
func (r *reassembler) build(q *fragQueue, last *pipeline.Packet) *pipeline.Packet {
	first := wire.IPv4(q.frags[0].pkt.Data())
	hl := first.HeaderLength()
	size := hl + q.end
	out := r.pool.Get(size)
	buf, _ := out.Append(size)
	copy(buf, first[:hl])
	for _, f := range q.frags {
		copy(buf[hl+f.off:], wire.IPv4(f.pkt.Data()).Payload())
	}
	h := wire.IPv4(buf)
	h.SetTotalLength(uint16(size))
	h.SetFlagsFragmentOffset(first.Flags()&^wire.IPv4FlagMoreFragments, 0)
	h.SetChecksum(h.CalculateChecksum())
	out.CopyMeta(last)
	out.SetNetworkHeader()
	return out
}

func (r *reassembler) newQueue(key fragKey, deadline time.Time) *fragQueue {
	var q *fragQueue
	if n := len(r.freeQ); n > 0 {
		q = r.freeQ[n-1]
		r.freeQ = r.freeQ[:n-1]
	} else {
		q = &fragQueue{}
	}
	q.key, q.end, q.deadline = key, -1, deadline
	r.queues[key] = q
	s := r.sources[key.src]
	if s == nil {
		s = &fragSource{addr: key.src}
		r.sources[key.src] = s
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

func (r *reassembler) charge(q *fragQueue, n int) {
	q.mem += n
	q.src.mem += n
	r.mem += n
	heap.Fix(&r.heap, q.src.idx)
}

// victim is the datagram to evict to make room for a fragment of q: the
// oldest of the biggest consumer (or of the next biggest when the biggest is
// q's source with nothing but q), never q itself.
func (r *reassembler) victim(q *fragQueue) *fragQueue {
	pick := func(s *fragSource) *fragQueue {
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
	var best *fragQueue
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

// kill drops a datagram's fragments and keeps the queue as a tombstone until
// its deadline, so that the rest of the datagram is discarded too.
func (r *reassembler) kill(q *fragQueue) {
	freed := 0
	for _, f := range q.frags {
		freed += truesize(f.pkt)
		f.pkt.Release()
	}
	clear(q.frags)
	q.frags = q.frags[:0]
	q.dead = true
	if q.mem == 0 {
		// A queue made for this very fragment: charge its overhead now.
		r.charge(q, queueOverhead)
		return
	}
	r.charge(q, -freed)
}

func (r *reassembler) dropIfEmpty(q *fragQueue) {
	if len(q.frags) == 0 && !q.dead {
		r.remove(q)
	}
}

// remove unlinks a queue and releases its fragments.
func (r *reassembler) remove(q *fragQueue) {
	for _, f := range q.frags {
		if f.pkt != nil {
			f.pkt.Release()
		}
	}
	r.unlink(q)
}

func (r *reassembler) unlink(q *fragQueue) {
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
		delete(r.sources, s.addr)
	} else {
		heap.Fix(&r.heap, s.idx)
	}
	clear(q.frags)
	*q = fragQueue{frags: q.frags[:0]}
	r.freeQ = append(r.freeQ, q)
}

// armTimer makes sure the sweep timer fires no later than at.
func (r *reassembler) armTimer(at time.Time) {
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
// deadline and, for local-delivery datagrams whose first fragment arrived,
// sends ICMP time exceeded (reassembly, code 1) through the generation in
// force (RFC 792, RFC 1122 §3.3.2). Then it re-arms for the next deadline.
func (r *reassembler) expire() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	now := r.clock.Now()
	r.timerAt = time.Time{}
	var icmp []*pipeline.Packet
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
			r.c.reasmTimeout.Inc()
		}
		if !q.dead && q.key.user == userLocal && len(q.frags) > 0 && q.frags[0].off == 0 {
			icmp = append(icmp, q.frags[0].pkt)
			q.frags[0].pkt = nil
		}
		r.remove(q)
		q = nq
	}
	if !next.IsZero() {
		r.timerAt = next
		d := next.Sub(now)
		r.timer.Reset(d)
	}
	r.mu.Unlock()
	if len(icmp) == 0 {
		return
	}
	ran := r.stack != nil && r.stack.Do(func(b *pipeline.Batch) {
		for _, p := range icmp {
			if e, ok := b.Gen.NetworkEndpoint(p.InNIC, pipeline.IPv4ProtocolNumber).(*endpoint); ok {
				e.icmpError(b, p, wire.ICMPv4TimeExceeded, wire.ICMPv4ReassemblyTimeout, 0)
			}
			p.Release()
		}
	})
	if !ran {
		for _, p := range icmp {
			p.Release()
		}
	}
}

// Close releases every held fragment and stops the timer (the stack closes
// shared objects after its links).
func (r *reassembler) Close() error {
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
