package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// Rule is a filter rule: when every matcher matches (no matchers: always),
// the target decides.
type Rule struct {
	Matchers []Matcher
	Target   Target
	// Packets counts the packets that matched (set by the builder to keep
	// counts across reloads; nil: not counted).
	Packets *Counter
}

// Chain is a list of rules.
type Chain struct {
	Name  string
	Rules []Rule
	// Texts are the rules as their builder writes them, for a Tracer
	// (the filter: the canonical text), Texts[i] Rules[i]'s; optional; in
	// the entry chain one more, Texts[len(Rules)], is the policy's. A
	// slice of its own, so that Evaluate's rules stay small.
	Texts []string
	// Index, when set, is a compiled classifier of Rules (pipeline/classify):
	// Evaluate asks it for the next rule that may match instead of trying
	// each rule in turn. Optional: without it every rule is tried.
	Index RuleIndex
}

// RuleIndex skips the rules of one chain that cannot match a packet. It is
// built with the chain, when the generation is built, and immutable then;
// Next is called from every worker at once and must not allocate.
type RuleIndex interface {
	// Next returns the position of the first rule at or after from that
	// may match pc, or len(Rules) when none may: every rule it skips
	// certainly neither matches nor hotdrops pc, and none of their
	// matchers would have changed anything had they been called, so that
	// Evaluate decides and counts exactly as the walk over every rule.
	// sure says that every matcher of the rule at next would report a
	// match (no hotdrop) and changes nothing: Evaluate runs its target
	// without calling them. It reads pc as it is now (a target of an
	// earlier rule may have changed the packet's mark) and changes
	// nothing.
	Next(pc *PacketContext, from int) (next int, sure bool)
}

// HookTable is what runs at one hook: chains, the entry chain and the policy
// applied when the entry chain ends without a verdict. It is immutable once
// installed in a generation. A hook with no table costs one nil check.
type HookTable struct {
	Chains []Chain
	Entry  int
	// Policy is VerdictAccept or VerdictDrop.
	Policy Verdict
	// PolicyCount, when set, counts the packets the policy decides: at
	// the end of the entry chain, at a RETURN with no frame below, and at
	// the end of a chain gone to (VerdictGoto) with none — netfilter's
	// underflow rule. A table whose entry chain has no rules is not
	// evaluated per packet at all: its policy decides the whole batch,
	// counted in one call per hook run, and nothing is parsed (a
	// malformed header passes, as through Linux's empty chains).
	PolicyCount PolicyCounter
	// Gate, when set, decides per packet whether the table runs at all:
	// a packet it does not match passes the table (accept) without
	// touching a rule or a counter. The nat table's gate lets through
	// only a connection's first packet (netfilter runs the nat chains
	// for a new, unconfirmed entry only).
	Gate Matcher

	// fn is the target of a HookFunc table (its one rule, without
	// matchers or counters): Evaluate calls it without the rule loop.
	fn Target
}

// PolicyCounter counts what a table's policy decided (pipectl rules'
// "policy ACCEPT n packets, m bytes"). CountPolicy is called from every
// worker at once, with the batch (nil outside one), so it shards by
// b.Shard(); it must not allocate or block.
type PolicyCounter interface {
	CountPolicy(b *Batch, packets, bytes uint64)
}

// maxJumpDepth bounds nested jumps (netfilter allows more, but a deeper
// ruleset is a mistake; Validate rejects it).
const maxJumpDepth = 16

