package conntrack

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// The per-packet side of NAT (nf_nat_packet, nf_nat_icmp_reply_translation):
// at the destination-NAT hooks (Prerouting, Output: priority NATDst+1,
// right after the nat table) and the source-NAT hooks (Postrouting, Input:
// NATSrc+1), a packet of a NATed flow gets the addresses and ports its
// direction's binding gives. A packet in the original direction takes the
// inverse of the reply key, a reply the inverse of the original key; an
// ICMP error about the flow (RELATED) has its outer address and its quoted
// header translated back.

func init() { filter.RegisterNATGate(newNATGate) }

// natGate is the nat table's gate: true for a connection's first packet
// (NEW in the original direction, entry unconfirmed) whose binding for the
// hook's kind of NAT is not made yet. Invalid and untracked packets never
// pass: they are not NATed.
type natGate struct {
	h    *holder
	done uint32
}

func newNATGate(ctx *pipeline.Context, h pipeline.Hook) (pipeline.Matcher, error) {
	g := &natGate{h: sharedHolder(ctx), done: doneBit(isDstHook(h))}
	if g.h.t.Load() == nil {
		return nil, errors.New("the nat table needs connection tracking: add netfilter.conntrack under modules:")
	}
	g.h.natUsed.Store(true)
	return g, nil
}

func isDstHook(h pipeline.Hook) bool { return h == pipeline.Prerouting || h == pipeline.Output }

func doneBit(dst bool) uint32 {
	if dst {
		return statusDstNATDone
	}
	return statusSrcNATDone
}

// Fields implements pipeline.Matcher.
func (*natGate) Fields() pipeline.FieldSet { return pipeline.FieldOther }

// Match implements pipeline.Matcher.
func (g *natGate) Match(pc *pipeline.PacketContext) (bool, bool) {
	if pc.Pkt.CTInfo != pipeline.CTNew {
		return false, false
	}
	e, r := g.h.entryOf(pc.Pkt)
	if e == nil || !e.Valid(r) {
		return false, false
	}
	return e.status.Load()&(StatusConfirmed|g.done) == 0, false
}

// natHook applies the bindings at one hook.
type natHook struct {
	h   *holder
	dst bool // destination NAT (Prerouting, Output) or source NAT
	out bool // Output: re-route after a destination NAT
	st  *natStats
}

type natStats struct {
	rewritten, icmpTranslated, malformed, noRoute, stale *pipeline.Counter
	nullBindFail                                         *pipeline.Counter
}

func newNATStats(cs *pipeline.CounterSet) *natStats {
	return &natStats{
		rewritten:      cs.Get("nat_rewritten"),
		icmpTranslated: cs.Get("nat_icmp_translated"),
		malformed:      cs.Get("nat_malformed"),
		noRoute:        cs.Get("nat_no_route"),
		stale:          cs.Get("nat_stale_drops"),
		nullBindFail:   cs.Get("nat_null_binding_drops"),
	}
}

