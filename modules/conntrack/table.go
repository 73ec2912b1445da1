package conntrack

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/pipestack/pipestack/pipeline"
)

// Status bits of an entry (netfilter's IPS_*), readable without the
// entry's lock.
const (
	StatusSeenReply  uint32 = 1 << iota // a packet went in the reply direction
	StatusAssured                       // not early-dropped: the flow proved itself
	StatusConfirmed                     // its first packet passed every hook
	StatusSrcNAT                        // NAT: the reply tuple differs in the source
	StatusDstNAT                        // NAT: … in the destination
	statusLive                          // allocated and in the hash
	statusDying                         // being freed: lookups skip it
	statusSrcNATDone                    // the nat table's source-NAT chains ran (Postrouting/Input)
	statusDstNATDone                    // … its destination-NAT chains (Prerouting/Output)
	statusDropped                       // unconfirmed, its first packet dropped: early drop may free it
	statusKilled                        // deleted (counted) by a packet that still holds it: due now, freed at the next lookup or tick
)

// Entry is one tracked connection. The table's entries are one array made
// at start (no allocation per flow); an index names an entry, and gen
// (bumped each time it is freed) tells a reference to a freed and reused
// entry from one to the live flow.
type Entry struct {
	// A packet touches two of the entry's four cache lines: line 0 (the
	// lock, status, links, tags, expiry, wheel tick, creation: all a
	// lock-free lookup reads, and the per-packet timeout check) and the
	// line of its direction (line 1 the original's key and counters,
	// line 2 the reply's). Line 3, the TCP state, only TCP packets touch.
	// The few words that are neither (the wheel's links, masq) fill what
	// the direction lines leave. A packet's lines are all known once its
	// bucket gave the index, so Table.prefetch touches them together
	// (TestEntryLayout).
	mu sync.Mutex // guards everything below but the atomics and the hash links

	status atomic.Uint32
	gen    atomic.Uint32
	// next[d] links the entry's node d into its bucket chain (node index
	// + 1), written under that bucket's lock, read without it; tag[d] is
	// direction d's key's 64-bit hash, which lock-free lookups compare
	// (the key itself is checked under the entry's lock).
	next     [2]atomic.Uint32
	tag      [2]atomic.Uint64
	expires  atomic.Int64  // stack clock, ns
	slotTick atomic.Uint32 // the tick (s since 1970) the wheel slot the entry is on fires at
	mark     atomic.Uint32
	created  int64

	orig side // line 1: the original direction
	// masq is the NIC MASQUERADE bound the entry to, + 1 (0: none;
	// Linux's nf_conn_nat.masq_index): FlushMasquerade's key.
	masq atomic.Uint32
	// The timer wheel's links (guarded by the wheel shard's lock):
	// wslot is the slot (-1: on no slot), wprev/wnext entry index + 1.
	// An entry is on the wheel or on the free list, never both: while it
	// is free, wnext is the free list's link (read by a racing pop, so
	// atomic).
	wslot int32

	reply side // line 2: the reply direction (the original's inverse, unless NAT changed it)
	wprev uint32
	wnext atomic.Uint32

	tcp tcpState // line 3
}

// side is one direction of an entry: its key and counters, in one cache
// line with two of the entry's other words.
type side struct {
	tuple          Key
	packets, bytes uint64
}

// dir is direction d's side (0 original, 1 reply).
func (e *Entry) dir(d int) *side {
	if d&1 == 0 {
		return &e.orig
	}
	return &e.reply
}

// bucket is one hash chain: the head node + 1 (node = entry index*2 +
// direction; 0: empty). A lookup reads only this, so that the heads of a
// table of many flows (4 bytes each) stay in the caches; the chain's lock,
// taken by writers (insert, unlink) and locked lookups, is in Table.locks
// (Table.lock).
type bucket struct {
	head atomic.Uint32
}

