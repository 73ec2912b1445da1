package pipeline

import (
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// NeighborState is the state of a neighbor entry in the Neighbor
// Unreachability Detection state machine (RFC 4861 §7.3.2, RFC 7048), as
// in the seed. Static entries come from the pipeline file (neighbors:) or
// Set; the dynamic states are driven by a LinkAddressResolver (network.arp
// for IPv4, later NDP for IPv6) through the same table: see nud.go.
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

// neighShards is the number of shards of a table's lookup map: an insert or
// a removal copies one shard (copy on write), never the whole table.
const neighShards = 16

// NeighborTable is a NIC's neighbor table and its NUD state machine. It
// lives as long as the NIC, so entries survive reloads.
//
// The packet path reads it without locks: the entries sit in copy-on-write
// maps (one per shard, replaced on insert and removal only) and each entry
// publishes its state and link address in one atomic word. Everything else
// (state changes, timers, the queues of packets waiting for resolution,
// bounds, events) happens under mu, off the per-packet path: on a miss, on
// the first use of a STALE entry, on a received probe or confirmation, and
// in the entries' timers on the stack's clock.
type NeighborTable struct {
	nic   NICID
	clock Clock
	disp  NUDDispatcher

	shards [neighShards]atomic.Pointer[map[netip.Addr]*neighEntry]

	// stack is learnt from the first batch that touches the table (timers
	// run their work in a batch of it); c are its "neighbor" counters.
	stack      atomic.Pointer[Stack]
	attachOnce sync.Once
	c          atomic.Pointer[nudCounters]

	mu       sync.Mutex
	n        int // entries
	pending  int // packets queued in all entries
	closed   bool
	events   []nudEvent
	draining bool // a goroutine delivers events
	kick     bool // start one when mu is released
}

func newNeighborTable(nic NICID, clock Clock, disp NUDDispatcher) *NeighborTable {
	t := &NeighborTable{nic: nic, clock: clock, disp: disp}
	t.c.Store(unattachedCounters)
	return t
}

// rand is the stack's random source once a batch attached the table.
func (t *NeighborTable) rand() *Rand {
	if s := t.stack.Load(); s != nil {
		return s.rand
	}
	return nil
}

// Lookup returns the link address for addr if the entry is usable. It reads
// without locks and changes nothing (the transmit path's lookup also moves
// a STALE entry to DELAY).
func (t *NeighborTable) Lookup(addr netip.Addr) (wire.MAC, bool) {
	e := t.find(addr)
	if e == nil {
		return wire.MAC{}, false
	}
	s, mac := unpackNeigh(e.word.Load())
	return mac, s.usable()
}

// Entry returns the entry for addr.
func (t *NeighborTable) Entry(addr netip.Addr) (NeighborEntry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.find(addr)
	if e == nil {
		return NeighborEntry{}, false
	}
	return e.snapshot(), true
}

// Entries returns all entries, by address.
func (t *NeighborTable) Entries() []NeighborEntry {
	t.mu.Lock()
	out := make([]NeighborEntry, 0, t.n)
	t.eachLocked(func(e *neighEntry) { out = append(out, e.snapshot()) })
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out
}

// Set adds or replaces an entry and reports the event. The entry enters the
// given state as if the state machine had moved it there: its timer is
// armed (a REACHABLE entry goes STALE after the reachable time, …); a
// STATIC one never changes. Packets waiting for the address are sent when
// the new state is usable. Set does not count against the entry bound.
func (t *NeighborTable) Set(ne NeighborEntry) {
	now := t.clock.Now()
	if ne.UpdatedAt.IsZero() {
		ne.UpdatedAt = now
	}
	proto := protoOf(ne.Addr)
	cfg := t.config(t.currentGen(), proto)
	t.mu.Lock()
	if t.closed {
		t.unlock()
		return
	}
	e := t.find(ne.Addr)
	if e == nil {
		e = t.insertLocked(ne.Addr, proto, ne.State, ne.LinkAddr, ne.UpdatedAt)
	} else {
		t.setLocked(e, ne.State, ne.LinkAddr, ne.UpdatedAt)
		e.updatedAt = ne.UpdatedAt
	}
	e.probes = 0
	switch ne.State {
	case NeighborReachable:
		t.armLocked(e, cfg.reachableTime(t.rand()), now)
	case NeighborStale, NeighborUnreachable:
		t.armLocked(e, cfg.GCStaleTime, now)
	case NeighborDelay:
		t.armLocked(e, cfg.DelayFirstProbeTime, now)
	case NeighborProbe, NeighborIncomplete:
		t.armLocked(e, cfg.RetransmitTimer, now)
	default:
		disarmLocked(e)
	}
	var flush *Packet
	if ne.State.usable() {
		flush = t.takeQueueLocked(e)
	}
	t.unlock()
	if flush == nil {
		return
	}
	var pkts []*Packet
	for p := flush; p != nil; {
		next := p.next
		p.next = nil
		p.RemoteLinkAddr = ne.LinkAddr
		p.stage |= stageLinkAddrSet
		pkts = append(pkts, p)
		p = next
	}
	if s := t.stack.Load(); s != nil {
		s.Reinject(ResumeAfterResolution, pkts)
	} else {
		ReleaseBatch(pkts)
	}
}

// Remove deletes the entry for addr; packets waiting for it are dropped
// (neighbor.queue_dropped).
func (t *NeighborTable) Remove(addr netip.Addr) bool {
	t.mu.Lock()
	e := t.find(addr)
	if e == nil {
		t.unlock()
		return false
	}
	q := t.deleteLocked(e)
	c := t.c.Load()
	t.unlock()
	dropList(nil, q, c.queueDropped)
	return true
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

// flushDynamic removes every entry but the static ones (a device that went
// away: the one that comes back may have other peers). Packets waiting for
// resolution are dropped.
func (t *NeighborTable) flushDynamic() {
	for _, e := range t.Entries() {
		if e.State != NeighborStatic {
			t.Remove(e.Addr)
		}
	}
}