// Action implements pipeline.Target.
func (n *natHook) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	p := pc.Pkt
	if p.ConnTrack == 0 {
		return pipeline.VerdictAccept, 0
	}
	if t := n.h.t.Load(); t != nil && !t.natted.Load() {
		// No entry of the table ever had a binding (AlterReply): nothing
		// to rewrite, nor a stale binding to drop for.
		return pipeline.VerdictAccept, 0
	}
	state := p.CTInfo.State()
	if state != pipeline.CTNew && state != pipeline.CTEstablished && state != pipeline.CTRelated {
		return pipeline.VerdictAccept, 0
	}
	e, r := n.h.entryOf(p)
	if e == nil || !e.Valid(r) {
		// The entry went (early drop, a flush) while the packet was on
		// its way: with a nat table in use its binding is unknown, and
		// a packet must not leave untranslated.
		if n.h.natUsed.Load() {
			n.st.stale.Inc()
			return pipeline.VerdictDrop, 0
		}
		return pipeline.VerdictAccept, 0
	}
	status := e.status.Load()
	if status&statusReplyPending != 0 && !n.dst {
		if !nullBinding(n.h, pc) {
			n.st.nullBindFail.Inc()
			return pipeline.VerdictDrop, 0
		}
		status = e.status.Load()
	}
	if status&(StatusSrcNAT|StatusDstNAT) == 0 {
		return pipeline.VerdictAccept, 0
	}
	dir := 0
	if p.CTInfo&pipeline.CTReply != 0 {
		dir = 1
	}
	// The original direction's destination was rewritten (DstNAT): its
	// packets change at the destination hooks, the replies' sources at
	// the source hooks; SrcNAT the other way round.
	need := StatusSrcNAT
	if n.dst == (dir == 0) {
		need = StatusDstNAT
	}
	if status&need == 0 {
		return pipeline.VerdictAccept, 0
	}
	if pc.L4End == 0 {
		// Not parsed: at Postrouting and Input the hook parses nothing
		// for conntrack's own tables (HookEntry.NoTuple).
		var td pipeline.TransportDispatcher
		if pc.Batch != nil {
			td = pc.Batch
		}
		if !pipeline.ParseTuple(td, p, pc) {
			n.st.malformed.Inc()
			return pipeline.VerdictDrop, 0
		}
	}
	e.mu.Lock()
	if !e.Valid(r) {
		e.mu.Unlock()
		return pipeline.VerdictAccept, 0
	}
	other := e.dir(1 - dir).tuple
	e.mu.Unlock()
	target := other.Invert()
	var ok bool
	if state == pipeline.CTRelated {
		ok = translateICMPError(pc, &target, &other, n.dst)
		if ok {
			n.st.icmpTranslated.Inc()
		}
	} else {
		ok = manip(pc.Pkt.NetworkHeader(), pc.L4Off, pc.L4End, pc.Fragment, &target, n.dst, p.GSO.NeedsCsum)
	}
	if !ok {
		n.st.malformed.Inc()
		return pipeline.VerdictDrop, 0
	}
	n.st.rewritten.Inc()
	// The hook's later tables see the new tuple.
	if n.dst {
		pc.Tuple.Dst = target.DstAddr()
		if target.Family == 4 {
			pc.Dst4 = binary.BigEndian.Uint32(target.Dst[:4])
		}
		if state != pipeline.CTRelated && portRewritten(target.Proto) {
			pc.Tuple.DstPort = target.DPort
		}
	} else {
		pc.Tuple.Src = target.SrcAddr()
		if target.Family == 4 {
			pc.Src4 = binary.BigEndian.Uint32(target.Src[:4])
		}
		if state != pipeline.CTRelated && portRewritten(target.Proto) {
			pc.Tuple.SrcPort = target.SPort
		}
	}
	if n.out && n.dst && pc.Batch != nil {
		// A DNAT in OUTPUT re-routes the packet (ip_route_me_harder).
		dst := pc.Tuple.Dst
		rt := pc.Batch.Gen.LookupRouteMark(dst, p.Mark) // policy routing by mark too
		if rt == nil {
			n.st.noRoute.Inc()
			return pipeline.VerdictDrop, 0
		}
		p.OutNIC, p.NextHop = rt.NIC, rt.NextHop(dst)
		pc.OutNIC = rt.NIC
	}
	return pipeline.VerdictAccept, 0
}

// portRewritten: the protocols whose ports NAT rewrites (TCP, UDP,
// UDP-Lite and DCCP, whose checksum NAT can update; SCTP's CRC32c it
// cannot, so SCTP keeps its ports and only the addresses change).
func portRewritten(proto uint8) bool {
	switch proto {
	case wire.ProtocolTCP, wire.ProtocolUDP, protoUDPLite, protoDCCP:
		return true
	}
	return false
}

// csumOffset is where the protocol's checksum lies in its header (-1:
// none that covers the pseudo-header or the ports).
func csumOffset(proto uint8) int {
	switch proto {
	case wire.ProtocolTCP:
		return 16
	case wire.ProtocolUDP, protoUDPLite, protoDCCP:
		return 6
	case wire.ProtocolICMP, wire.ProtocolICMPv6:
		return 2
	}
	return -1
}