// Validate checks chain indexes, the policy, that every rule has a target
// and that jumps cannot loop or nest deeper than maxJumpDepth (jump targets
// are declared by targets that implement JumpTarget). Every chain is
// checked, reachable or not. The depth is each chain's deepest nesting of
// jumps below it, computed once per chain; a chain reached from the entry
// chain at depth d nests d plus that, so the entry chain's is the table's,
// whichever path first reached a shared chain.
func (t *HookTable) Validate() error {
	if t.Entry < 0 || t.Entry >= len(t.Chains) {
		return fmt.Errorf("entry chain %d out of range", t.Entry)
	}
	if t.Policy != VerdictAccept && t.Policy != VerdictDrop {
		return errors.New("policy must be accept or drop")
	}
	const (
		unseen = -2
		onPath = -1
	)
	below := make([]int, len(t.Chains)) // deepest nesting below a chain, or unseen / onPath
	for i := range below {
		below[i] = unseen
	}
	var height func(c int) (int, error)
	height = func(c int) (int, error) {
		switch below[c] {
		case onPath:
			return 0, fmt.Errorf("chain %q jumps back into itself", t.Chains[c].Name)
		case unseen:
		default:
			return below[c], nil
		}
		below[c] = onPath
		h := 0
		for _, r := range t.Chains[c].Rules {
			if r.Target == nil {
				return 0, fmt.Errorf("chain %q has a rule without target", t.Chains[c].Name)
			}
			jt, ok := r.Target.(JumpTarget)
			if !ok {
				continue
			}
			to := jt.JumpsTo()
			if to < 0 || to >= len(t.Chains) {
				return 0, fmt.Errorf("chain %q jumps to chain %d, out of range", t.Chains[c].Name, to)
			}
			d, err := height(to)
			if err != nil {
				return 0, err
			}
			h = max(h, d+1)
		}
		below[c] = h
		return h, nil
	}
	if _, err := height(t.Entry); err != nil {
		return err
	}
	if d := below[t.Entry]; d > maxJumpDepth {
		return fmt.Errorf("jumps nest deeper than %d (%d from chain %q)", maxJumpDepth, d, t.Chains[t.Entry].Name)
	}
	for c := range t.Chains {
		if _, err := height(c); err != nil {
			return err
		}
	}
	return nil
}

// JumpTarget is a target that may return VerdictJump or VerdictGoto; JumpsTo names the
// chain, so that Validate can rule out loops.
type JumpTarget interface {
	Target
	JumpsTo() int
}

// Evaluate runs the table on one packet and returns VerdictAccept,
// VerdictDrop or VerdictStolen. Chains behave as netfilter's: a jump pushes
// the position after the jumping rule; VerdictReturn, or the end of a chain
// jumped to, pops it and goes on there; VerdictReturn in the entry chain,
// or its end, applies the policy; a goto (VerdictGoto) continues in its
// chain without pushing, so that chain's end returns to the frame below —
// with no frame below, to the policy (counted: PolicyCount). A hotdrop
// drops at once. A chain with an Index skips the rules it says cannot
// match (evaluateTraced, the traced copy, tries every rule: with a correct
// index both decide alike). A table that passed Validate never nests
// deeper than the frame stack; a jump beyond it (or to no chain) drops, as
// does an unknown verdict. A matcher or target that steals the packet
// (MatchStolen, PacketContext.Steal) ends the evaluation with
// VerdictStolen and, inside a batch, leaves a resume token in the packet
// (resume.go).
func (t *HookTable) Evaluate(pc *PacketContext) Verdict {
	if t.Gate != nil {
		if ok, _ := t.Gate.Match(pc); !ok {
			return VerdictAccept
		}
	}
	if t.fn != nil && t.PolicyCount == nil {
		// A HookFunc table: what its one rule's loop would do, without
		// the loop (conntrack's functions run several times per packet).
		v, to := t.fn.Action(pc)
		switch v {
		case VerdictAccept, VerdictDrop:
			return v
		case VerdictContinue:
			return t.Policy
		}
		var st jumpStack
		return t.run(pc, &st, 0, t.Entry, 1, v, to) // a steal, or a verdict the loop refuses
	}
	var st jumpStack
	return t.run(pc, &st, 0, t.Entry, 0, VerdictContinue, 0)
}

// jumpFrame is a return position: the rule after a jump.
type jumpFrame struct{ chain, rule int32 }

type jumpStack [maxJumpDepth]jumpFrame