// Table is the connection table: a fixed number of entries, a hash of
// buckets keyed by both directions' keys, a lock-free free list, and a
// timer wheel driven by the stack clock. It lives in the stack's shared
// state, so that it survives reloads.
type Table struct {
	seed    uint64
	mask    uint32
	buckets []bucket
	locks   []sync.Mutex // bucket i's lock is locks[i&lmask] (lock)
	lmask   uint32
	// evictRange is how many buckets early drop looks at: evictionRange
	// per entry's worth of buckets.
	evictRange uint32
	entries    []Entry

	free  atomic.Uint64 // ABA tag << 32 | free entry index + 1
	count atomic.Int64

	wheel wheel
	clock pipeline.Clock
	// timer is set once AfterFunc returned; the tick it fires may run
	// before that (a loaded machine): it reads the timer under timerMu.
	timerMu sync.Mutex
	timer   pipeline.Timer
	stop    atomic.Bool

	// natted: some entry was given a NAT binding (AlterReply), ever:
	// until then the nat hooks skip every packet without reading its
	// entry.
	natted atomic.Bool

	// events (pipectl conntrack -E): nil unless someone listens.
	events atomic.Pointer[eventSink]

	st stats
}

// stats are the table's counters, in the counter set "conntrack" (pipectl
// stats): they live as long as the stack, as the table.
type stats struct {
	New, Confirmed, Expired, Deleted, EarlyDrop, TableFull *pipeline.Counter
	Invalid, Related, Untracked, Clash                     *pipeline.Counter
	Unconfirmed                                            *pipeline.Counter // first packets dropped before their entry was confirmed
}

func newStats(cs *pipeline.CounterSet) stats {
	return stats{New: cs.Get("new"), Confirmed: cs.Get("confirmed"), Expired: cs.Get("expired"), Deleted: cs.Get("deleted"),
		EarlyDrop: cs.Get("early_drop"), TableFull: cs.Get("table_full_drops"), Invalid: cs.Get("invalid"),
		Related: cs.Get("related"), Untracked: cs.Get("untracked"), Clash: cs.Get("insert_clash"),
		Unconfirmed: cs.Get("unconfirmed_dropped")}
}

// NewTable makes a table of max entries and buckets buckets (rounded up
// to a power of two; 0: as many as entries, Linux's default ratio since
// 4.x: nf_conntrack_max = nf_conntrack_buckets). The buckets share as
// many locks as there are entries (rounded up), at most one each.
func NewTable(max, buckets int, clock pipeline.Clock, cs *pipeline.CounterSet) *Table {
	if buckets <= 0 {
		buckets = max
	}
	n, nl := roundPow2(buckets), roundPow2(max)
	if nl > n {
		nl = n
	}
	t := &Table{seed: rand.Uint64(), mask: uint32(n - 1), buckets: make([]bucket, n), locks: make([]sync.Mutex, nl), lmask: uint32(nl - 1),
		evictRange: uint32(evictionRange * n / nl), entries: make([]Entry, max), clock: clock, st: newStats(cs)}
	if max > 0 {
		adviseHuge(unsafe.Pointer(&t.entries[0]), uintptr(max)*unsafe.Sizeof(Entry{}))
		adviseHuge(unsafe.Pointer(&t.buckets[0]), uintptr(n)*unsafe.Sizeof(bucket{}))
	}
	for i := range t.entries {
		e := &t.entries[i]
		e.wslot = -1
		if i+1 < max {
			e.wnext.Store(uint32(i + 2))
		}
	}
	if max > 0 {
		t.free.Store(1)
	}
	t.wheel.init(len(t.entries), clock.Now())
	t.timerMu.Lock()
	t.timer = clock.AfterFunc(wheelTick, t.tick)
	t.timerMu.Unlock()
	return t
}

// Max is the table's capacity.
func (t *Table) Max() int { return len(t.entries) }

// Buckets is the number of hash buckets.
func (t *Table) Buckets() int { return len(t.buckets) }

// MemoryBytes is what the table's arrays take (entries and buckets,
// preallocated): the memory of a full table, less its few fixed parts.
func (t *Table) MemoryBytes() int {
	return len(t.entries)*int(unsafe.Sizeof(Entry{})) + len(t.buckets)*int(unsafe.Sizeof(bucket{})) + len(t.locks)*int(unsafe.Sizeof(sync.Mutex{}))
}