// csumReplace returns the stored (inverted) checksum sum after the bytes
// old (an even number) became new (RFC 1624, word by word).
func csumReplace(sum uint16, old, new []byte) uint16 {
	s := uint32(^sum)
	for i := 0; i+1 < len(old); i += 2 {
		s += uint32(^binary.BigEndian.Uint16(old[i:])) + uint32(binary.BigEndian.Uint16(new[i:]))
		s = s>>16 + s&0xffff
	}
	s = s>>16 + s&0xffff
	return ^uint16(s)
}

// manip rewrites the packet whose network header is nh (its upper layer at
// [l4off, l4end)) to the target's destination (dst) or source address and
// port, with the checksums: the IPv4 header's, and the transport's
// pseudo-header and port parts. partial (GSO.NeedsCsum): the transport
// field holds the pseudo-header sum only, which gets the address change
// alone. An absent UDP checksum (0) stays absent. false: the headers to
// rewrite are not all there.
func manip(nh []byte, l4off, l4end int, fragment bool, target *Key, dst, partial bool) bool {
	v4 := target.Family == 4
	var aoff, alen int
	switch {
	case v4 && dst:
		aoff, alen = 16, 4
	case v4:
		aoff, alen = 12, 4
	case dst:
		aoff, alen = 24, 16
	default:
		aoff, alen = 8, 16
	}
	if len(nh) < aoff+alen {
		return false
	}
	newAddr := target.Src[:alen]
	if dst {
		newAddr = target.Dst[:alen]
	}
	oldAddr := nh[aoff : aoff+alen]
	var old [16]byte
	copy(old[:], oldAddr)
	if l4end > len(nh) {
		l4end = len(nh)
	}
	var l4b []byte
	if !fragment && l4off >= 0 && l4off <= l4end {
		l4b = nh[l4off:l4end]
	}
	proto := target.Proto
	co := csumOffset(proto)
	need := co + 2
	if proto == wire.ProtocolICMP || proto == wire.ProtocolICMPv6 {
		need = 8 // type, code, checksum, id, sequence
	}
	if co >= 0 && !fragment && len(l4b) < need {
		return false
	}
	// The transport checksum first, while the old values are in place.
	if co >= 0 && !fragment {
		sum := binary.BigEndian.Uint16(l4b[co:])
		udpNone := (proto == wire.ProtocolUDP) && sum == 0 && !partial
		pseudo := proto != wire.ProtocolICMP // ICMPv4's checksum has no pseudo-header
		if pseudo && !udpNone {
			if partial {
				sum = ^csumReplace(^sum, old[:alen], newAddr)
			} else {
				sum = csumReplace(sum, old[:alen], newAddr)
			}
		}
		var portOff int
		var newPort uint16
		rewritePort := false
		switch {
		case portRewritten(proto):
			portOff, newPort, rewritePort = 0, target.SPort, true
			if dst {
				portOff, newPort = 2, target.DPort
			}
		case proto == wire.ProtocolICMP || proto == wire.ProtocolICMPv6:
			portOff, newPort, rewritePort = 4, target.SPort, true // the echo id, in either direction
		}
		if rewritePort {
			oldPort := binary.BigEndian.Uint16(l4b[portOff:])
			if oldPort != newPort {
				if !partial && !udpNone {
					sum = wire.ChecksumUpdate16(sum, oldPort, newPort)
				}
				binary.BigEndian.PutUint16(l4b[portOff:], newPort)
			}
		}
		if !udpNone {
			if sum == 0 && proto == wire.ProtocolUDP && !partial {
				sum = 0xffff
			}
			binary.BigEndian.PutUint16(l4b[co:], sum)
		}
	}
	if v4 {
		h := binary.BigEndian.Uint16(nh[10:])
		h = wire.ChecksumUpdate32(h, binary.BigEndian.Uint32(old[:4]), binary.BigEndian.Uint32(newAddr))
		binary.BigEndian.PutUint16(nh[10:], h)
	}
	copy(oldAddr, newAddr)
	return true
}

