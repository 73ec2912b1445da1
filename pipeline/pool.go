package pipeline

import (
	"runtime"
	"sync"
	"sync/atomic"
	"weak"
)

// Pool is a free list of packets in two size classes. Get and Release take a
// mutex; GetBatch and ReleaseBatch take it once for a whole batch, which is
// what links use on the hot path. Unlike sync.Pool, a Pool keeps its packets
// across garbage collections and behaves the same with -race, so an
// allocation count over the forwarding path is exact.
//
// Memory: a free list never holds more than its bound (NewPoolLimits), and
// a buffer that stays free, unused, from one collection to the next is
// dropped at the second (Trim, which the runtime's collections drive: at
// least one every two minutes). So what a pool keeps is what the stack used
// lately, bounded; steady traffic reuses its working set and allocates
// nothing. The trim costs a packet nothing: a compare per Get or GetBatch.
type Pool struct {
	mu    sync.Mutex
	small []*Packet
	large []*Packet
	max   int // free small packets kept
	// maxLarge is the number of free large packets kept (from a byte
	// limit: each holds LargeDataSize + DefaultHeadroom bytes).
	maxLarge int
	// smallLow and largeLow are the fewest free packets each list held
	// since the last Trim: that many at the bottom of the list (the
	// least recently used) were not taken meanwhile.
	smallLow, largeLow int
	// views are free bare handles (Packet.Share), without a buffer of
	// their own; at most maxViews are kept.
	views []*Packet

	allocated atomic.Uint64 // buffers ever allocated
	trimmed   atomic.Uint64 // free buffers dropped by Trim
}

// DefaultFreeLargeBytes bounds the free large buffers a pool keeps (NewPool):
// 64 MiB, 1,018 buffers of 65,920 bytes (75 MB of heap: the runtime rounds
// each to 73,728). The large ones are what links with offloads read into
// and GSO super-packets are built in.
const DefaultFreeLargeBytes = 64 << 20

// DefaultPool is the pool links and protocols use unless given another: up
// to 65,536 free small buffers (128 MiB) and DefaultFreeLargeBytes of free
// large ones, trimmed when idle.
var DefaultPool = NewPool(1 << 16)

// NewPool returns a pool that keeps at most max free small packets and at
// most max free large ones within DefaultFreeLargeBytes.
func NewPool(max int) *Pool {
	return NewPoolLimits(max, DefaultFreeLargeBytes)
}

// NewPoolLimits returns a pool that keeps at most maxSmall free small
// packets and free large ones of at most largeBytes in all (and at most
// maxSmall of them). A packet released to a full list is left to the
// garbage collector.
func NewPoolLimits(maxSmall, largeBytes int) *Pool {
	pl := &Pool{max: maxSmall, maxLarge: min(maxSmall, largeBytes/(LargeDataSize+DefaultHeadroom))}
	registerTrim(pl)
	return pl
}

// Allocated is the number of buffers the pool has ever allocated (a test
// can watch it stay flat).
func (pl *Pool) Allocated() uint64 { return pl.allocated.Load() }

// Trimmed is the number of free buffers Trim has dropped.
func (pl *Pool) Trimmed() uint64 { return pl.trimmed.Load() }

// Free returns how many free packets the pool holds in each class. Read
// after Trimmed, and Trimmed again: when both reads of Trimmed agree,
// Allocated − Trimmed − small − large is the number of packets out (for a
// pool whose lists never filled up).
func (pl *Pool) Free() (small, large int) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return len(pl.small), len(pl.large)
}

// Trim drops the free packets that stayed in the pool, untaken, since the
// previous Trim, and returns how many. Collections call it for every pool;
// a caller may too (after a burst, say).
func (pl *Pool) Trim() int {
	pl.mu.Lock()
	n := trimList(&pl.small, pl.smallLow) + trimList(&pl.large, pl.largeLow)
	pl.smallLow, pl.largeLow = len(pl.small), len(pl.large)
	pl.trimmed.Add(uint64(n)) // under the lock: Trimmed and Free agree
	pl.mu.Unlock()
	return n
}

