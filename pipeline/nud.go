package pipeline

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// Neighbor Unreachability Detection: the state machine of RFC 4861 §7.3.2
// with RFC 7048's UNREACHABLE, as the seed describes it, for any protocol
// that resolves link addresses (ARP now, NDP later). One NeighborTable per
// NIC holds the entries; the protocol (a LinkAddressResolver) sends probes
// and reports what it hears.
//
//	from         event                                        to
//	(none)       a packet to send (first probe at once)       INCOMPLETE
//	INCOMPLETE   confirmation, solicited                      REACHABLE
//	INCOMPLETE   probe from it, unsolicited confirmation      STALE (DELAY if packets waited)
//	INCOMPLETE   MaxMulticastProbes unanswered                UNREACHABLE (queued packets fail)
//	REACHABLE    reachable time passes                        STALE
//	STALE        a packet sent through it                     DELAY
//	DELAY        confirmation                                 REACHABLE
//	DELAY        DelayFirstProbeTime passes (unicast probe)   PROBE
//	PROBE        confirmation                                 REACHABLE
//	PROBE        MaxUnicastProbes unanswered                  UNREACHABLE
//	UNREACHABLE  a packet to send                             INCOMPLETE
//	STALE, UNREACHABLE  GCStaleTime passes                    (removed)
//	any dynamic  a different link address (override)          STALE
//
// STATIC entries (neighbors: in the pipeline file, or Set) never change.
// A probe from a neighbor (an ARP request for one of our addresses) creates
// or refreshes its entry as STALE, as Linux does; an unused STALE or an
// UNREACHABLE entry is removed after GCStaleTime (Linux gc_stale_time).
//
// Where the work happens:
//   - The packet path (Batch.resolve) reads an entry's state and link
//     address with one atomic load; a usable entry costs nothing more. Only
//     the first packet sent through a STALE entry takes the table's lock
//     (STALE → DELAY) and re-arms the entry's timer.
//   - A miss hands the packet to the protocol's ResolveLinkAddress, which
//     gives it back to QueuePacket: the packet is stolen from its batch
//     into the entry's queue (bounded per entry and per NIC; the oldest is
//     dropped first, like Linux's unres_qlen), and a new entry sends its
//     first probe at once.
//   - Timers run on the stack's Clock: each entry owns one timer, re-armed
//     at every transition. When one fires, its work runs inside Stack.Do:
//     probes leave in that batch, and packets whose resolution failed get
//     the protocol's host-unreachable error (NetworkEndpoint.ReturnError of
//     the NIC they came in on; packets the stack originated are dropped).
//   - When a probe or confirmation resolves an entry, its queued packets
//     leave in the batch that carried the answer: they are appended to that
//     batch's output with the link address set, and go out when it
//     finishes. (Stack.Reinject would be safe there too — it takes a batch
//     of its own and only nests a generation reference — but the current
//     batch costs nothing, keeps the packets with the rest of the output
//     and cannot recurse.)
//   - The entry bound (MaxEntries per NIC) is enforced when an entry is
//     created, by evicting one, Linux forced-gc style: an UNREACHABLE entry
//     first, then the oldest STALE, then the oldest other dynamic entry,
//     an INCOMPLETE one last (its packets are dropped); STATIC entries never.
//   - Events go to the NUDDispatcher from a goroutine of the table's own.