// Count is the number of entries in use.
func (t *Table) Count() int { return int(t.count.Load()) }

// Close stops the timer (the stack closes shared objects when it closes).
func (t *Table) Close() error {
	t.stop.Store(true)
	t.timerMu.Lock()
	t.timer.Stop()
	t.timerMu.Unlock()
	return nil
}

// Ref is a packet's reference to an entry (pipeline.Packet.ConnTrack).
type Ref uint64

func makeRef(idx uint32, gen uint32) Ref { return Ref(uint64(gen)<<32 | uint64(idx+1)) }

func (r Ref) index() (uint32, bool) {
	i := uint32(r)
	return i - 1, i != 0
}

// Entry returns the entry r refers to, or nil when it was freed since
// (the generation differs). The entry may be freed at any time after: a
// caller that reads more than the atomics locks it and checks Valid.
func (t *Table) Entry(r Ref) *Entry {
	i, ok := r.index()
	if !ok || int(i) >= len(t.entries) {
		return nil
	}
	e := &t.entries[i]
	if e.gen.Load() != uint32(r>>32) || e.status.Load()&statusLive == 0 {
		return nil
	}
	return e
}

// Valid reports whether e is still the entry r named (call it with e.mu
// held, after Entry).
func (e *Entry) Valid(r Ref) bool {
	return e.gen.Load() == uint32(r>>32) && e.status.Load()&(statusLive|statusDying) == statusLive
}

// Status returns the entry's status bits.
func (e *Entry) Status() uint32 { return e.status.Load() }

// Mark is the entry's connmark.
func (e *Entry) Mark() uint32 { return e.mark.Load() }

// SetMark sets the connmark.
func (e *Entry) SetMark(m uint32) { e.mark.Store(m) }

// Tuple returns the key of direction d (0 original, 1 reply); lock e.mu.
func (e *Entry) Tuple(d int) Key { return e.dir(d).tuple }

// Counters returns the packets and bytes of direction d; lock e.mu.
func (e *Entry) Counters(d int) (packets, bytes uint64) {
	s := e.dir(d)
	return s.packets, s.bytes
}

// Lock and Unlock take the entry's lock.
func (e *Entry) Lock() { e.mu.Lock() }

// Unlock releases it.
func (e *Entry) Unlock() { e.mu.Unlock() }

// lookup finds the entry whose key in some direction is k: its index, the
// direction and its generation. It takes no lock: it walks the bucket's
// chain comparing hash tags (a chain being changed under it may make it
// miss an entry — the create path then finds it under the bucket lock —
// or return one whose tuple is not k: the caller checks the tuple under
// the entry's lock, with sameKey, and looks up again with lookupLocked).
// An entry that expired before now is killed and not returned.
func (t *Table) lookup(k *Key, h uint64, now int64) (idx uint32, dir int, gen uint32, ok bool) {
	b := &t.buckets[uint32(h)&t.mask]
	steps := 0
	for n := b.head.Load(); n != 0 && steps < maxChainWalk; steps++ {
		node := n - 1
		e := &t.entries[node>>1]
		d := int(node & 1)
		if e.tag[d].Load() == h && e.status.Load()&(statusDying|statusLive) == statusLive {
			if e.expires.Load() > now {
				return node >> 1, d, e.gen.Load(), true
			}
			t.kill(node>>1, t.st.Expired)
			return 0, 0, 0, false
		}
		n = e.next[d].Load()
	}
	if steps == maxChainWalk {
		return t.lookupLocked(k, h, now)
	}
	return 0, 0, 0, false
}

// maxChainWalk bounds a lock-free walk (a chain changed under it could
// lead it round); past it the lookup takes the bucket lock.
const maxChainWalk = 64

