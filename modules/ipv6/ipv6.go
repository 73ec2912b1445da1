package ipv6

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/pipestack/pipestack/modules/internal/icmplimit"
	"github.com/pipestack/pipestack/modules/internal/iplocal"
	"github.com/pipestack/pipestack/modules/internal/pmtu"
	"github.com/pipestack/pipestack/modules/internal/reasm"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// config is the protocol's configuration in one generation.
type config struct {
	hopLimit      uint8
	maxExt        int
	transitStrict bool // transit_extension_headers: strict
	icmpErrors    bool
	rate          icmplimit.Config
	reasm         reasm.Limits
	pmtuTimeout   time.Duration
	pmtuMax       int
	linkLocal     bool
	stablePrivacy bool
	secret        []byte
	dadTransmits  int
	dadRetrans    time.Duration
	acceptRA      bool
	rsCount       int
	ra            map[string]*RAConfig
	nud           pipeline.NUDConfigurations
}

// Protocol is IPv6's protocol object, one per generation. It is also the
// stack's LinkAddressResolver for IPv6 (NDP). The ICMP limiter, the
// reassembly queues, the path MTU cache and the per-link NDP state are
// long-lived (Context.Shared).
type Protocol struct {
	pool  *pipeline.Pool
	stack *pipeline.Stack
	clock pipeline.Clock
	log   zerolog.Logger
	cfg   config
	ident atomic.Uint32 // fragment identification

	limiter *icmplimit.Limiter[[16]byte]
	reasm   *reassembler
	pmtu    *pmtu.Cache[[16]byte]
	links   *linkStates

	c  counters
	nc ndpCounters
}

type counters struct {
	rx, delivered, forwarded, sent                   *pipeline.Counter
	malformedOther, badOptions                       *pipeline.Counter
	unknownOption, routingHeader, noNextHeader       *pipeline.Counter
	martianSrc, martianDst, multicastNotOurs         *pipeline.Counter
	notForwarding, linkBroadcast, multicastFwd       *pipeline.Counter
	beyondScope, hopLimitExceeded, noRoute, tooBig   *pipeline.Counter
	unknownProto, noSource, tooBigLocal              *pipeline.Counter
	fragOK, fragCreated, fragFails, atomicFragments  *pipeline.Counter
	resumeUnsupported                                *pipeline.Counter
	icmpIn, icmpMalformed, icmpEchoIn, icmpEchoOut   *pipeline.Counter
	icmpErrOut, icmpSuppressed, icmpRateLimited      *pipeline.Counter
	icmpUnreachOut, icmpTooBigOut, icmpTimeExcOut    *pipeline.Counter
	icmpParamOut, icmpTooBigIn, pmtuUpdates          *pipeline.Counter
	pmtuRejected                                     *pipeline.Counter
	icmpMulticastEcho                                *pipeline.Counter
	reasm                                            reasm.Counters
	reasmIncompleteChain                             *pipeline.Counter
	malformedHeaderIPv6Errs                          [16]*pipeline.Counter
	malformedTooShort, malformedVersion, malformedPL *pipeline.Counter
	closed                                           closedCounters
}

