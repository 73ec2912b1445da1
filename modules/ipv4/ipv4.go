package ipv4

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pipestack/pipestack/modules/internal/iplocal"
	"github.com/pipestack/pipestack/modules/internal/pmtu"
	"github.com/pipestack/pipestack/modules/internal/reasm"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// rpMode is a reverse-path filter mode (Linux rp_filter 0, 2, 1).
type rpMode uint8

const (
	rpOff rpMode = iota
	rpLoose
	rpStrict
)

// config is the protocol's configuration in one generation.
type config struct {
	ttl        uint8
	icmpErrors bool
	rate       rateConfig
	reasm      reasm.Limits
	defragAll  bool
	rpDefault  rpMode
	rpLinks    map[string]rpMode

	// Path MTU discovery (RFC 1191): how long a learnt path MTU holds,
	// how many the cache keeps, the lowest one believed (Linux's
	// min_pmtu: a report below it sets this one, without DF).
	pmtuTimeout time.Duration
	pmtuMax     int
	pmtuMin     int
}

// Protocol is IPv4's protocol object, one per generation. The ICMP limiter
// and the reassembly queues are long-lived (shared across generations).
type Protocol struct {
	pool  *pipeline.Pool
	cfg   config
	ttl   uint8
	ident atomic.Uint32

	reasmLim reasm.Limits
	limiter  *icmpLimiter
	reasm    *reassembler
	pmtu     *pmtu.Cache[[4]byte]

	c counters
}

type counters struct {
	rx, delivered, forwarded, sent                                  *pipeline.Counter
	malformed                                                       [8]*pipeline.Counter // by wire.ParseError
	badChecksum, badOptions, sourceRoute                            *pipeline.Counter
	martianSrc, martianDst, rpFilter, multicastFwd                  *pipeline.Counter
	ttlExceeded, noRoute, notForwarding, tooBig                     *pipeline.Counter
	unknownProto, noSource, tooBigLocal, linkBroadcast              *pipeline.Counter
	fragOK, fragCreated, fragFails, resumeUnsupported               *pipeline.Counter
	icmpIn, icmpEchoIn, icmpEchoReplyOut, icmpErrOut, icmpMalformed *pipeline.Counter
	icmpSuppressed, icmpRateLimited                                 *pipeline.Counter
	icmpUnreachOut, icmpTimeExceededOut, icmpParamProblemOut        *pipeline.Counter
	icmpFragNeededIn, pmtuUpdates, pmtuRejected                     *pipeline.Counter

	reasm  reasm.Counters
	closed closedCounters
}

func newProtocol(cs *pipeline.CounterSet, pool *pipeline.Pool, cfg config) *Protocol {
	p := &Protocol{pool: pool, cfg: cfg, ttl: cfg.ttl, reasmLim: cfg.reasm}
	c := &p.c
	c.rx, c.delivered, c.forwarded, c.sent = cs.Get("rx"), cs.Get("delivered"), cs.Get("forwarded"), cs.Get("sent")
	for e := wire.ErrTooShort; e <= wire.ErrBadTotalLength; e++ {
		c.malformed[e] = cs.Get("malformed_" + e.Reason())
	}
	c.badChecksum, c.badOptions = cs.Get("malformed_bad_checksum"), cs.Get("malformed_options")
	c.sourceRoute = cs.Get("source_route")
	c.martianSrc, c.martianDst = cs.Get("martian_source"), cs.Get("martian_destination")
	c.rpFilter, c.multicastFwd = cs.Get("rp_filter"), cs.Get("multicast_not_forwarded")
	c.ttlExceeded, c.noRoute, c.notForwarding = cs.Get("ttl_exceeded"), cs.Get("no_route"), cs.Get("not_forwarding")
	c.tooBig = cs.Get("too_big")
	c.unknownProto, c.noSource = cs.Get("unknown_protocol"), cs.Get("no_source_address")
	c.tooBigLocal, c.linkBroadcast = cs.Get("too_big_local"), cs.Get("link_broadcast")
	c.fragOK, c.fragCreated, c.fragFails = cs.Get("frag_ok"), cs.Get("frag_created"), cs.Get("frag_fails")
	c.resumeUnsupported = cs.Get("resume_unsupported")
	c.icmpIn, c.icmpEchoIn = cs.Get("icmp_in"), cs.Get("icmp_echo_in")
	c.icmpEchoReplyOut, c.icmpErrOut = cs.Get("icmp_echo_reply_out"), cs.Get("icmp_error_out")
	c.icmpMalformed, c.icmpSuppressed = cs.Get("icmp_malformed"), cs.Get("icmp_error_suppressed")
	c.icmpRateLimited = cs.Get("icmp_rate_limited")
	c.icmpUnreachOut, c.icmpTimeExceededOut = cs.Get("icmp_dest_unreachable_out"), cs.Get("icmp_time_exceeded_out")
	c.icmpParamProblemOut = cs.Get("icmp_param_problem_out")
	c.icmpFragNeededIn, c.pmtuUpdates, c.pmtuRejected = cs.Get("icmp_frag_needed_in"), cs.Get("pmtu_updates"), cs.Get("pmtu_rejected")
	c.reasm = reasm.NewCounters(cs)
	c.closed = newClosedCounters(cs)
	return p
}

