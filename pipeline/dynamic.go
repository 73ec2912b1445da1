package pipeline

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// Dynamic addresses and routes: state a protocol module adds at run time,
// outside the immutable generation built from the pipeline file. IPv6 needs
// it (network.ipv6 adds a link-local address to every link, SLAAC addresses
// and routes learnt from Router Advertisements, and holds configured
// addresses tentative while duplicate address detection runs); IPv4 does not
// use it today.
//
// Design:
//
//   - Addresses belong to the NIC, which outlives generations, so they
//     survive reloads. Each NIC keeps one immutable snapshot (its stack-added
//     addresses plus kind overrides of configured addresses, e.g. "tentative
//     while DAD runs"), replaced copy-on-write under a mutex on change and
//     read with one atomic load. A NetworkInterface merges it with the
//     generation's configured addresses once per snapshot (the merged list is
//     cached on the nicGen, so Addresses and PrimaryAddress allocate only
//     after a change).
//   - The stack keeps one map of every dynamic IPv6 address and override
//     (copy-on-write, rebuilt on change, nil while there is none). IsLocal6
//     consults it before the generation's map: a tentative configured
//     address is not local (it is not accepted as a destination; NDP reaches
//     it through its solicited-node multicast address), a dynamic one is.
//   - Routes are kept per owner (a module and a link, e.g.
//     "network.ipv6/ra/3"): SetDynamicRoutes replaces an owner's whole list
//     and the stack rebuilds one immutable RouteTable of all owners. Lookups
//     (Generation.LookupRoute6, Stack.Route) consult the generation's table
//     and this one; the longer prefix wins, then the lower metric, then the
//     configured route. Without dynamic routes the second lookup costs one
//     nil check.
//   - A NIC that leaves the stack (a reload without its link) takes its
//     dynamic addresses and the dynamic routes through it along.
//
// Rebuilding a whole generation for each learnt address or route was the
// alternative; it would re-provision every module and restart their timers
// on every Router Advertisement, and make a reload and a learnt prefix race
// for the same pointer.

// dynAddrs is a NIC's dynamic address snapshot. Immutable once published.
type dynAddrs struct {
	addrs []AddressInfo              // stack-added addresses, in order added
	kinds map[netip.Addr]AddressKind // kind overrides of configured addresses
}

// dynLocal is an entry of the stack's dynamic IPv6 address map.
type dynLocal struct {
	nic    NICID
	usable bool // false: tentative (or a duplicate): not accepted as a destination
}

// mergedAddrs caches a nicGen's IPv6 address list for one dynamic snapshot.
type mergedAddrs struct {
	snap *dynAddrs
	list []AddressInfo
}

// usableKind reports whether an address of this kind is accepted as a
// destination and may be used as a source.
func usableKind(k AddressKind) bool { return k != PermanentTentative }

// SetDynamicAddress adds an address the stack manages at run time (a
// link-local or SLAAC address), or updates the kind or prefix length of one
// added before. It is IPv6 only (IPv4 addresses come from the pipeline
// file). The address survives reloads; it is removed with
// RemoveDynamicAddress or when the NIC leaves the stack.
func (n *NIC) SetDynamicAddress(a AddressInfo) {
	if !a.Prefix.Addr().Is6() {
		return
	}
	n.updateDyn(func(d *dynAddrs) {
		for i := range d.addrs {
			if d.addrs[i].Prefix.Addr() == a.Prefix.Addr() {
				d.addrs[i] = a
				return
			}
		}
		d.addrs = append(d.addrs, a)
	})
}

// RemoveDynamicAddress removes an address SetDynamicAddress added and
// reports whether there was one.
func (n *NIC) RemoveDynamicAddress(addr netip.Addr) bool {
	found := false
	n.updateDyn(func(d *dynAddrs) {
		d.addrs = slices.DeleteFunc(d.addrs, func(a AddressInfo) bool {
			if a.Prefix.Addr() == addr {
				found = true
				return true
			}
			return false
		})
	})
	if found && n.stack != nil {
		n.stack.addrEvent(AddressEvent{NIC: n.id, Removed: []netip.Addr{addr}})
	}
	return found
}

// SetAddressKind overrides the kind of a configured (pipeline-file) IPv6
// address: PermanentTentative while duplicate address detection runs (and
// for good when it found a duplicate), PermanentExpired to deprecate it.
// Permanent removes the override. The override outlives generations, so a
// reload that keeps the address keeps its state.
func (n *NIC) SetAddressKind(addr netip.Addr, k AddressKind) {
	if !addr.Is6() {
		return
	}
	n.updateDyn(func(d *dynAddrs) {
		if k == Permanent {
			delete(d.kinds, addr)
			return
		}
		d.kinds[addr] = k
	})
}

// AddressKindOverride returns the kind override of a configured address, if
// any.
func (n *NIC) AddressKindOverride(addr netip.Addr) (AddressKind, bool) {
	if d := n.dyn.Load(); d != nil {
		k, ok := d.kinds[addr]
		return k, ok
	}
	return Permanent, false
}