func newProtocol(ctx *pipeline.Context, cfg config) *Protocol {
	p := &Protocol{pool: ctx.Pool, stack: ctx.Stack(), clock: ctx.Clock, log: ctx.Logger, cfg: cfg}
	cs := ctx.Counters("ipv6")
	c := &p.c
	c.rx, c.delivered, c.forwarded, c.sent = cs.Get("rx"), cs.Get("delivered"), cs.Get("forwarded"), cs.Get("sent")
	c.malformedTooShort = cs.Get("malformed_" + wire.ErrTooShort.Reason())
	c.malformedVersion = cs.Get("malformed_" + wire.ErrBadVersion.Reason())
	c.malformedPL = cs.Get("malformed_" + wire.ErrBadPayloadLength.Reason())
	for e := wire.ErrIPv6HopByHopNotFirst; e <= wire.ErrIPv6DuplicateFragment; e++ {
		c.malformedHeaderIPv6Errs[e] = cs.Get("malformed_" + e.Reason())
	}
	c.malformedOther, c.badOptions = cs.Get("malformed_other"), cs.Get("malformed_options")
	c.unknownOption, c.routingHeader = cs.Get("unknown_option"), cs.Get("routing_header")
	c.noNextHeader = cs.Get("no_next_header")
	c.martianSrc, c.martianDst = cs.Get("martian_source"), cs.Get("martian_destination")
	c.multicastNotOurs = cs.Get("multicast_not_ours")
	c.notForwarding, c.linkBroadcast = cs.Get("not_forwarding"), cs.Get("link_broadcast")
	c.multicastFwd, c.beyondScope = cs.Get("multicast_not_forwarded"), cs.Get("beyond_scope")
	c.hopLimitExceeded, c.noRoute, c.tooBig = cs.Get("hop_limit_exceeded"), cs.Get("no_route"), cs.Get("too_big")
	c.unknownProto, c.noSource, c.tooBigLocal = cs.Get("unknown_protocol"), cs.Get("no_source_address"), cs.Get("too_big_local")
	c.fragOK, c.fragCreated, c.fragFails = cs.Get("frag_ok"), cs.Get("frag_created"), cs.Get("frag_fails")
	c.atomicFragments = cs.Get("atomic_fragments")
	c.resumeUnsupported = cs.Get("resume_unsupported")
	c.icmpIn, c.icmpMalformed = cs.Get("icmp_in"), cs.Get("icmp_malformed")
	c.icmpEchoIn, c.icmpEchoOut = cs.Get("icmp_echo_in"), cs.Get("icmp_echo_reply_out")
	c.icmpMulticastEcho = cs.Get("icmp_echo_multicast_ignored")
	c.icmpErrOut, c.icmpSuppressed = cs.Get("icmp_error_out"), cs.Get("icmp_error_suppressed")
	c.icmpRateLimited = cs.Get("icmp_rate_limited")
	c.icmpUnreachOut, c.icmpTooBigOut = cs.Get("icmp_dest_unreachable_out"), cs.Get("icmp_packet_too_big_out")
	c.icmpTimeExcOut, c.icmpParamOut = cs.Get("icmp_time_exceeded_out"), cs.Get("icmp_param_problem_out")
	c.icmpTooBigIn, c.pmtuUpdates = cs.Get("icmp_packet_too_big_in"), cs.Get("pmtu_updates")
	c.pmtuRejected = cs.Get("pmtu_rejected")
	c.reasm = reasm.NewCounters(cs)
	c.closed = newClosedCounters(cs)
	c.reasmIncompleteChain = cs.Get("reasm_incomplete_chain")
	p.nc = newNDPCounters(ctx.Counters("ndp"))

	p.ident.Store(ctx.Stack().Rand().Uint32())
	p.limiter = ctx.Shared("network.ipv6/icmp-limiter", func() any {
		return icmplimit.New(ctx.Stack().Rand().Seed(), icmplimit.Hash16)
	}).(*icmplimit.Limiter[[16]byte])
	p.reasm = ctx.Shared("network.ipv6/reassembly", func() any {
		return newReassembler(ctx.Clock, ctx.Stack(), ctx.Pool, &p.c.reasm)
	}).(*reassembler)
	p.pmtu = ctx.Shared("network.ipv6/pmtu", func() any { return pmtu.New[[16]byte]() }).(*pmtu.Cache[[16]byte])
	p.links = ctx.Shared(linkStatesKey, func() any { return newLinkStates(ctx.Stack(), ctx.Clock) }).(*linkStates)
	return p
}

// Number implements pipeline.NetworkProtocol.
func (p *Protocol) Number() pipeline.NetworkProtocolNumber { return pipeline.IPv6ProtocolNumber }

// NewEndpoint implements pipeline.NetworkProtocol. It attaches the link's
// long-lived NDP state and brings it in line with this generation: new
// configured addresses become tentative (DAD), the link-local address is
// made, the router or host role is set; the packets this entails (DAD
// probes, solicitations, advertisements) leave from the link's timer.
func (p *Protocol) NewEndpoint(nic pipeline.NetworkInterface) pipeline.NetworkEndpoint {
	e := &endpoint{p: p, nic: nic, resolving: resolving(nic), loop: nic.NIC() != nil && nic.NIC().IsLoopback()}
	e.transparent = !e.loop && nic.Transparent()
	if p.stack != nil && p.links != nil {
		e.ls = p.links.get(nic.ID())
		e.ls.configure(e)
	}
	return e
}

// resolving reports whether a link resolves link addresses (NDP neighbor
// resolution and DAD run on it): one that needs them and has one.
func resolving(nic pipeline.NetworkInterface) bool {
	return nic.Capabilities()&pipeline.CapResolutionRequired != 0 && !nic.LinkAddress().IsZero()
}

// endpoint is IPv6 on one NIC. It holds no per-packet state: several
// workers may run it at once.
type endpoint struct {
	p         *Protocol
	nic       pipeline.NetworkInterface
	ls        *linkState
	resolving bool
	// loop: the stack's loopback NIC (pipeline/loopback.go). What it
	// receives the stack sent to itself: no martian checks, every packet
	// is local; no link-local address, no DAD, no router discovery.
	loop bool
	// transparent: the link's `transparent: true`: unicast packets to any
	// address are delivered, not forwarded (pipeline.NetworkInterface).
	transparent bool
}

// Close implements pipeline.NetworkEndpoint. The link's NDP state outlives
// the endpoint (the next generation's endpoint takes it over).
func (e *endpoint) Close() {}