// lookupLocked is lookup under the bucket's lock, comparing whole keys.
func (t *Table) lookupLocked(k *Key, h uint64, now int64) (idx uint32, dir int, gen uint32, ok bool) {
	bi := uint32(h) & t.mask
	var expired uint32
	t.lock(bi).Lock()
	for n := t.buckets[bi].head.Load(); n != 0; {
		node := n - 1
		e := &t.entries[node>>1]
		d := int(node & 1)
		if e.tag[d].Load() == h && e.status.Load()&statusDying == 0 && e.dir(d).tuple.equal(k) {
			if e.expires.Load() > now {
				idx, dir, gen, ok = node>>1, d, e.gen.Load(), true
			} else {
				expired = node>>1 + 1
			}
			break
		}
		n = e.next[d].Load()
	}
	t.lock(bi).Unlock()
	if expired != 0 {
		t.kill(expired-1, t.st.Expired)
	}
	return
}

// alloc takes a free entry (early-dropping one near bucket h when the
// table is full): its index, or false when none could be freed.
func (t *Table) alloc(h uint64) (uint32, bool) {
	for try := 0; try < 3; try++ {
		for {
			v := t.free.Load()
			i := uint32(v)
			if i == 0 {
				break
			}
			next := t.entries[i-1].wnext.Load()
			if t.free.CompareAndSwap(v, (v>>32+1)<<32|uint64(next)) {
				t.count.Add(1)
				return i - 1, true
			}
		}
		// Linux looks near the new flow's bucket only; when that range
		// holds nothing to evict (empty buckets, all assured) one more
		// range elsewhere is tried before the packet is dropped.
		if !t.earlyDrop(h) && !t.earlyDrop(h*0x9e3779b97f4a7c15+uint64(try)) {
			break
		}
	}
	t.st.TableFull.Inc()
	return 0, false
}

// release puts entry i back on the free list.
func (t *Table) release(i uint32) {
	e := &t.entries[i]
	for {
		v := t.free.Load()
		e.wnext.Store(uint32(v))
		if t.free.CompareAndSwap(v, (v>>32+1)<<32|uint64(i+1)) {
			t.count.Add(-1)
			return
		}
	}
}

// evictionRange is how many buckets from a new flow's one early drop
// looks at (Linux NF_CT_EVICTION_RANGE) at one bucket per entry — a table
// with more buckets per entry looks at as many more (Table.evictRange), so
// that a range holds as many entries — and evictionScan how many entries.
// (With the module's two buckets per entry and a range of 8, a full table
// of 16,384 entries refused a new flow now and then: both ranges it looked
// at held no entry it could free.)
const (
	evictionRange = 8
	evictionScan  = 64
)

// earlyDrop frees one entry that has not proved itself, from the buckets
// at and after h, as Linux's early_drop: an unconfirmed entry whose first
// packet was dropped (statusDropped) first, anywhere in range — its flow
// was refused, nothing of it is in flight (Linux freed it already with its
// skb); else the first confirmed entry that is not assured (unreplied);
// failing those, an assured TCP flow that is closing. False: none in
// range.
func (t *Table) earlyDrop(h uint64) bool {
	closing, unreplied := uint32(0), uint32(0)
	scanned := 0
	for i := uint32(0); i < t.evictRange && scanned < evictionScan; i++ {
		bi := (uint32(h) + i) & t.mask
		dropped := uint32(0)
		t.lock(bi).Lock()
		for n := t.buckets[bi].head.Load(); n != 0 && scanned < evictionScan; {
			node := n - 1
			e := &t.entries[node>>1]
			n = e.next[node&1].Load()
			scanned++
			st := e.status.Load()
			switch {
			case st&statusDying != 0:
			case st&StatusConfirmed == 0:
				// Not an entry still being set up: an unconfirmed
				// entry's first packet is in flight in some batch
				// (Linux keeps such entries out of the hash
				// altogether); freeing it would let that packet leave
				// as a flow nobody tracks (un-NATed) — unless that
				// packet was dropped.
				if st&statusDropped != 0 {
					dropped = node>>1 + 1
				}
			case st&StatusAssured == 0:
				if unreplied == 0 {
					unreplied = node>>1 + 1
				}
			case closing == 0 && e.orig.tuple.Proto == 6 && tcpCanEarlyDrop(e.tcp.stateAtomic()):
				closing = node>>1 + 1
			}
			if dropped != 0 {
				break
			}
		}
		t.lock(bi).Unlock()
		if dropped != 0 && t.kill(dropped-1, t.st.EarlyDrop) {
			return true
		}
	}
	if unreplied != 0 && t.kill(unreplied-1, t.st.EarlyDrop) {
		return true
	}
	return closing != 0 && t.kill(closing-1, t.st.EarlyDrop)
}

