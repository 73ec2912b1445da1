package pipeline

import (
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
}

// HookTable is what runs at one hook: chains, the entry chain and the policy
// applied when the entry chain ends without a verdict. It is immutable once
// installed in a generation. A hook with no table costs one nil check.
type HookTable struct {
	Chains []Chain
	Entry  int
	// Policy is VerdictAccept or VerdictDrop.
	Policy Verdict
}

// maxJumpDepth bounds nested jumps (netfilter allows more, but a deeper
// ruleset is a mistake; Validate rejects it).
const maxJumpDepth = 16

// Validate checks chain indexes, the policy and that jumps cannot loop or
// nest deeper than maxJumpDepth (jump targets are declared by targets that
// implement JumpTarget).
func (t *HookTable) Validate() error {
	if t.Entry < 0 || t.Entry >= len(t.Chains) {
		return fmt.Errorf("entry chain %d out of range", t.Entry)
	}
	if t.Policy != VerdictAccept && t.Policy != VerdictDrop {
		return errors.New("policy must be accept or drop")
	}
	state := make([]uint8, len(t.Chains)) // 0 new, 1 on path, 2 done
	var visit func(c, depth int) error
	visit = func(c, depth int) error {
		if depth > maxJumpDepth {
			return fmt.Errorf("jumps nest deeper than %d", maxJumpDepth)
		}
		if state[c] == 1 {
			return fmt.Errorf("chain %q jumps back into itself", t.Chains[c].Name)
		}
		if state[c] == 2 {
			return nil
		}
		state[c] = 1
		for _, r := range t.Chains[c].Rules {
			if r.Target == nil {
				return fmt.Errorf("chain %q has a rule without target", t.Chains[c].Name)
			}
			if jt, ok := r.Target.(JumpTarget); ok {
				to := jt.JumpsTo()
				if to < 0 || to >= len(t.Chains) {
					return fmt.Errorf("chain %q jumps to chain %d, out of range", t.Chains[c].Name, to)
				}
				if err := visit(to, depth+1); err != nil {
					return err
				}
			}
		}
		state[c] = 2
		return nil
	}
	return visit(t.Entry, 0)
}

// JumpTarget is a target that may return VerdictJump or VerdictGoto; JumpsTo names the
// chain, so that Validate can rule out loops.
type JumpTarget interface {
	Target
	JumpsTo() int
}

// Evaluate runs the table on one packet and returns VerdictAccept,
// VerdictDrop or VerdictStolen.
func (t *HookTable) Evaluate(pc *PacketContext) Verdict {
	type frame struct{ chain, rule int }
	var stack [maxJumpDepth + 1]frame
	depth := 0
	chain, rule := t.Entry, 0
	for {
		rules := t.Chains[chain].Rules
		if rule >= len(rules) {
			if depth == 0 {
				return t.Policy
			}
			depth--
			chain, rule = stack[depth].chain, stack[depth].rule
			continue
		}
		r := &rules[rule]
		rule++
		matched := true
		for _, m := range r.Matchers {
			ok, hotdrop := m.Match(pc)
			if hotdrop {
				return VerdictDrop
			}
			if !ok {
				matched = false
				break
			}
		}
		if !matched {
			continue
		}
		if r.Packets != nil {
			r.Packets.Inc()
		}
		v, to := r.Target.Action(pc)
		switch v {
		case VerdictContinue:
		case VerdictAccept, VerdictDrop, VerdictStolen:
			return v
		case VerdictReturn:
			if depth == 0 {
				return t.Policy
			}
			depth--
			chain, rule = stack[depth].chain, stack[depth].rule
		case VerdictJump:
			if depth >= maxJumpDepth || to < 0 || to >= len(t.Chains) {
				return VerdictDrop
			}
			stack[depth] = frame{chain, rule}
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
	}
}

// ParseTuple fills a packet context's tuple from the packet's network header.
// ok is false when the header is malformed.
func ParseTuple(pkt *Packet, pc *PacketContext) bool {
	nh := pkt.NetworkHeader()
	switch pkt.NetProto {
	case IPv4ProtocolNumber:
		ip := wire.IPv4(nh)
		if ip.Check() != nil {
			return false
		}
		pc.Tuple.Src = netip.AddrFrom4(ip.Src())
		pc.Tuple.Dst = netip.AddrFrom4(ip.Dst())
		pc.Tuple.Proto = TransportProtocolNumber(ip.Protocol())
		pc.Fragment = ip.FragmentOffset() != 0
		if !pc.Fragment {
			pc.Tuple.SrcPort, pc.Tuple.DstPort = ports(pc.Tuple.Proto, ip.Payload())
		}
		return true
	case IPv6ProtocolNumber:
		ip := wire.IPv6(nh)
		if ip.Check() != nil {
			return false
		}
		pc.Tuple.Src = netip.AddrFrom16(ip.Src())
		pc.Tuple.Dst = netip.AddrFrom16(ip.Dst())
		// The protocol is the upper layer's, past the extension headers
		// (a bounded walk, only when there are some); a non-first
		// fragment has no ports.
		x, err := ip.WalkExtensions(maxExtWalk)
		if err != nil {
			return false
		}
		pc.Tuple.Proto = TransportProtocolNumber(x.Protocol)
		pc.Fragment = x.Fragment && x.FragmentOffset != 0
		if !pc.Fragment {
			pc.Tuple.SrcPort, pc.Tuple.DstPort = ports(pc.Tuple.Proto, ip[x.ProtocolOffset:wire.IPv6HeaderSize+int(ip.PayloadLength())])
		}
		return true
	}
	return false
}

// maxExtWalk bounds the IPv6 extension headers ParseTuple walks: the
// largest max_extension_headers network.ipv6 accepts, so that no packet
// it let through is malformed to a hook.
const maxExtWalk = 64

func ports(proto TransportProtocolNumber, b []byte) (uint16, uint16) {
	switch proto {
	case TCPProtocolNumber, UDPProtocolNumber:
		if len(b) >= 4 {
			return uint16(b[0])<<8 | uint16(b[1]), uint16(b[2])<<8 | uint16(b[3])
		}
	}
	return 0, 0
}
