package tcp

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// counters are the "tcp" counter set (see README.md).
type counters struct {
	rx, tx, malformed, badChecksum        *pipeline.Counter
	noSocket, resetOut, resetIn           *pipeline.Counter
	activeOpens, passiveOpens             *pipeline.Counter
	established, attemptFails             *pipeline.Counter
	retransmits, fastRetransmits, rtos    *pipeline.Counter
	synQueueFull, acceptQueueFull         *pipeline.Counter
	challengeACKs, challengeLimited       *pipeline.Counter
	paws, outOfWindow, oooQueued          *pipeline.Counter
	oooDropped, timeWaitOverflow          *pipeline.Counter
	keepaliveProbes, keepaliveTimeouts    *pipeline.Counter
	zeroWindowProbes, delayedACKs         *pipeline.Counter
	dupACKs, timeouts, abortOnData        *pipeline.Counter
	badOptions, icmpErrors, icmpOutOfWind *pipeline.Counter
	pmtuUpdates                           *pipeline.Counter
	dsackIn, dsackOut, tlpProbes          *pipeline.Counter
	syncookiesSent, syncookiesRecv        *pipeline.Counter
	syncookiesFailed                      *pipeline.Counter
	rackLost                              *pipeline.Counter
	undoDSACK, undoTimestamps             *pipeline.Counter
	sackReneging                          *pipeline.Counter
	memPressure, memDrops, oooPruned      *pipeline.Counter
	memFreed                              *pipeline.Counter
	tsoSent, groRecv, zeroCopySent        *pipeline.Counter
}

func newCounters(cs *pipeline.CounterSet) *counters {
	return &counters{
		rx: cs.Get("rx"), tx: cs.Get("tx"), malformed: cs.Get("malformed"), badChecksum: cs.Get("bad_checksum"),
		noSocket: cs.Get("no_socket"), resetOut: cs.Get("reset_out"), resetIn: cs.Get("reset_in"),
		activeOpens: cs.Get("active_opens"), passiveOpens: cs.Get("passive_opens"),
		established: cs.Get("established"), attemptFails: cs.Get("attempt_fails"),
		retransmits: cs.Get("retransmits"), fastRetransmits: cs.Get("fast_retransmits"), rtos: cs.Get("rto_expired"),
		synQueueFull: cs.Get("syn_queue_full"), acceptQueueFull: cs.Get("accept_queue_full"),
		challengeACKs: cs.Get("challenge_acks"), challengeLimited: cs.Get("challenge_acks_limited"),
		paws: cs.Get("paws_rejected"), outOfWindow: cs.Get("out_of_window"), oooQueued: cs.Get("ooo_queued"),
		oooDropped: cs.Get("ooo_dropped"), timeWaitOverflow: cs.Get("time_wait_overflow"),
		keepaliveProbes: cs.Get("keepalive_probes"), keepaliveTimeouts: cs.Get("keepalive_timeouts"),
		zeroWindowProbes: cs.Get("zero_window_probes"), delayedACKs: cs.Get("delayed_acks"),
		dupACKs: cs.Get("dup_acks"), timeouts: cs.Get("timeouts"), abortOnData: cs.Get("abort_on_data"),
		badOptions: cs.Get("bad_options"), icmpErrors: cs.Get("icmp_errors"), icmpOutOfWind: cs.Get("icmp_out_of_window"),
		pmtuUpdates: cs.Get("pmtu_updates"),
		dsackIn:     cs.Get("dsack_in"), dsackOut: cs.Get("dsack_out"), tlpProbes: cs.Get("tlp_probes"),
		rackLost: cs.Get("rack_lost"), syncookiesSent: cs.Get("syncookies_sent"),
		syncookiesRecv: cs.Get("syncookies_recv"), syncookiesFailed: cs.Get("syncookies_failed"),
		undoDSACK: cs.Get("undo_dsack"), undoTimestamps: cs.Get("undo_timestamps"), sackReneging: cs.Get("sack_reneging"),
		memPressure: cs.Get("mem_pressure"), memDrops: cs.Get("mem_drops"), oooPruned: cs.Get("ooo_pruned"),
		memFreed: cs.Get("mem_freed"), tsoSent: cs.Get("tso_sent"), groRecv: cs.Get("gro_received"), zeroCopySent: cs.Get("zero_copy_sent"),
	}
}

// fourTuple keys connections: local and remote address and port.
type fourTuple struct {
	local, remote netip.AddrPort
}

// Ephemeral ports (Linux's default ip_local_port_range).
const (
	ephemeralFirst = 32768
	ephemeralLast  = 60999
	portTableSize  = 256
)

