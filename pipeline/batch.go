package pipeline

import (
	"sync/atomic"
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
	// pcs are the packet contexts of the hook runs in progress: a target
	// may send a packet (REJECT's ICMP error) whose Output hook runs inside
	// the evaluation that is still looking at pcs[hookDepth-1].
	pcs       [maxHookNesting]PacketContext
	hookDepth int

	shard int // Shard()+1; 0: not numbered yet

	// flushers are the modules that stole in this batch (OnFinish).
	flushers, flushersAlt []BatchFlusher
	// tokens are resume tokens kept for this worker (resume.go); rhooks
	// and rrun are Stack.Resume's scratch.
	tokens []*resumeToken
	rhooks []Hook
	rrun   []*Packet

	tracer Tracer // Stack.SetTracer's when the batch started (trace.go)

	segs  []*Packet // software GSO output (gso.go), empty between transmits
	frags []*Packet // a queue with its fragments (transmit), empty between transmits

	// What the batch sent through the loopback NIC, received on it when
	// the output queues are flushed (loopback.go), and the rounds of that
	// in this flush.
	loopq, loopAlt []*Packet
	loopRounds     int
}

// batchSeq numbers batches for Shard.
var batchSeq atomic.Int32

// Shard is a small number that no other batch running at the same time
// has (batches are numbered from 0 as they are made, and one batch is used
// by one goroutine at a time): per-worker counters (a filter rule's) index
// their shards with it, modulo their shard count, so that two workers
// rarely write the same cache line.
func (b *Batch) Shard() int {
	if b.shard == 0 {
		b.shard = int(batchSeq.Add(1))
	}
	return b.shard - 1
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
// takes ownership. When the batch finishes, each NIC's queue goes through
// the output path's stages in order (transmit): the Postrouting hook, which
// sees whole datagrams; fragmentation of packets over the NIC's MTU (or
// their PathMTU) by their network protocol (Fragmenter); neighbor
// resolution; software GSO and checksums for a link that cannot do them;
// the link's WritePackets.
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

// RunHook runs the tables installed at hook h on pkts: dropped packets are
// released and counted (their slots become nil), stolen ones are the
// stealer's (nil too). With no table installed it returns at once.
func (b *Batch) RunHook(h Hook, pkts []*Packet) {
	hs := b.Gen.hooks[h]
	if hs == nil {
		return
	}
	b.hookRun(hs, h, pkts)
}

// maxHookNesting bounds hook runs inside hook runs (a target's packet
// through Output while Forward evaluates: 2); deeper, the packets are
// dropped under stack.filter_nested.
const maxHookNesting = 4

// enterHook returns the packet context of a new hook run, or nil (the
// packets dropped and counted) when hook runs nest too deep.
func (b *Batch) enterHook(pkts []*Packet) *PacketContext {
	if b.hookDepth >= maxHookNesting {
		for i, p := range pkts {
			if p != nil {
				pkts[i] = nil
				b.Drop(p, b.Gen.hookNested)
			}
		}
		return nil
	}
	b.hookDepth++
	return &b.pcs[b.hookDepth-1]
}

// leaveHook ends the hook run of pc (it keeps no pointer).
func (b *Batch) leaveHook(pc *PacketContext) {
	pc.Pkt, pc.Batch = nil, nil
	b.hookDepth--
}

func (b *Batch) runHook(hs *hookSet, h Hook, pkts []*Packet) {
	if hs.trivial {
		b.runTrivial(hs, h, pkts)
		return
	}
	pc := b.enterHook(pkts)
	if pc == nil {
		return
	}
	for _, f := range hs.prepare {
		f(b, h, pkts)
	}
	// The fields that stay for the hook run are set once; ParseTuple
	// sets all of Tuple, Fragment, L4Off, L4End and FragOff per packet.
	*pc = PacketContext{Hook: h, Batch: b, gen: b.Gen}
	for i, p := range pkts {
		if hookSkips(h, p) {
			continue
		}
		pc.InNIC, pc.OutNIC, pc.Pkt, pc.held = p.InNIC, p.OutNIC, p, false
		if hs.noTuple {
			pc.clearTuple() // a table may have parsed (set) it for the last packet
		} else if !ParseTuple(b, p, pc) {
			pkts[i] = nil
			b.Drop(p, b.Gen.hookMalformed)
			continue
		}
		switch hs.evaluate(pc, 0) {
		case VerdictAccept:
		case VerdictStolen:
			pkts[i] = nil
		default:
			pkts[i] = nil
			b.Drop(p, b.Gen.hookDrops[h])
		}
	}
	b.leaveHook(pc)
}

// hookSkips reports whether a hook's tables leave p alone: filters see IP
// packets only (ARP passes), and Postrouting once.
func hookSkips(h Hook, p *Packet) bool {
	return p == nil || (h == Postrouting && p.stage&stagePostDone != 0) ||
		(p.NetProto != IPv4ProtocolNumber && p.NetProto != IPv6ProtocolNumber)
}

// runTrivial runs tables that have no rules (hookSet.trivial): each one's
// policy decides every packet, so nothing is parsed and the policy is
// counted once for the hook run (HookTable.PolicyCount), not per packet.
// The packets an accepting table passes go to the next; a dropping table
// drops them all.
func (b *Batch) runTrivial(hs *hookSet, h Hook, pkts []*Packet) {
	var n, bytes uint64
	for _, p := range pkts {
		if !hookSkips(h, p) {
			n++
			bytes += uint64(p.Len())
		}
	}
	if n == 0 {
		return
	}
	for _, t := range hs.tables {
		if t.PolicyCount != nil {
			t.PolicyCount.CountPolicy(b, n, bytes)
		}
		if t.Policy != VerdictAccept {
			for i, p := range pkts {
				if !hookSkips(h, p) {
					pkts[i] = nil
					b.Drop(p, b.Gen.hookDrops[h])
				}
			}
			return
		}
	}
}

// Packet.stage bits: how far along the output path a packet already is, so
// that a packet handed back to Batch.Output (re-injected, or released by
// neighbor resolution) passes each later stage once and no earlier one
// again. One meaning per bit; only the stack sets them (Reinject, transmit,
// neighbor resolution) but for stageLinkAddrSet, which
// Packet.SetRemoteLinkAddr sets too.
const (
	// stagePostDone: the Postrouting hook has run on the packet (or it was
	// re-injected after it): transmit does not run it again.
	stagePostDone uint8 = 1 << iota
	// stageLinkAddrSet: RemoteLinkAddr is final (the sender set it, or
	// resolution did): transmit does not resolve the packet.
	stageLinkAddrSet
)

// resume continues stolen packets at point at (Stack.Reinject): the
// receive points and the points after the hooks a network protocol runs go
// to the protocol's endpoint (HookResumer) in runs of one NIC and protocol;
// the points after the stack's own stages go to the output queues. The
// stage bits are set to what the point means, whatever the packet carried.
// Every slot of pkts is nil on return.
func (b *Batch) resume(at ResumePoint, pkts []*Packet) {
	switch at {
	case ResumeAfterPostrouting, ResumeAfterResolution:
		st := stagePostDone
		if at == ResumeAfterResolution {
			st |= stageLinkAddrSet
		}
		for i, p := range pkts {
			if p != nil {
				pkts[i] = nil
				p.stage |= st
				b.Output(p)
			}
		}
		return
	case ResumeReceive, ResumeAfterPrerouting, ResumeAfterInput, ResumeAfterForward, ResumeAfterOutput:
	default:
		for i, p := range pkts {
			if p != nil {
				pkts[i] = nil
				b.Drop(p, b.stack.counterSet("stack").Get("reinject_unsupported"))
			}
		}
		return
	}
	h, _ := at.Hook()
	routed := at == ResumeAfterForward || at == ResumeAfterOutput
	nicOf := func(p *Packet) NICID {
		if routed {
			return p.OutNIC // the stages after routing belong to the egress
		}
		return p.InNIC
	}
	for i := 0; i < len(pkts); {
		p := pkts[i]
		if p == nil {
			i++
			continue
		}
		nic, proto := nicOf(p), p.NetProto
		j := i + 1
		for j < len(pkts) && (pkts[j] == nil || nicOf(pkts[j]) == nic && pkts[j].NetProto == proto) {
			j++
		}
		run := pkts[i:j]
		for _, q := range run {
			if q == nil {
				continue
			}
			if routed {
				q.stage &^= stagePostDone // the link address a sender set stays
			} else {
				q.stage = 0 // the receive path starts afresh
			}
		}
		ng := b.Gen.nic(nic)
		var hr HookResumer
		if ng != nil {
			if pe := ng.protoEndpoint(proto); pe != nil {
				hr = pe.hr
			}
		}
		switch {
		case ng == nil:
			b.dropRun(run, b.Gen.noNIC)
		case at == ResumeReceive:
			b.stack.dispatch(b, ng, run)
		case hr != nil:
			hr.ResumeAfter(b, h, run)
		case routed:
			// A protocol without hooks of its own: what follows a routed
			// stage is the output queue.
			for k, q := range run {
				if q != nil {
					run[k] = nil
					b.Output(q)
				}
			}
		default:
			b.dropRun(run, b.stack.counterSet("stack").Get("reinject_unsupported"))
		}
		clear(run)
		i = j
	}
}

// dropRun drops every packet of pkts under reason.
func (b *Batch) dropRun(pkts []*Packet, reason *Counter) {
	for i, p := range pkts {
		if p != nil {
			pkts[i] = nil
			b.Drop(p, reason)
		}
	}
}

// finish flushes the output queues (repeatedly: resolving a neighbor may
// queue a probe) and calls the flushers of the modules that stole packets
// in the batch (OnFinish), until neither has anything left: a flusher may
// queue output, and the output's Postrouting may steal. With no steal it
// costs one length check.
func (b *Batch) finish() {
	for {
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
		if len(b.flushers) > 0 {
			fs := b.flushers
			b.flushers = b.flushersAlt[:0]
			for _, f := range fs {
				f.FlushBatch(b)
			}
			clear(fs)
			b.flushersAlt = fs[:0]
			continue // what the flushers queued
		}
		if len(b.loopq) == 0 {
			break
		}
		// What went to the loopback NIC is received on it now, in this
		// batch, not inside the call that sent it; what that sends is
		// flushed by the next pass.
		b.deliverLoop()
	}
	b.loopRounds = 0
}

// OnFinish asks for f.FlushBatch(b) once when the batch finishes, after
// its output queues are flushed: a guest module (a matcher or target) that
// steals packets calls it at each steal, and gets one call per batch
// however many it stole (an out-of-process matcher sends them in one
// message). f must be comparable (a pointer): OnFinish looks for it among
// the flushers it has already. See BatchFlusher.
func (b *Batch) OnFinish(f BatchFlusher) {
	for _, g := range b.flushers {
		if g == f {
			return
		}
	}
	b.flushers = append(b.flushers, f)
}

// transmit sends one NIC's output queue through the output path (see
// Output): Postrouting, fragmentation, resolution, software offloads, the
// link. Linux orders them the same way (POSTROUTING, then ip_finish_output
// fragments, then the neighbor layer). The search for packets too big for
// the link rides on the loops resolution and counting make anyway, so a
// queue with none pays one comparison per packet: resolution passes over a
// packet too big (and reports it); the queue is then fragmented and the
// fragments resolved.
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
	if hs := b.Gen.hooks[Postrouting]; hs != nil {
		b.hookRun(hs, Postrouting, q)
	}
	nic := ng.nic
	if nic.loop {
		b.loopback(ng, q) // no fragmentation, resolution nor offloads
		return
	}
	bl := nic.bound.Load() // the endpoint in use (nic.go)
	mtu := ng.mtu
	resolving := bl.caps&CapResolutionRequired != 0
	if resolving && b.resolve(ng, q, mtu) {
		q = b.fragment(ng, q)
		b.resolve(ng, q, mtu)
	}
	var n, bytes uint64
	soft := false // a packet carries offload metadata
	over := false // a packet too big (links without resolution)
	for _, p := range q {
		if p != nil {
			n++
			l := p.Len()
			bytes += uint64(l)
			gso := p.GSO.Type != GSONone
			soft = soft || gso || p.GSO.NeedsCsum
			over = over || !gso && (l > mtu || p.PathMTU != 0 && l > int(p.PathMTU))
		}
	}
	if over && !resolving {
		q = b.fragment(ng, q)
		n, bytes = 0, 0
		for _, p := range q {
			n++
			bytes += uint64(p.Len())
		}
	}
	if soft = soft && bl.caps&(CapGSO|CapTXChecksumOffload) != CapGSO|CapTXChecksumOffload; soft {
		// GSO super-packets or partial checksums for a link that cannot
		// finish them: segment and checksum in software (gso.go).
		q, n, bytes = b.softwareOffload(ng, q)
	}
	if n > 0 {
		sent := bl.ep.WritePackets(q)
		nic.Stats.TxPackets.Add(uint64(sent))
		nic.Stats.TxBytes.Add(bytes)
		if uint64(sent) < n {
			nic.Stats.TxDropped.Add(n - uint64(sent))
		}
	}
	if soft {
		b.clearSegs()
	}
	if len(b.frags) > 0 {
		clear(b.frags)
		b.frags = b.frags[:0]
	}
}