// NUDConfigurations are the NUD parameters (the seed's, with its defaults)
// and pipestack's bounds.
type NUDConfigurations struct {
	// BaseReachableTime is the base of the reachable time: how long after
	// a confirmation an entry stays REACHABLE before it goes STALE. The
	// reachable time is BaseReachableTime times a factor drawn uniformly
	// from [MinRandomFactor, MaxRandomFactor] at each confirmation, so that
	// neighbors do not probe in step. Default 30 s.
	BaseReachableTime time.Duration
	// MinRandomFactor and MaxRandomFactor bound that factor; 0 <
	// MinRandomFactor <= MaxRandomFactor. Defaults 0.5 and 1.5.
	MinRandomFactor float32
	MaxRandomFactor float32
	// RetransmitTimer is the time between probes in INCOMPLETE and PROBE.
	// Default 1 s.
	RetransmitTimer time.Duration
	// DelayFirstProbeTime is how long a DELAY entry waits for an
	// upper-layer confirmation before probing. Default 5 s.
	DelayFirstProbeTime time.Duration
	// MaxMulticastProbes is how many broadcast/multicast probes INCOMPLETE
	// sends before the entry becomes UNREACHABLE. Default 3.
	MaxMulticastProbes uint32
	// MaxUnicastProbes is how many unicast probes PROBE sends before the
	// entry becomes UNREACHABLE. Default 3.
	MaxUnicastProbes uint32

	// MaxEntries bounds the entries of one NIC's table (Linux gc_thresh3
	// is per table; ours is per NIC). Default 512.
	MaxEntries int
	// MaxPendingPackets bounds the packets waiting for one entry's
	// resolution (Linux unres_qlen); the oldest is dropped. Default 8.
	MaxPendingPackets int
	// MaxPendingTotal bounds the packets waiting on one NIC, all entries
	// together; beyond it new packets are dropped. Default 256.
	MaxPendingTotal int
	// GCStaleTime is how long an unused STALE entry, or an UNREACHABLE
	// one, is kept (Linux gc_stale_time). Default 60 s.
	GCStaleTime time.Duration
}

// DefaultNUDConfigurations returns the defaults (the seed's for the NUD
// parameters).
func DefaultNUDConfigurations() NUDConfigurations {
	return NUDConfigurations{
		BaseReachableTime:   30 * time.Second,
		MinRandomFactor:     0.5,
		MaxRandomFactor:     1.5,
		RetransmitTimer:     time.Second,
		DelayFirstProbeTime: 5 * time.Second,
		MaxMulticastProbes:  3,
		MaxUnicastProbes:    3,
		MaxEntries:          512,
		MaxPendingPackets:   8,
		MaxPendingTotal:     256,
		GCStaleTime:         60 * time.Second,
	}
}

// WithDefaults returns c with every zero or invalid field replaced by its
// default (as gVisor's resetInvalidFields).
func (c NUDConfigurations) WithDefaults() NUDConfigurations {
	d := DefaultNUDConfigurations()
	if c.BaseReachableTime <= 0 {
		c.BaseReachableTime = d.BaseReachableTime
	}
	if !(c.MinRandomFactor > 0) {
		c.MinRandomFactor = d.MinRandomFactor
	}
	if !(c.MaxRandomFactor >= c.MinRandomFactor) {
		c.MaxRandomFactor = c.MinRandomFactor
		if d.MaxRandomFactor >= c.MinRandomFactor {
			c.MaxRandomFactor = d.MaxRandomFactor
		}
	}
	if c.RetransmitTimer <= 0 {
		c.RetransmitTimer = d.RetransmitTimer
	}
	if c.DelayFirstProbeTime <= 0 {
		c.DelayFirstProbeTime = d.DelayFirstProbeTime
	}
	if c.MaxMulticastProbes == 0 {
		c.MaxMulticastProbes = d.MaxMulticastProbes
	}
	if c.MaxUnicastProbes == 0 {
		c.MaxUnicastProbes = d.MaxUnicastProbes
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = d.MaxEntries
	}
	if c.MaxPendingPackets <= 0 {
		c.MaxPendingPackets = d.MaxPendingPackets
	}
	if c.MaxPendingTotal <= 0 {
		c.MaxPendingTotal = d.MaxPendingTotal
	}
	if c.GCStaleTime <= 0 {
		c.GCStaleTime = d.GCStaleTime
	}
	return c
}

// reachableTime draws a reachable time (RFC 4861 §6.3.2).
func (c *NUDConfigurations) reachableTime(r *Rand) time.Duration {
	f := c.MinRandomFactor + r.Float32()*(c.MaxRandomFactor-c.MinRandomFactor)
	return time.Duration(float64(c.BaseReachableTime) * float64(f))
}

// ReachabilityConfirmationFlags describe a confirmation (the seed's): an
// NDP Neighbor Advertisement's S, O and R flags; an ARP reply is solicited
// when it was unicast to us, and always overrides.
type ReachabilityConfirmationFlags struct {
	Solicited bool
	Override  bool
	IsRouter  bool
}

