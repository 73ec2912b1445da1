package ipv4

import (
	"time"

	"github.com/pipestack/pipestack/modules/internal/reasm"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Reassembly of IPv4 fragments. The queues, the memory accounting (per
// source address and overall, designed to hold up under a fragment flood)
// and the timers are modules/internal/reasm's, shared with network.ipv6;
// this file holds IPv4's rules: offsets in 8-byte units, MF, the 64 KiB
// bound, the datagram rebuilt from the first fragment's header, and ICMP
// time exceeded for local delivery only.

// Reassembly users: the same fragment key used for local delivery and for
// the defragmentation service are separate queues (Linux's defrag users).
const (
	userLocal  uint8 = iota // reassembly for local delivery
	userDefrag              // Defragment / defragment_forwarded
)

type fragKey struct {
	src, dst [4]byte
	id       uint16
	proto    uint8
	user     uint8
}

// reassembler holds every datagram being reassembled (Context.Shared
// "network.ipv4/reassembly"): a source is a source address; a fragment
// needs nothing besides its offsets.
type reassembler = reasm.Reassembler[fragKey, [4]byte, struct{}]

func newReassembler(clock pipeline.Clock, stack *pipeline.Stack, pool *pipeline.Pool, c *reasm.Counters) *reassembler {
	return reasm.New(reasm.Family[fragKey, [4]byte, struct{}]{
		Source: func(k fragKey) [4]byte { return k.src },
		Build:  buildDatagram,
		// RFC 792, RFC 1122 §3.3.2: ICMP time exceeded (reassembly, code
		// 1) for local delivery; not for the defragmentation service, as
		// in Linux for conntrack's.
		Notify: func(k fragKey) bool { return k.user == userLocal },
		Done:   defragDone,
		TimeExceeded: func(b *pipeline.Batch, first *pipeline.Packet) {
			if e, ok := b.Gen.NetworkEndpoint(first.InNIC, pipeline.IPv4ProtocolNumber).(*endpoint); ok {
				e.icmpError(b, first, wire.ICMPv4TimeExceeded, wire.ICMPv4ReassemblyTimeout, 0)
			}
		},
	}, clock, stack, pool, c)
}

// reassembleIn takes ownership of a fragment (Data() at its IPv4 header,
// validated and trimmed to its total length) received in batch b (nil:
// none) at now. It returns the reassembled datagram (a new packet from the
// pool, metadata of the fragment that completed it, network header marked)
// when pkt completed one, or nil when pkt was held or dropped (counted
// under its reason and, through b.Drop, in its link's RX dropped).
func (p *Protocol) reassembleIn(b *pipeline.Batch, now time.Time, pkt *pipeline.Packet, user uint8) *pipeline.Packet {
	c := &p.c.reasm
	c.Fragments.Inc()
	h := wire.IPv4(pkt.Data())
	off := int(h.FragmentOffset())
	plen := len(h.Payload())
	end := off + plen
	mf := h.MoreFragments()
	if plen == 0 || (mf && plen%8 != 0) {
		dropIn(b, pkt, c.Malformed)
		return nil
	}
	// This fragment's header bounds the datagram here; the datagram is
	// built with the first fragment's, which buildDatagram checks again.
	if h.HeaderLength()+end > maxDatagram {
		dropIn(b, pkt, c.TooBig)
		return nil
	}
	key := fragKey{src: h.Src(), dst: h.Dst(), id: h.ID(), proto: h.Protocol(), user: user}
	return p.reasm.Add(b, now, key, reasm.Fragment[struct{}]{Pkt: pkt, Off: off, End: end}, mf, &p.reasmLim)
}

// maxDatagram is the largest IPv4 datagram: its Total Length is 16 bits.
const maxDatagram = 0xffff

// dropIn ends a packet through b.Drop, or counts and releases it without a
// batch.
func dropIn(b *pipeline.Batch, pkt *pipeline.Packet, reason *pipeline.Counter) {
	if b != nil {
		b.Drop(pkt, reason)
		return
	}
	reason.Inc()
	pkt.Release()
}

// buildDatagram copies a complete datagram into one buffer: the first
// fragment's header (options included) followed by every payload. It
// returns nil (the datagram is dropped as too big) when that header and the
// data exceed 65535 bytes: every fragment was checked with its own header
// length, and the first one may carry more options than the rest (its
// Total Length would wrap). Linux drops it too (ip_frag_reasm).
func buildDatagram(pool *pipeline.Pool, frags []reasm.Fragment[struct{}], end int) *pipeline.Packet {
	first := wire.IPv4(frags[0].Pkt.Data())
	hl := first.HeaderLength()
	size := hl + end
	if size > maxDatagram {
		return nil
	}
	out := pool.TryGet(size)
	if out == nil {
		return nil
	}
	buf, _ := out.Append(size)
	copy(buf, first[:hl])
	for _, f := range frags {
		copy(buf[hl+f.Off:], wire.IPv4(f.Pkt.Data()).Payload())
	}
	h := wire.IPv4(buf)
	h.SetTotalLength(uint16(size))
	h.SetFlagsFragmentOffset(first.Flags()&^wire.IPv4FlagMoreFragments, 0)
	h.SetChecksum(h.CalculateChecksum())
	return out
}

// defragDone records in a datagram the defragmentation service made (a
// forwarded datagram reassembled for conntrack) the size of its largest
// fragment in PathMTU, as Linux's IPCB(skb)->frag_max_size: at transmit it
// is cut to that size again (ip_do_fragment takes the lesser of it and the
// MTU), so the fragments leave as they came, not at the egress MTU. A
// datagram whose first fragment carried DF keeps PathMTU 0 (Fragment reads
// PathMTU on a DF packet as the stack's own): it leaves whole or is
// answered with fragmentation needed, as any DF packet.
func defragDone(k fragKey, out *pipeline.Packet, frags []reasm.Fragment[struct{}]) {
	if k.user != userDefrag || wire.IPv4(out.Data()).DontFragment() {
		return
	}
	m := 0
	for _, f := range frags {
		if n := int(wire.IPv4(f.Pkt.Data()).TotalLength()); n > m {
			m = n
		}
	}
	if m >= 68 { // RFC 791: every host and router passes 68-byte datagrams
		out.PathMTU = uint16(min(m, 0xffff))
	}
}
