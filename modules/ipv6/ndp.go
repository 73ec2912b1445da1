package ipv6

import (
	"net/netip"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// ndpCounters are the "ndp" counter set.
type ndpCounters struct {
	nsIn, nsOut, naIn, naOut, rsIn, rsOut, raIn, raOut, redirectIn *pipeline.Counter
	invalid, notOurs, duplicate, noSource, unresolvable            *pipeline.Counter
	dadStarted, dadOK, dadFailed, raIgnored, rsIgnored             *pipeline.Counter
	slaacAddresses, routersLearnt, prefixesLearnt, expired         *pipeline.Counter
}

func newNDPCounters(cs *pipeline.CounterSet) ndpCounters {
	return ndpCounters{
		nsIn: cs.Get("ns_in"), nsOut: cs.Get("ns_out"), naIn: cs.Get("na_in"), naOut: cs.Get("na_out"),
		rsIn: cs.Get("rs_in"), rsOut: cs.Get("rs_out"), raIn: cs.Get("ra_in"), raOut: cs.Get("ra_out"),
		redirectIn: cs.Get("redirect_ignored"), invalid: cs.Get("invalid"), notOurs: cs.Get("not_ours"),
		duplicate: cs.Get("duplicate_address"), noSource: cs.Get("no_source_address"),
		unresolvable: cs.Get("unresolvable"), dadStarted: cs.Get("dad_started"), dadOK: cs.Get("dad_ok"),
		dadFailed: cs.Get("dad_failed"), raIgnored: cs.Get("ra_ignored"), rsIgnored: cs.Get("rs_ignored"),
		slaacAddresses: cs.Get("slaac_addresses"), routersLearnt: cs.Get("routers_learnt"),
		prefixesLearnt: cs.Get("prefixes_learnt"), expired: cs.Get("lifetimes_expired"),
	}
}

// NUDConfigurations implements pipeline.LinkAddressResolver.
func (p *Protocol) NUDConfigurations() pipeline.NUDConfigurations { return p.cfg.nud }

// ResolvesFor implements pipeline.LinkAddressResolver.
func (p *Protocol) ResolvesFor() pipeline.NetworkProtocolNumber { return pipeline.IPv6ProtocolNumber }

// ResolveLinkAddress implements pipeline.LinkAddressResolver: multicast
// next hops map to 33:33:xx:xx:xx:xx (RFC 2464 §7); unicast ones wait in
// the neighbor table while Neighbor Solicitations resolve them.
func (p *Protocol) ResolveLinkAddress(b *pipeline.Batch, nic pipeline.NetworkInterface, pkt *pipeline.Packet) {
	nh := pkt.NextHop
	if !nh.Is6() || !resolving(nic) {
		b.Drop(pkt, p.nc.unresolvable)
		return
	}
	a := nh.As16()
	switch {
	case isMulticast(&a):
		pkt.SetRemoteLinkAddr(multicastMAC(a))
		b.Output(pkt)
	case isUnspecified(&a) || isLoopback(&a):
		b.Drop(pkt, p.nc.unresolvable)
	default:
		t := b.Gen.Neighbors(nic.ID())
		if t == nil {
			b.Drop(pkt, p.nc.unresolvable)
			return
		}
		t.QueuePacket(b, pkt)
	}
}

// LinkAddressRequest implements pipeline.LinkAddressResolver: a Neighbor
// Solicitation for addr with our link address, to addr's solicited-node
// group (remote zero) or unicast to remote (PROBE), from the link's address
// of addr's scope.
func (p *Protocol) LinkAddressRequest(b *pipeline.Batch, nic pipeline.NetworkInterface, addr netip.Addr, remote wire.MAC) bool {
	if !addr.Is6() || !resolving(nic) {
		return false
	}
	src, ok := nic.SourceAddress(addr)
	if !ok {
		p.nc.noSource.Inc()
		return false
	}
	e, ok := b.Gen.NetworkEndpoint(nic.ID(), pipeline.IPv6ProtocolNumber).(*endpoint)
	if !ok {
		return false
	}
	target := addr.As16()
	dst, mac := solicitedNode(target), wire.MAC{}
	if !remote.IsZero() {
		dst, mac = target, remote
	}
	e.sendNS(b, src.As16(), dst, target, mac)
	return true
}

// sendNS sends a Neighbor Solicitation for target from src (unspecified for
// DAD: then without a source link-layer address option) to dst; mac is the
// destination link address of a unicast solicitation.
func (e *endpoint) sendNS(b *pipeline.Batch, src, dst, target [16]byte, mac wire.MAC) {
	size := wire.ICMPv6MinimumSize + wire.NDPNeighborSolicitationSize
	withLL := !isUnspecified(&src) && e.resolving
	if withLL {
		size += wire.NDPLinkLayerAddressSize
	}
	pkt := e.p.pool.Get(wire.IPv6HeaderSize + size)
	body, _ := pkt.Append(size)
	m := wire.ICMPv6(body)
	m.Encode(&wire.ICMPv6Fields{Type: wire.ICMPv6NeighborSolicitation})
	wire.NDPNeighborSolicitation(body[wire.ICMPv6MinimumSize:]).Encode(target)
	if withLL {
		wire.AppendNDPLinkLayerAddress(body[:wire.ICMPv6MinimumSize+wire.NDPNeighborSolicitationSize], wire.NDPOptionSourceLinkLayerAddress, e.nic.LinkAddress())
	}
	if !mac.IsZero() {
		pkt.SetRemoteLinkAddr(mac)
	}
	if e.sendNDP(b, pkt, src, dst) {
		e.p.nc.nsOut.Inc()
	}
}

// sendNDP finishes an NDP message in pkt (Data() at the ICMPv6 header,
// checksum not set) with its checksum and an IPv6 header of hop limit 255,
// and sends it from this NIC to dst (on-link: dst is the next hop). It takes
// ownership of pkt.
func (e *endpoint) sendNDP(b *pipeline.Batch, pkt *pipeline.Packet, src, dst [16]byte) bool {
	m := wire.ICMPv6(pkt.Data())
	m.SetChecksum(m.CalculateChecksum(wire.PseudoHeaderChecksum(wire.ProtocolICMPv6, src[:], dst[:], uint16(len(m)))))
	if e.output(b, pkt, e.nic, netip.AddrFrom16(dst), src, dst, wire.ProtocolICMPv6, 255, 0, 0xffff) {
		e.p.c.sent.Inc()
		return true
	}
	return false
}

// handleNDP validates an NDP message (RFC 4861 §6.1, §7.1: hop limit 255,
// code 0, options well formed) and dispatches it. It takes ownership of
// pkt.
func (e *endpoint) handleNDP(b *pipeline.Batch, pkt *pipeline.Packet, ip wire.IPv6, m wire.ICMPv6) {
	nc := &e.p.nc
	if ip.HopLimit() != 255 || m.Code() != 0 {
		b.Drop(pkt, nc.invalid)
		return
	}
	body := m[wire.ICMPv6MinimumSize:]
	switch m.Type() {
	case wire.ICMPv6NeighborSolicitation:
		nc.nsIn.Inc()
		ns := wire.NDPNeighborSolicitation(body)
		if ns.Check() != nil || ns.Options().Check() != nil {
			b.Drop(pkt, nc.invalid)
			return
		}
		e.handleNS(b, pkt, ip, ns)
	case wire.ICMPv6NeighborAdvertisement:
		nc.naIn.Inc()
		na := wire.NDPNeighborAdvertisement(body)
		if na.Check() != nil || na.Options().Check() != nil {
			b.Drop(pkt, nc.invalid)
			return
		}
		e.handleNA(b, pkt, ip, na)
	case wire.ICMPv6RouterSolicitation:
		nc.rsIn.Inc()
		rs := wire.NDPRouterSolicitation(body)
		if rs.Check() != nil || rs.Options().Check() != nil {
			b.Drop(pkt, nc.invalid)
			return
		}
		e.handleRS(b, pkt, ip, rs)
	case wire.ICMPv6RouterAdvertisement:
		nc.raIn.Inc()
		ra := wire.NDPRouterAdvertisement(body)
		if ra.Check() != nil || ra.Options().Check() != nil {
			b.Drop(pkt, nc.invalid)
			return
		}
		e.handleRA(b, pkt, ip, ra)
	default: // Redirect: not followed (a host keeps its routes)
		b.Drop(pkt, nc.redirectIn)
	}
}

// ourAddress finds target among the NIC's addresses (tentative included).
func (e *endpoint) ourAddress(target [16]byte) (pipeline.AddressInfo, bool) {
	t := netip.AddrFrom16(target)
	for _, a := range e.nic.Addresses(6) {
		if a.Prefix.Addr() == t {
			return a, true
		}
	}
	return pipeline.AddressInfo{}, false
}

// handleNS answers a Neighbor Solicitation for one of the link's
// addresses (RFC 4861 §7.2.3): the asker's entry is created or refreshed
// STALE from its source link-layer address, and a Neighbor Advertisement
// goes back (solicited, override; to all-nodes for a DAD probe). A probe
// for one of our tentative addresses from another node doing DAD means the
// address is a duplicate (RFC 4862 §5.4.3).
func (e *endpoint) handleNS(b *pipeline.Batch, pkt *pipeline.Packet, ip wire.IPv6, ns wire.NDPNeighborSolicitation) {
	nc := &e.p.nc
	src, dst, target := ip.Src(), ip.Dst(), ns.Target()
	sll, hasSLL := linkLayer(ns.Options(), wire.NDPOptionSourceLinkLayerAddress)
	if isMulticast(&target) || (isUnspecified(&src) && (!isSolicitedNode(&dst) || hasSLL)) {
		b.Drop(pkt, nc.invalid)
		return
	}
	a, ok := e.ourAddress(target)
	if !ok {
		b.Drop(pkt, nc.notOurs)
		return
	}
	if a.Kind == pipeline.PermanentTentative {
		if isUnspecified(&src) && e.ls != nil {
			e.ls.dadConflict(b, e, netip.AddrFrom16(target))
		}
		pkt.Release() // never answer for a tentative address
		return
	}
	if !isUnspecified(&src) && hasSLL && e.resolving {
		if t := b.Gen.Neighbors(e.nic.ID()); t != nil {
			t.HandleProbe(b, netip.AddrFrom16(src), sll)
		}
	}
	pkt.Release()
	to := src
	solicited := true
	if isUnspecified(&src) {
		to, solicited = allNodes, false
	}
	var mac wire.MAC
	if hasSLL {
		mac = sll
	}
	e.sendNA(b, target, to, solicited, mac)
}

// sendNA sends a Neighbor Advertisement for target (one of ours) to dst,
// with our link address (override) and our router flag; mac, if set, is
// the destination link address (the solicitation's source link-layer
// address).
func (e *endpoint) sendNA(b *pipeline.Batch, target, dst [16]byte, solicited bool, mac wire.MAC) {
	size := wire.ICMPv6MinimumSize + wire.NDPNeighborAdvertisementSize
	if e.resolving {
		size += wire.NDPLinkLayerAddressSize
	}
	pkt := e.p.pool.Get(wire.IPv6HeaderSize + size)
	body, _ := pkt.Append(size)
	wire.ICMPv6(body).Encode(&wire.ICMPv6Fields{Type: wire.ICMPv6NeighborAdvertisement})
	var flags uint8 = wire.NDPNAOverride
	if solicited {
		flags |= wire.NDPNASolicited
	}
	if e.nic.Forwarding(6) {
		flags |= wire.NDPNARouter
	}
	wire.NDPNeighborAdvertisement(body[wire.ICMPv6MinimumSize:]).Encode(&wire.NDPNeighborAdvertisementFields{Flags: flags, Target: target})
	if e.resolving {
		wire.AppendNDPLinkLayerAddress(body[:wire.ICMPv6MinimumSize+wire.NDPNeighborAdvertisementSize], wire.NDPOptionTargetLinkLayerAddress, e.nic.LinkAddress())
	}
	if !mac.IsZero() && !isMulticast(&dst) {
		pkt.SetRemoteLinkAddr(mac)
	}
	if e.sendNDP(b, pkt, target, dst) {
		e.p.nc.naOut.Inc()
	}
}

// handleNA feeds a Neighbor Advertisement to the NUD state machine (RFC
// 4861 §7.2.5: its S, O and R flags; the target link-layer address). An
// advertisement for one of our tentative addresses fails its DAD; one for
// an address we use means a duplicate on the link. A router that stops
// calling itself one stops being our default router.
func (e *endpoint) handleNA(b *pipeline.Batch, pkt *pipeline.Packet, ip wire.IPv6, na wire.NDPNeighborAdvertisement) {
	nc := &e.p.nc
	dst, target := ip.Dst(), na.Target()
	if isMulticast(&target) || (na.Solicited() && isMulticast(&dst)) {
		b.Drop(pkt, nc.invalid)
		return
	}
	tll, hasTLL := linkLayer(na.Options(), wire.NDPOptionTargetLinkLayerAddress)
	flags := pipeline.ReachabilityConfirmationFlags{Solicited: na.Solicited(), Override: na.Override(), IsRouter: na.Router()}
	pkt.Release()
	if a, ok := e.ourAddress(target); ok {
		if a.Kind == pipeline.PermanentTentative && e.ls != nil {
			e.ls.dadConflict(b, e, netip.AddrFrom16(target))
			return
		}
		nc.duplicate.Inc()
		return
	}
	if !e.resolving {
		return
	}
	if !hasTLL {
		tll = wire.MAC{}
	}
	addr := netip.AddrFrom16(target)
	if t := b.Gen.Neighbors(e.nic.ID()); t != nil {
		t.HandleConfirmation(b, addr, tll, flags)
	}
	if !flags.IsRouter && e.ls != nil {
		e.ls.notRouter(addr)
	}
}

// linkLayer returns the Ethernet address of the first link-layer address
// option of type t, if there is a well-formed one.
func linkLayer(opts wire.NDPOptions, t uint8) (wire.MAC, bool) {
	o := opts.Find(t)
	if o == nil {
		return wire.MAC{}, false
	}
	m, ok := o.LinkLayerAddress()
	return m, ok && !m.IsZero() && !m.IsMulticast()
}