// neighEntry is one entry. The packet path reads word only; the rest is
// guarded by the table's mu.
type neighEntry struct {
	addr  netip.Addr
	proto NetworkProtocolNumber
	word  atomic.Uint64 // packNeigh(state, mac)

	state     NeighborState
	mac       wire.MAC
	updatedAt time.Time
	probes    uint32
	deadline  time.Time // zero: no timer work pending
	timer     Timer
	qhead     *Packet // packets waiting for resolution, linked by next
	qtail     *Packet
	qlen      int
	removed   bool
}

func (e *neighEntry) snapshot() NeighborEntry {
	return NeighborEntry{Addr: e.addr, LinkAddr: e.mac, State: e.state, UpdatedAt: e.updatedAt}
}

func packNeigh(s NeighborState, m wire.MAC) uint64 {
	return uint64(s)<<48 | uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
}

func unpackNeigh(w uint64) (NeighborState, wire.MAC) {
	return NeighborState(w >> 48), wire.MAC{byte(w >> 40), byte(w >> 32), byte(w >> 24), byte(w >> 16), byte(w >> 8), byte(w)}
}

func protoOf(a netip.Addr) NetworkProtocolNumber {
	if a.Is4() || a.Is4In6() {
		return IPv4ProtocolNumber
	}
	return IPv6ProtocolNumber
}

func neighShard(a netip.Addr) int {
	b := a.As16()
	return int(b[15]^b[13]) & (neighShards - 1)
}

// nudCounters are the stack's "neighbor" counters.
type nudCounters struct {
	queued, queueDropped, resolved, failed, tableFull, evicted *Counter
	probes, probesNotSent, eventsDropped                       *Counter
}

func newNUDCounters(cs *CounterSet) *nudCounters {
	return &nudCounters{
		queued: cs.Get("queued"), queueDropped: cs.Get("queue_dropped"), resolved: cs.Get("resolved"),
		failed: cs.Get("resolution_failed"), tableFull: cs.Get("table_full"), evicted: cs.Get("evicted"),
		probes: cs.Get("probes_sent"), probesNotSent: cs.Get("probes_not_sent"), eventsDropped: cs.Get("events_dropped"),
	}
}

// unattachedCounters count for tables no batch has touched yet (nothing
// but Set and Remove can reach them).
var unattachedCounters = newNUDCounters(&CounterSet{name: "neighbor", byKey: map[string]*Counter{}})

// maxNUDEvents bounds the events waiting for a slow NUDDispatcher.
const maxNUDEvents = 4096

type nudEventKind uint8

const (
	nudAdded nudEventKind = iota
	nudChanged
	nudRemoved
)

type nudEvent struct {
	kind nudEventKind
	e    NeighborEntry
}

// Neighbors returns the neighbor table of a NIC of the generation (nil when
// the NIC is not in it): what a LinkAddressResolver feeds.
func (g *Generation) Neighbors(id NICID) *NeighborTable {
	if ng := g.nic(id); ng != nil {
		return ng.nic.neigh
	}
	return nil
}

// attach learns the stack from the first batch that reaches the table: its
// counters, and a closer so that Stack.Close stops the timers and releases
// queued packets.
func (t *NeighborTable) attach(s *Stack) {
	if t.stack.Load() != nil {
		return
	}
	t.attachOnce.Do(func() {
		t.c.Store(newNUDCounters(s.counterSet("neighbor")))
		s.Shared(fmt.Sprintf("pipeline/neighbors/%d/%p", t.nic, t), func() any { return neighborCloser{t} })
		t.stack.Store(s)
	})
}

type neighborCloser struct{ t *NeighborTable }

func (c neighborCloser) Close() error { c.t.close(); return nil }

func (t *NeighborTable) currentGen() *Generation {
	if s := t.stack.Load(); s != nil {
		return s.gen.Load()
	}
	return nil
}

// config is the NUD configuration for proto in generation g (nil: none).
func (t *NeighborTable) config(g *Generation, proto NetworkProtocolNumber) NUDConfigurations {
	if g != nil {
		if r := g.resolver(proto); r != nil {
			return r.NUDConfigurations().WithDefaults()
		}
	}
	return DefaultNUDConfigurations()
}

