package ipv4

import (
	"net/netip"
	"sync/atomic"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Protocol is IPv4's protocol object, one per generation.
type Protocol struct {
	pool       *pipeline.Pool
	ttl        uint8
	icmpErrors bool
	ident      atomic.Uint32

	c counters
}

type counters struct {
	rx, delivered, forwarded, sent                                  *pipeline.Counter
	malformed                                                       [8]*pipeline.Counter // by wire.ParseError
	badChecksum, ttlExceeded, noRoute, notForwarding, tooBig        *pipeline.Counter
	fragUnsupported, unknownProto, martian, noSource, tooBigLocal   *pipeline.Counter
	icmpIn, icmpEchoIn, icmpEchoReplyOut, icmpErrOut, icmpMalformed *pipeline.Counter
	icmpSuppressed, linkBroadcast                                   *pipeline.Counter
}

func newProtocol(cs *pipeline.CounterSet, pool *pipeline.Pool, ttl uint8, icmpErrors bool) *Protocol {
	p := &Protocol{pool: pool, ttl: ttl, icmpErrors: icmpErrors}
	c := &p.c
	c.rx, c.delivered, c.forwarded, c.sent = cs.Get("rx"), cs.Get("delivered"), cs.Get("forwarded"), cs.Get("sent")
	for e := wire.ErrTooShort; e <= wire.ErrBadTotalLength; e++ {
		c.malformed[e] = cs.Get("malformed_" + e.Reason())
	}
	c.badChecksum = cs.Get("malformed_bad_checksum")
	c.ttlExceeded, c.noRoute, c.notForwarding = cs.Get("ttl_exceeded"), cs.Get("no_route"), cs.Get("not_forwarding")
	c.tooBig, c.fragUnsupported = cs.Get("too_big"), cs.Get("fragment_unsupported")
	c.unknownProto, c.martian, c.noSource = cs.Get("unknown_protocol"), cs.Get("martian"), cs.Get("no_source_address")
	c.tooBigLocal, c.linkBroadcast = cs.Get("too_big_local"), cs.Get("link_broadcast")
	c.icmpIn, c.icmpEchoIn = cs.Get("icmp_in"), cs.Get("icmp_echo_in")
	c.icmpEchoReplyOut, c.icmpErrOut = cs.Get("icmp_echo_reply_out"), cs.Get("icmp_error_out")
	c.icmpMalformed, c.icmpSuppressed = cs.Get("icmp_malformed"), cs.Get("icmp_error_suppressed")
	return p
}

// Number implements pipeline.NetworkProtocol.
func (p *Protocol) Number() pipeline.NetworkProtocolNumber { return pipeline.IPv4ProtocolNumber }

// MinimumPacketSize implements pipeline.NetworkProtocol.
func (p *Protocol) MinimumPacketSize() int { return wire.IPv4MinimumSize }

// ParseAddresses implements pipeline.NetworkProtocol.
func (p *Protocol) ParseAddresses(b []byte) (src, dst netip.Addr, ok bool) {
	h := wire.IPv4(b)
	if h.Check() != nil {
		return src, dst, false
	}
	return netip.AddrFrom4(h.Src()), netip.AddrFrom4(h.Dst()), true
}

// NewEndpoint implements pipeline.NetworkProtocol.
func (p *Protocol) NewEndpoint(nic pipeline.NetworkInterface) pipeline.NetworkEndpoint {
	return &endpoint{p: p, nic: nic}
}

// endpoint is IPv4 on one NIC. It holds no per-packet state: several
// workers may run it at once.
type endpoint struct {
	p   *Protocol
	nic pipeline.NetworkInterface
}

func (e *endpoint) Close() {}

// HandlePackets implements pipeline.NetworkEndpoint. Three passes over the
// batch: validate; route decision (forwarded packets to the front, local
// ones to the back); then the Forward hook and output for the first group,
// the Input hook and delivery for the second.
func (e *endpoint) HandlePackets(b *pipeline.Batch, pkts []*pipeline.Packet) {
	c := &e.p.c
	var rx uint64
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		rx++
		h := wire.IPv4(pkt.Data())
		if err := h.Check(); err != nil {
			pkts[i] = nil
			pe, _ := err.(wire.ParseError)
			if int(pe) >= len(c.malformed) || c.malformed[pe] == nil {
				pe = wire.ErrTooShort
			}
			b.Drop(pkt, c.malformed[pe])
			continue
		}
		if !h.IsChecksumValid() {
			pkts[i] = nil
			b.Drop(pkt, c.badChecksum)
			continue
		}
		pkt.Truncate(int(h.TotalLength()))
		pkt.SetNetworkHeader()
		if martianSource(h.Src()) {
			pkts[i] = nil
			b.Drop(pkt, c.martian)
		}
	}
	c.rx.Add(rx)
	b.RunHook(pipeline.Prerouting, pkts)

	// Route decision: forwarded packets to [0,k), local ones after.
	k := 0
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		if _, _, local := b.Gen.IsLocal4(wire.IPv4(pkt.Data()).Dst()); !local {
			pkts[k], pkts[i] = pkts[i], pkts[k]
			k++
		}
	}
	if k > 0 {
		e.forward(b, pkts[:k])
	}
	if k < len(pkts) {
		e.deliver(b, pkts[k:])
	}
}