// LinkUp implements pipeline.LinkUpListener: the link's device is back.
func (e *endpoint) LinkUp() { e.ls.linkUp(e) }

func (e *endpoint) dropMalformed(b *pipeline.Batch, pkt *pipeline.Packet, err error) {
	c := &e.p.c
	var ctr *pipeline.Counter
	switch err {
	case wire.ErrTooShort:
		ctr = c.malformedTooShort
	case wire.ErrBadVersion:
		ctr = c.malformedVersion
	case wire.ErrBadPayloadLength:
		ctr = c.malformedPL
	default:
		if ie, ok := err.(wire.IPv6Error); ok && int(ie) < len(c.malformedHeaderIPv6Errs) && c.malformedHeaderIPv6Errs[ie] != nil {
			ctr = c.malformedHeaderIPv6Errs[ie]
		} else {
			ctr = c.malformedOther
		}
	}
	b.Drop(pkt, ctr)
}

// isExtension reports whether a Next Header value names an extension
// header the walk goes through.
func isExtension(nh uint8) bool {
	switch nh {
	case wire.ProtocolHopByHop, wire.ProtocolRouting, wire.ProtocolFragment, wire.ProtocolDestOptions, wire.ProtocolAH:
		return true
	}
	return false
}

func isMulticast(a *[16]byte) bool   { return a[0] == 0xff }
func isLinkLocal(a *[16]byte) bool   { return a[0] == 0xfe && a[1]&0xc0 == 0x80 }
func isUnspecified(a *[16]byte) bool { return *a == [16]byte{} }
func isLoopback(a *[16]byte) bool    { return *a == [16]byte{15: 1} }

// HandlePackets implements pipeline.NetworkEndpoint. As network.ipv4, three
// passes over the batch: validate (header, addresses, and — only when the
// first Next Header names one — the Hop-by-Hop header with its options,
// or with transit_extension_headers: strict the whole extension-header
// chain) and the Prerouting hook; route decision (forwarded packets to the
// front, local ones to the back); then forwarding and delivery (which walks
// and checks the chain of the packets for the stack). Each step after a
// hook is a function of its own, where a packet stolen at that hook
// resumes (ResumeAfter).
func (e *endpoint) HandlePackets(b *pipeline.Batch, pkts []*pipeline.Packet) {
	c := &e.p.c
	var rx uint64
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		rx++
		h := wire.IPv6(pkt.Data())
		if err := h.Check(); err != nil {
			pkts[i] = nil
			e.dropMalformed(b, pkt, err)
			continue
		}
		pkt.Truncate(wire.IPv6HeaderSize + int(h.PayloadLength()))
		pkt.SetNetworkHeader()
		src, dst := h.SrcSlice(), h.DstSlice()
		// From ourselves (the loopback NIC): no martian checks.
		if !e.loop && (src[0] == 0xff || isLoopback((*[16]byte)(src))) {
			pkts[i] = nil
			b.Drop(pkt, c.martianSrc)
			continue
		}
		if !e.loop && (isUnspecified((*[16]byte)(dst)) || isLoopback((*[16]byte)(dst))) {
			pkts[i] = nil
			b.Drop(pkt, c.martianDst)
			continue
		}
		if nh := h.NextHeader(); isExtension(nh) {
			if e.p.cfg.transitStrict {
				if !e.checkExtensions(b, pkt) {
					pkts[i] = nil
				}
			} else if nh == wire.ProtocolHopByHop && !e.hopByHop(b, pkt) {
				pkts[i] = nil
			}
		}
	}
	c.rx.Add(rx)
	b.RunHook(pipeline.Prerouting, pkts)
	e.route(b, pkts)
}