// Number implements pipeline.NetworkProtocol.
func (p *Protocol) Number() pipeline.NetworkProtocolNumber { return pipeline.IPv4ProtocolNumber }

// NewEndpoint implements pipeline.NetworkProtocol.
func (p *Protocol) NewEndpoint(nic pipeline.NetworkInterface) pipeline.NetworkEndpoint {
	rp := p.cfg.rpDefault
	if m, ok := p.cfg.rpLinks[nic.Name()]; ok {
		rp = m
	}
	loop := nic.NIC() != nil && nic.NIC().IsLoopback()
	if loop {
		rp = rpOff
	}
	return &endpoint{p: p, nic: nic, rp: rp, loop: loop, transparent: !loop && nic.Transparent()}
}

// endpoint is IPv4 on one NIC. It holds no per-packet state: several
// workers may run it at once.
type endpoint struct {
	p   *Protocol
	nic pipeline.NetworkInterface
	rp  rpMode
	// loop: the stack's loopback NIC (pipeline/loopback.go). What it
	// receives the stack sent to itself: no martian checks, every packet
	// is local (Linux keeps the output route of such a packet).
	loop bool
	// transparent: the link's `transparent: true`: unicast packets to any
	// address are delivered, not forwarded (pipeline.NetworkInterface).
	transparent bool
}

func (e *endpoint) Close() {}

func (e *endpoint) dropMalformed(b *pipeline.Batch, pkt *pipeline.Packet, err error) {
	c := &e.p.c
	pe, _ := err.(wire.ParseError)
	if int(pe) >= len(c.malformed) || c.malformed[pe] == nil {
		pe = wire.ErrTooShort
	}
	b.Drop(pkt, c.malformed[pe])
}

// HandlePackets implements pipeline.NetworkEndpoint. Three passes over the
// batch: validate (header, anti-spoofing, options) and the Prerouting hook;
// route decision (forwarded packets to the front, local ones to the back);
// then the Forward hook and output for the first group, reassembly, the
// Input hook and delivery for the second. Each step after a hook is a
// function of its own, where a packet stolen at that hook resumes
// (ResumeAfter).
func (e *endpoint) HandlePackets(b *pipeline.Batch, pkts []*pipeline.Packet) {
	c := &e.p.c
	var rx uint64
	// Source checks are cached per run of one source address.
	var lastSrc [4]byte
	var lastBad *pipeline.Counter
	haveSrc := false
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		rx++
		h := wire.IPv4(pkt.Data())
		if err := h.Check(); err != nil {
			pkts[i] = nil
			e.dropMalformed(b, pkt, err)
			continue
		}
		if !h.IsChecksumValid() {
			pkts[i] = nil
			b.Drop(pkt, c.badChecksum)
			continue
		}
		pkt.Truncate(int(h.TotalLength()))
		pkt.SetNetworkHeader()
		src, dst := h.Src(), h.Dst()
		if e.loop {
			continue
		}
		if !haveSrc || src != lastSrc {
			lastSrc, lastBad, haveSrc = src, e.checkSource(b, src), true
		}
		if lastBad != nil {
			pkts[i] = nil
			b.Drop(pkt, lastBad)
			continue
		}
		if martianDestination(dst) {
			pkts[i] = nil
			b.Drop(pkt, c.martianDst)
			continue
		}
		if h.HeaderLength() > wire.IPv4MinimumSize {
			if ptr := h.OptionsError(); ptr >= 0 {
				pkts[i] = nil
				e.icmpError(b, pkt, wire.ICMPv4ParamProblem, 0, wire.ICMPv4ParamProblemRest(uint8(ptr)))
				b.Drop(pkt, c.badOptions)
				continue
			}
			if h.SourceRouted() {
				// Like Linux with accept_source_route=0.
				pkts[i] = nil
				b.Drop(pkt, c.sourceRoute)
				continue
			}
		}
		if e.p.cfg.defragAll && (h.MoreFragments() || h.FragmentOffset() != 0) {
			user := userDefrag
			if _, _, local := b.Gen.IsLocal4(dst); local {
				user = userLocal // times out with ICMP, as local delivery's
			}
			pkts[i] = e.p.reassembleIn(b, b.Now, pkt, user)
		}
	}
	c.rx.Add(rx)
	b.RunHook(pipeline.Prerouting, pkts)
	e.route(b, pkts)
}

