package bench

// gVisor's half of the FORWARD-chain filter benchmarks
// (filter_scenario_test.go): the router of BenchmarkForwardGVisor (IP
// links) plus UDP's transport protocol, with the case's rules installed
// through stack.IPTables.

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// gvisorUDPMatcher is "-p udp --dport LO:HI" as gVisor's own UDP matcher
// (pkg/sentry/socket/netfilter's UDPMatcher, which only the sentry can
// build: its fields are unexported and it is made by unmarshalling an
// xt_udp from a setsockopt) does it: the same checks in the same order —
// not a non-first fragment (offset 1: hotdrop), a UDP header of 8 bytes
// (else hotdrop), the source then the destination port in range.
type gvisorUDPMatcher struct {
	sportLo, sportHi, dportLo, dportHi uint16
}

func (m *gvisorUDPMatcher) Match(_ stack.Hook, pkt *stack.PacketBuffer, _, _ string) (bool, bool) {
	if pkt.NetworkProtocolNumber != header.IPv4ProtocolNumber {
		return false, false
	}
	nh := header.IPv4(pkt.NetworkHeader().Slice())
	if nh.TransportProtocol() != header.UDPProtocolNumber {
		return false, false
	}
	if frag := nh.FragmentOffset(); frag != 0 {
		return false, frag == 1
	}
	uh := header.UDP(pkt.TransportHeader().Slice())
	if len(uh) < header.UDPMinimumSize {
		return false, true
	}
	if p := uh.SourcePort(); p < m.sportLo || m.sportHi < p {
		return false, false
	}
	if p := uh.DestinationPort(); p < m.dportLo || m.dportHi < p {
		return false, false
	}
	return true, false
}

// gvisorFilterTable is c's filter table in gVisor's layout (that of
// stack.DefaultTables: INPUT's accept, FORWARD's rules and its underflow —
// the policy —, OUTPUT's accept, the error rule that ends the table).
func gvisorFilterTable(c filterCase) stack.Table {
	const v4 = header.IPv4ProtocolNumber
	accept := func() stack.Rule {
		return stack.Rule{Filter: stack.EmptyFilter4(), Target: &stack.AcceptTarget{NetworkProtocol: v4}}
	}
	rules := []stack.Rule{accept()} // INPUT
	fwd := len(rules)
	for _, r := range c.rules {
		f := stack.EmptyFilter4()
		var ms []stack.Matcher
		if r.udp {
			f.Protocol, f.CheckProtocol = header.UDPProtocolNumber, true
			ms = []stack.Matcher{&gvisorUDPMatcher{sportLo: 0, sportHi: 0xffff, dportLo: r.dportLo, dportHi: r.dportHi}}
		} else {
			mask := ^uint32(0) << (32 - r.dstBits)
			f.Dst, f.DstMask = tcpip.AddrFrom4(ip4(r.dst)), tcpip.AddrFrom4(ip4(mask))
		}
		var t stack.Target = &stack.AcceptTarget{NetworkProtocol: v4}
		if r.drop {
			t = &stack.DropTarget{NetworkProtocol: v4}
		}
		rules = append(rules, stack.Rule{Filter: f, Matchers: ms, Target: t})
	}
	policy := len(rules)
	if c.policyDrop {
		rules = append(rules, stack.Rule{Filter: stack.EmptyFilter4(), Target: &stack.DropTarget{NetworkProtocol: v4}})
	} else {
		rules = append(rules, accept())
	}
	out := len(rules)
	rules = append(rules, accept(), stack.Rule{Filter: stack.EmptyFilter4(), Target: &stack.ErrorTarget{NetworkProtocol: v4}})
	return stack.Table{
		Rules: rules,
		BuiltinChains: [stack.NumHooks]int{
			stack.Prerouting: stack.HookUnset, stack.Input: 0, stack.Forward: fwd, stack.Output: out, stack.Postrouting: stack.HookUnset,
		},
		Underflows: [stack.NumHooks]int{
			stack.Prerouting: stack.HookUnset, stack.Input: 0, stack.Forward: policy, stack.Output: out, stack.Postrouting: stack.HookUnset,
		},
	}
}

// newGVisorFilterRouter is gVisor's router for c: nofilter leaves its
// iptables alone (off); every other case force-replaces the IPv4 filter
// table (force: an all-accept table would otherwise leave iptables off).
func newGVisorFilterRouter(tb testing.TB, c filterCase) *gvisorRouter {
	r := newGVisorRouterWith(tb, false, []stack.TransportProtocolFactory{udp.NewProtocol})
	if c.filter {
		r.s.IPTables().ForceReplaceTable(stack.FilterID, gvisorFilterTable(c), false)
	}
	return r
}

// BenchmarkForwardFilterGVisor is BenchmarkForwardFilterPipestack's twin.
func BenchmarkForwardFilterGVisor(b *testing.B) {
	for _, c := range filterCases() {
		b.Run(c.name, func(b *testing.B) {
			r := newGVisorFilterRouter(b, c)
			runForwardGVisor(b, r, newFilterFlowSet(), filterSize, r.drain)
		})
	}
}