// DynamicAddresses returns the addresses SetDynamicAddress added.
func (n *NIC) DynamicAddresses() []AddressInfo {
	if d := n.dyn.Load(); d != nil {
		return slices.Clone(d.addrs)
	}
	return nil
}

// updateDyn publishes a modified copy of the NIC's snapshot and refreshes
// the stack's map.
func (n *NIC) updateDyn(f func(d *dynAddrs)) {
	n.dynMu.Lock()
	next := &dynAddrs{kinds: map[netip.Addr]AddressKind{}}
	if cur := n.dyn.Load(); cur != nil {
		next.addrs = slices.Clone(cur.addrs)
		for k, v := range cur.kinds {
			next.kinds[k] = v
		}
	}
	f(next)
	n.dyn.Store(next)
	n.dynMu.Unlock()
	if n.stack != nil {
		n.stack.refreshDynamic(n, false)
	}
}

// refreshDynamic rebuilds the stack's dynamic address map after n changed
// (or left the stack: gone).
func (s *Stack) refreshDynamic(n *NIC, gone bool) {
	s.dynMu.Lock()
	defer s.dynMu.Unlock()
	if s.dynNICs == nil {
		s.dynNICs = map[NICID]*NIC{}
	}
	if gone {
		delete(s.dynNICs, n.id)
	} else {
		s.dynNICs[n.id] = n
	}
	m := map[[16]byte]dynLocal{}
	for _, nic := range s.dynNICs {
		d := nic.dyn.Load()
		if d == nil {
			continue
		}
		for a, k := range d.kinds {
			m[a.As16()] = dynLocal{nic: nic.id, usable: usableKind(k)}
		}
		for _, a := range d.addrs {
			m[a.Prefix.Addr().As16()] = dynLocal{nic: nic.id, usable: usableKind(a.Kind)}
		}
	}
	if len(m) == 0 {
		s.local6dyn.Store(nil)
		return
	}
	s.local6dyn.Store(newAddrSet6(m))
}

// forgetDynamic drops the dynamic state of a NIC that left the stack: its
// addresses and every dynamic route through it.
func (s *Stack) forgetDynamic(n *NIC) {
	n.dynMu.Lock()
	n.dyn.Store(nil)
	n.dynMu.Unlock()
	s.refreshDynamic(n, true)
	s.routeMu.Lock()
	changed := false
	for owner, rs := range s.routeOwners {
		kept := slices.DeleteFunc(slices.Clone(rs), func(r Route) bool { return r.NIC == n.id })
		if len(kept) != len(rs) {
			s.routeOwners[owner] = kept
			changed = true
		}
	}
	if changed {
		s.rebuildRoutesLocked()
	}
	s.routeMu.Unlock()
}

// SetDynamicRoutes replaces the dynamic routes of owner (a name such as
// "network.ipv6/ra/<nic>") with routes; nil removes them. Dynamic routes
// survive reloads and are consulted with the generation's routes (see
// Generation.LookupRoute6).
func (s *Stack) SetDynamicRoutes(owner string, routes []Route) {
	s.routeMu.Lock()
	defer s.routeMu.Unlock()
	if s.routeOwners == nil {
		s.routeOwners = map[string][]Route{}
	}
	if len(routes) == 0 {
		if _, ok := s.routeOwners[owner]; !ok {
			return
		}
		delete(s.routeOwners, owner)
	} else {
		s.routeOwners[owner] = slices.Clone(routes)
	}
	s.rebuildRoutesLocked()
}

func (s *Stack) rebuildRoutesLocked() {
	var all []Route
	owners := make([]string, 0, len(s.routeOwners))
	for o := range s.routeOwners {
		owners = append(owners, o)
	}
	slices.Sort(owners) // deterministic tie-breaks
	for _, o := range owners {
		for _, r := range s.routeOwners[o] {
			if !s.downNICs[r.NIC] { // withdrawn while its link is down
				all = append(all, r)
			}
		}
	}
	if len(all) == 0 {
		s.dynRoutes.Store(nil)
		return
	}
	s.dynRoutes.Store(NewRouteTable(all))
}

// DynamicRoutes returns the dynamic routes of every owner, longest prefix
// first.
func (s *Stack) DynamicRoutes() []Route {
	if t := s.dynRoutes.Load(); t != nil {
		return t.Routes()
	}
	return nil
}

// LookupRoute6 finds the route for an IPv6 destination among the
// generation's routes and the stack's dynamic routes: the longer prefix
// wins, then the lower metric, then the configured route. nil: no route.
func (g *Generation) LookupRoute6(dst [16]byte) *Route {
	r := g.Routes().Lookup6(dst)
	d := g.stack.dynRoutes.Load()
	if d == nil {
		return r
	}
	dr := d.Lookup6(dst)
	switch {
	case dr == nil:
		return r
	case r == nil:
		return dr
	case dr.Dst.Bits() > r.Dst.Bits(), dr.Dst.Bits() == r.Dst.Bits() && dr.Metric < r.Metric:
		return dr
	}
	return r
}