func (t *NeighborTable) find(a netip.Addr) *neighEntry {
	if m := t.shards[neighShard(a)].Load(); m != nil {
		return (*m)[a]
	}
	return nil
}

func (t *NeighborTable) eachLocked(f func(e *neighEntry)) {
	for i := range t.shards {
		if m := t.shards[i].Load(); m != nil {
			for _, e := range *m {
				f(e)
			}
		}
	}
}

// unlock releases mu and starts the event goroutine when events wait for
// one.
func (t *NeighborTable) unlock() {
	kick := t.kick
	t.kick = false
	t.mu.Unlock()
	if kick {
		go t.drainEvents()
	}
}

func (t *NeighborTable) emitLocked(kind nudEventKind, e *neighEntry) {
	if t.disp == nil {
		return
	}
	if len(t.events) >= maxNUDEvents {
		t.c.Load().eventsDropped.Inc()
		return
	}
	t.events = append(t.events, nudEvent{kind: kind, e: e.snapshot()})
	if !t.draining {
		t.draining, t.kick = true, true
	}
}

func (t *NeighborTable) drainEvents() {
	var buf []nudEvent
	for {
		t.mu.Lock()
		if len(t.events) == 0 {
			t.draining = false
			t.mu.Unlock()
			return
		}
		buf, t.events = t.events, buf[:0]
		t.mu.Unlock()
		for _, ev := range buf {
			switch ev.kind {
			case nudAdded:
				t.disp.OnNeighborAdded(t.nic, ev.e)
			case nudChanged:
				t.disp.OnNeighborChanged(t.nic, ev.e)
			case nudRemoved:
				t.disp.OnNeighborRemoved(t.nic, ev.e)
			}
		}
		clear(buf)
	}
}

func (t *NeighborTable) insertLocked(a netip.Addr, proto NetworkProtocolNumber, s NeighborState, mac wire.MAC, now time.Time) *neighEntry {
	e := &neighEntry{addr: a, proto: proto, state: s, mac: mac, updatedAt: now}
	e.word.Store(packNeigh(s, mac))
	sh := &t.shards[neighShard(a)]
	var m map[netip.Addr]*neighEntry
	if old := sh.Load(); old != nil {
		m = make(map[netip.Addr]*neighEntry, len(*old)+1)
		for k, v := range *old {
			m[k] = v
		}
	} else {
		m = make(map[netip.Addr]*neighEntry, 1)
	}
	m[a] = e
	sh.Store(&m)
	t.n++
	t.emitLocked(nudAdded, e)
	return e
}

// deleteLocked removes e and returns its queued packets (the caller drops
// them once it no longer holds mu, or under it through dropList).
func (t *NeighborTable) deleteLocked(e *neighEntry) *Packet {
	sh := &t.shards[neighShard(e.addr)]
	if old := sh.Load(); old != nil {
		m := make(map[netip.Addr]*neighEntry, len(*old))
		for k, v := range *old {
			if k != e.addr {
				m[k] = v
			}
		}
		sh.Store(&m)
	}
	t.n--
	e.removed = true
	disarmLocked(e)
	q := t.takeQueueLocked(e)
	t.emitLocked(nudRemoved, e)
	return q
}

// setLocked moves e to state s with link address mac.
func (t *NeighborTable) setLocked(e *neighEntry, s NeighborState, mac wire.MAC, now time.Time) {
	if e.state == s && e.mac == mac {
		return
	}
	e.state, e.mac, e.updatedAt = s, mac, now
	e.word.Store(packNeigh(s, mac))
	t.emitLocked(nudChanged, e)
}

// armLocked (re)arms e's timer to fire after d.
func (t *NeighborTable) armLocked(e *neighEntry, d time.Duration, now time.Time) {
	e.deadline = now.Add(d)
	if e.timer == nil {
		e.timer = t.clock.AfterFunc(d, func() { t.fire(e) })
		return
	}
	e.timer.Reset(d)
}

func disarmLocked(e *neighEntry) {
	e.deadline = time.Time{}
	if e.timer != nil {
		e.timer.Stop()
	}
}

