package pipeline

import (
	"sync"
	"sync/atomic"
)

// Pool is a free list of packets in two size classes. Get and Release take a
// mutex; GetBatch and ReleaseBatch take it once for a whole batch, which is
// what links use on the hot path. Unlike sync.Pool, a Pool keeps its packets
// across garbage collections and behaves the same with -race, so an
// allocation count over the forwarding path is exact.
type Pool struct {
	mu    sync.Mutex
	small []*Packet
	large []*Packet
	max   int

	allocated atomic.Uint64 // buffers ever allocated
}

// DefaultPool is the pool links and protocols use unless given another.
var DefaultPool = NewPool(1 << 16)

// NewPool returns a pool that keeps at most max free packets per size class.
func NewPool(max int) *Pool {
	return &Pool{max: max}
}

// Allocated is the number of buffers the pool has ever allocated (a test
// can watch it stay flat).
func (pl *Pool) Allocated() uint64 { return pl.allocated.Load() }

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
	pl.mu.Unlock()
	for j := 0; j < i; j++ {
		dst[j].reset()
	}
	for ; i < len(dst); i++ {
		dst[i] = pl.alloc(large)
	}
}

func (pl *Pool) put(p *Packet) {
	large := len(p.buf) > SmallDataSize+DefaultHeadroom
	p.NextHop = zeroAddr // drop the pointer the zone may hold
	pl.mu.Lock()
	list := &pl.small
	if large {
		list = &pl.large
	}
	if len(*list) < pl.max {
		*list = append(*list, p)
	}
	pl.mu.Unlock()
}

// ReleaseBatch releases every non-nil packet of pkts and sets its slot to
// nil, taking each pool's lock once per run of packets from that pool.
func ReleaseBatch(pkts []*Packet) {
	var pl *Pool
	locked := false
	for i, p := range pkts {
		if p == nil {
			continue
		}
		pkts[i] = nil
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
		list := &pl.small
		if len(p.buf) > SmallDataSize+DefaultHeadroom {
			list = &pl.large
		}
		if len(*list) < pl.max {
			*list = append(*list, p)
		}
	}
	if locked {
		pl.mu.Unlock()
	}
}

// InUse is the number of packets taken from the pool and not yet released
// (a test can check that every buffer came back).
func (pl *Pool) InUse() int {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return int(pl.allocated.Load()) - len(pl.small) - len(pl.large)
}
