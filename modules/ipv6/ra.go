package ipv6

import (
	"net/netip"
	"slices"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// sendRS sends a Router Solicitation to all-routers from src (the
// link-local address; unspecified, without a link-layer option, when the
// link has none).
func (e *endpoint) sendRS(b *pipeline.Batch, src [16]byte) {
	size := wire.ICMPv6MinimumSize + wire.NDPRouterSolicitationSize
	withLL := !isUnspecified(&src) && e.resolving
	if withLL {
		size += wire.NDPLinkLayerAddressSize
	}
	pkt := e.p.pool.Get(wire.IPv6HeaderSize + size)
	body, _ := pkt.Append(size)
	wire.ICMPv6(body).Encode(&wire.ICMPv6Fields{Type: wire.ICMPv6RouterSolicitation})
	if withLL {
		wire.AppendNDPLinkLayerAddress(body[:wire.ICMPv6MinimumSize+wire.NDPRouterSolicitationSize], wire.NDPOptionSourceLinkLayerAddress, e.nic.LinkAddress())
	}
	if e.sendNDP(b, pkt, src, allRouters) {
		e.p.nc.rsOut.Inc()
	}
}

// sendRA sends a Router Advertisement of the link's configuration to dst
// from the link-local address (called with ls.mu held). It reports false
// when the link has no usable link-local address yet.
func (e *endpoint) sendRA(b *pipeline.Batch, ls *linkState, rc *RAConfig, dst [16]byte) bool {
	src, ok := ls.linkLocalLocked()
	if !ok {
		e.p.nc.noSource.Inc()
		return false
	}
	opts := make([]byte, 0, 64+len(rc.prefixes)*wire.NDPPrefixInfoSize+wire.NDPRDNSSSize(len(rc.rdnss)))
	if mac := e.nic.LinkAddress(); !mac.IsZero() {
		opts = wire.AppendNDPLinkLayerAddress(opts, wire.NDPOptionSourceLinkLayerAddress, mac)
	}
	if rc.MTU > 0 {
		opts = wire.AppendNDPMTU(opts, uint32(rc.MTU))
	}
	for _, p := range rc.prefixes {
		opts = wire.AppendNDPPrefixInfo(opts, &wire.NDPPrefixInfoFields{
			PrefixLength: uint8(p.Bits()), Flags: wire.NDPPrefixOnLink | wire.NDPPrefixAutonomous,
			ValidLifetime: seconds(rc.PrefixValidLifetime), PreferredLifetime: seconds(rc.PrefixPreferredLifetime),
			Prefix: p.Addr().As16(),
		})
	}
	if len(rc.rdnss) > 0 {
		opts = wire.AppendNDPRDNSS(opts, seconds(rc.RDNSSLifetime), rc.rdnss)
	}
	size := wire.ICMPv6MinimumSize + wire.NDPRouterAdvertisementSize + len(opts)
	pkt := e.p.pool.Get(wire.IPv6HeaderSize + size)
	body, _ := pkt.Append(size)
	wire.ICMPv6(body).Encode(&wire.ICMPv6Fields{Type: wire.ICMPv6RouterAdvertisement})
	var flags uint8
	if rc.Managed {
		flags |= wire.NDPRAManaged
	}
	if rc.Other {
		flags |= wire.NDPRAOtherConfig
	}
	wire.NDPRouterAdvertisement(body[wire.ICMPv6MinimumSize:]).Encode(&wire.NDPRouterAdvertisementFields{
		CurHopLimit: uint8(*rc.HopLimit), Flags: flags, RouterLifetime: uint16(min(*rc.Lifetime/time.Second, 0xffff)),
	})
	copy(body[wire.ICMPv6MinimumSize+wire.NDPRouterAdvertisementSize:], opts)
	if e.sendNDP(b, pkt, src, dst) {
		e.p.nc.raOut.Inc()
		return true
	}
	return false
}

// seconds converts a lifetime to the 32-bit seconds NDP carries.
func seconds(d time.Duration) uint32 {
	s := d / time.Second
	if s >= 0xffffffff {
		return 0xffffffff
	}
	return uint32(s)
}

// until converts an NDP lifetime in seconds to its end (zero: infinite).
func until(now time.Time, s uint32) time.Time {
	if s == 0xffffffff {
		return time.Time{}
	}
	return now.Add(time.Duration(s) * time.Second)
}

// handleRS answers a Router Solicitation on a link this router advertises
// on: a multicast advertisement at once, or MIN_DELAY_BETWEEN_RAS after
// the last one (RFC 4861 §6.2.6, without the random delay). A solicitation
// from an address with its link-layer address refreshes its neighbor
// entry.
func (e *endpoint) handleRS(b *pipeline.Batch, pkt *pipeline.Packet, ip wire.IPv6, rs wire.NDPRouterSolicitation) {
	nc := &e.p.nc
	src := ip.Src()
	sll, hasSLL := linkLayer(rs.Options(), wire.NDPOptionSourceLinkLayerAddress)
	pkt.Release()
	if isUnspecified(&src) && hasSLL {
		nc.invalid.Inc()
		return
	}
	ls := e.ls
	if ls == nil || !e.nic.Forwarding(6) {
		nc.rsIgnored.Inc()
		return
	}
	rc := e.p.cfg.ra[e.nic.Name()]
	if rc == nil {
		nc.rsIgnored.Inc()
		return
	}
	if !isUnspecified(&src) && hasSLL && e.resolving {
		if t := b.Gen.Neighbors(e.nic.ID()); t != nil {
			t.HandleProbe(b, netip.AddrFrom16(src), sll)
		}
	}
	now := b.Now
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if !ls.router {
		return
	}
	if at := ls.raLast.Add(minDelayBetweenRAs); ls.raLast.IsZero() || !now.Before(at) {
		if e.sendRA(b, ls, rc, allNodes) {
			ls.raLast = now
			ls.raNext = now.Add(raInterval(ls.reg.stack.Rand(), rc, &ls.raInitial))
			ls.armLocked(ls.raNext, now)
		}
		return
	} else if at.Before(ls.raNext) {
		ls.raNext = at
		ls.armLocked(at, now)
	}
}

// handleRA processes a Router Advertisement on a host link (RFC 4861 §6.3.4,
// RFC 4862 §5.5.3, RFC 8106): the default router and its lifetime, Cur Hop
// Limit, the MTU, on-link prefixes, SLAAC addresses (with DAD) for
// autonomous /64 prefixes, DNS servers. Its source link-layer address
// creates or refreshes the router's neighbor entry.
func (e *endpoint) handleRA(b *pipeline.Batch, pkt *pipeline.Packet, ip wire.IPv6, ra wire.NDPRouterAdvertisement) {
	nc := &e.p.nc
	src := ip.Src()
	defer pkt.Release()
	if !isLinkLocal(&src) {
		nc.invalid.Inc()
		return
	}
	ls := e.ls
	if ls == nil || e.nic.Forwarding(6) || !e.p.cfg.acceptRA {
		nc.raIgnored.Inc()
		return
	}
	router := netip.AddrFrom16(src)
	opts := ra.Options()
	if sll, ok := linkLayer(opts, wire.NDPOptionSourceLinkLayerAddress); ok && e.resolving {
		if t := b.Gen.Neighbors(e.nic.ID()); t != nil {
			t.HandleProbe(b, router, sll)
		}
	}
	now := b.Now
	dad := e.p.cfg.dadTransmits > 0 && e.resolving
	routes := false
	ls.mu.Lock()
	if !ls.host {
		ls.mu.Unlock()
		nc.raIgnored.Inc()
		return
	}
	ls.gotRA = true
	if lt := ra.RouterLifetime(); lt > 0 {
		if _, ok := ls.routers[router]; !ok {
			nc.routersLearnt.Inc()
			routes = true
		}
		ls.routers[router] = now.Add(time.Duration(lt) * time.Second)
	} else if _, ok := ls.routers[router]; ok {
		delete(ls.routers, router)
		routes = true
	}
	if h := ra.CurHopLimit(); h != 0 {
		ls.curHopLimit.Store(int32(h))
	}
	it := opts.Iter()
	for it.Next() {
		o := it.Option()
		switch o.Type() {
		case wire.NDPOptionMTU:
			if mtu, ok := o.MTU(); ok && mtu >= wire.IPv6MinimumMTU && int(mtu) <= e.nic.MTU() {
				ls.raMTU.Store(int32(mtu))
			}
		case wire.NDPOptionPrefixInformation:
			if pi, ok := o.PrefixInfo(); ok {
				routes = ls.prefixLocked(e, pi, now, dad) || routes
			}
		case wire.NDPOptionRDNSS:
			if r, ok := o.RDNSS(); ok {
				for i := 0; i < r.Count(); i++ {
					a := netip.AddrFrom16(r.Address(i))
					if r.Lifetime() == 0 {
						delete(ls.rdnss, a)
					} else {
						ls.rdnss[a] = until(now, r.Lifetime())
					}
				}
			}
		}
	}
	// Wake up for what expires next, and for DAD of new addresses.
	ls.armLocked(now, now)
	ls.mu.Unlock()
	if routes {
		ls.publishRoutes()
	}
}

// prefixLocked processes one Prefix Information option. It reports whether
// the on-link routes changed.
func (ls *linkState) prefixLocked(e *endpoint, pi wire.NDPPrefixInfo, now time.Time, dad bool) bool {
	nc := &e.p.nc
	bits := int(pi.PrefixLength())
	raw := pi.Prefix()
	if bits > 128 || isLinkLocal(&raw) || isMulticast(&raw) {
		return false
	}
	prefix := netip.PrefixFrom(netip.AddrFrom16(raw), bits).Masked()
	valid, preferred := pi.ValidLifetime(), pi.PreferredLifetime()
	if preferred > valid {
		return false
	}
	routes := false
	if pi.OnLink() {
		_, had := ls.onlink[prefix]
		if valid == 0 {
			if had {
				delete(ls.onlink, prefix)
				routes = true
			}
		} else {
			if !had {
				nc.prefixesLearnt.Inc()
				routes = true
			}
			ls.onlink[prefix] = until(now, valid)
		}
	}
	if !pi.Autonomous() || bits != 64 {
		return routes
	}
	var a [16]byte
	copy(a[:8], raw[:8])
	if mac := e.nic.LinkAddress(); !mac.IsZero() && !e.p.cfg.stablePrivacy {
		eui64(a[8:], mac)
	} else {
		stableIID(a[8:], a[:8], ls.name, mac[:], orSecret(e.p.cfg.secret, ls.reg.secret[:]))
	}
	addr := netip.PrefixFrom(netip.AddrFrom16(a), 64)
	s := ls.find(addr.Addr())
	if s == nil {
		if valid == 0 {
			return routes
		}
		s = &addrState{prefix: addr, origin: originSLAAC, valid: until(now, valid), preferred: until(now, preferred)}
		s.deprecated = preferred == 0
		ls.startDADLocked(e, s, dad, now)
		ls.addrs = append(ls.addrs, s)
		ls.publishLocked(s)
		nc.slaacAddresses.Inc()
		return routes
	}
	if s.origin != originSLAAC {
		return routes
	}
	// RFC 4862 §5.5.3 (e): a valid lifetime is only shortened below two
	// hours by an authenticated advertisement, which we do not have.
	remaining := time.Duration(1<<63 - 1)
	if !s.valid.IsZero() {
		remaining = s.valid.Sub(now)
	}
	nv := time.Duration(valid) * time.Second
	switch {
	case valid == 0xffffffff:
		s.valid = time.Time{}
	case nv > twoHours || nv > remaining:
		s.valid = now.Add(nv)
	case remaining <= twoHours:
	default:
		s.valid = now.Add(twoHours)
	}
	s.preferred = until(now, preferred)
	if dep := preferred == 0; dep != s.deprecated {
		s.deprecated = dep
		ls.publishLocked(s)
	}
	return routes
}

// LinkInfo is what network.ipv6 knows about one link: its addresses with
// their state, and what Router Advertisements taught it.
type LinkInfo struct {
	// Addresses are the link's IPv6 addresses (configured, link-local,
	// SLAAC) with their current kind (tentative during DAD).
	Addresses []pipeline.AddressInfo
	// Duplicates are the addresses DAD found in use by another node.
	Duplicates []netip.Addr
	// Routers are the default routers learnt (link-local addresses).
	Routers []netip.Addr
	// Prefixes are the on-link prefixes learnt.
	Prefixes []netip.Prefix
	// RDNSS are the recursive DNS servers learnt (RFC 8106).
	RDNSS []netip.Addr
	// MTU is the link MTU a router advertised (0: none).
	MTU int
	// HopLimit is the Cur Hop Limit a router advertised (0: none).
	HopLimit int
	// Router reports that the link sends Router Advertisements.
	Router bool
}

// Link returns what network.ipv6 knows about the link of this name on s,
// or false when IPv6 has not run on it.
func Link(s *pipeline.Stack, name string) (LinkInfo, bool) {
	reg := s.Shared(linkStatesKey, func() any { return newLinkStates(s, s.Clock()) }).(*linkStates)
	ls := reg.byName(name)
	if ls == nil {
		return LinkInfo{}, false
	}
	now := reg.clock.Now()
	var li LinkInfo
	ls.mu.Lock()
	nic := ls.nic
	for _, a := range ls.addrs {
		if a.duplicate {
			li.Duplicates = append(li.Duplicates, a.prefix.Addr())
		}
	}
	for a, t := range ls.routers {
		if t.IsZero() || now.Before(t) {
			li.Routers = append(li.Routers, a)
		}
	}
	for p, t := range ls.onlink {
		if t.IsZero() || now.Before(t) {
			li.Prefixes = append(li.Prefixes, p)
		}
	}
	for a, t := range ls.rdnss {
		if t.IsZero() || now.Before(t) {
			li.RDNSS = append(li.RDNSS, a)
		}
	}
	li.Router = ls.router
	ls.mu.Unlock()
	li.MTU, li.HopLimit = int(ls.raMTU.Load()), int(ls.curHopLimit.Load())
	slices.SortFunc(li.Routers, func(a, b netip.Addr) int { return a.Compare(b) })
	slices.SortFunc(li.RDNSS, func(a, b netip.Addr) int { return a.Compare(b) })
	slices.SortFunc(li.Prefixes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	if g := s.Generation(); g != nil && nic != nil {
		if n, ok := g.NIC(nic.ID()); ok {
			li.Addresses = slices.Clone(n.Addresses(6))
		}
	}
	return li, true
}

// RDNSS returns the recursive DNS servers learnt on a link (RFC 8106).
func RDNSS(s *pipeline.Stack, link string) []netip.Addr {
	li, _ := Link(s, link)
	return li.RDNSS
}