// table is a stack's TCP state: connections, listeners, the timer wheel,
// the keys. It outlives generations (Stack.Shared) and is closed with the
// stack.
//
// Locking: the packet path takes mu for reading per lookup and never holds
// it while it takes a connection's or a listener's lock; making and
// removing entries take it for writing, possibly under a connection's or
// listener's lock (the order is connection → listener → table → wheel).
type table struct {
	s     *pipeline.Stack
	c     *counters
	wheel *wheel

	isnKey, tsKey, portKey, portIdxKey sipKey
	cookieKey                          [2]sipKey

	mu        sync.RWMutex
	conns     map[fourTuple]*conn
	bound     map[netip.AddrPort]*listener // listeners on one address
	wildcard  map[uint16]*listener         // listeners on the wildcard address
	portTable [portTableSize]uint32        // RFC 6056 algorithm 4's table
	timeWait  int                          // connections in TIME-WAIT
	closed    bool

	mem memAcct // ring storage against the memory limits (memory.go)
	tw  twTable // compact TIME-WAIT entries (timewait.go)

	cookieMu      sync.Mutex
	cookieScratch *conn // builds cookie SYN-ACKs (cookie.go)

	// fwd takes the connection requests no listener takes (forwarder.go).
	fwd atomic.Pointer[Forwarder]

	// challenge ACK budget (RFC 5961 §7): about challengeLimit per
	// second, drawn from rnd.
	chMu    sync.Mutex
	chSec   int64
	chCount int
	rnd     *pipeline.Rand
}

func newTable(s *pipeline.Stack, c *counters) *table {
	t := &table{
		s: s, c: c,
		conns:    map[fourTuple]*conn{},
		bound:    map[netip.AddrPort]*listener{},
		wildcard: map[uint16]*listener{},
	}
	var clock pipeline.Clock = pipeline.SystemClock{}
	var r *pipeline.Rand
	if s != nil {
		clock, r = s.Clock(), s.Rand()
	}
	key := func() sipKey { return sipKey{r.Uint64(), r.Uint64()} }
	t.rnd, t.chSec = r, -1
	t.isnKey, t.tsKey, t.portKey, t.portIdxKey = key(), key(), key(), key()
	t.cookieKey = [2]sipKey{key(), key()}
	t.wheel = newWheel(clock)
	t.wheel.run = t.runTimers
	t.tw.init(t)
	t.mem.cPressure, t.mem.cDrops, t.mem.cPruned, t.mem.cFreedBuffer = c.memPressure, c.memDrops, c.oooPruned, c.memFreed
	t.mem.setLimits(DefaultMemoryLimit/2, DefaultMemoryLimit*2/3, DefaultMemoryLimit)
	return t
}

// now is b's time on the wheel's scale.
func (t *table) now(b *pipeline.Batch) int64 { return t.wheel.nowNS(b.Now) }

// runTimers runs the connections whose timer entry is due, in one batch.
func (t *table) runTimers(due []*conn) {
	if t.s == nil {
		return
	}
	ran := t.s.Do(func(b *pipeline.Batch) {
		now := t.now(b)
		for _, c := range due {
			c.mu.Lock()
			c.onTimer(b, now)
			c.mu.Unlock()
		}
	})
	if !ran {
		// No generation runs (the stack is between pipelines): try again
		// shortly, as a kernel's timers would still run.
		for _, c := range due {
			c.mu.Lock()
			c.rearmLater(100 * time.Millisecond)
			c.mu.Unlock()
		}
	}
}

// lookup finds the connection of a segment, or else its listener.
func (t *table) lookup(local, remote netip.AddrPort) (*conn, *listener) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if c := t.conns[fourTuple{local, remote}]; c != nil {
		return c, nil
	}
	if l := t.bound[local]; l != nil {
		return nil, l
	}
	if l := t.wildcard[local.Port()]; l != nil && l.accepts(local.Addr()) {
		return nil, l
	}
	return nil, nil
}

// listenerFor finds the listener for local (for a SYN to a TIME-WAIT
// connection).
func (t *table) listenerFor(local netip.AddrPort) *listener {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if l := t.bound[local]; l != nil {
		return l
	}
	if l := t.wildcard[local.Port()]; l != nil && l.accepts(local.Addr()) {
		return l
	}
	return nil
}

var errAddrInUse = syscall.EADDRINUSE

// insert registers a connection under its 4-tuple; false if one is there.
func (t *table) insert(c *conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	k := fourTuple{c.local, c.remote}
	if t.conns[k] != nil {
		return false
	}
	if _, tw := t.tw.idx[twKeyOf(k)]; tw {
		return false
	}
	t.conns[k] = c
	return true
}

// remove unregisters c (if it is the one registered).
func (t *table) remove(c *conn) {
	t.mu.Lock()
	k := fourTuple{c.local, c.remote}
	if t.conns[k] == c {
		delete(t.conns, k)
	}
	t.mu.Unlock()
}