// insert puts entry i (its tuples set) into the buckets of both keys,
// unless a live entry already has either key (another worker created the
// flow first): then it returns false and the caller frees i.
func (t *Table) insert(i uint32, h0, h1 uint64) bool {
	e := &t.entries[i]
	b0, b1 := t.lockPair(h0, h1)
	defer t.unlockPair(h0, h1)
	if t.inBucket(b0, &e.orig.tuple, h0) || t.inBucket(b1, &e.reply.tuple, h1) {
		return false
	}
	e.tag[0].Store(h0)
	e.tag[1].Store(h1)
	e.next[0].Store(b0.head.Load())
	b0.head.Store(i*2 + 1)
	e.next[1].Store(b1.head.Load())
	b1.head.Store(i*2 + 2)
	return true
}

// inBucket reports whether a live entry in b (locked) has key k, whose
// hash is h: the tags first (the entry's first cache line), the key only
// where they agree.
func (t *Table) inBucket(b *bucket, k *Key, h uint64) bool {
	for n := b.head.Load(); n != 0; {
		node := n - 1
		e := &t.entries[node>>1]
		if e.tag[node&1].Load() == h && e.status.Load()&statusDying == 0 && e.dir(int(node&1)).tuple.equal(k) {
			return true
		}
		n = e.next[node&1].Load()
	}
	return false
}

// lock is bucket i's lock.
func (t *Table) lock(i uint32) *sync.Mutex { return &t.locks[i&t.lmask] }

// lockPair locks the buckets of two hashes, their locks in index order
// (one lock when they share it), and returns them.
func (t *Table) lockPair(h0, h1 uint64) (*bucket, *bucket) {
	i0, i1 := uint32(h0)&t.mask, uint32(h1)&t.mask
	l0, l1 := i0&t.lmask, i1&t.lmask
	switch {
	case l0 == l1:
		t.locks[l0].Lock()
	case l0 < l1:
		t.locks[l0].Lock()
		t.locks[l1].Lock()
	default:
		t.locks[l1].Lock()
		t.locks[l0].Lock()
	}
	return &t.buckets[i0], &t.buckets[i1]
}

// unlockPair unlocks what lockPair(h0, h1) locked.
func (t *Table) unlockPair(h0, h1 uint64) {
	l0, l1 := uint32(h0)&t.mask&t.lmask, uint32(h1)&t.mask&t.lmask
	t.locks[l0].Unlock()
	if l0 != l1 {
		t.locks[l1].Unlock()
	}
}

// lockBucket locks the bucket of hash h and returns it.
func (t *Table) lockBucket(h uint64) *bucket {
	i := uint32(h) & t.mask
	t.lock(i).Lock()
	return &t.buckets[i]
}

// unlockBucket unlocks what lockBucket(h) locked.
func (t *Table) unlockBucket(h uint64) { t.lock(uint32(h) & t.mask).Unlock() }

// unlinkNode removes node from bucket b's chain (b locked).
// The removed node's own link is left as it was, so that a lock-free
// walk standing on it goes on along the chain.
func (t *Table) unlinkNode(b *bucket, node uint32) {
	p := &b.head
	for v := p.Load(); v != 0; v = p.Load() {
		n := v - 1
		e := &t.entries[n>>1]
		if n == node {
			p.Store(e.next[n&1].Load())
			return
		}
		p = &e.next[n&1]
	}
}

