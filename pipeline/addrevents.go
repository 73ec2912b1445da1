package pipeline

import "net/netip"

// Address and link events for modules (AddressListener, registration.go):
// where the stack tells the running generation's modules that a link lost
// addresses or went down. Three places produce them, all off the packet
// path:
//
//   - Apply, once the new generation runs and the old one has drained: a
//     kept link whose configured addresses lost some (Removed), a link the
//     new file no longer has (Down);
//   - the link supervisor taking a NIC down after LinkDown (Down);
//   - NIC.RemoveDynamicAddress (Removed: the one address).

// addrEvent tells the running generation's modules about ev.
func (s *Stack) addrEvent(ev AddressEvent) {
	if g := s.gen.Load(); g != nil {
		g.addrEvent(ev)
	}
}

func (g *Generation) addrEvent(ev AddressEvent) {
	for _, mi := range g.modules {
		if l, ok := mi.mod.(AddressListener); ok {
			l.AddressEvent(ev)
		}
	}
}

// reloadAddrEvents tells g's modules what the swap from old took away:
// configured addresses of kept links and links that left (Stack.mu held,
// old drained).
func (s *Stack) reloadAddrEvents(old, g *Generation, gone []*NIC) {
	for _, n := range gone {
		g.addrEvent(AddressEvent{NIC: n.id, Down: true})
	}
	if old == nil {
		return
	}
	for _, on := range old.nics {
		if on == nil {
			continue
		}
		nn := g.nic(on.nic.id)
		if nn == nil || nn.nic != on.nic {
			continue // gone: told above
		}
		var removed []netip.Addr
		for f := range on.addrs {
			for _, a := range on.addrs[f] {
				if !hasAddress(nn.addrs[f], a.Prefix.Addr()) {
					removed = append(removed, a.Prefix.Addr())
				}
			}
		}
		if len(removed) > 0 {
			g.addrEvent(AddressEvent{NIC: on.nic.id, Removed: removed})
		}
	}
}

func hasAddress(list []AddressInfo, a netip.Addr) bool {
	for _, x := range list {
		if x.Prefix.Addr() == a {
			return true
		}
	}
	return false
}
