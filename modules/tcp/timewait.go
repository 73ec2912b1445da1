package tcp

import (
	"net/netip"
	"sync"

	"github.com/pipestack/pipestack/pipeline"
)

// Compact TIME-WAIT, as Linux's inet_timewait_sock: a connection in
// TIME-WAIT that the application has closed leaves the table for a small
// fixed-size record holding what TIME-WAIT needs — the sequence numbers,
// the window, the timestamps for PAWS and the ACK, the expiry and the
// out-of-window rate limit. Its segments are processed by the same code
// as a full connection's (timeWaitSegment, PAWS) on one scratch
// connection per stack rebuilt from the record, so the behaviour is the
// same: a retransmitted FIN is ACKed again and restarts 2·MSL, a new SYN
// reopens the port to a listener, a reset ends it, time_wait_max bounds
// them. Records live in a slab (reused, no allocation per record once
// grown) on a list in expiry order, swept by one wheel entry.

// twKey is a 4-tuple in 38 bytes (netip.AddrPort carries a zone
// pointer; a segment's addresses have no zone).
type twKey struct {
	local, remote [16]byte
	lport, rport  uint16
	v4            bool
}

func twKeyOf(k fourTuple) twKey {
	return twKey{local: k.local.Addr().As16(), remote: k.remote.Addr().As16(),
		lport: k.local.Port(), rport: k.remote.Port(), v4: k.local.Addr().Is4()}
}

func (k twKey) tuple() fourTuple {
	l, r := netip.AddrFrom16(k.local), netip.AddrFrom16(k.remote)
	if k.v4 {
		l, r = l.Unmap(), r.Unmap()
	}
	return fourTuple{netip.AddrPortFrom(l, k.lport), netip.AddrPortFrom(r, k.rport)}
}

// twRec is one compact TIME-WAIT entry.
type twRec struct {
	key              twKey
	st               *settings
	rcvNxt, sndNxt   uint32
	tsRecent, tsOff  uint32
	wnd              uint32 // the window (bytes) last offered
	tsRecentAt       int64
	closeAt, lastOOW int64
	prev, next       int32 // expiry list, or the free list (next)
	rcvWScale        uint8
	tsOK             bool
}

// twTable is the stack's compact TIME-WAIT entries. idx is guarded by
// the table's mu, everything else by mu (taken before the table's).
type twTable struct {
	mu         sync.Mutex
	idx        map[twKey]int32
	slab       []twRec
	free       int32 // free slots, through next (-1: none)
	head, tail int32 // expiry order (-1: empty)
	sweeper    *conn // its wheel entry sweeps expired records
	scratch    *conn // a segment's connection, rebuilt from its record
	filedAt    int64 // when the sweeper is filed (0: not)
}

func (tw *twTable) init(t *table) {
	tw.idx = map[twKey]int32{}
	tw.free, tw.head, tw.tail = -1, -1, -1
	tw.sweeper = &conn{t: t, sweeper: true, state: stateEstablished}
}

// alloc takes a free slot.
func (tw *twTable) alloc() int32 {
	if tw.free >= 0 {
		i := tw.free
		tw.free = tw.slab[i].next
		return i
	}
	tw.slab = append(tw.slab, twRec{})
	return int32(len(tw.slab) - 1)
}

func (tw *twTable) pushTail(i int32) {
	r := &tw.slab[i]
	r.prev, r.next = tw.tail, -1
	if tw.tail >= 0 {
		tw.slab[tw.tail].next = i
	} else {
		tw.head = i
	}
	tw.tail = i
}

func (tw *twTable) unlink(i int32) {
	r := &tw.slab[i]
	if r.prev >= 0 {
		tw.slab[r.prev].next = r.next
	} else {
		tw.head = r.next
	}
	if r.next >= 0 {
		tw.slab[r.next].prev = r.prev
	} else {
		tw.tail = r.prev
	}
}

// arm files the sweeper for at unless it is filed earlier.
func (tw *twTable) arm(t *table, at int64) {
	if tw.filedAt != 0 && tw.filedAt <= at {
		return
	}
	t.wheel.schedule(tw.sweeper, at)
	tw.filedAt = at
}

// drop frees record i (expired, reset, or reopened by a SYN).
func (t *table) twDrop(i int32) {
	tw := &t.tw
	r := &tw.slab[i]
	t.mu.Lock()
	if j, ok := tw.idx[r.key]; ok && j == i {
		delete(tw.idx, r.key)
		t.timeWait--
	}
	t.mu.Unlock()
	tw.unlink(i)
	*r = twRec{next: tw.free}
	tw.free = i
}