// forward routes, checks and rewrites packets not addressed to the stack.
func (e *endpoint) forward(b *pipeline.Batch, pkts []*pipeline.Packet) {
	c := &e.p.c
	if !e.nic.Forwarding(4) {
		for i, pkt := range pkts {
			pkts[i] = nil
			b.Drop(pkt, c.notForwarding)
		}
		return
	}
	routes := b.Gen.Routes()
	var lastDst [4]byte
	var lastRoute *pipeline.Route
	var lastMTU int
	for i, pkt := range pkts {
		h := wire.IPv4(pkt.Data())
		dst := h.Dst()
		if pkt.PktType != pipeline.PacketHost {
			// A link-layer broadcast or multicast is never forwarded
			// (RFC 1812 §5.3.4).
			pkts[i] = nil
			b.Drop(pkt, c.linkBroadcast)
			continue
		}
		if dst[0] >= 224 || dst[0] == 0 || dst[0] == 127 {
			// Multicast, class E and martian destinations are not
			// forwarded (no multicast routing).
			pkts[i] = nil
			b.Drop(pkt, c.martian)
			continue
		}
		if h.TTL() <= 1 {
			pkts[i] = nil
			e.icmpError(b, pkt, wire.ICMPv4TimeExceeded, wire.ICMPv4TTLExceeded, 0)
			b.Drop(pkt, c.ttlExceeded)
			continue
		}
		r, mtu := lastRoute, lastMTU
		if r == nil || dst != lastDst {
			r = routes.Lookup4(dst)
			if r == nil {
				pkts[i] = nil
				e.icmpError(b, pkt, wire.ICMPv4DstUnreachable, wire.ICMPv4NetUnreachable, 0)
				b.Drop(pkt, c.noRoute)
				continue
			}
			out, ok := b.Gen.NIC(r.NIC)
			if !ok {
				pkts[i] = nil
				e.icmpError(b, pkt, wire.ICMPv4DstUnreachable, wire.ICMPv4NetUnreachable, 0)
				b.Drop(pkt, c.noRoute)
				continue
			}
			mtu = out.MTU()
			lastDst, lastRoute, lastMTU = dst, r, mtu
		}
		if size := wireSize(pkt, h); size > mtu {
			pkts[i] = nil
			if h.DontFragment() {
				e.icmpError(b, pkt, wire.ICMPv4DstUnreachable, wire.ICMPv4FragmentationNeeded, wire.ICMPv4FragNeededRest(uint16(mtu)))
				b.Drop(pkt, c.tooBig)
			} else {
				b.Drop(pkt, c.fragUnsupported)
			}
			continue
		}
		h.DecTTL()
		pkt.OutNIC = r.NIC
		if r.Via.IsValid() {
			pkt.NextHop = r.Via
		} else {
			pkt.NextHop = netip.AddrFrom4(dst)
		}
	}
	b.RunHook(pipeline.Forward, pkts)
	var n uint64
	for i, pkt := range pkts {
		if pkt != nil {
			b.Output(pkt)
			pkts[i] = nil
			n++
		}
	}
	c.forwarded.Add(n)
}