// run is the evaluation loop, entered at a position: chain and rule (the
// next rule to look at), the frames below it, and the verdict v (with to)
// of the rule before it, not yet applied (VerdictContinue when there is
// none). Evaluate enters it at the entry chain's first rule; a resume
// (resume.go) where the packet was stolen, with the answer.
func (t *HookTable) run(pc *PacketContext, st *jumpStack, depth, chain, rule int, v Verdict, to int) Verdict {
	for {
		switch v {
		case VerdictContinue:
		case VerdictAccept, VerdictDrop:
			return v
		case VerdictStolen:
			if pc.held {
				return t.steal(pc, st, depth, chain, rule-1, -1)
			}
			return v
		case VerdictReturn:
			rule = len(t.Chains[chain].Rules) // as the end of the chain
		case VerdictJump:
			if depth == len(st) || to < 0 || to >= len(t.Chains) {
				return VerdictDrop
			}
			st[depth] = jumpFrame{int32(chain), int32(rule)}
			depth++
			chain, rule = to, 0
		case VerdictGoto:
			if to < 0 || to >= len(t.Chains) {
				return VerdictDrop
			}
			chain, rule = to, 0
		default:
			return VerdictDrop
		}
	next:
		ch := &t.Chains[chain]
		rules := ch.Rules
		sure := false
		if ch.Index != nil && rule < len(rules) {
			rule, sure = ch.Index.Next(pc, rule) // skips rules that cannot match
		}
		if rule >= len(rules) {
			// The end of a chain: back to the caller, else the policy.
			if depth == 0 {
				if t.PolicyCount != nil {
					t.PolicyCount.CountPolicy(pc.Batch, 1, uint64(pc.Pkt.Len()))
				}
				return t.Policy
			}
			depth--
			chain, rule = int(st[depth].chain), int(st[depth].rule)
			goto next
		}
		r := &rules[rule]
		rule++
		ms := r.Matchers
		if sure {
			ms = nil // the index knows they all match
		}
		for i, m := range ms {
			ok, hotdrop := m.Match(pc)
			if hotdrop {
				if ok {
					return t.steal(pc, st, depth, chain, rule-1, i)
				}
				return VerdictDrop
			}
			if !ok {
				goto next
			}
		}
		if r.Packets != nil {
			r.Packets.Inc()
		}
		v, to = r.Target.Action(pc)
	}
}

// ParseTuple fills a packet context's tuple (all of it), Fragment, L4Off,
// L4End, L4Unknown and FragOff from the packet's network header.
// ok is false when the IP header is malformed; an IPv6 packet whose
// extension header chain it cannot walk gets L4Unknown instead. The ports
// are read by the transport protocol td configures for the packet's
// protocol (its ParsePorts), so a transport module defines them for its protocol; for a
// protocol td does not configure (a router forwards TCP without
// transport.tcp), or with td nil, by wire.Ports. It does not allocate.
func ParseTuple(td TransportDispatcher, pkt *Packet, pc *PacketContext) bool {
	nh := pkt.NetworkHeader()
	switch pkt.NetProto {
	case IPv4ProtocolNumber:
		ip := wire.IPv4(nh)
		if ip.Check() != nil {
			return false
		}
		pc.Tuple.Src = netip.AddrFrom4(ip.Src())
		pc.Tuple.Dst = netip.AddrFrom4(ip.Dst())
		pc.Src4, pc.Dst4 = binary.BigEndian.Uint32(nh[12:]), binary.BigEndian.Uint32(nh[16:])
		pc.Tuple.Proto = TransportProtocolNumber(ip.Protocol())
		pc.FragOff = int(ip.FragmentOffset())
		pc.Fragment = pc.FragOff != 0
		pc.L4Off, pc.L4End = ip.HeaderLength(), int(ip.TotalLength())
		pc.Tuple.SrcPort, pc.Tuple.DstPort = 0, 0
		pc.L4Unknown = false
		if !pc.Fragment {
			pc.Tuple.SrcPort, pc.Tuple.DstPort = ports(td, pc.Tuple.Proto, ip.Payload())
		}
		return true
	case IPv6ProtocolNumber:
		ip := wire.IPv6(nh)
		if ip.Check() != nil {
			return false
		}
		pc.Tuple.Src = netip.AddrFrom16(ip.Src())
		pc.Tuple.Dst = netip.AddrFrom16(ip.Dst())
		pc.Src4, pc.Dst4 = 0, 0
		// The protocol is the upper layer's, past the extension headers,
		// found as ip6tables finds it (ipv6Upper); a non-first fragment
		// has no ports. A chain it cannot walk leaves the upper layer
		// unknown rather than the packet malformed: network.ipv6 may pass
		// such packets on (transit_extension_headers: pass), rules
		// without -p still judge them, and the matchers that need the
		// protocol hotdrop, as ip6tables' do.
		end := wire.IPv6HeaderSize + int(ip.PayloadLength()) // ≤ len(ip): Check
		proto, off, fragOff, ok := ipv6Upper(ip, end)
		pc.FragOff, pc.Fragment = fragOff, fragOff != 0
		if !ok {
			pc.Tuple.Proto, pc.Tuple.SrcPort, pc.Tuple.DstPort = 0, 0, 0
			pc.L4Unknown = true
			pc.L4Off, pc.L4End = 0, 0
			return true
		}
		// An upper-layer header that starts past the end (a header
		// claiming more than there is): its protocol is known, its bytes
		// are none, so the matchers that read them hotdrop (Linux's
		// skb_header_pointer fails).
		off = min(off, end)
		pc.Tuple.Proto = TransportProtocolNumber(proto)
		pc.L4Off, pc.L4End = off, end
		pc.L4Unknown = false
		pc.Tuple.SrcPort, pc.Tuple.DstPort = 0, 0
		if !pc.Fragment {
			pc.Tuple.SrcPort, pc.Tuple.DstPort = ports(td, pc.Tuple.Proto, ip[off:end])
		}
		return true
	}
	return false
}

