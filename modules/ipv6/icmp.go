package ipv6

import (
	"net/netip"

	"github.com/pipestack/pipestack/modules/internal/iplocal"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Class bits of the shared ICMP limiter (icmplimit.Config.Mask) for ICMPv6:
// the error types are their own numbers, echo reply is bit 33.
const (
	wireDstUnreachBit   = wire.ICMPv6DstUnreachable
	wirePTBBit          = wire.ICMPv6PacketTooBig
	wireTimeExceededBit = wire.ICMPv6TimeExceeded
	wireParamProblemBit = wire.ICMPv6ParamProblem
	echoReplyBit        = 33
)

// icmpErrorQuote is how much of the offending packet an ICMPv6 error
// carries: as much as fits in the minimum MTU (RFC 4443 §2.4 (c)).
const icmpErrorQuote = wire.IPv6MinimumMTU - wire.IPv6HeaderSize - wire.ICMPv6HeaderSize

// handleICMP processes an ICMPv6 message addressed to the stack (Data() at
// the ICMPv6 header; ip is its IPv6 header) and takes ownership of pkt:
// echo requests are answered in place, NDP messages go to NDP, errors to
// the transport of the packet they quote (Packet Too Big also lowers the
// path MTU), and everything but echo requests and NDP also goes to an
// ICMPv6 transport when one is configured (ping sockets, a test collector).
func (e *endpoint) handleICMP(b *pipeline.Batch, pkt *pipeline.Packet, ip wire.IPv6) {
	c := &e.p.c
	c.icmpIn.Inc()
	m := wire.ICMPv6(pkt.Data())
	if m.Check() != nil || !m.IsChecksumValid(wire.IPv6PseudoChecksum(ip, wire.ProtocolICMPv6, uint32(len(m)))) {
		b.Drop(pkt, c.icmpMalformed)
		return
	}
	switch t := m.Type(); t {
	case wire.ICMPv6EchoRequest:
		e.echo(b, pkt, ip, m)
		return
	case wire.ICMPv6RouterSolicitation, wire.ICMPv6RouterAdvertisement, wire.ICMPv6NeighborSolicitation,
		wire.ICMPv6NeighborAdvertisement, wire.ICMPv6Redirect:
		e.handleNDP(b, pkt, ip, m)
		return
	case wire.ICMPv6MLDQuery, wire.ICMPv6MLDReport, wire.ICMPv6MLDDone, wire.ICMPv6MLDv2Report:
		pkt.Release() // no multicast listener state to keep
		return
	}
	pmtu := 0
	if m.Type() == wire.ICMPv6PacketTooBig {
		var ok bool
		if pmtu, ok = e.packetTooBig(b, m); !ok {
			b.Drop(pkt, c.pmtuRejected)
			return
		}
	}
	if m.IsError() && !validQuote(m.Payload()) {
		// As Linux (icmpv6_notify): the path MTU is lowered on the fixed
		// header alone, but an error is handed on only with its quote's
		// headers and 8 bytes after them; else it is malformed.
		b.Drop(pkt, c.icmpMalformed)
		return
	}
	iplocal.ICMP(b, pkt, pipeline.ICMPv6ProtocolNumber, m.IsError(), func(p *pipeline.Packet) bool {
		return e.errorToTransport(b, p, wire.ICMPv6(p.Data()), pmtu)
	})
}

// echo turns an echo request into its reply in place (type 128 → 129 with
// an incremental checksum update: the pseudo-header is the same with the
// addresses swapped) and sends it back with a fresh IPv6 header. Requests
// to multicast groups are not answered.
func (e *endpoint) echo(b *pipeline.Batch, pkt *pipeline.Packet, ip wire.IPv6, m wire.ICMPv6) {
	c := &e.p.c
	c.icmpEchoIn.Inc()
	src, dst := ip.Src(), ip.Dst()
	if isMulticast(&dst) || isUnspecified(&src) {
		b.Drop(pkt, c.icmpMulticastEcho)
		return
	}
	if !e.loop && !e.p.limiter.Allow(&e.p.cfg.rate, b.Now, echoReplyBit, src, destShift(b, src)) {
		b.Drop(pkt, c.icmpRateLimited)
		return
	}
	nic, nh, ok := e.routeTo(b, src, pkt.InNIC)
	if !ok {
		b.Drop(pkt, c.noRoute)
		return
	}
	old := uint16(m.Type())<<8 | uint16(m.Code())
	m.SetType(wire.ICMPv6EchoReply)
	m.SetChecksum(wire.ChecksumUpdate16(m.Checksum(), old, uint16(wire.ICMPv6EchoReply)<<8|uint16(m.Code())))
	pkt.GSO = pipeline.GSO{}
	tc := ip.TrafficClass()
	if e.output(b, pkt, nic, nh, dst, src, wire.ProtocolICMPv6, 0, tc, e.p.mtuFor(b, nic, src, 0)) {
		c.icmpEchoOut.Inc()
		c.sent.Inc()
	}
}

// packetTooBig lowers the path MTU towards the destination of the packet
// a Packet Too Big message quotes (RFC 8201 §4): never below 1280 bytes,
// never up. Later local packets to it are fragmented to fit. The quoted
// packet must be ours (from one of our addresses), else the message is
// rejected (ok false). It returns the path MTU now in force.
func (e *endpoint) packetTooBig(b *pipeline.Batch, m wire.ICMPv6) (int, bool) {
	c := &e.p.c
	c.icmpTooBigIn.Inc()
	q := m.Payload()
	if len(q) < wire.IPv6HeaderSize || q[0]>>4 != 6 {
		return 0, false
	}
	if _, own := b.Gen.IsLocal6(wire.IPv6(q).Src()); !own {
		return 0, false
	}
	dst := wire.IPv6(q).Dst()
	mtu := int(min(m.MTU(), 0xffff))
	if mtu < wire.IPv6MinimumMTU {
		mtu = wire.IPv6MinimumMTU
	}
	if e.p.pmtu.Update(dst, mtu, false, b.Now, e.p.cfg.pmtuTimeout, e.p.cfg.pmtuMax) {
		c.pmtuUpdates.Inc()
	}
	if cur, _, ok := e.p.pmtu.Get(dst, b.Now); ok {
		mtu = cur
	}
	return mtu, true
}

// errorToTransport hands an ICMPv6 error to the transport protocol of the
// packet it quotes, when that protocol handles errors (see
// pipeline.TransportErrorHandler). It takes ownership of pkt when it returns
// true. The quote is usually cut short, so its extension headers are walked
// within what was quoted, and 8 bytes of transport header are required.
func (e *endpoint) errorToTransport(b *pipeline.Batch, pkt *pipeline.Packet, m wire.ICMPv6, pmtu int) bool {
	var kind pipeline.TransportErrorKind
	info := uint32(0)
	switch m.Type() {
	case wire.ICMPv6DstUnreachable:
		switch m.Code() {
		case wire.ICMPv6NoRoute, wire.ICMPv6BeyondScope, wire.ICMPv6RejectRoute:
			kind = pipeline.ErrorNetUnreachable
		case wire.ICMPv6AddressUnreachable:
			kind = pipeline.ErrorHostUnreachable
		case wire.ICMPv6PortUnreachable:
			kind = pipeline.ErrorPortUnreachable
		case wire.ICMPv6AdminProhibited, wire.ICMPv6SourcePolicy:
			kind = pipeline.ErrorAdminProhibited
		default:
			return false
		}
	case wire.ICMPv6PacketTooBig:
		kind, info = pipeline.ErrorPacketTooBig, uint32(pmtu) // packetTooBig's
	case wire.ICMPv6TimeExceeded:
		kind = pipeline.ErrorTTLExceeded
	case wire.ICMPv6ParamProblem:
		if m.Code() != wire.ICMPv6UnrecognizedNextHeader {
			return false
		}
		kind = pipeline.ErrorProtocolUnreachable
	default:
		return false
	}
	q := m.Payload()
	proto, off, ok := quotedTransport(q, e.p.cfg.maxExt)
	if !ok || len(q) < off+8 {
		return false
	}
	return iplocal.ErrorToTransport(b, proto, kind, info, q, pkt)
}

// quotedTransport finds the upper-layer protocol and its offset in a quoted
// (possibly truncated) IPv6 packet, walking its extension headers as far as
// they were quoted.
func quotedTransport(q []byte, max int) (proto uint8, off int, ok bool) {
	if len(q) < wire.IPv6HeaderSize || q[0]>>4 != 6 {
		return 0, 0, false
	}
	nh := q[6]
	off = wire.IPv6HeaderSize
	for n := 0; isExtension(nh); n++ {
		if n >= max || off+8 > len(q) {
			return 0, 0, false
		}
		var hl int
		switch nh {
		case wire.ProtocolFragment:
			if wire.IPv6Fragment(q[off:]).FragmentOffset() != 0 {
				return 0, 0, false
			}
			hl = wire.IPv6FragmentSize
		case wire.ProtocolAH:
			hl = (int(q[off+1]) + 2) * 4
		default:
			hl = (int(q[off+1]) + 1) * 8
		}
		nh = q[off]
		off += hl
	}
	return nh, off, off <= len(q)
}

// validQuote reports whether an ICMPv6 error quotes the offending packet's
// fixed header, its extension headers (up to a Fragment header with a
// nonzero offset, after which comes data) and 8 bytes after them (RFC 4443
// §2.4 (c) asks for as much as fits; Linux's icmpv6_notify wants this much
// and counts less as an error). The walk is bounded by the quote: every
// extension header is at least 8 bytes.
func validQuote(q []byte) bool {
	if len(q) < wire.IPv6HeaderSize || q[0]>>4 != 6 {
		return false
	}
	nh := q[6]
	off := wire.IPv6HeaderSize
	for isExtension(nh) {
		if off+8 > len(q) {
			return false
		}
		var hl int
		switch nh {
		case wire.ProtocolFragment:
			if wire.IPv6Fragment(q[off:]).FragmentOffset() != 0 {
				return off+wire.IPv6FragmentSize+8 <= len(q)
			}
			hl = wire.IPv6FragmentSize
		case wire.ProtocolAH:
			hl = (int(q[off+1]) + 2) * 4
		default:
			hl = (int(q[off+1]) + 1) * 8
		}
		nh = q[off]
		off += hl
	}
	return off+8 <= len(q)
}

// isErrorMessage reports whether the packet (Data() at its IPv6 header,
// checked) carries an ICMPv6 error message, about which no error is sent
// (RFC 4443 §2.4 (e)); a packet whose headers cannot be walked counts as
// one.
func (e *endpoint) isErrorMessage(h wire.IPv6) bool {
	proto, off := h.NextHeader(), wire.IPv6HeaderSize
	if isExtension(proto) {
		x, err := h.WalkExtensions(e.p.cfg.maxExt)
		if err != nil {
			return x.Protocol == wire.ProtocolICMPv6
		}
		if x.IsFragment() && x.FragmentOffset != 0 {
			return false
		}
		proto, off = x.Protocol, x.ProtocolOffset
	}
	if proto != wire.ProtocolICMPv6 {
		return false
	}
	end := wire.IPv6HeaderSize + int(h.PayloadLength())
	return off >= end || h[off] < 128
}

// icmpError sends an ICMPv6 error about pkt (Data() at its IPv6 header).
// It does not take ownership of pkt. No error is sent about an ICMPv6
// error, about a packet from an address that cannot be answered
// (unspecified, multicast, loopback), nor — unless multicastOK, which RFC
// 4443 §2.4 (e) allows for Packet Too Big and for Parameter Problem code 2
// about an option whose action demands it — about a packet sent to a
// multicast address or in a link-layer multicast or broadcast frame. The
// rest pass the rate limiter. The error quotes as much of the packet as
// fits in 1280 bytes and leaves from the address the packet was sent to
// when that is one of the stack's unicast addresses (as Linux), else from
// the address, on the link towards the offender, of the scope the offender
// can reach.
func (e *endpoint) icmpError(b *pipeline.Batch, pkt *pipeline.Packet, typ, code uint8, rest uint32, multicastOK bool) {
	c := &e.p.c
	if !e.p.cfg.icmpErrors {
		return
	}
	h := wire.IPv6(pkt.Data())
	if h.Check() != nil {
		return
	}
	src, dst := h.Src(), h.Dst()
	// ::1 is a martian source but on the loopback NIC, where the stack
	// answers itself (pkt.InNIC is it, or 0: a packet the stack sent).
	if isUnspecified(&src) || isMulticast(&src) || isLoopback(&src) && !e.loop && pkt.InNIC != 0 {
		c.icmpSuppressed.Inc()
		return
	}
	if !multicastOK && (isMulticast(&dst) || pkt.PktType == pipeline.PacketBroadcast || pkt.PktType == pipeline.PacketMulticast) {
		c.icmpSuppressed.Inc()
		return
	}
	if e.isErrorMessage(h) {
		c.icmpSuppressed.Inc()
		return
	}
	in := pkt.InNIC
	if in == 0 {
		in = e.nic.ID()
	}
	nic, nh, ok := e.routeTo(b, src, in)
	if !ok {
		c.icmpSuppressed.Inc()
		return
	}
	from, ok := nic.SourceAddress(netip.AddrFrom16(src))
	// A packet a transparent NIC took for any address is answered from
	// its destination, as if that host answered.
	anyDst := e.transparent && pkt.InNIC == e.nic.ID() && !isMulticast(&dst) && pkt.PktType == pipeline.PacketHost
	if _, local := b.Gen.IsLocal6(dst); local || anyDst {
		// About a packet to one of our unicast addresses the error
		// comes from that address (Linux icmp6_send): nmap takes port
		// unreachable from another address for a filtered port.
		from, ok = netip.AddrFrom16(dst), true
	}
	if !ok {
		c.noSource.Inc()
		return
	}
	// Errors to oneself are not rate limited (Linux's icmpv6_xrlim_allow
	// lets everything through to a loopback device).
	if !nic.NIC().IsLoopback() && !e.p.limiter.Allow(&e.p.cfg.rate, b.Now, typ, src, destShift(b, src)) {
		c.icmpRateLimited.Inc()
		return
	}
	quote := pkt.Data()
	if len(quote) > icmpErrorQuote {
		quote = quote[:icmpErrorQuote]
	}
	msg := e.p.pool.TryGet(wire.IPv6HeaderSize + wire.ICMPv6HeaderSize + len(quote))
	if msg == nil { // the quote is bounded; a size from the wire all the same
		c.icmpSuppressed.Inc()
		return
	}
	body, _ := msg.Append(wire.ICMPv6HeaderSize + len(quote))
	m := wire.ICMPv6(body)
	m.Encode(&wire.ICMPv6Fields{Type: typ, Code: code, Rest: rest})
	copy(body[wire.ICMPv6HeaderSize:], quote)
	f := from.As16()
	m.SetChecksum(m.CalculateChecksum(wire.PseudoHeaderChecksum(wire.ProtocolICMPv6, f[:], src[:], uint16(len(body)))))
	msg.InNIC = pkt.InNIC
	if !e.output(b, msg, nic, nh, f, src, wire.ProtocolICMPv6, 0, 0, e.p.mtuFor(b, nic, src, 0)) {
		return
	}
	switch typ {
	case wire.ICMPv6DstUnreachable:
		c.icmpUnreachOut.Inc()
	case wire.ICMPv6PacketTooBig:
		c.icmpTooBigOut.Inc()
	case wire.ICMPv6TimeExceeded:
		c.icmpTimeExcOut.Inc()
	case wire.ICMPv6ParamProblem:
		c.icmpParamOut.Inc()
	}
	c.icmpErrOut.Inc()
	c.sent.Inc()
}

// setICMPv6Checksum fills in the checksum of an ICMPv6 message from src to
// dst.
func setICMPv6Checksum(m []byte, src, dst [16]byte) {
	msg := wire.ICMPv6(m)
	msg.SetChecksum(0)
	msg.SetChecksum(msg.CalculateChecksum(wire.PseudoHeaderChecksum(wire.ProtocolICMPv6, src[:], dst[:], uint16(len(m)))))
}