// route is the route decision (after Prerouting): forwarded packets to
// [0,k), local ones after.
func (e *endpoint) route(b *pipeline.Batch, pkts []*pipeline.Packet) {
	if e.loop {
		e.deliver(b, pkts)
		return
	}
	k := 0
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		dst := wire.IPv4(pkt.Data()).Dst()
		if _, _, local := b.Gen.IsLocal4(dst); !local && !e.takesAny(pkt, dst) {
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

// takesAny: a transparent NIC delivers a unicast packet to any address
// (pipeline.NetworkInterface.Transparent).
func (e *endpoint) takesAny(pkt *pipeline.Packet, dst [4]byte) bool {
	return e.transparent && pkt.PktType == pipeline.PacketHost && dst[0] < 224
}

// checkSource returns the drop counter for a source address that must not
// be accepted on this NIC, or nil. Martian sources (RFC 1812 §5.3.7): 0/8
// (but 0.0.0.0, which a DHCP client uses, and which forward refuses),
// 127/8, multicast, class E and the limited broadcast, and the stack's own
// addresses (or its subnets' broadcast addresses) coming from outside. Then
// the reverse-path filter: loose wants some route back to the source,
// strict one that leaves through this NIC (RFC 3704).
func (e *endpoint) checkSource(b *pipeline.Batch, src [4]byte) *pipeline.Counter {
	c := &e.p.c
	if src == [4]byte{} {
		return nil
	}
	if src[0] == 0 || src[0] == 127 || src[0] >= 224 {
		return c.martianSrc
	}
	if _, _, own := b.Gen.IsLocal4(src); own {
		return c.martianSrc
	}
	if e.rp != rpOff {
		r := b.Gen.Routes().Lookup4(src)
		if r == nil || (e.rp == rpStrict && r.NIC != e.nic.ID()) {
			return c.rpFilter
		}
	}
	return nil
}

// martianDestination: 0/8, 127/8 (from outside: the stack's own packets to
// 127/8 arrive on the loopback NIC, which skips the check) and class E but
// the limited broadcast.
func martianDestination(dst [4]byte) bool {
	switch {
	case dst[0] == 0, dst[0] == 127:
		return true
	case dst[0] >= 240:
		return dst != [4]byte{255, 255, 255, 255}
	}
	return false
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
	policy := b.Gen.RouteRules() != nil // route tables chosen by mark
	var lastDst [4]byte
	var lastMark uint32
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
		if dst[0] >= 224 {
			// No multicast routing.
			pkts[i] = nil
			b.Drop(pkt, c.multicastFwd)
			continue
		}
		if h.Src() == [4]byte{} {
			// 0.0.0.0 is only accepted as a source by the stack itself.
			pkts[i] = nil
			b.Drop(pkt, c.martianSrc)
			continue
		}
		if h.TTL() <= 1 {
			pkts[i] = nil
			e.icmpError(b, pkt, wire.ICMPv4TimeExceeded, wire.ICMPv4TTLExceeded, 0)
			b.Drop(pkt, c.ttlExceeded)
			continue
		}
		r, mtu := lastRoute, lastMTU
		if r == nil || dst != lastDst || pkt.Mark != lastMark {
			if policy {
				r = b.Gen.ForwardRoute4(dst, pkt.Mark)
			} else {
				r = routes.Lookup4(dst)
			}
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
			lastDst, lastMark, lastRoute, lastMTU = dst, pkt.Mark, r, mtu
		}
		if size := wireSize(pkt, h); size > mtu {
			switch {
			case h.DontFragment():
				pkts[i] = nil
				e.icmpError(b, pkt, wire.ICMPv4DstUnreachable, wire.ICMPv4FragmentationNeeded, wire.ICMPv4FragNeededRest(uint16(mtu)))
				b.Drop(pkt, c.tooBig)
				continue
			case pkt.GSO.Type != pipeline.GSONone:
				// Segments without DF over the MTU would have to be
				// segmented, then fragmented: not supported.
				pkts[i] = nil
				b.Drop(pkt, c.fragFails)
				continue
			}
			// Fragmented at transmit, after Postrouting: the Forward
			// and Postrouting hooks see it whole.
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
	e.forwarded(b, pkts)
}

// forwarded queues packets past the Forward hook for their NIC.
func (e *endpoint) forwarded(b *pipeline.Batch, pkts []*pipeline.Packet) {
	var n uint64
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		pkts[i] = nil
		n++
		b.Output(pkt)
	}
	e.p.c.forwarded.Add(n)
}

// wireSize is the size of the largest packet pkt stands for on the wire: for
// a GSO super-packet, one segment.
func wireSize(pkt *pipeline.Packet, h wire.IPv4) int {
	if pkt.GSO.Type != pipeline.GSONone && pkt.GSO.SegSize > 0 {
		return int(pkt.GSO.HdrLen) + int(pkt.GSO.SegSize)
	}
	return int(h.TotalLength())
}

// deliver reassembles fragments and hands packets addressed to the stack to
// ICMP or the transport. Reassembly happens before the Input hook (which
// sees whole datagrams, as in Linux): a fragment is stolen (its slot set to
// nil) and held; the fragment that completes a datagram has its slot taken
// by the reassembled datagram, which is delivered in this same batch — no
// re-injection, no second pass through the stack.
func (e *endpoint) deliver(b *pipeline.Batch, pkts []*pipeline.Packet) {
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		if h := wire.IPv4(pkt.Data()); h.MoreFragments() || h.FragmentOffset() != 0 {
			pkts[i] = e.p.reassembleIn(b, b.Now, pkt, userLocal)
		}
	}
	b.RunHook(pipeline.Input, pkts)
	e.local(b, pkts)
}

// local delivers packets past the Input hook to ICMP or their transport.
func (e *endpoint) local(b *pipeline.Batch, pkts []*pipeline.Packet) {
	c := &e.p.c
	var delivered uint64
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		h := wire.IPv4(pkt.Data())
		pkt.TransProto = pipeline.TransportProtocolNumber(h.Protocol())
		pkt.Pull(h.HeaderLength())
		pkt.SetTransportHeader()
		if pkt.TransProto == pipeline.ICMPv4ProtocolNumber {
			pkts[i] = nil
			e.handleICMP(b, pkt, h)
			delivered++
		}
	}
	// Runs of one transport protocol go to it as a batch; a protocol
	// without a transport is answered as a host does (closed.go).
	delivered += iplocal.Deliver(b, pkts, func(q *pipeline.Packet) { e.noTransport(b, q) })
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
	if isICMPError(m.Type()) && !validQuote(m.Payload()) {
		b.Drop(pkt, c.icmpMalformed)
		return
	}
	if m.Type() != wire.ICMPv4Echo {
		mtu := 0
		if m.Type() == wire.ICMPv4DstUnreachable && m.Code() == wire.ICMPv4FragmentationNeeded {
			var ok bool
			if mtu, ok = e.fragNeeded(b, m); !ok {
				b.Drop(pkt, c.pmtuRejected)
				return
			}
		}
		// Errors about a packet we sent go to its transport protocol;
		// every message but echo requests also goes to an ICMP transport
		// (ping sockets, a test collector) when one is configured.
		iplocal.ICMP(b, pkt, pipeline.ICMPv4ProtocolNumber, isICMPError(m.Type()), func(p *pipeline.Packet) bool {
			return e.errorToTransport(b, p, wire.ICMPv4(p.Data()), mtu)
		})
		return
	}
	c.icmpEchoIn.Inc()
	src, dst := ip.Src(), ip.Dst()
	if _, bcast, _ := b.Gen.IsLocal4(dst); bcast {
		pkt.Release() // like Linux: icmp_echo_ignore_broadcasts
		return
	}
	if !e.loop && !e.p.limiter.allow(&e.p.cfg.rate, b.Now, wire.ICMPv4EchoReply, 0, src) {
		b.Drop(pkt, c.icmpRateLimited)
		return
	}
	// Turn the request into the reply in place: type 8 → 0 with an
	// incremental checksum update, then a fresh IP header in front.
	old := uint16(m.Type())<<8 | uint16(m.Code())
	m.SetType(wire.ICMPv4EchoReply)
	m.SetChecksum(wire.ChecksumUpdate16(m.Checksum(), old, uint16(wire.ICMPv4EchoReply)<<8|uint16(m.Code())))
	e.send(b, pkt, dst, src, ip.TOS(), c.icmpEchoReplyOut)
}