// wireSize is the size of the largest packet pkt stands for on the wire: for
// a GSO super-packet, one segment.
func wireSize(pkt *pipeline.Packet, h wire.IPv4) int {
	if pkt.GSO.Type != pipeline.GSONone && pkt.GSO.SegSize > 0 {
		return int(pkt.GSO.HdrLen) + int(pkt.GSO.SegSize)
	}
	return int(h.TotalLength())
}

// martianSource: a source no host may use (RFC 1812 §5.3.7): 0/8 but
// 0.0.0.0 (DHCP), 127/8, multicast, class E, broadcast.
func martianSource(src [4]byte) bool {
	switch {
	case src == [4]byte{}:
		return false
	case src[0] == 0, src[0] == 127, src[0] >= 224:
		return true
	}
	return false
}

// deliver hands packets addressed to the stack to ICMP or the transport.
func (e *endpoint) deliver(b *pipeline.Batch, pkts []*pipeline.Packet) {
	c := &e.p.c
	b.RunHook(pipeline.Input, pkts)
	var delivered uint64
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		h := wire.IPv4(pkt.Data())
		if h.MoreFragments() || h.FragmentOffset() != 0 {
			pkts[i] = nil
			b.Drop(pkt, c.fragUnsupported)
			continue
		}
		pkt.TransProto = pipeline.TransportProtocolNumber(h.Protocol())
		pkt.Pull(h.HeaderLength())
		pkt.SetTransportHeader()
		if pkt.TransProto == pipeline.ICMPv4ProtocolNumber {
			pkts[i] = nil
			e.handleICMP(b, pkt, h)
			delivered++
		}
	}
	// Runs of one transport protocol go to it as a batch.
	for i := 0; i < len(pkts); {
		pkt := pkts[i]
		if pkt == nil {
			i++
			continue
		}
		proto := pkt.TransProto
		j := i + 1
		for j < len(pkts) && (pkts[j] == nil || pkts[j].TransProto == proto) {
			j++
		}
		if tp := b.TransportProtocol(proto); tp != nil {
			for _, q := range pkts[i:j] {
				if q != nil {
					delivered++
				}
			}
			tp.HandlePackets(b, pkts[i:j])
		} else {
			for k := i; k < j; k++ {
				if q := pkts[k]; q != nil {
					pkts[k] = nil
					q.RewindToNetwork()
					if _, bcast, _ := b.Gen.IsLocal4(wire.IPv4(q.Data()).Dst()); !bcast {
						e.icmpError(b, q, wire.ICMPv4DstUnreachable, wire.ICMPv4ProtoUnreachable, 0)
					}
					b.Drop(q, c.unknownProto)
				}
			}
		}
		clear(pkts[i:j])
		i = j
	}
	c.delivered.Add(delivered)
}

// handleICMP answers echo requests in place and counts the rest. It takes
// ownership of pkt (Data() at the ICMP header).
func (e *endpoint) handleICMP(b *pipeline.Batch, pkt *pipeline.Packet, ip wire.IPv4) {
	c := &e.p.c
	c.icmpIn.Inc()
	m := wire.ICMPv4(pkt.Data())
	if m.Check() != nil || !m.IsChecksumValid() {
		b.Drop(pkt, c.icmpMalformed)
		return
	}
	if m.Type() != wire.ICMPv4Echo {
		// Echo replies and errors go to an ICMP transport (ping sockets,
		// a test collector) when one is configured.
		if tp := b.TransportProtocol(pipeline.ICMPv4ProtocolNumber); tp != nil {
			one := [1]*pipeline.Packet{pkt}
			tp.HandlePackets(b, one[:])
			return
		}
		pkt.Release()
		return
	}
	c.icmpEchoIn.Inc()
	src, dst := ip.Src(), ip.Dst()
	if _, bcast, _ := b.Gen.IsLocal4(dst); bcast {
		pkt.Release() // like Linux: icmp_echo_ignore_broadcasts
		return
	}
	// Turn the request into the reply in place: type 8 → 0 with an
	// incremental checksum update, then a fresh IP header in front.
	old := uint16(m.Type())<<8 | uint16(m.Code())
	m.SetType(wire.ICMPv4EchoReply)
	m.SetChecksum(wire.ChecksumUpdate16(m.Checksum(), old, uint16(wire.ICMPv4EchoReply)<<8|uint16(m.Code())))
	e.send(b, pkt, dst, src, ip.TOS(), c.icmpEchoReplyOut)
}

