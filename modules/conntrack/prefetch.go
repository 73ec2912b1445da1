package conntrack

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// The batch pass (pipeline.HookEntry.Prepare at Prerouting): with many
// live flows the table's lines are not in the caches, and tracking one
// packet at a time waits for them one after the other — its bucket, then
// its entry's lines, each a miss of ~100 ns. Before the hook's tables run
// packet by packet, prefetch computes every packet's key and hash, loads
// all the batch's bucket heads (independent loads: their misses overlap),
// then the lines of every head entry the tags say is the packet's (again
// independent across packets). Track then finds them warm. It is a hint:
// it decides nothing and changes nothing (no lock, no write), so a packet
// that an earlier table drops or NOTRACKs only cost the loads, and a
// packet the prefetch cannot key (fragments, IPv6 extension headers, ICMP)
// is just tracked cold. The loads go in rounds over the whole batch —
// bucket heads, head entries' first lines, then each chain a node per
// round — so that each round's misses overlap and no load waits for a
// comparison on another packet's line.

// prefetchChunk is how many packets one round of loads covers: enough for
// the core's outstanding misses (and a batch of 64), little enough for
// its arrays to sit on the stack.
const prefetchChunk = 64

// prefetchSink keeps the loads alive: their sum is stored when it has one
// value (rarely), so the compiler cannot drop them as unused.
var prefetchSink atomic.Uint32

// prefetch touches the table lines that tracking pkts will read: how many
// packets' entries it found (tests).
func (t *Table) prefetch(pkts []*pipeline.Packet) int {
	found := 0
	for len(pkts) > 0 {
		n := min(len(pkts), prefetchChunk)
		found += t.prefetchChunk(pkts[:n])
		pkts = pkts[n:]
	}
	return found
}

func (t *Table) prefetchChunk(pkts []*pipeline.Packet) int {
	var hs [prefetchChunk]uint64
	var at [prefetchChunk]uint32 // the node a packet's walk stands on, + 1; 0: done
	var tcp [prefetchChunk]bool
	n := 0
	for _, p := range pkts {
		if p == nil || p.CTInfo != pipeline.CTNone {
			continue
		}
		var k Key
		if !prefetchKey(p, &k) {
			continue
		}
		hs[n], tcp[n] = k.hash(t.seed), k.Proto == wire.ProtocolTCP
		n++
	}
	if n == 0 {
		return 0
	}
	// Round 1: the buckets' heads, all loads independent.
	mask := t.mask
	for i := 0; i < n; i++ {
		at[i] = t.buckets[uint32(hs[i])&mask].head.Load()
	}
	// Round 2: the first line of every head entry (its tags), no
	// decision on them yet, so that nothing waits on one load before
	// starting the next.
	ents := t.entries
	var sink uint32
	for i := 0; i < n; i++ {
		if v := at[i]; v != 0 && int((v-1)>>1) < len(ents) {
			sink += ents[(v-1)>>1].status.Load()
		}
	}
	// Then the chains, breadth first: each round, with the lines it
	// stands on loaded, a packet whose node's tag is its hash loads the
	// line of its direction (and the TCP state), one whose node is
	// another flow's moves on to the next node and loads its first line.
	// A round's loads are independent across packets; most chains are
	// one or two nodes long, so the rounds after the first hold few.
	found := 0
	for step := 0; step < 4; step++ {
		more := false
		for i := 0; i < n; i++ {
			v := at[i]
			if v == 0 {
				continue
			}
			node := v - 1
			if int(node>>1) >= len(ents) {
				at[i] = 0
				continue
			}
			e := &ents[node>>1]
			d := node & 1
			if e.tag[d].Load() != hs[i] {
				next := e.next[d].Load()
				at[i] = next
				if next != 0 && int((next-1)>>1) < len(ents) {
					sink += ents[(next-1)>>1].status.Load()
					more = true
				}
				continue
			}
			// The lines under the entry's lock, read without it: a
			// plain racy load, which the race detector would report, so
			// not in -race builds (their value is never used).
			if !raceBuild {
				sink += uint32(e.dir(int(d)).tuple.Src[0])
				if tcp[i] {
					sink += e.tcp.state
				}
			}
			at[i] = 0
			found++
		}
		if !more {
			break
		}
	}
	if sink == 0x9e3779b9 {
		prefetchSink.Store(sink)
	}
	return found
}

// prefetchKey builds the key Track would for the common packets: IPv4
// (not a fragment) and IPv6 without extension headers, carrying TCP, UDP
// or another port protocol. False for the rest (Track keys them itself).
// Nothing it reads is trusted beyond the buffer's bounds.
func prefetchKey(p *pipeline.Packet, k *Key) bool {
	nh := p.NetworkHeader()
	var l4 []byte
	switch p.NetProto {
	case pipeline.IPv4ProtocolNumber:
		if len(nh) < wire.IPv4MinimumSize || nh[0]>>4 != 4 {
			return false
		}
		hl := int(nh[0]&0x0f) * 4
		if binary.BigEndian.Uint16(nh[6:])&0x1fff != 0 {
			return false // a non-first fragment
		}
		if hl < wire.IPv4MinimumSize || len(nh) < hl+4 {
			return false
		}
		k.Family, k.Proto = 4, nh[9]
		copy(k.Src[:4], nh[12:16])
		copy(k.Dst[:4], nh[16:20])
		l4 = nh[hl:]
	case pipeline.IPv6ProtocolNumber:
		if len(nh) < wire.IPv6HeaderSize+4 || nh[0]>>4 != 6 {
			return false
		}
		k.Family, k.Proto = 6, nh[6]
		copy(k.Src[:], nh[8:24])
		copy(k.Dst[:], nh[24:40])
		l4 = nh[wire.IPv6HeaderSize:]
	default:
		return false
	}
	if !hasPorts(k.Proto) {
		return false
	}
	k.SPort, k.DPort = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	return true
}

// prepare is the Prerouting entry's pipeline.HookEntry.Prepare.
func (t *Table) prepare(_ *pipeline.Batch, _ pipeline.Hook, pkts []*pipeline.Packet) {
	t.prefetch(pkts)
}