// maxExtWalk bounds the IPv6 extension headers ParseTuple walks: the
// largest max_extension_headers network.ipv6 accepts (Linux walks any
// number; a longer chain's upper layer is unknown here).
const maxExtWalk = 64

// ipv6Upper finds the upper-layer protocol of IPv6 packet b (Check passed,
// end its IP length) as Linux's ipv6_find_hdr does for ip6tables
// (ip6_packet_match, target -1): it walks Hop-by-Hop, Routing, Fragment,
// Authentication and Destination Options headers in any order and number
// (up to maxExtWalk), reading each only as far as its Next Header and
// length (a Fragment header's offset, a Routing header's first 4 bytes)
// and skipping it by its length, even past the end; the first other value
// (No Next Header and ESP too) is the protocol, at off (possibly past
// end). A non-first fragment stops at its Fragment header: the protocol is
// its Next Header, fragOff its offset — unless that is an extension
// header (Linux: -ENOENT). ok is false when a header to read lies past the
// end, the chain is longer than maxExtWalk, or that fragment case.
func ipv6Upper(b []byte, end int) (proto uint8, off, fragOff int, ok bool) {
	nh := b[6]
	off = wire.IPv6HeaderSize
	for n := 0; ; n++ {
		if !ipv6Ext(nh) {
			return nh, off, fragOff, true
		}
		if n == maxExtWalk || off+2 > end {
			return 0, 0, 0, false
		}
		next := b[off]
		hl := (int(b[off+1]) + 1) * 8
		switch nh {
		case wire.ProtocolFragment:
			if off+4 > end {
				return 0, 0, 0, false
			}
			if fo := int(binary.BigEndian.Uint16(b[off+2:]) &^ 7); fo != 0 {
				if ipv6Ext(next) {
					return 0, 0, 0, false
				}
				return next, off + 8, fo, true
			}
			hl = 8
		case wire.ProtocolAH:
			hl = (int(b[off+1]) + 2) * 4
		case wire.ProtocolRouting:
			if off+4 > end {
				return 0, 0, 0, false
			}
		}
		nh, off = next, off+hl
	}
}

// ipv6Ext reports an extension header ipv6Upper walks.
func ipv6Ext(nh uint8) bool {
	switch nh {
	case wire.ProtocolHopByHop, wire.ProtocolRouting, wire.ProtocolFragment, wire.ProtocolAH, wire.ProtocolDestOptions:
		return true
	}
	return false
}

// ports reads a transport header's ports (zero when it has none or is too
// short): one implementation per protocol, the transport module's when the
// pipeline configures one, else wire.Ports.
func ports(td TransportDispatcher, proto TransportProtocolNumber, b []byte) (uint16, uint16) {
	if td != nil {
		if tp := td.TransportProtocol(proto); tp != nil {
			if src, dst, ok := tp.ParsePorts(b); ok {
				return src, dst
			}
			return 0, 0
		}
	}
	src, dst, _ := wire.Ports(uint8(proto), b)
	return src, dst
}