// send pushes an IPv4 header (from → to, protocol ICMP) in front of Data(),
// routes the packet and outputs it through the Output hook. It takes
// ownership of pkt.
func (e *endpoint) send(b *pipeline.Batch, pkt *pipeline.Packet, from, to [4]byte, tos uint8, count *pipeline.Counter) {
	c := &e.p.c
	r := b.Gen.Routes().Lookup4(to)
	if r == nil {
		b.Drop(pkt, c.noRoute)
		return
	}
	if _, ok := pkt.Push(wire.IPv4MinimumSize); !ok {
		b.Drop(pkt, c.tooBigLocal)
		return
	}
	h := wire.IPv4(pkt.Data())
	h.Encode(&wire.IPv4Fields{
		TOS: tos, TotalLength: uint16(pkt.Len()), ID: uint16(e.p.ident.Add(1)),
		TTL: e.p.ttl, Protocol: wire.ProtocolICMP, Src: from, Dst: to,
	})
	pkt.SetNetworkHeader()
	pkt.NetProto = pipeline.IPv4ProtocolNumber
	pkt.TransProto = pipeline.ICMPv4ProtocolNumber
	pkt.OutNIC = r.NIC
	pkt.NextHop = r.NextHop(netip.AddrFrom4(to))
	pkt.GSO = pipeline.GSO{}
	one := [1]*pipeline.Packet{pkt}
	b.RunHook(pipeline.Output, one[:])
	if one[0] != nil {
		b.Output(one[0])
		count.Inc()
		c.sent.Inc()
	}
}

// icmpErrorPayload is how much of the offending packet an ICMP error
// carries: as much as fits in 576 bytes (RFC 1812 §4.3.2.3).
const icmpErrorPayload = 576 - wire.IPv4MinimumSize - wire.ICMPv4MinimumSize

// icmpError sends an ICMP error about pkt (Data() at its IPv4 header). It
// does not take ownership of pkt. No error is sent about an ICMP error,
// a non-first fragment, a broadcast or multicast packet, or a packet from an
// address that cannot be answered (RFC 1122 §3.2.2).
func (e *endpoint) icmpError(b *pipeline.Batch, pkt *pipeline.Packet, typ, code uint8, rest uint32) {
	c := &e.p.c
	if !e.p.icmpErrors {
		return
	}
	h := wire.IPv4(pkt.Data())
	src, dst := h.Src(), h.Dst()
	if h.FragmentOffset() != 0 || src == [4]byte{} || src[0] >= 224 || dst[0] >= 224 ||
		pkt.PktType == pipeline.PacketBroadcast || pkt.PktType == pipeline.PacketMulticast {
		c.icmpSuppressed.Inc()
		return
	}
	if _, bcast, _ := b.Gen.IsLocal4(dst); bcast {
		c.icmpSuppressed.Inc()
		return
	}
	if h.Protocol() == wire.ProtocolICMP {
		if p := h.Payload(); len(p) < 1 || !isICMPQuery(p[0]) {
			c.icmpSuppressed.Inc()
			return
		}
	}
	// Source: the address of the NIC the error leaves through.
	r := b.Gen.Routes().Lookup4(src)
	if r == nil {
		c.icmpSuppressed.Inc()
		return
	}
	out, ok := b.Gen.NIC(r.NIC)
	if !ok {
		c.icmpSuppressed.Inc()
		return
	}
	from, ok := out.PrimaryAddress(4)
	if !ok {
		if from, ok = e.nic.PrimaryAddress(4); !ok {
			c.noSource.Inc()
			return
		}
	}
	quote := pkt.Data()
	if len(quote) > icmpErrorPayload {
		quote = quote[:icmpErrorPayload]
	}
	msg := e.p.pool.Get(wire.IPv4MinimumSize + wire.ICMPv4MinimumSize + len(quote))
	body, _ := msg.Append(wire.ICMPv4MinimumSize + len(quote))
	m := wire.ICMPv4(body)
	m.Encode(&wire.ICMPv4Fields{Type: typ, Code: code, Rest: rest})
	copy(m.Payload(), quote)
	m.SetChecksum(m.CalculateChecksum())
	msg.InNIC = pkt.InNIC
	e.send(b, msg, from.Addr().As4(), src, 0, c.icmpErrOut)
}