func (t *NeighborTable) enqueueLocked(e *neighEntry, p *Packet) {
	p.next = nil
	if e.qtail == nil {
		e.qhead = p
	} else {
		e.qtail.next = p
	}
	e.qtail = p
	e.qlen++
	t.pending++
}

func (t *NeighborTable) dequeueLocked(e *neighEntry) *Packet {
	p := e.qhead
	if p == nil {
		return nil
	}
	e.qhead = p.next
	if e.qhead == nil {
		e.qtail = nil
	}
	p.next = nil
	e.qlen--
	t.pending--
	return p
}

// takeQueueLocked empties e's queue and returns it as a list linked by next.
func (t *NeighborTable) takeQueueLocked(e *neighEntry) *Packet {
	q := e.qhead
	t.pending -= e.qlen
	e.qhead, e.qtail, e.qlen = nil, nil, 0
	return q
}

// dropList ends a list of stolen packets, counting each under reason (and
// as a TX drop of its NIC when b is given). It only touches counters and the
// pool, so it may run under mu.
func dropList(b *Batch, q *Packet, reason *Counter) {
	for p := q; p != nil; {
		next := p.next
		p.next = nil
		if b != nil {
			b.Drop(p, reason)
		} else {
			reason.Inc()
			p.Release()
		}
		p = next
	}
}

// outputResolved sends a list of packets that waited for mac in batch b:
// they skip Postrouting (done before they were queued) and resolution.
func outputResolved(b *Batch, q *Packet, mac wire.MAC) {
	for p := q; p != nil; {
		next := p.next
		p.next = nil
		p.RemoteLinkAddr = mac
		p.stage |= stageLinkAddrSet | stagePostDone
		b.Output(p)
		p = next
	}
}

// makeRoomLocked evicts entries until one more fits under max; false when
// only STATIC entries are left. Evicted packets are dropped under b.
func (t *NeighborTable) makeRoomLocked(b *Batch, max int) bool {
	c := t.c.Load()
	for t.n >= max {
		var victim *neighEntry
		rank := 0
		t.eachLocked(func(e *neighEntry) {
			r := evictRank(e.state)
			if r == 0 {
				return
			}
			if victim == nil || r > rank || (r == rank && e.updatedAt.Before(victim.updatedAt)) {
				victim, rank = e, r
			}
		})
		if victim == nil {
			return false
		}
		c.evicted.Inc()
		dropList(b, t.deleteLocked(victim), c.queueDropped)
	}
	return true
}

// evictRank orders eviction candidates: higher goes first, 0 never.
func evictRank(s NeighborState) int {
	switch s {
	case NeighborStatic:
		return 0
	case NeighborIncomplete:
		return 1
	case NeighborReachable, NeighborDelay, NeighborProbe:
		return 2
	case NeighborStale:
		return 3
	}
	return 4 // UNREACHABLE, UNKNOWN
}

// lookupForSend is the transmit path's lookup: lock-free, except that the
// first use of a STALE entry moves it to DELAY (RFC 4861 §7.3.3).
func (t *NeighborTable) lookupForSend(b *Batch, a netip.Addr) (wire.MAC, bool) {
	e := t.find(a)
	if e == nil {
		return wire.MAC{}, false
	}
	s, mac := unpackNeigh(e.word.Load())
	if s == NeighborStale {
		t.startDelay(b, e)
	}
	return mac, s.usable()
}

func (t *NeighborTable) startDelay(b *Batch, e *neighEntry) {
	t.attach(b.stack)
	cfg := t.config(b.Gen, e.proto)
	now := t.clock.Now()
	t.mu.Lock()
	if !t.closed && !e.removed && e.state == NeighborStale {
		t.setLocked(e, NeighborDelay, e.mac, now)
		e.probes = 0
		t.armLocked(e, cfg.DelayFirstProbeTime, now)
	}
	t.unlock()
}

