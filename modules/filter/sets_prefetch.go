package filter

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/pipestack/pipestack/pipeline"
)

// The batch pass of a table whose rules look up large hashed sets
// (pipeline.HookEntry.Prepare, as conntrack's prefetch.go): a 100,000-
// element addr . port set is a 4 MB table whose hash scatters even
// neighbouring flows, and a lookup is mostly one cache miss into it,
// which the rule loop waits for packet after packet.
// Before the table runs, prefetch reads every IPv4 packet's fields from
// its headers and loads the line its lookup will read — for all the
// batch's packets at once, so that their misses overlap — and the rule
// then finds it warm. It is a hint: it decides and changes nothing (the
// snapshot is immutable, an element's state atomic), a packet an earlier
// table drops only cost the loads, and one it cannot read (IPv6, a
// fragment without ports, a short header) is looked up cold.
//
// Not hash:net: its DIR table (sets_dir.go) keeps the addresses' order,
// so neighbouring flows share its lines and they stay warm; prefetching
// it repeated the lookup (BenchmarkSetBatch: 1.2-1.25x the time without,
// against 0.77-0.82x for the addr . port set).

// setPrefetch is a set a table's rules look up at a hook and the fields
// they look it up by (SetMatch.dirs).
type setPrefetch struct {
	set        *Set
	srcA, srcP bool
}

const (
	// maxPrefetchSets bounds the sets one table's pass prefetches: each
	// costs a header read and a load per packet.
	maxPrefetchSets = 4
	// prefetchMinBytes: a set whose lookup table is smaller stays in the
	// caches (a few thousand elements); prefetching it would only cost.
	prefetchMinBytes = 256 << 10
)

// prefetchSink keeps the loads alive (their sum is stored when it has one
// value, rarely), so that the compiler cannot drop them as unused.
var prefetchSink atomic.Uint32

// tablePrefetch is the Prepare function of a hook entry whose reachable
// rules look up sets (nil: none worth it).
func tablePrefetch(sets []setPrefetch) func(*pipeline.Batch, pipeline.Hook, []*pipeline.Packet) {
	if len(sets) == 0 {
		return nil
	}
	return func(_ *pipeline.Batch, _ pipeline.Hook, pkts []*pipeline.Packet) {
		var sink uint32
		for _, sp := range sets {
			sink += sp.set.snap.Load().prefetch(pkts, sp.srcA, sp.srcP)
		}
		if sink == 0x9e3779b9 {
			prefetchSink.Store(sink)
		}
	}
}

// prefetchable: the set's type has an IPv4 hash table worth prefetching.
func prefetchable(t setType) bool {
	return t == setIP || t == setIPPort
}

// prefetchChunk is how many slots a pass computes before it loads them.
const prefetchChunk = 64

// prefetch loads the lines that looking up pkts' fields in sn will read
// (the first probe of its hash table), a sum of what it read. It works
// in two steps per chunk of packets: first the slots every packet will
// probe (header reads and a multiply, nothing that misses), then their
// loads in a loop of a few instructions each, so that the processor has
// a few dozen of them in flight at once; one loop doing both held only
// the misses of the few packets its reorder window spans
// (BenchmarkSetVsRule, BenchmarkSetBatch).
func (sn *setSnap) prefetch(pkts []*pipeline.Packet, srcA, srcP bool) uint32 {
	var t *u64Table
	switch sn.typ {
	case setIP:
		t = &sn.ip4
	case setIPPort:
		t = &sn.ipp4
	default:
		return 0
	}
	if 16*len(t.slots) < prefetchMinBytes {
		return 0
	}
	var sink uint32
	var at [2 * prefetchChunk]uint64 // two probes a packet at most
	for len(pkts) > 0 {
		chunk := pkts[:min(len(pkts), prefetchChunk)]
		pkts = pkts[len(chunk):]
		n := 0
		for _, p := range chunk {
			a, port, proto, ports, ok := peek4(p, srcA, srcP)
			switch {
			case !ok:
			case sn.typ == setIP:
				at[n], n = t.home(uint64(a)), n+1
			case ports:
				k := uint64(a)<<32 | uint64(port)
				if sn.someProto {
					at[n], n = t.home(k|uint64(proto)<<16), n+1
				}
				if sn.anyProto {
					at[n], n = t.home(k), n+1
				}
			}
		}
		for _, i := range at[:n] {
			sink += uint32(t.slots[i].v)
		}
	}
	return sink
}

// peek4 reads an IPv4 packet's address (the source's for srcA) and, when
// it has them (ports: not a fragment, a protocol with ports, 4 bytes of
// its header there), its port (the source's for srcP) and protocol, as
// the lookup will see them. Nothing it reads is trusted past the buffer's
// bounds; false for what is not IPv4.
func peek4(p *pipeline.Packet, srcA, srcP bool) (a uint32, port uint16, proto uint8, ports, ok bool) {
	if p == nil || p.NetProto != pipeline.IPv4ProtocolNumber {
		return 0, 0, 0, false, false
	}
	nh := p.NetworkHeader()
	if len(nh) < 20 || nh[0]>>4 != 4 {
		return 0, 0, 0, false, false
	}
	a = binary.BigEndian.Uint32(nh[16:])
	if srcA {
		a = binary.BigEndian.Uint32(nh[12:])
	}
	hl := int(nh[0]&0x0f) * 4
	proto = nh[9]
	if hl < 20 || len(nh) < hl+4 || binary.BigEndian.Uint16(nh[6:])&0x1fff != 0 || !hasPorts(proto) {
		return a, 0, proto, false, true
	}
	port = binary.BigEndian.Uint16(nh[hl+2:])
	if srcP {
		port = binary.BigEndian.Uint16(nh[hl:])
	}
	return a, port, proto, true, true
}
