package ipv6

import (
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// fragment splits a locally generated packet (Data() at its IPv6 header,
// routed, no GSO) into fragments of at most mtu bytes (RFC 8200 §4.5): each
// repeats the unfragmentable part (the fixed header and the extension
// headers up to the last Routing header, or the Hop-by-Hop header) followed
// by a Fragment header and a multiple of 8 bytes of the rest. It queues
// them with b.Output, first fragment first, and takes ownership of pkt.
// Forwarded packets are never fragmented (Packet Too Big instead).
func (p *Protocol) fragment(b *pipeline.Batch, pkt *pipeline.Packet, mtu int) bool {
	c := &p.c
	h := wire.IPv6(pkt.Data())
	x, err := h.WalkExtensions(p.cfg.maxExt)
	if err != nil || x.Fragment {
		// Already a fragment (or unwalkable): not ours to cut.
		b.Drop(pkt, c.fragFails)
		return false
	}
	unfrag := x.UnfragmentableLength
	total := wire.IPv6HeaderSize + int(h.PayloadLength())
	rest := h[unfrag:total]
	per := (mtu - unfrag - wire.IPv6FragmentSize) &^ 7
	if per < 8 || len(rest) <= per {
		b.Drop(pkt, c.fragFails)
		return false
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
		if pkt.RemoteLinkAddr != ([6]byte{}) && isMulticast((*[16]byte)(h.DstSlice())) {
			f.SetRemoteLinkAddr(pkt.RemoteLinkAddr)
		}
		b.Output(f)
		n++
	}
	pkt.Release()
	c.fragOK.Inc()
	c.fragCreated.Add(n)
	return true
}