// QueuePacket steals pkt (NextHop set, no usable entry) into the queue of
// its next hop's entry until the entry is resolved, creating the entry
// (INCOMPLETE, first probe sent at once) or restarting resolution of an
// UNREACHABLE one. It takes ownership of pkt: the packet is sent when the
// entry resolves, or dropped and counted (queue or table full, resolution
// failed). Called by a LinkAddressResolver's ResolveLinkAddress.
func (t *NeighborTable) QueuePacket(b *Batch, pkt *Packet) {
	t.attach(b.stack)
	c := t.c.Load()
	a := pkt.NextHop
	if !a.IsValid() {
		b.Drop(pkt, b.Gen.neighUnresolved)
		return
	}
	proto := pkt.NetProto
	cfg := t.config(b.Gen, proto)
	now := t.clock.Now()
	t.mu.Lock()
	if t.closed {
		t.unlock()
		b.Drop(pkt, c.queueDropped)
		return
	}
	e := t.find(a)
	if e != nil && e.state.usable() {
		// Resolved since the lookup.
		mac := e.mac
		t.unlock()
		outputResolved(b, pkt, mac)
		return
	}
	probe := false
	switch {
	case e == nil:
		if !t.makeRoomLocked(b, cfg.MaxEntries) {
			t.unlock()
			b.Drop(pkt, c.tableFull)
			return
		}
		e = t.insertLocked(a, proto, NeighborIncomplete, wire.MAC{}, now)
		probe = true
	case e.state != NeighborIncomplete:
		// UNREACHABLE (or UNKNOWN): resolve again, as Linux does for
		// FAILED.
		t.setLocked(e, NeighborIncomplete, wire.MAC{}, now)
		probe = true
	}
	if probe {
		e.probes = 1
		t.armLocked(e, cfg.RetransmitTimer, now)
	}
	var old *Packet
	if t.pending >= cfg.MaxPendingTotal && e.qlen == 0 {
		old = pkt // the NIC's bound: the new packet goes
	} else {
		if e.qlen >= cfg.MaxPendingPackets || t.pending >= cfg.MaxPendingTotal {
			old = t.dequeueLocked(e) // the entry's bound: the oldest goes
		}
		t.enqueueLocked(e, pkt)
		c.queued.Inc()
	}
	t.unlock()
	if old != nil {
		b.Drop(old, c.queueDropped)
	}
	if probe {
		t.probe(b, proto, a, wire.MAC{})
	}
}

// probe sends one probe through the protocol's resolver in batch b.
func (t *NeighborTable) probe(b *Batch, proto NetworkProtocolNumber, a netip.Addr, remote wire.MAC) {
	c := t.c.Load()
	ng := b.Gen.nic(t.nic)
	r := b.Gen.resolver(proto)
	if ng == nil || ng.nic.neigh != t || r == nil || !r.LinkAddressRequest(b, ng, a, remote) {
		c.probesNotSent.Inc()
		return
	}
	c.probes.Inc()
}

// HandleProbe processes a probe from a neighbor that carries its link
// address (an ARP request for one of our addresses, an NDP Neighbor
// Solicitation with a source link-layer address): the entry is created
// STALE, or refreshed to STALE when the link address changed (RFC 4861
// §7.2.3); an INCOMPLETE or UNREACHABLE entry is resolved and its queued
// packets leave in b. STATIC entries do not change.
func (t *NeighborTable) HandleProbe(b *Batch, addr netip.Addr, mac wire.MAC) {
	if !addr.IsValid() || mac.IsZero() || mac.IsMulticast() {
		return
	}
	t.attach(b.stack)
	c := t.c.Load()
	proto := protoOf(addr)
	cfg := t.config(b.Gen, proto)
	now := t.clock.Now()
	t.mu.Lock()
	if t.closed {
		t.unlock()
		return
	}
	e := t.find(addr)
	var flush *Packet
	switch {
	case e == nil:
		if !t.makeRoomLocked(b, cfg.MaxEntries) {
			c.tableFull.Inc()
			t.unlock()
			return
		}
		e = t.insertLocked(addr, proto, NeighborStale, mac, now)
		t.armLocked(e, cfg.GCStaleTime, now)
	case e.state == NeighborStatic:
	case e.state == NeighborIncomplete || e.state == NeighborUnreachable || e.state == NeighborUnknown:
		flush = t.takeQueueLocked(e)
		t.setLocked(e, NeighborStale, mac, now)
		t.armLocked(e, cfg.GCStaleTime, now)
		c.resolved.Inc()
	case e.mac != mac:
		t.setLocked(e, NeighborStale, mac, now)
		t.armLocked(e, cfg.GCStaleTime, now)
	}
	if flush != nil {
		// Sending through a STALE entry moves it to DELAY.
		t.setLocked(e, NeighborDelay, mac, now)
		e.probes = 0
		t.armLocked(e, cfg.DelayFirstProbeTime, now)
	}
	t.unlock()
	outputResolved(b, flush, mac)
}