// validQuote reports whether an ICMP error quotes at least the IPv4 header
// and 8 bytes after it (RFC 792), what Linux requires before it hands an
// error on (icmp_unreach, icmp_socket_deliver; else ICMP InErrors).
func validQuote(q []byte) bool {
	if len(q) < wire.IPv4MinimumSize || q[0]>>4 != 4 {
		return false
	}
	hl := int(q[0]&0xf) * 4
	return hl >= wire.IPv4MinimumSize && len(q) >= hl+8
}

func isICMPError(t uint8) bool {
	return t == wire.ICMPv4DstUnreachable || t == wire.ICMPv4TimeExceeded || t == wire.ICMPv4ParamProblem
}

// errorToTransport hands an ICMP error to the transport protocol of the
// packet it quotes, when that protocol handles errors (see
// pipeline.TransportErrorHandler). It takes ownership of pkt when it returns
// true. The quoted packet is usually truncated, so only its header length
// and 8 bytes of transport header are required. pmtu is the path MTU a
// fragmentation needed message left in force (fragNeeded).
func (e *endpoint) errorToTransport(b *pipeline.Batch, pkt *pipeline.Packet, m wire.ICMPv4, pmtu int) bool {
	kind, ok := icmpKind(m.Type(), m.Code())
	if !ok {
		return false
	}
	info := uint32(0)
	if kind == pipeline.ErrorPacketTooBig {
		info = uint32(pmtu)
	}
	q := m.Payload()
	if len(q) < wire.IPv4MinimumSize || q[0]>>4 != 4 {
		return false
	}
	hl := int(q[0]&0xf) * 4
	if hl < wire.IPv4MinimumSize || len(q) < hl+8 {
		return false
	}
	return iplocal.ErrorToTransport(b, q[9], kind, info, q, pkt)
}