// isICMPQuery reports whether an ICMP type is a query (echo, timestamp …),
// about which errors may be sent, as opposed to an error message.
func isICMPQuery(t uint8) bool {
	switch t {
	case wire.ICMPv4EchoReply, wire.ICMPv4Echo, 13, 14, 15, 16, 17, 18:
		return true
	}
	return false
}

// WritePackets implements pipeline.NetworkEndpoint: it pushes an IPv4
// header for each packet (Data() at the transport header) and outputs it.
func (e *endpoint) WritePackets(b *pipeline.Batch, r pipeline.RouteInfo, params pipeline.NetworkHeaderParams, pkts []*pipeline.Packet) {
	c := &e.p.c
	ttl := params.TTL
	if ttl == 0 {
		ttl = e.p.ttl
	}
	from, to := r.LocalAddr.As4(), r.RemoteAddr.As4()
	mtu := r.MTU
	if mtu == 0 {
		mtu = e.nic.MTU()
	}
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		if pkt.Len()+wire.IPv4MinimumSize > mtu && pkt.GSO.Type == pipeline.GSONone {
			pkts[i] = nil
			b.Drop(pkt, c.tooBigLocal)
			continue
		}
		if _, ok := pkt.Push(wire.IPv4MinimumSize); !ok {
			pkts[i] = nil
			b.Drop(pkt, c.tooBigLocal)
			continue
		}
		h := wire.IPv4(pkt.Data())
		h.Encode(&wire.IPv4Fields{
			TOS: params.TOS, TotalLength: uint16(pkt.Len()), ID: uint16(e.p.ident.Add(1)),
			TTL: ttl, Protocol: uint8(params.Protocol), Src: from, Dst: to,
		})
		pkt.SetNetworkHeader()
		pkt.NetProto = pipeline.IPv4ProtocolNumber
		pkt.TransProto = params.Protocol
		pkt.OutNIC = r.NIC
		pkt.NextHop = r.NextHop
	}
	b.RunHook(pipeline.Output, pkts)
	var n uint64
	for i, pkt := range pkts {
		if pkt != nil {
			pkts[i] = nil
			b.Output(pkt)
			n++
		}
	}
	c.sent.Add(n)
}

// ReturnError implements pipeline.NetworkEndpoint.
func (e *endpoint) ReturnError(b *pipeline.Batch, pkt *pipeline.Packet, kind pipeline.TransportErrorKind) {
	if pkt.RewindToNetwork() {
		typ, code, rest := uint8(wire.ICMPv4DstUnreachable), uint8(0), uint32(0)
		switch kind {
		case pipeline.ErrorPortUnreachable:
			code = wire.ICMPv4PortUnreachable
		case pipeline.ErrorProtocolUnreachable:
			code = wire.ICMPv4ProtoUnreachable
		case pipeline.ErrorNetUnreachable:
			code = wire.ICMPv4NetUnreachable
		case pipeline.ErrorHostUnreachable:
			code = wire.ICMPv4HostUnreachable
		case pipeline.ErrorAdminProhibited:
			code = wire.ICMPv4AdminProhibited
		case pipeline.ErrorTTLExceeded:
			typ, code = wire.ICMPv4TimeExceeded, wire.ICMPv4TTLExceeded
		case pipeline.ErrorPacketTooBig:
			code = wire.ICMPv4FragmentationNeeded
			rest = wire.ICMPv4FragNeededRest(uint16(e.nic.MTU()))
		}
		e.icmpError(b, pkt, typ, code, rest)
	}
	pkt.Release()
}

var (
	_ pipeline.NetworkProtocol = (*Protocol)(nil)
	_ pipeline.NetworkEndpoint = (*endpoint)(nil)
)