// HandleConfirmation processes a reachability confirmation (an ARP reply,
// an NDP Neighbor Advertisement) as RFC 4861 §7.2.5 says: no entry, nothing
// happens (unsolicited answers do not create entries, as Linux with
// arp_accept=0); INCOMPLETE or UNREACHABLE entries take the link address
// and become REACHABLE (solicited) or STALE, sending their queued packets
// in b; other entries are confirmed (solicited: REACHABLE) and take a new
// link address only with Override (without it a different address makes a
// REACHABLE entry STALE). STATIC entries do not change.
func (t *NeighborTable) HandleConfirmation(b *Batch, addr netip.Addr, mac wire.MAC, flags ReachabilityConfirmationFlags) {
	if !addr.IsValid() || mac.IsMulticast() {
		return
	}
	t.attach(b.stack)
	c := t.c.Load()
	cfg := t.config(b.Gen, protoOf(addr))
	now := t.clock.Now()
	t.mu.Lock()
	e := t.find(addr)
	if t.closed || e == nil {
		t.unlock()
		return
	}
	var flush *Packet
	switch e.state {
	case NeighborStatic:
	case NeighborIncomplete, NeighborUnreachable, NeighborUnknown:
		if mac.IsZero() {
			break
		}
		flush = t.takeQueueLocked(e)
		c.resolved.Inc()
		if flags.Solicited {
			t.setLocked(e, NeighborReachable, mac, now)
			e.probes = 0
			t.armLocked(e, cfg.reachableTime(t.rand()), now)
		} else if flush != nil {
			t.setLocked(e, NeighborDelay, mac, now)
			e.probes = 0
			t.armLocked(e, cfg.DelayFirstProbeTime, now)
		} else {
			t.setLocked(e, NeighborStale, mac, now)
			t.armLocked(e, cfg.GCStaleTime, now)
		}
	default: // REACHABLE, STALE, DELAY, PROBE
		differs := !mac.IsZero() && mac != e.mac
		if differs && !flags.Override {
			if e.state == NeighborReachable {
				t.setLocked(e, NeighborStale, e.mac, now)
				t.armLocked(e, cfg.GCStaleTime, now)
			}
			break
		}
		newMAC := e.mac
		if differs {
			newMAC = mac
		}
		switch {
		case flags.Solicited:
			t.setLocked(e, NeighborReachable, newMAC, now)
			e.updatedAt = now
			e.probes = 0
			t.armLocked(e, cfg.reachableTime(t.rand()), now)
		case differs:
			t.setLocked(e, NeighborStale, newMAC, now)
			t.armLocked(e, cfg.GCStaleTime, now)
		}
	}
	mac = e.mac
	t.unlock()
	outputResolved(b, flush, mac)
}

// HandleUpperLevelConfirmation is a hint from above (a TCP ACK for new
// data) that the neighbor at addr is reachable: a usable dynamic entry
// becomes REACHABLE again without a probe (RFC 4861 §7.3.1).
func (t *NeighborTable) HandleUpperLevelConfirmation(b *Batch, addr netip.Addr) {
	e := t.find(addr)
	if e == nil {
		return
	}
	if s, _ := unpackNeigh(e.word.Load()); s != NeighborStale && s != NeighborDelay && s != NeighborProbe && s != NeighborReachable {
		return
	}
	t.attach(b.stack)
	cfg := t.config(b.Gen, e.proto)
	now := t.clock.Now()
	t.mu.Lock()
	switch e.state {
	case NeighborReachable, NeighborStale, NeighborDelay, NeighborProbe:
		if !e.removed && !t.closed {
			t.setLocked(e, NeighborReachable, e.mac, now)
			e.updatedAt = now
			e.probes = 0
			t.armLocked(e, cfg.reachableTime(t.rand()), now)
		}
	}
	t.unlock()
}