// twSweep ends the records whose 2·MSL passed and files the sweeper for
// the next. Called from the sweeper's timer.
func (t *table) twSweep(now int64) {
	tw := &t.tw
	tw.mu.Lock()
	defer tw.mu.Unlock()
	tw.filedAt = 0
	for tw.head >= 0 && tw.slab[tw.head].closeAt <= now {
		t.twDrop(tw.head)
	}
	if tw.head >= 0 {
		tw.arm(t, tw.slab[tw.head].closeAt)
	}
}

// toCompact replaces a TIME-WAIT connection the application has closed
// by a record (its count in time_wait_max moves with it) and closes it.
// Called with c.mu held, after the run's segments went out.
func (c *conn) toCompact() {
	t := c.t
	tw := &t.tw
	tw.mu.Lock()
	i := tw.alloc()
	r := &tw.slab[i]
	wnd := uint32(0)
	if seqGT(c.rcvAdv, c.rcvNxt) {
		wnd = c.rcvAdv - c.rcvNxt
	}
	k := fourTuple{c.local, c.remote}
	*r = twRec{key: twKeyOf(k), st: c.st, rcvNxt: c.rcvNxt, sndNxt: c.sndMax,
		tsRecent: c.tsRecent, tsOff: c.tsOffset, wnd: wnd, tsRecentAt: c.tsRecentAt,
		closeAt: c.closeAt, lastOOW: c.lastOOW, rcvWScale: c.rcvWScale, tsOK: c.tsOK}
	t.mu.Lock()
	if t.conns[k] == c {
		delete(t.conns, k)
	}
	tw.idx[r.key] = i
	t.mu.Unlock()
	tw.pushTail(i)
	tw.arm(t, r.closeAt)
	tw.mu.Unlock()
	c.inTimeWait = false // the record holds the count now
	c.destroy(nil)
}

// twScratch rebuilds the scratch connection from record r. Called with
// tw.mu held.
func (t *table) twScratch(r *twRec) *conn {
	tw := &t.tw
	if tw.scratch == nil {
		tw.scratch = new(conn)
	}
	c := tw.scratch
	k := r.key.tuple()
	*c = conn{t: t, st: r.st, local: k.local, remote: k.remote, v6: !r.key.v4,
		state: stateTimeWait, sndUna: r.sndNxt, sndNxt: r.sndNxt, sndMax: r.sndNxt,
		rcvNxt: r.rcvNxt, rcvAdv: r.rcvNxt + r.wnd, lastAckSent: r.rcvNxt,
		rcvBufMax: int(r.wnd) + 1<<r.rcvWScale - 1, rcvSpace: int(r.wnd) + 1<<r.rcvWScale - 1,
		rcvWScale: r.rcvWScale, wsOK: r.rcvWScale > 0,
		tsOK: r.tsOK, tsRecent: r.tsRecent, tsRecentAt: r.tsRecentAt, tsOffset: r.tsOff,
		closeAt: r.closeAt, lastOOW: r.lastOOW,
		finRcvd: true, finQueued: true, finAcked: true, userClosed: true,
		estabDone: true, doneClosed: true, established: true}
	return c
}

// timeWaitRecord processes a segment for a compact TIME-WAIT entry. It
// reports false when the record is gone (the caller treats the segment
// as for no connection), and relisten with the ISS when a new SYN ended
// it for a listener.
func (p *Protocol) timeWaitRecord(b *pipeline.Batch, k fourTuple, s *segment, now int64) (found, relisten bool, iss uint32) {
	t := p.t
	tw := &t.tw
	tw.mu.Lock()
	defer tw.mu.Unlock()
	t.mu.RLock()
	i, ok := tw.idx[twKeyOf(k)]
	t.mu.RUnlock()
	if !ok {
		return false, false, 0
	}
	r := &tw.slab[i]
	c := t.twScratch(r)
	relisten, iss = c.segment(b, s, now)
	if c.state != stateClosed && c.ackNow {
		c.sendAck(b, now)
	}
	c.flush(b)
	if c.state == stateClosed || relisten {
		t.twDrop(i)
		return true, relisten, iss
	}
	r.lastOOW = c.lastOOW
	r.tsRecent, r.tsRecentAt = c.tsRecent, c.tsRecentAt
	if c.closeAt != r.closeAt {
		r.closeAt = c.closeAt // restarted: to the end of the expiry order
		tw.unlink(i)
		tw.pushTail(i)
	}
	return true, false, 0
}

// twLookup reports whether k has a compact TIME-WAIT entry.
func (t *table) twLookup(k fourTuple) bool {
	t.mu.RLock()
	_, ok := t.tw.idx[twKeyOf(k)]
	t.mu.RUnlock()
	return ok
}
