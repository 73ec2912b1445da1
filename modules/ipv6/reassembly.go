package ipv6

import (
	"container/heap"
	"sync"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Reassembly of IPv6 fragments for local delivery (RFC 8200 §4.5). The
// memory accounting is network.ipv4's (modules/ipv4/reassembly.go, where
// its design is argued): buffers charged by their whole size, a share per
// source, and global eviction of the oldest datagram of the biggest
// consumer; a flood cannot take memory from a datagram in progress of a
// smaller source. Two IPv6 differences: a "source" is the source /64 (a
// host picks addresses in its /64 at will), and every overlap drops the
// whole datagram (RFC 5722), as does any inconsistency.

// queueOverhead is what a queue costs besides its fragments.
const queueOverhead = 256

// reasmLimits are the reassembly limits of one generation.
type reasmLimits struct {
	timeout   time.Duration
	maxMemory int
	perSource int
}

type fragKey struct {
	src, dst [16]byte
	id       uint32
}

// srcKey is a source /64.
type srcKey [8]byte

type fragment struct {
	pkt      *pipeline.Packet // Data() at the IPv6 header; held (stolen)
	off, end int              // fragmentable bytes [off, end) of the datagram
	data     int              // offset of the fragment data in pkt
	fhOff    int              // offset of the Fragment header in pkt
}

// fragQueue is one datagram being reassembled.
type fragQueue struct {
	key          fragKey
	frags        []fragment // sorted by off, never overlapping
	received     int
	end          int  // total length of the fragmentable part, -1 until the last fragment came
	dead         bool // dropped (overlap, inconsistency): a tombstone until its deadline
	mem          int
	deadline     time.Time
	src          *fragSource
	prevS, nextS *fragQueue
	prev, next   *fragQueue
}

// fragSource is the memory one source /64 holds in reassembly.
type fragSource struct {
	addr           srcKey
	mem            int
	oldest, newest *fragQueue
	idx            int
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
// (Context.Shared "network.ipv6/reassembly"); each call brings the limits
// of the caller's generation. One mutex guards it: fragments are not the
// fast path.
type reassembler struct {
	mu      sync.Mutex
	clock   pipeline.Clock
	stack   *pipeline.Stack
	pool    *pipeline.Pool
	c       *counters
	queues  map[fragKey]*fragQueue
	sources map[srcKey]*fragSource
	heap    srcHeap
	head    *fragQueue
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
		queues: map[fragKey]*fragQueue{}, sources: map[srcKey]*fragSource{},
	}
}

// Memory is the number of bytes held and of datagrams in progress.
func (r *reassembler) Memory() (bytes, queues int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mem, len(r.queues)
}

func truesize(p *pipeline.Packet) int { return p.Headroom() + p.Len() + p.Tailroom() }

// add takes ownership of a fragment (Data() at its IPv6 header, validated,
// x its extension walk) received by e. It returns the reassembled datagram
// — a new packet without the Fragment header, metadata of the fragment that
// completed it, network header marked — or nil when pkt was held or
// dropped (counted; a fragment whose length breaks RFC 8200 §4.5 gets a
// Parameter Problem).
func (r *reassembler) add(b *pipeline.Batch, e *endpoint, pkt *pipeline.Packet, x *wire.IPv6ExtInfo, lim *reasmLimits) *pipeline.Packet {
	c := r.c
	c.reasmFragments.Inc()
	h := wire.IPv6(pkt.Data())
	fhOff := x.FragmentHeaderOffset
	data := fhOff + wire.IPv6FragmentSize // the walk of a first fragment goes on past it
	total := wire.IPv6HeaderSize + int(h.PayloadLength())
	off := int(x.FragmentOffset)
	plen := total - data
	end := off + plen
	mf := x.MoreFragments
	if mf && plen%8 != 0 {
		e.icmpError(b, pkt, wire.ICMPv6ParamProblem, wire.ICMPv6ErroneousHeader, 4, false)
		b.Drop(pkt, c.reasmMalformed)
		return nil
	}
	if plen == 0 && mf {
		b.Drop(pkt, c.reasmMalformed)
		return nil
	}
	if fhOff-wire.IPv6HeaderSize+end > 0xffff {
		e.icmpError(b, pkt, wire.ICMPv6ParamProblem, wire.ICMPv6ErroneousHeader, uint32(fhOff+2), false)
		b.Drop(pkt, c.reasmTooBig)
		return nil
	}
	if truesize(pkt) > pipeline.SmallDataSize+pipeline.DefaultHeadroom && pkt.Len() <= pipeline.SmallDataSize {
		q := r.pool.Get(pkt.Len())
		buf, _ := q.Append(pkt.Len())
		copy(buf, pkt.Data())
		q.CopyMeta(pkt)
		q.SetNetworkHeader()
		pkt.Release()
		pkt = q
		h = wire.IPv6(pkt.Data())
	}
	key := fragKey{src: h.Src(), dst: h.Dst(), id: x.FragmentID}
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
		q = r.newQueue(key, b.Now.Add(lim.timeout))
	}
	if q.dead {
		c.reasmDiscarded.Inc()
		pkt.Release()
		return nil
	}
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
		// RFC 5722: a datagram with overlapping fragments is dropped,
		// with every fragment of it that arrives later.
		c.reasmOverlap.Inc()
		r.kill(q)
		pkt.Release()
		return nil
	}
	for q.src.mem+charge > lim.perSource {
		v := q.src.oldest
		if v == q {
			v = q.nextS
		}
		if v == nil {
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
	q.frags[i] = fragment{pkt: pkt, off: off, end: end, data: data, fhOff: fhOff}
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
// unfragmentable part (the headers before its Fragment header), whose last
// Next Header field takes the Fragment header's, then every fragment's
// data.
func (r *reassembler) build(q *fragQueue, last *pipeline.Packet) *pipeline.Packet {
	first := q.frags[0]
	fb := first.pkt.Data()
	unfrag := first.fhOff
	size := unfrag + q.end
	out := r.pool.Get(size)
	buf, _ := out.Append(size)
	copy(buf, fb[:unfrag])
	for _, f := range q.frags {
		d := f.pkt.Data()
		copy(buf[unfrag+f.off:], d[f.data:wire.IPv6HeaderSize+int(wire.IPv6(d).PayloadLength())])
	}
	h := wire.IPv6(buf)
	h.SetPayloadLength(uint16(size - wire.IPv6HeaderSize))
	buf[prevNextHeader(fb, unfrag)] = fb[unfrag] // the Fragment header's Next Header
	out.CopyMeta(last)
	out.SetNetworkHeader()
	return out
}

// prevNextHeader returns the offset of the Next Header field that names the
// header at target in a packet whose chain up to target is valid.
func prevNextHeader(b []byte, target int) int {
	at, off := wire.IPv6NextHeaderOffset, wire.IPv6HeaderSize
	nh := b[at]
	for off < target {
		var hl int
		switch nh {
		case wire.ProtocolAH:
			hl = (int(b[off+1]) + 2) * 4
		case wire.ProtocolFragment:
			hl = wire.IPv6FragmentSize
		default:
			hl = (int(b[off+1]) + 1) * 8
		}
		at, nh = off, b[off]
		off += hl
	}
	return at
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
	sk := srcKey(key.src[:8])
	s := r.sources[sk]
	if s == nil {
		s = &fragSource{addr: sk}
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
// deadline and, when the first fragment had arrived, sends ICMPv6 time
// exceeded (fragment reassembly time exceeded, code 1) through the
// generation in force (RFC 8200 §4.5). Then it re-arms for the next
// deadline.
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
			if len(q.frags) > 0 && q.frags[0].off == 0 {
				icmp = append(icmp, q.frags[0].pkt)
				q.frags[0].pkt = nil
			}
		}
		r.remove(q)
		q = nq
	}
	if !next.IsZero() {
		r.timerAt = next
		r.timer.Reset(next.Sub(now))
	}
	r.mu.Unlock()
	if len(icmp) == 0 {
		return
	}
	ran := r.stack != nil && r.stack.Do(func(b *pipeline.Batch) {
		for _, p := range icmp {
			if e, ok := b.Gen.NetworkEndpoint(p.InNIC, pipeline.IPv6ProtocolNumber).(*endpoint); ok {
				e.icmpError(b, p, wire.ICMPv6TimeExceeded, wire.ICMPv6ReassemblyTimeout, 0, false)
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
