package ipv6

import (
	"github.com/pipestack/pipestack/modules/internal/reasm"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Reassembly of IPv6 fragments for local delivery (RFC 8200 §4.5). The
// queues, the memory accounting and the timers are modules/internal/reasm's,
// shared with network.ipv4 (buffers charged by their whole size, a share per
// source, and global eviction of the oldest datagram of the biggest
// consumer; a flood cannot take memory from a datagram in progress of a
// smaller source). The IPv6 rules are here: a "source" is the source /64 (a
// host picks addresses in its /64 at will), the Fragment header's length
// rules with their Parameter Problems, and the datagram rebuilt without its
// Fragment header. Every overlap drops the whole datagram (RFC 5722), as
// does any inconsistency.

type fragKey struct {
	src, dst [16]byte
	id       uint32
	user     uint8
}

// Reassembly users: a fragment reassembled for local delivery and one
// reassembled by the defragmentation service (Defragment: conntrack's, on
// Prerouting) are separate queues, as Linux's defrag users.
const (
	userLocal  uint8 = iota // reassembly for local delivery
	userDefrag              // Defragment
)

// srcKey is a source /64.
type srcKey [8]byte

// fragMeta locates a fragment's parts in its packet.
type fragMeta struct {
	data  int // offset of the fragment data
	fhOff int // offset of the Fragment header
}

// reassembler holds every datagram being reassembled (Context.Shared
// "network.ipv6/reassembly").
type reassembler = reasm.Reassembler[fragKey, srcKey, fragMeta]

func newReassembler(clock pipeline.Clock, stack *pipeline.Stack, pool *pipeline.Pool, c *reasm.Counters) *reassembler {
	return reasm.New(reasm.Family[fragKey, srcKey, fragMeta]{
		Source: func(k fragKey) srcKey { return srcKey(k.src[:8]) },
		Build:  buildDatagram,
		Done:   defragDone,
		// ICMPv6 time exceeded (fragment reassembly time exceeded, code 1)
		// when the first fragment had arrived (RFC 8200 §4.5); not for the
		// defragmentation service, as Linux's nf_defrag_ipv6 sends none.
		Notify: func(k fragKey) bool { return k.user == userLocal },
		TimeExceeded: func(b *pipeline.Batch, first *pipeline.Packet) {
			if e, ok := b.Gen.NetworkEndpoint(first.InNIC, pipeline.IPv6ProtocolNumber).(*endpoint); ok {
				e.icmpError(b, first, wire.ICMPv6TimeExceeded, wire.ICMPv6ReassemblyTimeout, 0, false)
			}
		},
	}, clock, stack, pool, c)
}

// reassemble takes ownership of a fragment (Data() at its IPv6 header,
// validated, x its extension walk) received by e. It returns the
// reassembled datagram — a new packet without the Fragment header, metadata
// of the fragment that completed it, network header marked — or nil when
// pkt was held or dropped (counted; a fragment whose length breaks RFC 8200
// §4.5 gets a Parameter Problem, for local delivery: user userLocal; the
// defragmentation service, userDefrag, sends no ICMPv6 at all).
func (e *endpoint) reassemble(b *pipeline.Batch, pkt *pipeline.Packet, x *wire.IPv6ExtInfo, user uint8) *pipeline.Packet {
	c := &e.p.c.reasm
	c.Fragments.Inc()
	h := wire.IPv6(pkt.Data())
	fhOff := x.FragmentHeaderOffset
	data := fhOff + wire.IPv6FragmentSize // the walk of a first fragment goes on past it
	total := wire.IPv6HeaderSize + int(h.PayloadLength())
	off := int(x.FragmentOffset)
	plen := total - data
	end := off + plen
	mf := x.MoreFragments
	local := user == userLocal
	if mf && plen%8 != 0 {
		if local {
			e.icmpError(b, pkt, wire.ICMPv6ParamProblem, wire.ICMPv6ErroneousHeader, 4, false)
		}
		b.Drop(pkt, c.Malformed)
		return nil
	}
	if plen == 0 && mf {
		b.Drop(pkt, c.Malformed)
		return nil
	}
	if off == 0 && x.ProtocolOffset+upperLayerMin(x.Protocol) > total {
		// RFC 8200 §4.5 (RFC 7112): a first fragment must hold the
		// whole header chain, the upper-layer header included (as much
		// of it as Linux asks for); else Parameter Problem code 3,
		// pointer 0, and the fragment is not held.
		if local {
			e.icmpError(b, pkt, wire.ICMPv6ParamProblem, wire.ICMPv6IncompleteHeaderChain, 0, false)
		}
		e.dropMalformed(b, pkt, wire.ErrIPv6IncompleteHeaderChain)
		return nil
	}
	// This fragment's unfragmentable part bounds the datagram here (RFC
	// 8200 §4.5's Parameter Problem); the datagram is built with the first
	// fragment's, which buildDatagram checks again.
	if fhOff-wire.IPv6HeaderSize+end > maxPayload {
		if local {
			e.icmpError(b, pkt, wire.ICMPv6ParamProblem, wire.ICMPv6ErroneousHeader, uint32(fhOff+2), false)
		}
		b.Drop(pkt, c.TooBig)
		return nil
	}
	key := fragKey{src: h.Src(), dst: h.Dst(), id: x.FragmentID, user: user}
	f := reasm.Fragment[fragMeta]{Pkt: pkt, Off: off, End: end, Meta: fragMeta{data: data, fhOff: fhOff}}
	return e.p.reasm.Add(b, b.Now, key, f, mf, &e.p.cfg.reasm)
}

// upperLayerMin is how much of an upper-layer header a first fragment must
// carry (RFC 7112), as Linux's ipv6frag_thdr_truncated asks: a TCP header
// without options, a UDP or ICMPv6 header, one byte of anything else, and
// nothing after No Next Header.
func upperLayerMin(proto uint8) int {
	switch proto {
	case wire.ProtocolTCP:
		return wire.TCPMinimumSize
	case wire.ProtocolUDP:
		return wire.UDPHeaderSize
	case wire.ProtocolICMPv6:
		return wire.ICMPv6HeaderSize
	case wire.ProtocolNoNextHeader:
		return 0
	}
	return 1
}

// maxPayload is the largest Payload Length of a datagram (no jumbograms).
const maxPayload = 0xffff

// buildDatagram copies a complete datagram into one buffer: the first
// fragment's unfragmentable part (the headers before its Fragment header),
// whose last Next Header field takes the Fragment header's, then every
// fragment's data. Like Linux (ip6_frag_reasm) it uses the first fragment's
// unfragmentable part, and returns nil (the datagram is dropped as too big)
// when that part and the data exceed a Payload Length of 65535: every
// fragment was checked with its own unfragmentable part, and the first one
// may carry a longer one than the rest.
func buildDatagram(pool *pipeline.Pool, frags []reasm.Fragment[fragMeta], end int) *pipeline.Packet {
	fb := frags[0].Pkt.Data()
	unfrag := frags[0].Meta.fhOff
	size := unfrag + end
	if size-wire.IPv6HeaderSize > maxPayload {
		return nil
	}
	out := pool.TryGet(size)
	if out == nil {
		return nil
	}
	buf, _ := out.Append(size)
	copy(buf, fb[:unfrag])
	for _, f := range frags {
		d := f.Pkt.Data()
		copy(buf[unfrag+f.Off:], d[f.Meta.data:wire.IPv6HeaderSize+int(wire.IPv6(d).PayloadLength())])
	}
	h := wire.IPv6(buf)
	h.SetPayloadLength(uint16(size - wire.IPv6HeaderSize))
	buf[prevNextHeader(fb, unfrag)] = fb[unfrag] // the Fragment header's Next Header
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