// kill frees entry i once: the caller that flips it from live to dying
// unlinks it from both buckets and the wheel, bumps its generation and
// returns it to the free list; counter counts why. False: it was not live
// (someone else is freeing it).
func (t *Table) kill(i uint32, counter *pipeline.Counter) bool {
	e := &t.entries[i]
	for {
		st := e.status.Load()
		if st&statusLive == 0 || st&statusDying != 0 {
			return false
		}
		if e.status.CompareAndSwap(st, st|statusDying) {
			break
		}
	}
	if st := e.status.Load(); st&statusKilled != 0 {
		counter = nil // counted as deleted already
	}
	h0, h1 := e.tag[0].Load(), e.tag[1].Load()
	b0, b1 := t.lockPair(h0, h1)
	t.unlinkNode(b0, i*2)
	t.unlinkNode(b1, i*2+1)
	t.unlockPair(h0, h1)
	t.wheel.remove(t, i)
	if sink := t.events.Load(); sink != nil && e.status.Load()&StatusConfirmed != 0 { // no [DESTROY] for what had no [NEW]
		sink.emit(t, i, EventDestroy)
	}
	e.mu.Lock()
	e.gen.Add(1)
	e.status.Store(0)
	e.mu.Unlock()
	if counter != nil {
		counter.Inc()
	}
	t.release(i)
	return true
}

// Kill deletes the entry r refers to (pipectl conntrack -D, a TCP flow
// reopened): false when it is gone already.
func (t *Table) Kill(r Ref) bool {
	e := t.Entry(r)
	if e == nil {
		return false
	}
	i, _ := r.index()
	return t.kill(i, t.st.Deleted)
}

// setTimeout sets e's expiry to now+d and, when that is earlier than the
// wheel slot e waits on, moves it to an earlier slot (a flow that closes
// goes from five days to seconds).
func (t *Table) setTimeout(i uint32, now int64, d time.Duration) {
	e := &t.entries[i]
	exp := now + int64(d)
	e.expires.Store(exp)
	if exp < (int64(e.slotTick.Load())-1)*int64(wheelTick) {
		t.wheel.reschedule(t, i)
	}
}

// tick is the wheel's timer: expire what is due, re-arm.
func (t *Table) tick() {
	if t.stop.Load() {
		return
	}
	t.wheel.advance(t, t.clock.Now().UnixNano())
	if !t.stop.Load() {
		t.timerMu.Lock()
		t.timer.Reset(wheelTick)
		t.timerMu.Unlock()
	}
}

// Expire runs the wheel up to now (the timer does it every wheelTick;
// tests and pipectl call it directly).
func (t *Table) Expire(now time.Time) { t.wheel.advance(t, now.UnixNano()) }

// Flush deletes every entry (pipectl conntrack -F): how many.
func (t *Table) Flush() int {
	n := 0
	for i := range t.entries {
		if t.kill(uint32(i), t.st.Deleted) {
			n++
		}
	}
	return n
}

// Each calls fn for every confirmed live entry (locked during the call)
// with its reference: pipectl conntrack -L. fn returns false to stop.
func (t *Table) Each(fn func(r Ref, e *Entry) bool) {
	for i := range t.entries {
		e := &t.entries[i]
		if e.status.Load()&(statusLive|StatusConfirmed|statusDying) != statusLive|StatusConfirmed {
			continue
		}
		e.mu.Lock()
		r := makeRef(uint32(i), e.gen.Load())
		ok := true
		if e.Valid(r) {
			ok = fn(r, e)
		}
		e.mu.Unlock()
		if !ok {
			return
		}
	}
}

// Expires returns when the entry times out (stack clock).
func (e *Entry) Expires() time.Time { return time.Unix(0, e.expires.Load()) }

// Proto is the entry's protocol number.
func (e *Entry) Proto() uint8 { return e.orig.tuple.Proto }

// TCPState is the TCP state (TCPNone for other protocols); lock e.mu.
func (e *Entry) TCPState() TCPState { return TCPState(e.tcp.state) }