// LookupRoute finds the route for a packet the stack sends to dst: the
// loopback NIC for one of its own addresses (LookupRoute4, LookupOutput6:
// loopback.go), else IPv4 in the generation's table, IPv6 as LookupRoute6.
func (g *Generation) LookupRoute(dst netip.Addr) *Route {
	dst = dst.Unmap()
	if dst.Is4() {
		return g.LookupRoute4(dst.As4())
	}
	return g.LookupOutput6(dst.As16())
}

// addrs6 returns the NIC's IPv6 addresses in this generation, merged with
// the dynamic ones, in primary order (cached per dynamic snapshot).
func (g *nicGen) addrs6() []AddressInfo {
	d := g.nic.dyn.Load()
	if d == nil {
		return g.addrs[1]
	}
	if c := g.merged.Load(); c != nil && c.snap == d {
		return c.list
	}
	var global, local []AddressInfo
	for _, a := range g.raw6 {
		if k, ok := d.kinds[a.Prefix.Addr()]; ok {
			a.Kind = k
		}
		global = append(global, a)
	}
	for _, a := range d.addrs {
		if slices.ContainsFunc(g.raw6, func(c AddressInfo) bool { return c.Prefix.Addr() == a.Prefix.Addr() }) {
			continue
		}
		if a.Prefix.Addr().IsLinkLocalUnicast() {
			local = append(local, a)
		} else {
			global = append(global, a)
		}
	}
	// Link-local addresses come after the others, so that the primary
	// address (used towards destinations of any scope) is a global one
	// when there is one; SourceAddress picks by scope.
	list := orderPrimary(append(global, local...))
	g.merged.Store(&mergedAddrs{snap: d, list: list})
	return list
}

// SourceAddress implements NetworkInterface.
func (g *nicGen) SourceAddress(dst netip.Addr) (netip.Addr, bool) {
	dst = dst.Unmap()
	if g.nic.loop {
		return g.loopSource(dst)
	}
	if dst.Is4() {
		for _, a := range g.addrs[0] {
			if primaryCandidate(a) && a.Prefix.Contains(dst) {
				return a.Prefix.Addr(), true
			}
		}
		p, ok := g.PrimaryAddress(4)
		return p.Addr(), ok
	}
	return SelectSource6(g.addrs6(), dst)
}

// SelectSource6 chooses an IPv6 source address for dst among addrs (in
// primary order) by the rules of RFC 6724 §5 that apply to one interface:
// never a tentative or NeverPrimary address; dst itself if it is one of
// them (rule 1); an address of dst's scope, else of a larger scope, else of
// a smaller one (rule 2); a non-deprecated one (rule 3); the longest common
// prefix with dst (rule 8); then primary order.
func SelectSource6(addrs []AddressInfo, dst netip.Addr) (netip.Addr, bool) {
	dscope := scope6(dst)
	best := -1
	var bestScore [3]int
	for i, a := range addrs {
		if !primaryCandidate(a) {
			continue
		}
		sa := a.Prefix.Addr()
		if !sa.Is6() {
			continue
		}
		if sa == dst {
			return sa, true
		}
		s := scope6(sa)
		var sc [3]int
		switch {
		case s == dscope:
			sc[0] = 2
		case s > dscope:
			sc[0] = 1
		}
		if a.Kind != PermanentExpired {
			sc[1] = 1
		}
		sc[2] = commonPrefixLen(sa, dst)
		if best < 0 || sc[0] > bestScore[0] ||
			(sc[0] == bestScore[0] && (sc[1] > bestScore[1] || (sc[1] == bestScore[1] && sc[2] > bestScore[2]))) {
			best, bestScore = i, sc
		}
	}
	if best < 0 {
		return netip.Addr{}, false
	}
	return addrs[best].Prefix.Addr(), true
}

// scope6 is an address's scope in RFC 4291 terms (larger is wider):
// interface-local 1, link-local 2, site 5, global 14.
func scope6(a netip.Addr) int {
	switch {
	case a.IsMulticast():
		return int(a.As16()[1] & 0x0f)
	case a.IsLoopback():
		return 1
	case a.IsLinkLocalUnicast():
		return 2
	}
	return 14
}

func commonPrefixLen(a, b netip.Addr) int {
	x, y := a.As16(), b.As16()
	n := 0
	for i := 0; i < 16; i++ {
		d := x[i] ^ y[i]
		if d == 0 {
			n += 8
			continue
		}
		for d&0x80 == 0 {
			n++
			d <<= 1
		}
		return n
	}
	return n
}

// dynState is what Stack holds for dynamic addresses and routes.
type dynState struct {
	dynMu     sync.Mutex
	dynNICs   map[NICID]*NIC
	local6dyn atomic.Pointer[addrSet6[dynLocal]]

	routeMu     sync.Mutex
	routeOwners map[string][]Route
	downNICs    map[NICID]bool // NICs whose link is down (linkstate.go)
	dynRoutes   atomic.Pointer[RouteTable]
}