// tooBig reports whether p must be fragmented to leave through a link of
// MTU mtu: longer than it or than its own PathMTU, and not a GSO
// super-packet (whose segments are what the link carries).
func tooBig(p *Packet, mtu int) bool {
	l := p.Len()
	return (l > mtu || p.PathMTU != 0 && l > int(p.PathMTU)) && p.GSO.Type == GSONone
}

// fragment returns q with every packet larger than its limit (the NIC's
// MTU, or the packet's PathMTU when smaller) replaced by the fragments its
// network protocol cuts (Fragmenter of the protocol's endpoint on this
// NIC), in order, in the batch's fragment scratch. It owns q's packets. A
// fragment inherits the packet's stage bits (a multicast packet's link
// address stays final). A packet of a protocol that cannot fragment is
// dropped (stack counter output_too_big).
func (b *Batch) fragment(ng *nicGen, q []*Packet) []*Packet {
	out := b.frags[:0]
	for i, p := range q {
		if p == nil {
			continue
		}
		q[i] = nil
		if !tooBig(p, ng.mtu) {
			out = append(out, p)
			continue
		}
		lim := ng.mtu
		if p.PathMTU != 0 && int(p.PathMTU) < lim {
			lim = int(p.PathMTU)
		}
		var f Fragmenter
		if pe := ng.protoEndpoint(p.NetProto); pe != nil {
			f = pe.frag
		}
		if f == nil {
			b.Drop(p, b.stack.counterSet("stack").Get("output_too_big"))
			continue
		}
		st, start := p.stage, len(out)
		out = f.Fragment(b, p, lim, out)
		for _, fp := range out[start:] {
			fp.stage = st
		}
	}
	b.frags = out
	return out
}

