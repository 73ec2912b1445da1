package ipv4

import (
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Fragment implements pipeline.Fragmenter: the stack calls it at transmit,
// after Postrouting, for a packet larger than mtu (the egress NIC's MTU or
// the packet's PathMTU). A packet with DF set is not fragmented (RFC 791;
// Linux's ip_fragment): a forwarded one gets ICMP fragmentation needed with
// the next-hop MTU (too_big), a local one is dropped (too_big_local).
// (Forwarded DF packets are answered at forwarding time already, before
// the Forward hook; this catches a packet stolen there and re-injected into
// a generation with a smaller MTU.)
func (e *endpoint) Fragment(b *pipeline.Batch, pkt *pipeline.Packet, mtu int, dst []*pipeline.Packet) []*pipeline.Packet {
	c := &e.p.c
	h := wire.IPv4(pkt.Data())
	if h.Check() != nil || int(h.TotalLength()) != pkt.Len() {
		b.Drop(pkt, c.fragFails)
		return dst
	}
	if h.DontFragment() {
		if pkt.PathMTU != 0 {
			// Our own packet with DF, over the link's MTU (the sender
			// did not know it): as Linux's ip_fragment, the error goes
			// to ourselves (the loopback NIC), so that the path MTU
			// cache and the transport learn it.
			e.icmpError(b, pkt, wire.ICMPv4DstUnreachable, wire.ICMPv4FragmentationNeeded, wire.ICMPv4FragNeededRest(uint16(min(mtu, 0xffff))))
			b.Drop(pkt, c.tooBigLocal)
			return dst
		}
		e.icmpError(b, pkt, wire.ICMPv4DstUnreachable, wire.ICMPv4FragmentationNeeded, wire.ICMPv4FragNeededRest(uint16(min(mtu, 0xffff))))
		b.Drop(pkt, c.tooBig)
		return dst
	}
	return e.p.fragment(b, pkt, mtu, dst)
}

// fragment splits pkt (Data() at its IPv4 header, valid, routed: OutNIC
// and NextHop set, no GSO) into fragments of at most mtu bytes appended to
// dst, first fragment first. It takes ownership of pkt. The first fragment
// is pkt itself, cut short; the others are new pooled packets carrying the
// options marked "copied" (RFC 791 §3.2). A packet that is already a
// fragment is fragmented further (offsets add up, the last piece keeps its
// MF flag). A packet that cannot be cut (an MTU too small for its header)
// is dropped (frag_fails).
func (p *Protocol) fragment(b *pipeline.Batch, pkt *pipeline.Packet, mtu int, dst []*pipeline.Packet) []*pipeline.Packet {
	c := &p.c
	h := wire.IPv4(pkt.Data())
	hl := h.HeaderLength()
	payload := h.Payload()
	var opts [wire.IPv4MaximumHeaderSize]byte
	on := wire.IPv4FragmentOptions(opts[:], h.Options())
	hl2 := wire.IPv4MinimumSize + on
	firstLen := wire.IPv4FragmentPayloadSize(mtu, hl)
	restLen := wire.IPv4FragmentPayloadSize(mtu, hl2)
	if firstLen == 0 || restLen == 0 || len(payload) <= firstLen {
		b.Drop(pkt, c.fragFails)
		return dst
	}
	base := int(h.FragmentOffset())
	flags := h.Flags()
	lastMF := flags&wire.IPv4FlagMoreFragments != 0
	var hdr [wire.IPv4MinimumSize]byte
	copy(hdr[:], h[:wire.IPv4MinimumSize])

	// The first fragment is pkt cut short; its bytes beyond the new end
	// (payload, read below) stay in its buffer, untouched.
	h.SetTotalLength(uint16(hl + firstLen))
	h.SetFlagsFragmentOffset(flags|wire.IPv4FlagMoreFragments, uint16(base))
	h.SetChecksum(h.CalculateChecksum())
	pkt.Truncate(hl + firstLen)
	dst = append(dst, pkt)
	n := uint64(1)
	for off := firstLen; off < len(payload); {
		size := restLen
		if rem := len(payload) - off; rem <= size {
			size = rem
		}
		f := p.pool.Get(hl2 + size)
		buf, _ := f.Append(hl2 + size)
		copy(buf, hdr[:])
		copy(buf[wire.IPv4MinimumSize:], opts[:on])
		copy(buf[hl2:], payload[off:off+size])
		fh := wire.IPv4(buf)
		buf[0] = wire.IPv4Version<<4 | uint8(hl2/4)
		fh.SetTotalLength(uint16(hl2 + size))
		fl := flags &^ wire.IPv4FlagMoreFragments
		if off+size < len(payload) || lastMF {
			fl |= wire.IPv4FlagMoreFragments
		}
		fh.SetFlagsFragmentOffset(fl, uint16(base+off))
		fh.SetChecksum(fh.CalculateChecksum())
		f.CopyMeta(pkt)
		f.GSO = pipeline.GSO{}
		f.SetNetworkHeader()
		dst = append(dst, f)
		n++
		off += size
	}
	c.fragOK.Inc()
	c.fragCreated.Add(n)
	return dst
}

// Defragmenter is the defragmentation service of network.ipv4 for later
// stages (conntrack, NAT): pipeline.Defragmenter, which both IP families
// offer. (A pipeline that wants every forwarded datagram whole before the
// Prerouting hook, as Linux does when conntrack is loaded, sets
// reassembly.defragment_forwarded instead.)
type Defragmenter = pipeline.Defragmenter

// Defragment implements Defragmenter.
func (e *endpoint) Defragment(b *pipeline.Batch, pkt *pipeline.Packet) (*pipeline.Packet, bool) {
	return e.p.Defragment(b, pkt)
}

// Defragment implements Defragmenter on the protocol object.
func (p *Protocol) Defragment(b *pipeline.Batch, pkt *pipeline.Packet) (*pipeline.Packet, bool) {
	h := wire.IPv4(pkt.Data())
	if err := h.Check(); err != nil {
		pe, _ := err.(wire.ParseError)
		if int(pe) >= len(p.c.malformed) || p.c.malformed[pe] == nil {
			pe = wire.ErrTooShort
		}
		b.Drop(pkt, p.c.malformed[pe])
		return nil, false
	}
	if !h.MoreFragments() && h.FragmentOffset() == 0 {
		return pkt, true
	}
	pkt.Truncate(int(h.TotalLength()))
	out := p.reassembleIn(b, b.Now, pkt, userDefrag)
	return out, out != nil
}