// translateICMPError translates an ICMP error about a NATed flow: the
// quoted packet (which went the other way) gets the other direction's key
// with the other kind of NAT (the source at a destination hook), then the
// outer header its address from target (its ports are not touched: an
// error's "id" field is its MTU or pointer); the ICMP checksum is
// recomputed over the message.
func translateICMPError(pc *pipeline.PacketContext, target, other *Key, dst bool) bool {
	nh := pc.Pkt.NetworkHeader()
	end := pc.L4End
	if end > len(nh) {
		end = len(nh)
	}
	if pc.L4Off < 0 || pc.L4Off+8 > end {
		return false
	}
	msg := nh[pc.L4Off:end]
	q := msg[8:]
	v4 := target.Family == 4
	var ql4 int
	if v4 {
		if len(q) < wire.IPv4MinimumSize {
			return false
		}
		ql4 = int(q[0]&0x0f) * 4
	} else {
		if len(q) < wire.IPv6HeaderSize {
			return false
		}
		_, off, ok := walkQuoted6(q)
		if !ok {
			return false
		}
		ql4 = off
	}
	if ql4 < 20 || ql4+8 > len(q) {
		return false
	}
	// The quoted packet: only what was quoted of its transport header
	// (often 8 bytes: the ports, and UDP's checksum) is rewritten.
	qend := len(q)
	if !manipQuoted(q, ql4, qend, other, !dst) {
		return false
	}
	// The outer header: the address only.
	var aoff, alen int
	switch {
	case v4 && dst:
		aoff, alen = 16, 4
	case v4:
		aoff, alen = 12, 4
	case dst:
		aoff, alen = 24, 16
	default:
		aoff, alen = 8, 16
	}
	newAddr := target.Src[:alen]
	if dst {
		newAddr = target.Dst[:alen]
	}
	if v4 {
		h := binary.BigEndian.Uint16(nh[10:])
		h = wire.ChecksumUpdate32(h, binary.BigEndian.Uint32(nh[aoff:]), binary.BigEndian.Uint32(newAddr))
		binary.BigEndian.PutUint16(nh[10:], h)
	}
	copy(nh[aoff:aoff+alen], newAddr)
	// The ICMP checksum over the whole message (and ICMPv6's pseudo-header).
	msg[2], msg[3] = 0, 0
	var init uint16
	if !v4 {
		init = wire.PseudoHeaderChecksum(wire.ProtocolICMPv6, nh[8:24], nh[24:40], uint16(len(msg)))
	}
	binary.BigEndian.PutUint16(msg[2:], ^wire.Checksum(msg, init))
	return true
}

// manipQuoted rewrites a quoted packet q (its transport header at l4, maybe
// cut short): manip's rewrite where the transport checksum is rewritten only
// when it was quoted.
func manipQuoted(q []byte, l4, end int, k *Key, dst bool) bool {
	co := csumOffset(k.Proto)
	if co >= 0 && co+2 > end-l4 {
		// The checksum was not quoted: the ports and addresses alone.
		var aoff, alen int
		switch {
		case k.Family == 4 && dst:
			aoff, alen = 16, 4
		case k.Family == 4:
			aoff, alen = 12, 4
		case dst:
			aoff, alen = 24, 16
		default:
			aoff, alen = 8, 16
		}
		newAddr := k.Src[:alen]
		if dst {
			newAddr = k.Dst[:alen]
		}
		if k.Family == 4 {
			h := binary.BigEndian.Uint16(q[10:])
			h = wire.ChecksumUpdate32(h, binary.BigEndian.Uint32(q[aoff:]), binary.BigEndian.Uint32(newAddr))
			binary.BigEndian.PutUint16(q[10:], h)
		}
		copy(q[aoff:aoff+alen], newAddr)
		if portRewritten(k.Proto) {
			if dst {
				binary.BigEndian.PutUint16(q[l4+2:], k.DPort)
			} else {
				binary.BigEndian.PutUint16(q[l4:], k.SPort)
			}
		}
		return true
	}
	return manip(q, l4, end, false, k, dst, false)
}

// addrKey16 is an address as a key's 16 bytes.
func addrKey16(a netip.Addr) [16]byte {
	var b [16]byte
	if a.Is4() {
		s := a.As4()
		copy(b[:], s[:])
		return b
	}
	return a.As16()
}

var (
	_ pipeline.Matcher = (*natGate)(nil)
	_ pipeline.Target  = (*natHook)(nil)
)
