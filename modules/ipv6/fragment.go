package ipv6

import (
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Fragment implements pipeline.Fragmenter: the stack calls it at transmit,
// after Postrouting, for a packet larger than mtu (the egress NIC's MTU or
// the packet's PathMTU). Only packets the stack originates (PathMTU set)
// and datagrams the defragmentation service reassembled on their way
// (PathMTU their largest fragment's size: defrag.go) are fragmented; any
// other forwarded packet is answered with Packet Too Big and
// dropped (too_big), as a router must (RFC 8200 §5). (Forwarding answers
// those before the Forward hook already; this catches a packet stolen there
// and re-injected into a generation with a smaller MTU.)
func (e *endpoint) Fragment(b *pipeline.Batch, pkt *pipeline.Packet, mtu int, dst []*pipeline.Packet) []*pipeline.Packet {
	if pkt.PathMTU == 0 {
		e.icmpError(b, pkt, wire.ICMPv6PacketTooBig, 0, uint32(mtu), true)
		b.Drop(pkt, e.p.c.tooBig)
		return dst
	}
	return e.p.fragment(b, pkt, mtu, dst)
}

// fragment splits a locally generated packet (Data() at its IPv6 header,
// routed, no GSO) into fragments of at most mtu bytes (RFC 8200 §4.5)
// appended to dst, first fragment first: each repeats the unfragmentable
// part (the fixed header and the extension headers up to the last Routing
// header, or the Hop-by-Hop header) followed by a Fragment header and a
// multiple of 8 bytes of the rest. It takes ownership of pkt. A packet that
// cannot be cut (already a fragment, an MTU too small) is dropped
// (frag_fails).
func (p *Protocol) fragment(b *pipeline.Batch, pkt *pipeline.Packet, mtu int, dst []*pipeline.Packet) []*pipeline.Packet {
	c := &p.c
	h := wire.IPv6(pkt.Data())
	if h.Check() != nil {
		b.Drop(pkt, c.fragFails)
		return dst
	}
	x, err := h.WalkExtensions(p.cfg.maxExt)
	if err != nil || x.Fragment {
		// Already a fragment (or unwalkable): not ours to cut.
		b.Drop(pkt, c.fragFails)
		return dst
	}
	unfrag := x.UnfragmentableLength
	total := wire.IPv6HeaderSize + int(h.PayloadLength())
	rest := h[unfrag:total]
	per := (mtu - unfrag - wire.IPv6FragmentSize) &^ 7
	if per < 8 || len(rest) <= per {
		b.Drop(pkt, c.fragFails)
		return dst
	}
	at := prevNextHeader(h, unfrag)
	nh := h[at]
	id := p.ident.Add(1)
	var n uint64
	for off := 0; off < len(rest); off += per {
		size := min(per, len(rest)-off)
		f := p.pool.Get(unfrag + wire.IPv6FragmentSize + size)
		buf, _ := f.Append(unfrag + wire.IPv6FragmentSize + size)
		copy(buf, h[:unfrag])
		buf[at] = wire.ProtocolFragment
		wire.IPv6(buf).SetPayloadLength(uint16(len(buf) - wire.IPv6HeaderSize))
		wire.IPv6Fragment(buf[unfrag:]).Encode(&wire.IPv6FragmentFields{
			NextHeader: nh, FragmentOffset: uint16(off), More: off+size < len(rest), ID: id,
		})
		copy(buf[unfrag+wire.IPv6FragmentSize:], rest[off:off+size])
		f.CopyMeta(pkt)
		f.GSO = pipeline.GSO{}
		f.SetNetworkHeader()
		dst = append(dst, f)
		n++
	}
	pkt.Release()
	c.fragOK.Inc()
	c.fragCreated.Add(n)
	return dst
}