// trimList drops the k packets at the bottom of list (the least recently
// used: the list is a stack).
func trimList(list *[]*Packet, k int) int {
	l := *list
	k = min(k, len(l))
	if k == 0 {
		return 0
	}
	n := copy(l, l[k:])
	clear(l[n:])
	*list = l[:n]
	return k
}

// Trimming on collections: a sentinel object whose finalizer runs once per
// GC cycle, trims every live pool, and re-arms itself (resurrecting the
// sentinel, so the cycle allocates nothing on the heap). Pools are held
// weakly: a dropped pool is collected.
var trimState struct {
	once  sync.Once
	mu    sync.Mutex
	pools []weak.Pointer[Pool]
}

type gcSentinel struct{ _ *byte }

func registerTrim(pl *Pool) {
	trimState.once.Do(func() { runtime.SetFinalizer(new(gcSentinel), onGC) })
	trimState.mu.Lock()
	trimState.pools = append(trimState.pools, weak.Make(pl))
	trimState.mu.Unlock()
}

// trimHeld counts HoldTrim's holds: while it is not zero, collections
// trim no pool.
var trimHeld atomic.Int32

// HoldTrim stops collections from trimming pools until the returned
// function is called, waiting for a trim under way to end first. For
// exact zero-allocation measurements (pipelinetest.CountMallocs): they
// turn the collector off for their window, but the trim of a collection
// just before it runs later, on the finalizer goroutine, and may drop
// free packets inside the window, which the next Get then allocates
// again — the pool's policy, not the packet path's cost.
func HoldTrim() (release func()) {
	trimHeld.Add(1)
	trimState.mu.Lock() // a trim under way (onGC holds it) ends first
	trimState.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { trimHeld.Add(-1) }) }
}

func onGC(s *gcSentinel) {
	trimState.mu.Lock()
	live := trimState.pools[:0]
	held := trimHeld.Load() != 0
	for _, w := range trimState.pools {
		if pl := w.Value(); pl != nil {
			if !held {
				pl.Trim()
			}
			live = append(live, w)
		}
	}
	clear(trimState.pools[len(live):])
	trimState.pools = live
	trimState.mu.Unlock()
	runtime.SetFinalizer(s, onGC)
}

func (pl *Pool) alloc(large bool) *Packet {
	pl.allocated.Add(1)
	n := SmallDataSize + DefaultHeadroom
	if large {
		n = LargeDataSize + DefaultHeadroom
	}
	p := &Packet{buf: make([]byte, n), pool: pl}
	p.reset()
	return p
}

// Get returns an empty packet whose buffer holds size bytes of data after
// the default headroom. It panics when size exceeds LargeDataSize: it is
// for sizes the caller chose. A size derived from the wire (a reassembled
// datagram, a length field) goes through TryGet.
func (pl *Pool) Get(size int) *Packet {
	if size > LargeDataSize || size < 0 {
		panic("pipeline: packet larger than LargeDataSize requested")
	}
	return pl.get(size)
}

// TryGet is Get for sizes taken from the wire: it returns nil, never
// panics, when size is negative or exceeds LargeDataSize. The caller counts
// the nil as a drop of the packet that asked for it.
func (pl *Pool) TryGet(size int) *Packet {
	if size > LargeDataSize || size < 0 {
		return nil
	}
	return pl.get(size)
}

func (pl *Pool) get(size int) *Packet {
	large := size > SmallDataSize
	pl.mu.Lock()
	list := &pl.small
	if large {
		list = &pl.large
	}
	var p *Packet
	if n := len(*list); n > 0 {
		p = (*list)[n-1]
		(*list)[n-1] = nil
		*list = (*list)[:n-1]
		pl.lowWater(large, n-1)
	}
	pl.mu.Unlock()
	if p == nil {
		return pl.alloc(large)
	}
	p.reset()
	return p
}

