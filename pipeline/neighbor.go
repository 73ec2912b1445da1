package pipeline

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// NeighborState is the state of a neighbor entry in the Neighbor
// Unreachability Detection state machine (RFC 4861 §7.3.2, RFC 7048), as
// in the seed. This milestone fills tables with Static entries only; the
// dynamic states are driven by network.arp and network.ipv6 (NDP) through
// the same table.
type NeighborState uint8

const (
	NeighborUnknown NeighborState = iota
	NeighborIncomplete
	NeighborReachable
	NeighborStale
	NeighborDelay
	NeighborProbe
	NeighborStatic
	NeighborUnreachable
)

var neighborStateNames = [...]string{"UNKNOWN", "INCOMPLETE", "REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "FAILED"}

// String uses the words `ip neigh` prints.
func (s NeighborState) String() string {
	if int(s) < len(neighborStateNames) {
		return neighborStateNames[s]
	}
	return "?"
}

// usable reports whether packets may be sent with the entry's link address.
func (s NeighborState) usable() bool {
	switch s {
	case NeighborReachable, NeighborStale, NeighborDelay, NeighborProbe, NeighborStatic:
		return true
	}
	return false
}

// NeighborEntry describes a neighbor on a link.
type NeighborEntry struct {
	Addr      netip.Addr
	LinkAddr  wire.MAC
	State     NeighborState
	UpdatedAt time.Time
}

// NUDDispatcher receives neighbor table events (the seed's contract). It may
// be called concurrently and may block without disturbing the packet path
// (events are delivered on the goroutine that changed the table, never on
// the packet path for static changes).
type NUDDispatcher interface {
	OnNeighborAdded(NICID, NeighborEntry)
	OnNeighborChanged(NICID, NeighborEntry)
	OnNeighborRemoved(NICID, NeighborEntry)
}

// LinkAddressResolver is implemented by a network protocol that resolves
// link addresses for another (network.arp for IPv4). The stack calls it from
// the transmit path for a packet whose next hop has no usable entry. It takes
// ownership of pkt: it queues it (stolen, bounded) and probes, re-injecting
// it with Stack.Reinject(ResumeTransmit, …) once resolved, or drops it.
type LinkAddressResolver interface {
	ResolvesFor() NetworkProtocolNumber
	ResolveLinkAddress(b *Batch, nic NetworkInterface, pkt *Packet)
}

// NeighborTable is a NIC's neighbor table. It lives as long as the NIC, so
// entries survive reloads. Readers on the packet path take a lock-free
// snapshot; writers copy on write (writes are rare: configuration, probes).
type NeighborTable struct {
	nic   NICID
	mu    sync.Mutex
	snap  atomic.Pointer[map[netip.Addr]NeighborEntry]
	clock Clock
	disp  NUDDispatcher
}

func newNeighborTable(nic NICID, clock Clock, disp NUDDispatcher) *NeighborTable {
	t := &NeighborTable{nic: nic, clock: clock, disp: disp}
	m := map[netip.Addr]NeighborEntry{}
	t.snap.Store(&m)
	return t
}

// Lookup returns the link address for addr if the entry is usable.
func (t *NeighborTable) Lookup(addr netip.Addr) (wire.MAC, bool) {
	e, ok := (*t.snap.Load())[addr]
	if !ok || !e.State.usable() {
		return wire.MAC{}, false
	}
	return e.LinkAddr, true
}

// Entry returns the entry for addr.
func (t *NeighborTable) Entry(addr netip.Addr) (NeighborEntry, bool) {
	e, ok := (*t.snap.Load())[addr]
	return e, ok
}

// Entries returns all entries.
func (t *NeighborTable) Entries() []NeighborEntry {
	m := *t.snap.Load()
	out := make([]NeighborEntry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	return out
}

// Set adds or replaces an entry and reports the event.
func (t *NeighborTable) Set(e NeighborEntry) {
	t.mu.Lock()
	old := *t.snap.Load()
	prev, existed := old[e.Addr]
	if e.UpdatedAt.IsZero() {
		e.UpdatedAt = t.clock.Now()
	}
	m := make(map[netip.Addr]NeighborEntry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[e.Addr] = e
	t.snap.Store(&m)
	t.mu.Unlock()
	if t.disp == nil {
		return
	}
	switch {
	case !existed:
		t.disp.OnNeighborAdded(t.nic, e)
	case prev.State != e.State || prev.LinkAddr != e.LinkAddr:
		t.disp.OnNeighborChanged(t.nic, e)
	}
}

// Remove deletes the entry for addr.
func (t *NeighborTable) Remove(addr netip.Addr) bool {
	t.mu.Lock()
	old := *t.snap.Load()
	e, ok := old[addr]
	if ok {
		m := make(map[netip.Addr]NeighborEntry, len(old))
		for k, v := range old {
			if k != addr {
				m[k] = v
			}
		}
		t.snap.Store(&m)
	}
	t.mu.Unlock()
	if ok && t.disp != nil {
		t.disp.OnNeighborRemoved(t.nic, e)
	}
	return ok
}

// setStatic makes the table's static entries exactly those given (a reload):
// statics no longer configured are removed, dynamic entries are kept.
func (t *NeighborTable) setStatic(entries []NeighborEntry) {
	want := map[netip.Addr]bool{}
	for _, e := range entries {
		want[e.Addr] = true
		e.State = NeighborStatic
		if cur, ok := t.Entry(e.Addr); ok && cur.State == NeighborStatic && cur.LinkAddr == e.LinkAddr {
			continue
		}
		t.Set(e)
	}
	for _, e := range t.Entries() {
		if e.State == NeighborStatic && !want[e.Addr] {
			t.Remove(e.Addr)
		}
	}
}