// resolve fills RemoteLinkAddr from the neighbor table (one lock-free
// lookup per run of packets to the same next hop; the first packet through
// a STALE entry moves it to DELAY) or hands the packet to the resolver of
// its protocol, which steals it until the neighbor answers (nud.go).
// Packets whose sender set the link address (SetRemoteLinkAddr) are left
// as they are. A packet handed to the resolver is marked past Postrouting:
// whether the resolver addresses it and outputs it again or the neighbor
// table queues it, it does not pass the hook twice. A packet too big for
// mtu is left alone too, for fragmentation first: resolve reports whether
// there was one.
func (b *Batch) resolve(ng *nicGen, q []*Packet, mtu int) (over bool) {
	t := ng.nic.neigh
	var lastHop = zeroAddr
	var lastMAC [6]byte
	have := false
	for i, p := range q {
		if p == nil {
			continue
		}
		if tooBig(p, mtu) {
			over = true
			continue
		}
		if p.stage&stageLinkAddrSet != 0 {
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
		p.stage |= stagePostDone // whether it comes back resolved or addressed by the resolver
		if r := b.Gen.resolver(p.NetProto); r != nil {
			r.ResolveLinkAddress(b, ng, p)
			continue
		}
		b.Drop(p, b.Gen.neighUnresolved)
	}
	return over
}