// GetBatch fills dst with empty packets of the given data size.
func (pl *Pool) GetBatch(dst []*Packet, size int) {
	if size > LargeDataSize {
		panic("pipeline: packet larger than LargeDataSize requested")
	}
	large := size > SmallDataSize
	i := 0
	pl.mu.Lock()
	list := &pl.small
	if large {
		list = &pl.large
	}
	for ; i < len(dst) && len(*list) > 0; i++ {
		n := len(*list)
		dst[i] = (*list)[n-1]
		(*list)[n-1] = nil
		*list = (*list)[:n-1]
	}
	if i > 0 {
		pl.lowWater(large, len(*list))
	}
	pl.mu.Unlock()
	for j := 0; j < i; j++ {
		dst[j].reset()
	}
	for ; i < len(dst); i++ {
		dst[i] = pl.alloc(large)
	}
}

// lowWater records that a free list is down to n packets. Called with mu
// held.
func (pl *Pool) lowWater(large bool, n int) {
	if large {
		pl.largeLow = min(pl.largeLow, n)
	} else {
		pl.smallLow = min(pl.smallLow, n)
	}
}

func (pl *Pool) put(p *Packet) {
	large := len(p.buf) > SmallDataSize+DefaultHeadroom
	p.NextHop = zeroAddr // drop the pointer the zone may hold
	pl.mu.Lock()
	list, max := &pl.small, pl.max
	if large {
		list, max = &pl.large, pl.maxLarge
	}
	if len(*list) < max {
		*list = append(*list, p)
	}
	pl.mu.Unlock()
}

// maxViews bounds a pool's free bare handles (Packet.Share).
const maxViews = 4096

// getView returns a bare handle (no buffer) for Share.
func (pl *Pool) getView() *Packet {
	pl.mu.Lock()
	var v *Packet
	if n := len(pl.views); n > 0 {
		v = pl.views[n-1]
		pl.views[n-1] = nil
		pl.views = pl.views[:n-1]
	}
	pl.mu.Unlock()
	if v == nil {
		return &Packet{pool: pl}
	}
	*v = Packet{pool: pl}
	return v
}

// putView takes back a released bare handle.
func (pl *Pool) putView(v *Packet) {
	v.buf, v.root, v.NextHop = nil, nil, zeroAddr
	pl.mu.Lock()
	if len(pl.views) < maxViews {
		pl.views = append(pl.views, v)
	}
	pl.mu.Unlock()
}

// ReleaseBatch releases every non-nil packet of pkts and sets its slot to
// nil, taking each pool's lock once per run of packets from that pool.
func ReleaseBatch(pkts []*Packet) {
	if debugChecks { // before any lock is taken: the check may panic
		for _, p := range pkts {
			if p != nil {
				p.markReleased()
			}
		}
	}
	var pl *Pool
	locked := false
	for i, p := range pkts {
		if p == nil {
			continue
		}
		pkts[i] = nil
		if p.sharing() {
			// A handle of a shared buffer: Release's way, outside the
			// pool's lock (which it takes).
			if locked {
				pl.mu.Unlock()
				locked, pl = false, nil
			}
			p.releaseShared()
			continue
		}
		if p.pool == nil {
			continue
		}
		if p.pool != pl {
			if locked {
				pl.mu.Unlock()
			}
			pl = p.pool
			pl.mu.Lock()
			locked = true
		}
		p.NextHop = zeroAddr
		list, max := &pl.small, pl.max
		if len(p.buf) > SmallDataSize+DefaultHeadroom {
			list, max = &pl.large, pl.maxLarge
		}
		if len(*list) < max {
			*list = append(*list, p)
		}
	}
	if locked {
		pl.mu.Unlock()
	}
}