// connect binds an active open: local's port 0 picks an ephemeral port
// (RFC 6056 algorithm 4: a keyed hash of the addresses and the remote
// port, plus a per-bucket counter), and the connection is registered.
func (t *table) connect(c *conn) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("stack is closed")
	}
	if c.local.Port() != 0 {
		k := fourTuple{c.local, c.remote}
		if _, tw := t.tw.idx[twKeyOf(k)]; tw || t.conns[k] != nil {
			return errAddrInUse
		}
		t.conns[k] = c
		return nil
	}
	const n = ephemeralLast - ephemeralFirst + 1
	probe := netip.AddrPortFrom(c.local.Addr(), 0)
	offset := uint32(t.portKey.tupleHash(probe, c.remote))
	idx := t.portIdxKey.tupleHash(probe, c.remote) % portTableSize
	next := t.portTable[idx]
	for i := uint32(0); i < n; i++ {
		port := uint16(ephemeralFirst + (offset+next+i)%n)
		local := netip.AddrPortFrom(c.local.Addr(), port)
		if t.conns[fourTuple{local, c.remote}] != nil || t.bound[local] != nil || t.wildcard[port] != nil {
			continue
		}
		if _, tw := t.tw.idx[twKeyOf(fourTuple{local, c.remote})]; tw {
			continue
		}
		t.portTable[idx] = next + i + 1
		c.local = local
		t.conns[fourTuple{local, c.remote}] = c
		return nil
	}
	return errAddrInUse
}

// listen registers a listener; it conflicts only with another listener
// (Go's listeners set SO_REUSEADDR, so connections left on the port, in
// TIME-WAIT or not, do not stop a new one).
func (t *table) listen(l *listener) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("stack is closed")
	}
	port := l.addr.Port()
	if port == 0 {
		const n = ephemeralLast - ephemeralFirst + 1
		start := t.s.Rand().IntN(n)
		for i := 0; i < n; i++ {
			p := uint16(ephemeralFirst + (start+i)%n)
			if t.listenConflict(l.addr.Addr(), p) {
				continue
			}
			port = p
			break
		}
		if port == 0 {
			return errAddrInUse
		}
		l.addr = netip.AddrPortFrom(l.addr.Addr(), port)
	} else if t.listenConflict(l.addr.Addr(), port) {
		return errAddrInUse
	}
	if l.addr.Addr().IsValid() {
		t.bound[l.addr] = l
	} else {
		t.wildcard[port] = l
	}
	return nil
}

func (t *table) listenConflict(a netip.Addr, port uint16) bool {
	if t.wildcard[port] != nil {
		return true
	}
	if a.IsValid() {
		return t.bound[netip.AddrPortFrom(a, port)] != nil
	}
	for k := range t.bound {
		if k.Port() == port {
			return true
		}
	}
	return false
}

func (t *table) unlisten(l *listener) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l.addr.Addr().IsValid() {
		if t.bound[l.addr] == l {
			delete(t.bound, l.addr)
		}
	} else if t.wildcard[l.addr.Port()] == l {
		delete(t.wildcard, l.addr.Port())
	}
}

// enterTimeWait counts a connection into TIME-WAIT; false when the bound
// is reached (the connection then closes at once, as Linux's does when
// tcp_max_tw_buckets is exhausted).
func (t *table) enterTimeWait(max int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.timeWait >= max {
		return false
	}
	t.timeWait++
	return true
}

func (t *table) leaveTimeWait() {
	t.mu.Lock()
	t.timeWait--
	t.mu.Unlock()
}

// challengeAllowed spends one challenge ACK of this second's budget, a
// draw from [half, limit+half) with half = ⌈limit/2⌉ (Linux's
// tcp_send_challenge_ack); DefaultChallengeACKLimit: no budget.
func (t *table) challengeAllowed(now int64, limit int) bool {
	if limit >= DefaultChallengeACKLimit {
		return true
	}
	t.chMu.Lock()
	defer t.chMu.Unlock()
	if sec := now / int64(time.Second); sec != t.chSec {
		t.chSec, t.chCount = sec, (limit+1)/2+t.rnd.IntN(limit)
	}
	if t.chCount <= 0 {
		return false
	}
	t.chCount--
	return true
}

// Close aborts every connection and listener (their callers get
// net.ErrClosed): the stack calls it when it closes.
func (t *table) Close() error {
	t.mu.Lock()
	t.closed = true
	conns := make([]*conn, 0, len(t.conns))
	for _, c := range t.conns {
		conns = append(conns, c)
	}
	var ls []*listener
	for _, l := range t.bound {
		ls = append(ls, l)
	}
	for _, l := range t.wildcard {
		ls = append(ls, l)
	}
	clear(t.conns)
	clear(t.bound)
	clear(t.wildcard)
	t.timeWait -= len(t.tw.idx)
	clear(t.tw.idx)
	t.mu.Unlock()
	t.wheel.close()
	if f := t.fwd.Swap(nil); f != nil {
		for _, r := range f.shut() {
			r.Drop()
		}
	}
	for _, l := range ls {
		l.shut(errStackClosed)
	}
	for _, c := range conns {
		c.mu.Lock()
		c.destroy(errStackClosed)
		c.mu.Unlock()
	}
	return nil
}

var errStackClosed = errors.New("stack closed")