// send pushes an IPv4 header (from → to, protocol ICMP) in front of Data(),
// routes the packet and outputs it through the Output hook (whole: it is
// fragmented at transmit if it must be). It takes ownership of pkt.
func (e *endpoint) send(b *pipeline.Batch, pkt *pipeline.Packet, from, to [4]byte, tos uint8, count *pipeline.Counter) {
	c := &e.p.c
	r := b.Gen.LookupRoute4(to) // the loopback NIC for one of our addresses
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
	pkt.PathMTU = 0xffff // the egress NIC's MTU, or the path's when learnt (no DF: Linux's ICMP socket)
	if m, _, ok := e.p.pmtu.Get(to, b.Now); ok {
		pkt.PathMTU = uint16(m)
	}
	// A packet the stack sends is new to conntrack, as Linux's fresh skb:
	// an echo reply made in the request's buffer must not keep the
	// request's entry, state and mark (conntrack would skip it at Output
	// and the entry would never see its reply).
	pkt.ConnTrack, pkt.CTInfo, pkt.Mark = 0, pipeline.CTNone, 0
	one := [1]*pipeline.Packet{pkt}
	b.RunHook(pipeline.Output, one[:])
	if one[0] == nil {
		return
	}
	b.Output(one[0])
	count.Inc()
	c.sent.Inc()
}

// icmpErrorPayload is how much of the offending packet an ICMP error
// carries: as much as fits in 576 bytes (RFC 1812 §4.3.2.3).
const icmpErrorPayload = 576 - wire.IPv4MinimumSize - wire.ICMPv4MinimumSize

