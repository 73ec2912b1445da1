package conntrack

import (
	"net/netip"

	"github.com/pipestack/pipestack/pipeline"
)

// MASQUERADE follows the out-link's address, as Linux's nf_nat_masquerade
// does with its netdevice and inetaddr notifiers: an entry MASQUERADE
// bound (Entry.masq, the out-link) is deleted when that link goes down or
// leaves the stack, or when it loses the address the entry was
// masqueraded to. A flow that goes on after that starts afresh — a new
// entry, masqueraded to the link's address of the moment — instead of
// leaving with an address the router no longer has, whose replies would
// never come back. SNAT's bindings name their address and stay.

// FlushMasquerade deletes the entries MASQUERADE bound to nic: all of
// them when down, else those masqueraded to one of removed. It returns
// how many it deleted (counted as deleted).
func (t *Table) FlushMasquerade(nic pipeline.NICID, down bool, removed []netip.Addr) int {
	want := uint32(nic) + 1
	n := 0
	for i := range t.entries {
		e := &t.entries[i]
		if e.masq.Load() != want || e.status.Load()&(statusLive|statusDying) != statusLive {
			continue
		}
		match := down
		if !match {
			e.mu.Lock()
			dst := e.reply.tuple.DstAddr() // the reply goes to the masqueraded address
			e.mu.Unlock()
			for _, a := range removed {
				if dst == a {
					match = true
					break
				}
			}
		}
		// A reused entry (freed and taken by another flow meanwhile) has
		// masq 0 or another NIC: checked again before it goes.
		if match && e.masq.Load() == want && t.kill(uint32(i), t.st.Deleted) {
			n++
		}
	}
	return n
}

// AddressEvent implements pipeline.AddressListener: MASQUERADE's entries
// follow the out-link's addresses.
func (m *Module) AddressEvent(ev pipeline.AddressEvent) {
	if m.table != nil {
		m.table.FlushMasquerade(ev.NIC, ev.Down, ev.Removed)
	}
}

var _ pipeline.AddressListener = (*Module)(nil)