// route is the route decision (after Prerouting): forwarded packets to
// [0,k), local ones after. The decision is cached for a run of packets to
// one destination.
func (e *endpoint) route(b *pipeline.Batch, pkts []*pipeline.Packet) {
	if e.loop {
		e.deliver(b, pkts)
		return
	}
	c := &e.p.c
	k := 0
	var lastDst [16]byte
	var lastLocal, lastDrop, have bool
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		d := wire.IPv6(pkt.Data()).DstSlice()
		local, drop := lastLocal, lastDrop
		if !have || [16]byte(d) != lastDst {
			local, drop = e.isLocal(b, d)
			lastDst, lastLocal, lastDrop, have = [16]byte(d), local, drop, true
		}
		if drop {
			pkts[i] = nil
			b.Drop(pkt, c.multicastNotOurs)
			continue
		}
		if !local && !(e.transparent && pkt.PktType == pipeline.PacketHost) {
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

// isLocal decides whether a packet to dst is delivered here. Multicast:
// the groups this NIC is a member of (all-nodes; all-routers when it
// forwards; the solicited-node group of each of its addresses, tentative
// ones included); other multicast is dropped (no multicast routing).
// Unicast: an address of the stack (a link-local one only on its own
// link); the rest is forwarded.
func (e *endpoint) isLocal(b *pipeline.Batch, dst []byte) (local, drop bool) {
	d := (*[16]byte)(dst)
	if d[0] == 0xff {
		if e.member(d) {
			return true, false
		}
		return false, true
	}
	id, ok := b.Gen.IsLocal6(*d)
	if ok && isLinkLocal(d) && id != e.nic.ID() {
		return false, false
	}
	return ok, false
}

var (
	allNodes   = [16]byte{0: 0xff, 1: 0x02, 15: 1}
	allRouters = [16]byte{0: 0xff, 1: 0x02, 15: 2}
)

// member reports whether the NIC listens to multicast group g.
func (e *endpoint) member(g *[16]byte) bool {
	switch {
	case *g == allNodes || *g == [16]byte{0: 0xff, 1: 0x01, 15: 1}:
		return true
	case g[15] == 2 && (*g == allRouters || *g == [16]byte{0: 0xff, 1: 0x01, 15: 2} || *g == [16]byte{0: 0xff, 1: 0x05, 15: 2}):
		return e.nic.Forwarding(6)
	case isSolicitedNode(g):
		for _, a := range e.nic.Addresses(6) {
			x := a.Prefix.Addr().As16()
			if x[13] == g[13] && x[14] == g[14] && x[15] == g[15] {
				return true
			}
		}
	}
	return false
}

// isSolicitedNode reports whether g is a solicited-node multicast address
// ff02::1:ffXX:XXXX.
func isSolicitedNode(g *[16]byte) bool {
	return g[0] == 0xff && g[1] == 0x02 && g[2]|g[3]|g[4]|g[5]|g[6]|g[7]|g[8]|g[9]|g[10] == 0 && g[11] == 1 && g[12] == 0xff
}

// solicitedNode returns the solicited-node multicast address of a.
func solicitedNode(a [16]byte) [16]byte {
	return [16]byte{0: 0xff, 1: 0x02, 11: 1, 12: 0xff, 13: a[13], 14: a[14], 15: a[15]}
}

// multicastMAC maps an IPv6 multicast address to its Ethernet address (RFC
// 2464 §7): 33:33 and the low 32 bits.
func multicastMAC(a [16]byte) wire.MAC {
	return wire.MAC{0x33, 0x33, a[12], a[13], a[14], a[15]}
}

// checkExtensions walks the extension headers of a packet (first Next
// Header is one) and processes its Hop-by-Hop options, which every node
// on the path examines (RFC 8200 §4.3). It takes ownership of pkt when it
// returns false (dropped, maybe with a Parameter Problem).
func (e *endpoint) checkExtensions(b *pipeline.Batch, pkt *pipeline.Packet) bool {
	h := wire.IPv6(pkt.Data())
	x, err := h.WalkExtensions(e.p.cfg.maxExt)
	if err != nil {
		if code, ok := err.(wire.IPv6Error).ParamProblemCode(); ok {
			e.icmpError(b, pkt, wire.ICMPv6ParamProblem, code, uint32(x.ErrorOffset), false)
		}
		e.dropMalformed(b, pkt, err)
		return false
	}
	if x.HopByHop {
		return e.options(b, pkt, wire.IPv6HeaderSize)
	}
	return true
}

// hopByHop checks the bounds of a Hop-by-Hop header (at offset 40: the
// fixed header names it) and processes its options: all that every node on
// the path must look at (RFC 8200 §4.3; RFC 7045: a node forwards the rest
// of the chain as it is, as Linux does). It takes ownership of pkt when it
// returns false.
func (e *endpoint) hopByHop(b *pipeline.Batch, pkt *pipeline.Packet) bool {
	h := wire.IPv6(pkt.Data())
	end := wire.IPv6HeaderSize + int(h.PayloadLength())
	const off = wire.IPv6HeaderSize
	if off+8 > end || off+(int(h[off+1])+1)*8 > end {
		e.dropMalformed(b, pkt, wire.ErrIPv6ExtHeaderTruncated)
		return false
	}
	return e.options(b, pkt, off)
}

// options processes the options of the Hop-by-Hop or Destination Options
// header at off (validated by the walk). Unrecognised options act by their
// two high-order bits (RFC 8200 §4.2): skip, discard, discard with a
// Parameter Problem (code 2, pointing at the option type), or the same
// only when the destination is not multicast. It takes ownership of pkt
// when it returns false.
func (e *endpoint) options(b *pipeline.Batch, pkt *pipeline.Packet, off int) bool {
	c := &e.p.c
	h := wire.IPv6(pkt.Data())
	opts := wire.IPv6Options(h[off:])
	if opts.Check() != nil {
		b.Drop(pkt, c.badOptions)
		return false
	}
	hbh := off == wire.IPv6HeaderSize && h.NextHeader() == wire.ProtocolHopByHop
	it := opts.Iter()
	for it.Next() {
		o := it.Option()
		if hbh && o.Type == wire.IPv6OptionRouterAlert && len(o.Data) == 2 {
			continue // understood: nothing to do without MLD snooping or RSVP
		}
		switch o.Action() {
		case wire.IPv6OptionActionSkip:
			continue
		case wire.IPv6OptionActionDiscardICMP:
			e.icmpError(b, pkt, wire.ICMPv6ParamProblem, wire.ICMPv6UnrecognizedOption, uint32(off+o.Offset), true)
		case wire.IPv6OptionActionDiscardICMPUnicast:
			if dst := h.DstSlice(); dst[0] != 0xff {
				e.icmpError(b, pkt, wire.ICMPv6ParamProblem, wire.ICMPv6UnrecognizedOption, uint32(off+o.Offset), false)
			}
		}
		b.Drop(pkt, c.unknownOption)
		return false
	}
	if it.Err() != nil {
		b.Drop(pkt, c.badOptions)
		return false
	}
	return true
}

// forward is the forwarding fast path: hop limit, scope, route (a
// one-entry cache per batch), MTU (Packet Too Big; forwarded IPv6 is never
// fragmented), hop-limit decrement (no checksum), the Forward hook, output.
func (e *endpoint) forward(b *pipeline.Batch, pkts []*pipeline.Packet) {
	c := &e.p.c
	if !e.nic.Forwarding(6) {
		for i, pkt := range pkts {
			pkts[i] = nil
			b.Drop(pkt, c.notForwarding)
		}
		return
	}
	var lastDst [16]byte
	var lastMark uint32
	var lastRoute *pipeline.Route
	var lastMTU int
	for i, pkt := range pkts {
		h := wire.IPv6(pkt.Data())
		d := (*[16]byte)(h.DstSlice())
		if pkt.PktType != pipeline.PacketHost {
			// A unicast packet in a link-layer multicast frame.
			pkts[i] = nil
			b.Drop(pkt, c.linkBroadcast)
			continue
		}
		if d[0] == 0xff {
			pkts[i] = nil
			b.Drop(pkt, c.multicastFwd)
			continue
		}
		s := (*[16]byte)(h.SrcSlice())
		if isUnspecified(s) {
			pkts[i] = nil
			b.Drop(pkt, c.martianSrc)
			continue
		}
		if isLinkLocal(s) || isLinkLocal(d) {
			// Link-local packets never leave their link (RFC 4291 §2.5.6).
			pkts[i] = nil
			e.icmpError(b, pkt, wire.ICMPv6DstUnreachable, wire.ICMPv6BeyondScope, 0, false)
			b.Drop(pkt, c.beyondScope)
			continue
		}
		if h.HopLimit() <= 1 {
			pkts[i] = nil
			e.icmpError(b, pkt, wire.ICMPv6TimeExceeded, wire.ICMPv6HopLimitExceeded, 0, false)
			b.Drop(pkt, c.hopLimitExceeded)
			continue
		}
		r, mtu := lastRoute, lastMTU
		if r == nil || *d != lastDst || pkt.Mark != lastMark {
			r = b.Gen.ForwardRoute6(*d, pkt.Mark) // policy routing by mark, else LookupRoute6
			var out pipeline.NetworkInterface
			ok := r != nil
			if ok {
				out, ok = b.Gen.NIC(r.NIC)
			}
			if !ok {
				pkts[i] = nil
				e.icmpError(b, pkt, wire.ICMPv6DstUnreachable, wire.ICMPv6NoRoute, 0, false)
				b.Drop(pkt, c.noRoute)
				continue
			}
			mtu = out.MTU()
			lastDst, lastMark, lastRoute, lastMTU = *d, pkt.Mark, r, mtu
		}
		size := wireSize(pkt, h)
		if pkt.PathMTU != 0 {
			// Reassembled by the defragmentation service: it leaves
			// cut as it came (defrag.go).
			size = int(pkt.PathMTU)
		}
		if size > mtu {
			pkts[i] = nil
			e.icmpError(b, pkt, wire.ICMPv6PacketTooBig, 0, uint32(mtu), true)
			b.Drop(pkt, c.tooBig)
			continue
		}
		h.DecHopLimit()
		pkt.OutNIC = r.NIC
		if r.Via.IsValid() {
			pkt.NextHop = r.Via
		} else {
			pkt.NextHop = netip.AddrFrom16(*d)
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
func wireSize(pkt *pipeline.Packet, h wire.IPv6) int {
	if pkt.GSO.Type != pipeline.GSONone && pkt.GSO.SegSize > 0 {
		return int(pkt.GSO.HdrLen) + int(pkt.GSO.SegSize)
	}
	return wire.IPv6HeaderSize + int(h.PayloadLength())
}

// deliver reassembles fragments, processes the Routing and Destination
// Options headers and hands packets addressed to the stack to ICMPv6 or the
// transport. As in network.ipv4, reassembly comes before the Input hook
// and the datagram that a fragment completes takes its slot.
func (e *endpoint) deliver(b *pipeline.Batch, pkts []*pipeline.Packet) {
	c := &e.p.c
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		h := wire.IPv6(pkt.Data())
		if !isExtension(h.NextHeader()) {
			continue
		}
		// Walked in the first pass only with transit_extension_headers:
		// strict; the Hop-by-Hop options were processed there.
		x, err := h.WalkExtensions(e.p.cfg.maxExt)
		if err != nil {
			pkts[i] = nil
			if code, ok := err.(wire.IPv6Error).ParamProblemCode(); ok {
				e.icmpError(b, pkt, wire.ICMPv6ParamProblem, code, uint32(x.ErrorOffset), false)
			}
			e.dropMalformed(b, pkt, err)
			continue
		}
		if x.IsFragment() {
			pkt = e.reassemble(b, pkt, &x, userLocal)
			pkts[i] = pkt
			if pkt == nil {
				continue
			}
			h = wire.IPv6(pkt.Data())
			if x, err = h.WalkExtensions(e.p.cfg.maxExt); err != nil {
				pkts[i] = nil
				if code, ok := err.(wire.IPv6Error).ParamProblemCode(); ok {
					e.icmpError(b, pkt, wire.ICMPv6ParamProblem, code, uint32(x.ErrorOffset), false)
				}
				e.dropMalformed(b, pkt, err)
				continue
			}
		} else if x.Fragment {
			c.atomicFragments.Inc() // RFC 6946: processed on its own
		}
		if !e.localExtensions(b, pkt, &x) {
			pkts[i] = nil
		}
	}
	b.RunHook(pipeline.Input, pkts)
	e.local(b, pkts)
}

// local delivers packets past the Input hook to ICMPv6 or their transport.
func (e *endpoint) local(b *pipeline.Batch, pkts []*pipeline.Packet) {
	c := &e.p.c
	var delivered uint64
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		h := wire.IPv6(pkt.Data())
		proto, off := h.NextHeader(), wire.IPv6HeaderSize
		if isExtension(proto) {
			x, _ := h.WalkExtensions(e.p.cfg.maxExt)
			proto, off = x.Protocol, x.ProtocolOffset
		}
		pkt.TransProto = pipeline.TransportProtocolNumber(proto)
		switch proto {
		case wire.ProtocolICMPv6:
			pkts[i] = nil
			pkt.Pull(off)
			pkt.SetTransportHeader()
			e.handleICMP(b, pkt, h)
			delivered++
		case wire.ProtocolNoNextHeader:
			pkts[i] = nil
			b.Drop(pkt, c.noNextHeader)
		default:
			pkt.Pull(off)
			pkt.SetTransportHeader()
		}
	}
	// Runs of one transport protocol go to it as a batch; a protocol
	// without a transport is answered as a host does (closed.go).
	delivered += iplocal.Deliver(b, pkts, func(q *pipeline.Packet) { e.noTransport(b, q) })
	c.delivered.Add(delivered)
}

// nextHeaderOffset is the offset of the Next Header field naming the
// upper-layer protocol of a packet (Data() at its IPv6 header).
func nextHeaderOffset(b []byte, max int) int {
	h := wire.IPv6(b)
	if h.Check() != nil {
		return wire.IPv6NextHeaderOffset
	}
	x, _ := h.WalkExtensions(max)
	return x.NextHeaderOffset
}

// localExtensions processes, for a packet addressed to the stack, the
// headers after the Hop-by-Hop header: Destination Options (their options'
// action bits) and Routing headers (with segments left, no routing type is
// supported: Parameter Problem pointing at the type, RFC 8200 §4.4). It
// takes ownership of pkt when it returns false.
func (e *endpoint) localExtensions(b *pipeline.Batch, pkt *pipeline.Packet, x *wire.IPv6ExtInfo) bool {
	h := wire.IPv6(pkt.Data())
	nh := h.NextHeader()
	off := wire.IPv6HeaderSize
	for off < x.ProtocolOffset {
		var hl int
		switch nh {
		case wire.ProtocolHopByHop:
			hl = (int(h[off+1]) + 1) * 8
		case wire.ProtocolFragment:
			hl = wire.IPv6FragmentSize
		case wire.ProtocolAH:
			hl = (int(h[off+1]) + 2) * 4
		case wire.ProtocolDestOptions:
			if !e.options(b, pkt, off) {
				return false
			}
			hl = (int(h[off+1]) + 1) * 8
		case wire.ProtocolRouting:
			rt := wire.IPv6Routing(h[off:])
			if rt.Check() != nil {
				b.Drop(pkt, e.p.c.malformedOther)
				return false
			}
			if rt.SegmentsLeft() != 0 {
				e.icmpError(b, pkt, wire.ICMPv6ParamProblem, wire.ICMPv6ErroneousHeader, uint32(off+2), false)
				b.Drop(pkt, e.p.c.routingHeader)
				return false
			}
			hl = rt.HeaderLength()
		default:
			return true
		}
		nh = h[off]
		off += hl
	}
	return true
}

// routeTo finds how a packet the stack originates reaches to: one of the
// stack's own addresses through the loopback NIC, link-local and multicast
// destinations through the NIC given (the one the conversation is on),
// others by the routes. It returns the outgoing
// NIC and the next hop.
func (e *endpoint) routeTo(b *pipeline.Batch, to [16]byte, via pipeline.NICID) (pipeline.NetworkInterface, netip.Addr, bool) {
	if lo := b.Gen.LoopbackNIC(); lo != 0 && !isMulticast(&to) {
		// To ourselves (one of our addresses, link-local ones
		// included, or ::1): through the loopback NIC.
		if _, local := b.Gen.IsLocal6(to); local || isLoopback(&to) {
			nic, ok := b.Gen.NIC(lo)
			return nic, netip.AddrFrom16(to), ok
		}
	}
	if isLinkLocal(&to) || isMulticast(&to) {
		if via == 0 {
			via = e.nic.ID()
		}
		nic, ok := b.Gen.NIC(via)
		return nic, netip.AddrFrom16(to), ok
	}
	r := b.Gen.LookupRoute6(to)
	if r == nil {
		return nil, netip.Addr{}, false
	}
	nic, ok := b.Gen.NIC(r.NIC)
	return nic, r.NextHop(netip.AddrFrom16(to)), ok
}

// mtuFor is the MTU of locally generated packets to dst leaving through
// nic: the link's, lowered by a Router Advertisement's MTU option and by
// the path MTU learnt from Packet Too Big messages.
func (p *Protocol) mtuFor(b *pipeline.Batch, nic pipeline.NetworkInterface, dst [16]byte, routeMTU int) int {
	mtu := routeMTU
	if mtu == 0 {
		mtu = nic.MTU()
	}
	if ls := p.links.peek(nic.ID()); ls != nil {
		if m := int(ls.raMTU.Load()); m > 0 && m < mtu {
			mtu = m
		}
	}
	if m, _, ok := p.pmtu.Get(dst, b.Now); ok && m < mtu {
		mtu = m
	}
	if mtu < wire.IPv6MinimumMTU {
		mtu = wire.IPv6MinimumMTU
	}
	return mtu
}

// PathMTU implements pipeline.PathMTUReporter.
func (e *endpoint) PathMTU(b *pipeline.Batch, dst netip.Addr, routeMTU int) int {
	return e.p.mtuFor(b, e.nic, dst.As16(), routeMTU)
}

// hopLimitFor is the hop limit of locally generated packets on a NIC: the
// configured one, or the Cur Hop Limit a router advertised there.
func (p *Protocol) hopLimitFor(id pipeline.NICID) uint8 {
	if ls := p.links.peek(id); ls != nil {
		if h := uint8(ls.curHopLimit.Load()); h != 0 {
			return h
		}
	}
	return p.cfg.hopLimit
}

// output pushes an IPv6 header (from → to, next header proto) in front of
// Data() (the upper-layer message), routes the packet through nic to
// nextHop, runs the Output hook and queues it, whole: with PathMTU mtu, so
// that transmit fragments it when it is larger. It takes ownership of pkt.
// hop 0 means the default hop limit.
func (e *endpoint) output(b *pipeline.Batch, pkt *pipeline.Packet, nic pipeline.NetworkInterface, nextHop netip.Addr,
	from, to [16]byte, proto uint8, hop uint8, tc uint8, mtu int) bool {
	c := &e.p.c
	if pkt.Len() > 0xffff {
		b.Drop(pkt, c.tooBigLocal)
		return false
	}
	if _, ok := pkt.Push(wire.IPv6HeaderSize); !ok {
		b.Drop(pkt, c.tooBigLocal)
		return false
	}
	if hop == 0 {
		hop = e.p.hopLimitFor(nic.ID())
	}
	h := wire.IPv6(pkt.Data())
	h.Encode(&wire.IPv6Fields{TrafficClass: tc, PayloadLength: uint16(pkt.Len() - wire.IPv6HeaderSize), NextHeader: proto, HopLimit: hop, Src: from, Dst: to})
	pkt.SetNetworkHeader()
	pkt.NetProto = pipeline.IPv6ProtocolNumber
	pkt.TransProto = pipeline.TransportProtocolNumber(proto)
	pkt.OutNIC = nic.ID()
	pkt.NextHop = nextHop
	pkt.PathMTU = uint16(min(max(mtu, wire.IPv6MinimumMTU), 0xffff))
	if isMulticast(&to) {
		pkt.SetRemoteLinkAddr(multicastMAC(to))
	}
	// A packet the stack sends is new to conntrack, as Linux's fresh skb:
	// an echo reply made in the request's buffer must not keep the
	// request's entry, state and mark (conntrack would skip it at Output
	// and the entry would never see its reply).
	pkt.ConnTrack, pkt.CTInfo, pkt.Mark = 0, pipeline.CTNone, 0
	one := [1]*pipeline.Packet{pkt}
	b.RunHook(pipeline.Output, one[:])
	if one[0] == nil {
		return false
	}
	b.Output(one[0])
	return true
}

// WritePackets implements pipeline.NetworkEndpoint: it pushes an IPv6
// header for each packet (Data() at the transport header) and outputs it.
// Packets larger than the path MTU (the route's or link's MTU, lowered by
// an advertised MTU and by Packet Too Big: PathMTU) are fragmented at
// transmit, after the Output and Postrouting hooks, which see them whole;
// GSO super-packets are left to the link.
func (e *endpoint) WritePackets(b *pipeline.Batch, r pipeline.RouteInfo, params pipeline.NetworkHeaderParams, pkts []*pipeline.Packet) {
	c := &e.p.c
	hop := params.TTL
	if hop == 0 {
		hop = e.p.hopLimitFor(r.NIC)
	}
	from, to := r.LocalAddr.As16(), r.RemoteAddr.As16()
	mtu := e.p.mtuFor(b, e.nic, to, r.MTU)
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		if pkt.Len() > 0xffff {
			pkts[i] = nil
			b.Drop(pkt, c.tooBigLocal)
			continue
		}
		if _, ok := pkt.Push(wire.IPv6HeaderSize); !ok {
			pkts[i] = nil
			b.Drop(pkt, c.tooBigLocal)
			continue
		}
		h := wire.IPv6(pkt.Data())
		h.Encode(&wire.IPv6Fields{TrafficClass: params.TOS, PayloadLength: uint16(pkt.Len() - wire.IPv6HeaderSize),
			NextHeader: uint8(params.Protocol), HopLimit: hop, Src: from, Dst: to})
		pkt.SetNetworkHeader()
		pkt.NetProto = pipeline.IPv6ProtocolNumber
		pkt.TransProto = params.Protocol
		pkt.OutNIC = r.NIC
		pkt.NextHop = r.NextHop
		pkt.PathMTU = uint16(min(mtu, 0xffff))
		if isMulticast(&to) {
			pkt.SetRemoteLinkAddr(multicastMAC(to))
		}
	}
	c.sent.Add(iplocal.Output(b, pkts))
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
// filter target's, or the neighbor table's) kind of error becomes the
// matching ICMPv6 message about pkt, which it takes ownership of.
func (e *endpoint) ReturnError(b *pipeline.Batch, pkt *pipeline.Packet, kind pipeline.TransportErrorKind) {
	if pkt.RewindToNetwork() {
		typ, code, rest := uint8(wire.ICMPv6DstUnreachable), uint8(0), uint32(0)
		switch kind {
		case pipeline.ErrorPortUnreachable:
			code = wire.ICMPv6PortUnreachable
		case pipeline.ErrorProtocolUnreachable:
			typ, code = wire.ICMPv6ParamProblem, wire.ICMPv6UnrecognizedNextHeader
			rest = uint32(nextHeaderOffset(pkt.Data(), e.p.cfg.maxExt))
		case pipeline.ErrorNetUnreachable:
			code = wire.ICMPv6NoRoute
		case pipeline.ErrorHostUnreachable:
			code = wire.ICMPv6AddressUnreachable
		case pipeline.ErrorAdminProhibited, pipeline.ErrorNetProhibited, pipeline.ErrorHostProhibited:
			code = wire.ICMPv6AdminProhibited
		case pipeline.ErrorTTLExceeded:
			typ, code = wire.ICMPv6TimeExceeded, wire.ICMPv6HopLimitExceeded
		case pipeline.ErrorPacketTooBig:
			typ = wire.ICMPv6PacketTooBig
			mtu := e.nic.MTU()
			if out, ok := b.Gen.NIC(pkt.OutNIC); ok && pkt.OutNIC != 0 {
				mtu = out.MTU()
			}
			rest = uint32(mtu)
		}
		e.icmpError(b, pkt, typ, code, rest, typ == wire.ICMPv6PacketTooBig)
	}
	pkt.Release()
}

var (
	_ pipeline.NetworkProtocol     = (*Protocol)(nil)
	_ pipeline.LinkAddressResolver = (*Protocol)(nil)
	_ pipeline.NetworkEndpoint     = (*endpoint)(nil)
	_ pipeline.HookResumer         = (*endpoint)(nil)
	_ pipeline.Fragmenter          = (*endpoint)(nil)
	_ pipeline.LinkUpListener      = (*endpoint)(nil)
	_ pipeline.PathMTUReporter     = (*endpoint)(nil)
)