// fire is an entry's timer: its work runs in a batch of the stack's
// current generation (probes leave in it), or without one when none runs.
func (t *NeighborTable) fire(e *neighEntry) {
	if s := t.stack.Load(); s != nil && s.Do(func(b *Batch) { t.expire(b, e) }) {
		return
	}
	t.expire(nil, e)
}

// expire is the timed half of the state machine.
func (t *NeighborTable) expire(b *Batch, e *neighEntry) {
	var g *Generation
	if b != nil {
		g = b.Gen
		if ng := g.nic(t.nic); ng == nil || ng.nic.neigh != t {
			// The NIC left the stack: nothing will use the table again.
			t.close()
			return
		}
	}
	cfg := t.config(g, e.proto)
	c := t.c.Load()
	now := t.clock.Now()
	t.mu.Lock()
	if t.closed || e.removed || e.deadline.IsZero() || now.Before(e.deadline) {
		t.unlock() // stopped, or re-armed since this firing was due
		return
	}
	e.deadline = time.Time{}
	var failed *Packet
	probe, remote := false, wire.MAC{}
	switch e.state {
	case NeighborIncomplete:
		if e.probes >= cfg.MaxMulticastProbes {
			failed = t.takeQueueLocked(e)
			t.setLocked(e, NeighborUnreachable, wire.MAC{}, now)
			t.armLocked(e, cfg.GCStaleTime, now)
		} else {
			e.probes++
			probe = true
			t.armLocked(e, cfg.RetransmitTimer, now)
		}
	case NeighborReachable:
		t.setLocked(e, NeighborStale, e.mac, now)
		t.armLocked(e, cfg.GCStaleTime, now)
	case NeighborDelay:
		t.setLocked(e, NeighborProbe, e.mac, now)
		e.probes = 1
		probe, remote = true, e.mac
		t.armLocked(e, cfg.RetransmitTimer, now)
	case NeighborProbe:
		if e.probes >= cfg.MaxUnicastProbes {
			t.setLocked(e, NeighborUnreachable, e.mac, now)
			t.armLocked(e, cfg.GCStaleTime, now)
		} else {
			e.probes++
			probe, remote = true, e.mac
			t.armLocked(e, cfg.RetransmitTimer, now)
		}
	case NeighborStale, NeighborUnreachable, NeighborUnknown:
		failed = t.deleteLocked(e)
	}
	t.unlock()
	if probe && b != nil {
		t.probe(b, e.proto, e.addr, remote)
	}
	t.fail(b, failed, c)
}

// fail ends packets whose resolution failed: each gets the protocol's host
// unreachable error through the endpoint of the NIC it came in on (which
// takes ownership); packets the stack originated, and any without a batch,
// are dropped.
func (t *NeighborTable) fail(b *Batch, q *Packet, c *nudCounters) {
	for p := q; p != nil; {
		next := p.next
		p.next = nil
		c.failed.Inc()
		if b == nil {
			p.Release()
			p = next
			continue
		}
		if ng := b.Gen.nic(p.OutNIC); ng != nil {
			ng.nic.Stats.TxDropped.Inc()
		}
		if p.InNIC != 0 {
			if ep := b.Gen.NetworkEndpoint(p.InNIC, p.NetProto); ep != nil {
				ep.ReturnError(b, p, ErrorHostUnreachable)
				p = next
				continue
			}
		}
		p.Release()
		p = next
	}
}

// close stops every timer and drops every queued packet; the table keeps
// answering lookups with nothing. Called when the stack closes (through
// Stack.Shared) or when a timer finds its NIC gone.
func (t *NeighborTable) close() {
	c := t.c.Load()
	t.mu.Lock()
	if t.closed {
		t.unlock()
		return
	}
	t.closed = true
	var drop []*Packet
	t.eachLocked(func(e *neighEntry) {
		e.removed = true
		disarmLocked(e)
		for p := t.takeQueueLocked(e); p != nil; {
			next := p.next
			p.next = nil
			drop = append(drop, p)
			p = next
		}
	})
	for i := range t.shards {
		t.shards[i].Store(nil)
	}
	t.n = 0
	t.unlock()
	for _, p := range drop {
		c.queueDropped.Inc()
		p.Release()
	}
}