// icmpError sends an ICMP error about pkt (Data() at its IPv4 header). It
// does not take ownership of pkt. No error is sent about an ICMP error, a
// non-first fragment, a broadcast or multicast packet, or a packet from an
// address that cannot be answered (RFC 1122 §3.2.2, RFC 1812 §4.3.2.7); the
// rest pass the rate limiter.
func (e *endpoint) icmpError(b *pipeline.Batch, pkt *pipeline.Packet, typ, code uint8, rest uint32) {
	c := &e.p.c
	if !e.p.cfg.icmpErrors {
		return
	}
	h := wire.IPv4(pkt.Data())
	if h.Check() != nil {
		return
	}
	src, dst := h.Src(), h.Dst()
	// 127/8 is a martian source but on the loopback NIC, where the stack
	// answers itself (pkt.InNIC is it, or 0: a packet the stack sent).
	loopSrc := src[0] == 127 && (e.loop || pkt.InNIC == 0)
	if h.FragmentOffset() != 0 || src == [4]byte{} || src[0] == 0 || src[0] == 127 && !loopSrc || src[0] >= 224 ||
		dst[0] >= 224 || pkt.PktType == pipeline.PacketBroadcast || pkt.PktType == pipeline.PacketMulticast {
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
	// Source: the address of the NIC the error leaves through (but see
	// below). An error about the stack's own packet goes to one of its
	// addresses: through the loopback NIC, from that address (Linux's
	// local route gives it as the source).
	r := b.Gen.LookupRoute4(src)
	if r == nil {
		c.icmpSuppressed.Inc()
		return
	}
	out, ok := b.Gen.NIC(r.NIC)
	if !ok {
		c.icmpSuppressed.Inc()
		return
	}
	toSelf := out.NIC().IsLoopback()
	from, ok := out.PrimaryAddress(4)
	if toSelf {
		var a netip.Addr
		a, ok = out.SourceAddress(netip.AddrFrom4(src))
		from = netip.PrefixFrom(a, 32)
	}
	// A packet a transparent NIC took for any address is answered from
	// its destination, as if that host answered.
	anyDst := pkt.InNIC == e.nic.ID() && e.takesAny(pkt, dst)
	if !ok && !anyDst {
		if from, ok = e.nic.PrimaryAddress(4); !ok {
			c.noSource.Inc()
			return
		}
	}
	var fromAddr [4]byte
	if ok {
		fromAddr = from.Addr().As4()
	}
	if _, _, local := b.Gen.IsLocal4(dst); local || anyDst {
		// About a packet to one of our addresses the error comes from
		// that address (Linux icmp_send, RTCF_LOCAL): nmap takes port
		// unreachable from another address for a filtered port.
		fromAddr = dst
	}
	// Errors to oneself are not rate limited (Linux's icmpv4_xrlim_allow
	// lets everything through to a loopback device).
	if !toSelf && !e.p.limiter.allow(&e.p.cfg.rate, b.Now, typ, code, src) {
		c.icmpRateLimited.Inc()
		return
	}
	quote := pkt.Data()
	if len(quote) > icmpErrorPayload {
		quote = quote[:icmpErrorPayload]
	}
	msg := e.p.pool.TryGet(wire.IPv4MinimumSize + wire.ICMPv4MinimumSize + len(quote))
	if msg == nil { // the quote is bounded; a size from the wire all the same
		c.icmpSuppressed.Inc()
		return
	}
	body, _ := msg.Append(wire.ICMPv4MinimumSize + len(quote))
	m := wire.ICMPv4(body)
	m.Encode(&wire.ICMPv4Fields{Type: typ, Code: code, Rest: rest})
	copy(m.Payload(), quote)
	m.SetChecksum(m.CalculateChecksum())
	msg.InNIC = pkt.InNIC
	switch typ {
	case wire.ICMPv4DstUnreachable:
		c.icmpUnreachOut.Inc()
	case wire.ICMPv4TimeExceeded:
		c.icmpTimeExceededOut.Inc()
	case wire.ICMPv4ParamProblem:
		c.icmpParamProblemOut.Inc()
	}
	e.send(b, msg, fromAddr, src, 0, c.icmpErrOut)
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
// header for each packet (Data() at the transport header) and outputs it,
// with path MTU discovery as Linux's default for sockets
// (IP_PMTUDISC_WANT): its PathMTU is the route's MTU lowered by what ICMP
// fragmentation needed taught about the destination (PathMTU), and a
// packet that fits it (or a GSO super-packet, whose segments do) carries
// DF; a larger one goes without DF and is fragmented at transmit, after
// the Output and Postrouting hooks, which see it whole. A path MTU learnt
// from a report below path_mtu.min is that minimum without DF.
func (e *endpoint) WritePackets(b *pipeline.Batch, r pipeline.RouteInfo, params pipeline.NetworkHeaderParams, pkts []*pipeline.Packet) {
	c := &e.p.c
	ttl := params.TTL
	if ttl == 0 {
		ttl = e.p.ttl
	}
	from, to := r.LocalAddr.As4(), r.RemoteAddr.As4()
	mtu, locked := e.pathMTU(b, to, r.MTU)
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		if pkt.Len()+wire.IPv4MinimumSize > 0xffff {
			pkts[i] = nil
			b.Drop(pkt, c.tooBigLocal)
			continue
		}
		if _, ok := pkt.Push(wire.IPv4MinimumSize); !ok {
			pkts[i] = nil
			b.Drop(pkt, c.tooBigLocal)
			continue
		}
		var flags uint8
		if !locked && (pkt.Len() <= mtu || pkt.GSO.Type != pipeline.GSONone) {
			flags = wire.IPv4FlagDontFragment
		}
		h := wire.IPv4(pkt.Data())
		h.Encode(&wire.IPv4Fields{
			TOS: params.TOS, TotalLength: uint16(pkt.Len()), ID: uint16(e.p.ident.Add(1)),
			Flags: flags, TTL: ttl, Protocol: uint8(params.Protocol), Src: from, Dst: to,
		})
		pkt.SetNetworkHeader()
		pkt.NetProto = pipeline.IPv4ProtocolNumber
		pkt.TransProto = params.Protocol
		pkt.OutNIC = r.NIC
		pkt.NextHop = r.NextHop
		pkt.PathMTU = uint16(mtu)
	}
	c.sent.Add(iplocal.Output(b, pkts))
}

// pathMTU is the largest packet the stack's own packets to dst may leave
// this NIC with: routeMTU (the NIC's when 0), lowered by the path MTU
// learnt from ICMP; locked when that came from a report below the
// minimum (sent without DF). One atomic load while nothing was learnt.
func (e *endpoint) pathMTU(b *pipeline.Batch, dst [4]byte, routeMTU int) (mtu int, locked bool) {
	mtu = routeMTU
	if mtu <= 0 {
		mtu = e.nic.MTU()
	}
	mtu = min(mtu, 0xffff)
	if m, l, ok := e.p.pmtu.Get(dst, b.Now); ok && m <= mtu {
		mtu, locked = m, l
	}
	return mtu, locked
}

// PathMTU implements pipeline.PathMTUReporter.
func (e *endpoint) PathMTU(b *pipeline.Batch, dst netip.Addr, routeMTU int) int {
	mtu, _ := e.pathMTU(b, dst.Unmap().As4(), routeMTU)
	return mtu
}

// fragNeeded takes in an ICMP fragmentation needed message (RFC 1191,
// Linux's icmp_unreach and __ip_rt_update_pmtu): the packet it quotes must
// be ours — from one of our unicast addresses, with DF (we only learn
// from what asked not to be fragmented), larger than the MTU reported —
// else it is rejected (ok false). The reported next-hop MTU lowers the
// path MTU towards the quoted destination (never raises it); a report
// below path_mtu.min (or 0, from a router older than RFC 1191) sets the
// minimum, locked: later packets go without DF, for routers to fragment.
// It returns the path MTU now in force, which the transport is told.
func (e *endpoint) fragNeeded(b *pipeline.Batch, m wire.ICMPv4) (int, bool) {
	c := &e.p.c
	c.icmpFragNeededIn.Inc()
	q := m.Payload() // validQuote: a header and 8 bytes
	src, dst := [4]byte(q[12:16]), [4]byte(q[16:20])
	total := int(q[2])<<8 | int(q[3])
	if _, bcast, own := b.Gen.IsLocal4(src); !own || bcast || q[6]&0x40 == 0 {
		return 0, false
	}
	mtu := int(m.MTU())
	if mtu != 0 && mtu >= total {
		return 0, false // it would have fitted
	}
	locked := false
	if mtu < e.p.cfg.pmtuMin {
		mtu, locked = e.p.cfg.pmtuMin, true
	}
	if e.p.pmtu.Update(dst, mtu, locked, b.Now, e.p.cfg.pmtuTimeout, e.p.cfg.pmtuMax) {
		c.pmtuUpdates.Inc()
	}
	if cur, _, ok := e.p.pmtu.Get(dst, b.Now); ok {
		mtu = cur
	}
	return mtu, true
}

// ResumeAfter implements pipeline.HookResumer: a packet stolen at a hook
// goes on with the step after it.
func (e *endpoint) ResumeAfter(b *pipeline.Batch, h pipeline.Hook, pkts []*pipeline.Packet) {
	switch h {
	case pipeline.Prerouting:
		e.route(b, pkts)
	case pipeline.Input:
		e.local(b, pkts)
	case pipeline.Forward:
		e.forwarded(b, pkts)
	case pipeline.Output:
		e.p.c.sent.Add(iplocal.Queue(b, pkts))
	default:
		for i, pkt := range pkts {
			if pkt != nil {
				pkts[i] = nil
				b.Drop(pkt, e.p.c.resumeUnsupported)
			}
		}
	}
}

// ReturnError implements pipeline.NetworkEndpoint: the transport's (or a
// filter target's) kind of error becomes the matching ICMP message about
// pkt, which it takes ownership of.
func (e *endpoint) ReturnError(b *pipeline.Batch, pkt *pipeline.Packet, kind pipeline.TransportErrorKind) {
	if pkt.RewindToNetwork() {
		typ, code := icmpTypeCode(kind)
		rest := uint32(0)
		if kind == pipeline.ErrorPacketTooBig {
			mtu := e.nic.MTU()
			if out, ok := b.Gen.NIC(pkt.OutNIC); ok && pkt.OutNIC != 0 {
				mtu = out.MTU()
			}
			rest = wire.ICMPv4FragNeededRest(uint16(min(mtu, 0xffff)))
		}
		e.icmpError(b, pkt, typ, code, rest)
	}
	pkt.Release()
}

// icmpErrors pairs the transport error kinds with the ICMPv4 messages that
// carry them, for both directions: the message ReturnError sends for a
// kind, and the kind an arriving error reports to its transport (the first
// row of a kind is what is sent; the others are only recognised).
var icmpErrors = [...]struct {
	kind      pipeline.TransportErrorKind
	typ, code uint8
}{
	{pipeline.ErrorNetUnreachable, wire.ICMPv4DstUnreachable, wire.ICMPv4NetUnreachable},
	{pipeline.ErrorHostUnreachable, wire.ICMPv4DstUnreachable, wire.ICMPv4HostUnreachable},
	{pipeline.ErrorProtocolUnreachable, wire.ICMPv4DstUnreachable, wire.ICMPv4ProtoUnreachable},
	{pipeline.ErrorPortUnreachable, wire.ICMPv4DstUnreachable, wire.ICMPv4PortUnreachable},
	{pipeline.ErrorPacketTooBig, wire.ICMPv4DstUnreachable, wire.ICMPv4FragmentationNeeded},
	{pipeline.ErrorAdminProhibited, wire.ICMPv4DstUnreachable, wire.ICMPv4AdminProhibited},
	{pipeline.ErrorAdminProhibited, wire.ICMPv4DstUnreachable, wire.ICMPv4NetProhibited},
	{pipeline.ErrorAdminProhibited, wire.ICMPv4DstUnreachable, wire.ICMPv4HostProhibited},
	{pipeline.ErrorTTLExceeded, wire.ICMPv4TimeExceeded, wire.ICMPv4TTLExceeded},
	{pipeline.ErrorTTLExceeded, wire.ICMPv4TimeExceeded, wire.ICMPv4ReassemblyTimeout},
	// Sent only (REJECT --reject-with icmp-net-prohibited, …): an
	// arriving one is ErrorAdminProhibited, by the rows above.
	{pipeline.ErrorNetProhibited, wire.ICMPv4DstUnreachable, wire.ICMPv4NetProhibited},
	{pipeline.ErrorHostProhibited, wire.ICMPv4DstUnreachable, wire.ICMPv4HostProhibited},
}

// icmpKind is the error kind an ICMPv4 error message reports.
func icmpKind(typ, code uint8) (pipeline.TransportErrorKind, bool) {
	for _, r := range icmpErrors {
		if r.typ == typ && r.code == code {
			return r.kind, true
		}
	}
	return 0, false
}

// icmpTypeCode is the ICMPv4 message sent for an error kind (destination
// unreachable with code 0 for a kind without a row).
func icmpTypeCode(kind pipeline.TransportErrorKind) (typ, code uint8) {
	for _, r := range icmpErrors {
		if r.kind == kind {
			return r.typ, r.code
		}
	}
	return wire.ICMPv4DstUnreachable, 0
}

var (
	_ pipeline.NetworkProtocol = (*Protocol)(nil)
	_ pipeline.NetworkEndpoint = (*endpoint)(nil)
	_ pipeline.HookResumer     = (*endpoint)(nil)
	_ pipeline.Fragmenter      = (*endpoint)(nil)
	_ pipeline.PathMTUReporter = (*endpoint)(nil)
	_ Defragmenter             = (*endpoint)(nil)
	_ Defragmenter             = (*Protocol)(nil)
)
