package pipeline

import (
	"time"
)

// Batch is a worker's context while one batch runs to completion: the
// generation in force (entered once per batch), the time (read once per
// batch), and the per-NIC output queues that leave in batches when the batch
// finishes. A Batch is used by one goroutine at a time; modules get one
// handed in and never keep it.
type Batch struct {
	stack *Stack
	// Gen is the generation this batch runs in. Everything read from it
	// (routes, addresses, hooks, protocols) is immutable.
	Gen *Generation
	// Now is the stack clock, read once when the batch started.
	Now time.Time

	out      [][]*Packet // output queue per NICID
	alt      [][]*Packet // spare queues, swapped with out while flushing
	pending  []NICID
	flushing []NICID
	pc       PacketContext

	segs []*Packet // software GSO output (gso.go), empty between transmits

}

// TransportProtocol implements TransportDispatcher.
func (b *Batch) TransportProtocol(n TransportProtocolNumber) TransportProtocol {
	return b.Gen.transports[n]
}

// Drop ends a packet: it adds one to reason (may be nil) and to the dropped
// counter of the packet's NIC, and releases the packet.
func (b *Batch) Drop(pkt *Packet, reason *Counter) {
	if reason != nil {
		reason.Inc()
	}
	if pkt.OutNIC != 0 {
		if ng := b.Gen.nic(pkt.OutNIC); ng != nil {
			ng.nic.Stats.TxDropped.Inc()
		}
	} else if pkt.InNIC != 0 {
		if ng := b.Gen.nic(pkt.InNIC); ng != nil {
			ng.nic.Stats.RxDropped.Inc()
		}
	}
	pkt.Release()
}

// Output queues a packet for its NIC (pkt.OutNIC, with pkt.NextHop set). It
// takes ownership. The queue runs the Postrouting hook, neighbor resolution
// and the link's WritePackets when the batch finishes.
func (b *Batch) Output(pkt *Packet) {
	id := pkt.OutNIC
	if int(id) >= len(b.out) {
		b.grow(int(id) + 1)
	}
	q := b.out[id]
	if len(q) == 0 {
		b.pending = append(b.pending, id)
	}
	b.out[id] = append(q, pkt)
}

func (b *Batch) grow(n int) {
	for len(b.out) < n {
		b.out = append(b.out, nil)
		b.alt = append(b.alt, nil)
	}
}

// RunHook runs the table installed at hook h on pkts: dropped packets are
// released and counted (their slots become nil), stolen ones are the
// target's (nil too). With no table installed it returns at once.
func (b *Batch) RunHook(h Hook, pkts []*Packet) {
	t := b.Gen.hooks[h]
	if t == nil {
		return
	}
	b.runHook(t, h, pkts)
}

func (b *Batch) runHook(t *HookTable, h Hook, pkts []*Packet) {
	pc := &b.pc
	for i, p := range pkts {
		if p == nil || (h == Postrouting && p.stage&stagePostDone != 0) ||
			(p.NetProto != IPv4ProtocolNumber && p.NetProto != IPv6ProtocolNumber) {
			continue // filters see IP packets only (ARP passes)
		}
		*pc = PacketContext{Hook: h, InNIC: p.InNIC, OutNIC: p.OutNIC, Pkt: p, Batch: b}
		if !ParseTuple(p, pc) {
			pkts[i] = nil
			b.Drop(p, b.Gen.hookMalformed)
			continue
		}
		switch t.Evaluate(pc) {
		case VerdictAccept:
		case VerdictStolen:
			pkts[i] = nil
		default:
			pkts[i] = nil
			b.Drop(p, b.Gen.hookDrops[h])
		}
	}
	pc.Pkt, pc.Batch = nil, nil
}

// packet stages (Packet.stage bits) for re-injection.
const (
	stagePostDone uint8 = 1 << iota
)

// finish flushes the output queues (repeatedly: resolving a neighbor may
// queue a probe) and leaves the generation.
func (b *Batch) finish() {
	for len(b.pending) > 0 {
		ids := b.pending
		b.pending, b.flushing = b.flushing[:0], ids
		for _, id := range ids {
			q := b.out[id]
			b.out[id] = b.alt[id][:0]
			b.transmit(id, q)
			clear(q)
			b.alt[id] = q[:0]
		}
	}
}

func (b *Batch) transmit(id NICID, q []*Packet) {
	ng := b.Gen.nic(id)
	if ng == nil {
		for _, p := range q {
			if p != nil {
				b.Gen.noNIC.Inc()
				p.Release()
			}
		}
		return
	}
	if t := b.Gen.hooks[Postrouting]; t != nil {
		b.runHook(t, Postrouting, q)
	}
	nic := ng.nic
	if nic.caps&CapResolutionRequired != 0 {
		b.resolve(ng, q)
	}
	var n, bytes uint64
	soft := false // a packet carries offload metadata
	for _, p := range q {
		if p != nil {
			n++
			bytes += uint64(p.Len())
			soft = soft || p.GSO.Type != GSONone || p.GSO.NeedsCsum
		}
	}
	if soft = soft && nic.caps&(CapGSO|CapTXChecksumOffload) != CapGSO|CapTXChecksumOffload; soft {
		// GSO super-packets or partial checksums for a link that cannot
		// finish them: segment and checksum in software (gso.go).
		q, n, bytes = b.softwareOffload(ng, q)
	}
	if n == 0 {
		return
	}
	sent := nic.link.WritePackets(q)
	if soft {
		b.clearSegs()
	}
	nic.Stats.TxPackets.Add(uint64(sent))
	nic.Stats.TxBytes.Add(bytes)
	if uint64(sent) < n {
		nic.Stats.TxDropped.Add(n - uint64(sent))
	}
}

// resolve fills RemoteLinkAddr from the neighbor table (one lock-free
// lookup per run of packets to the same next hop; the first packet through
// a STALE entry moves it to DELAY) or hands the packet to the resolver of
// its protocol, which steals it until the neighbor answers (nud.go).
// Packets whose sender set the link address (SetRemoteLinkAddr) are left
// as they are.
func (b *Batch) resolve(ng *nicGen, q []*Packet) {
	t := ng.nic.neigh
	var lastHop = zeroAddr
	var lastMAC [6]byte
	have := false
	for i, p := range q {
		if p == nil || p.stage&stageLinkAddrSet != 0 {
			continue
		}
		if have && p.NextHop == lastHop {
			p.RemoteLinkAddr = lastMAC
			continue
		}
		mac, ok := t.lookupForSend(b, p.NextHop)
		if ok {
			p.RemoteLinkAddr = mac
			lastHop, lastMAC, have = p.NextHop, mac, true
			continue
		}
		q[i] = nil
		if r := b.Gen.resolver(p.NetProto); r != nil {
			r.ResolveLinkAddress(b, ng, p)
			continue
		}
		b.Drop(p, b.Gen.neighUnresolved)
	}
}
