package bench

// The FORWARD chain with N = 0 … 10,000 rules of mixed shapes, both stacks
// in one benchmark (BenchmarkForwardFilterMixed/rules=N/impl=…), for the
// classifier issue: ours compiles the chain (pipeline/classify), gVisor
// walks it rule by rule.
//
// Traffic: the 4,096 flows of the filter benchmarks (flow i: 10.0.1.2+i%250
// → 198.18.0.1+i, UDP 1024+i → 2000+i, in on link a, out on b). Flows
// 0…3,685 (90 %) each match a rule; the rest match none. Rule k covers the
// flows [k·M/N, (k+1)·M/N) (M = 3,686), so a flow's first matching rule is
// spread uniformly over the N rules; with N > M the rules between cover
// no flow (same shapes, values no flow has). Shapes, by k mod 6:
//
//	0  -d D/32                                  (one flow; else -p udp --dport P1:P2)
//	1  -d 198.18.0.0/15 -p udp --sport S1:S2    (a wider prefix, a port range)
//	2  ! -s 10.99.0.0/16 -p udp --dport P1:P2   (an inverted prefix)
//	3  -i a -o b -p udp --dport P1:P2           (links)
//	4  -s SRC/32 -d D/32                        (one flow; else -s 10.0.1.0/24 -p udp --dport P1:P2)
//	5  -p udp ! --sport 0:1023 --dport P1:P2    (an inverted port range)
//
// and rule N−1−N/20 (near the end) also has a custom matcher (ours:
// filter.match.benchttl, FieldOther, so the classifier calls it; gVisor:
// a stack.Matcher): the TTL is above 1. Every target is ACCEPT, the policy
// ACCEPT; TestForwardFilterMixedRulesApply turns the targets into DROP and
// checks that exactly the 10 % of flows without a rule get through.

import (
	"fmt"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// mixedRuleCounts are the chain lengths of BenchmarkForwardFilterMixed.
var mixedRuleCounts = []int{0, 10, 100, 1000, 10000}

// mixedMatching is how many flows have a rule (90 % of filterFlows).
const mixedMatching = filterFlows * 9 / 10

type mixedRule struct {
	src, dst           uint32
	srcBits, dstBits   int
	srcInv             bool
	sportLo, sportHi   uint16
	dportLo, dportHi   uint16
	sportSet, dportSet bool
	sportInv           bool
	udp, links, custom bool
	drop               bool
}

func mixedRules(n int, drop bool) []mixedRule {
	rules := make([]mixedRule, n)
	for k := range rules {
		lo, hi := k*mixedMatching/n, (k+1)*mixedMatching/n
		b := hi - lo
		var d, p1, p2, s1, s2, src uint32
		if b > 0 {
			d, p1, p2, s1, s2, src = beyond4+1+uint32(lo), 2000+uint32(lo), 2000+uint32(hi-1), 1024+uint32(lo), 1024+uint32(hi-1), srcIP+uint32(lo%250)
		} else {
			// No flow: values none has (destinations 100.64/10, ports 30000+).
			b = 1
			d, src = 0x64400000+uint32(k), 0x64800000+uint32(k)
			p1 = 30000 + uint32(k%30000)
			p2, s1, s2 = p1, p1, p1
		}
		r := mixedRule{drop: drop}
		dports := func() { r.udp, r.dportSet, r.dportLo, r.dportHi = true, true, uint16(p1), uint16(p2) }
		switch k % 6 {
		case 0:
			if b == 1 {
				r.dst, r.dstBits = d, 32
			} else {
				dports()
			}
		case 1:
			r.dst, r.dstBits = beyond4, beyond4Bits
			r.udp, r.sportSet, r.sportLo, r.sportHi = true, true, uint16(s1), uint16(s2)
		case 2:
			r.src, r.srcBits, r.srcInv = 0x0a630000, 16, true
			dports()
		case 3:
			r.links = true
			dports()
		case 4:
			if b == 1 {
				r.src, r.srcBits, r.dst, r.dstBits = src, 32, d, 32
			} else {
				r.src, r.srcBits = srcIP&^0xff, 24
				dports()
			}
		case 5:
			r.udp, r.sportSet, r.sportLo, r.sportHi, r.sportInv = true, true, 0, 1023, true
			dports()
		}
		rules[k] = r
	}
	if n > 0 {
		rules[n-1-n/20].custom = true
	}
	return rules
}

func (r mixedRule) iptables() string {
	var p []string
	addr := func(flag string, a uint32, bits int, inv bool) {
		x := ip4(a)
		s := fmt.Sprintf("%s %d.%d.%d.%d/%d", flag, x[0], x[1], x[2], x[3], bits)
		if inv {
			s = "! " + s
		}
		p = append(p, s)
	}
	if r.srcBits > 0 {
		addr("-s", r.src, r.srcBits, r.srcInv)
	}
	if r.dstBits > 0 {
		addr("-d", r.dst, r.dstBits, false)
	}
	if r.links {
		p = append(p, "-i a -o b")
	}
	if r.udp {
		p = append(p, "-p udp")
	}
	if r.sportSet {
		s := fmt.Sprintf("--sport %d:%d", r.sportLo, r.sportHi)
		if r.sportInv {
			s = "! " + s
		}
		p = append(p, s)
	}
	if r.dportSet {
		p = append(p, fmt.Sprintf("--dport %d:%d", r.dportLo, r.dportHi))
	}
	if r.custom {
		p = append(p, "-m benchttl")
	}
	if r.drop {
		p = append(p, "-j DROP")
	} else {
		p = append(p, "-j ACCEPT")
	}
	return strings.Join(p, " ")
}

func mixedSection(rules []mixedRule) string {
	var sb strings.Builder
	sb.WriteString("filter:\n  filter:\n    forward:\n      policy: accept\n")
	if len(rules) > 0 {
		sb.WriteString("      rules:\n")
		for _, r := range rules {
			fmt.Fprintf(&sb, "        - %q\n", r.iptables())
		}
	}
	return sb.String()
}

// benchTTL is filter.match.benchttl: the TTL (hop limit) is above 1. It
// declares FieldOther (it reads the IP header): a classifier calls it.
type benchTTL struct{}

func init() { pipeline.RegisterModule(new(benchTTL)) }

func (*benchTTL) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.benchttl", Summary: "bench only: TTL > 1", New: func() pipeline.Module { return new(benchTTL) }}
}
func (*benchTTL) Options() []filter.Opt                  { return nil }
func (*benchTTL) Spec() string                           { return "-m benchttl" }
func (*benchTTL) Fields() pipeline.FieldSet              { return pipeline.FieldOther }
func (*benchTTL) Constraint() []pipeline.FieldConstraint { return nil }
func (*benchTTL) Match(pc *pipeline.PacketContext) (bool, bool) {
	nh := pc.Pkt.NetworkHeader()
	if pc.Pkt.NetProto == pipeline.IPv6ProtocolNumber {
		return len(nh) > 7 && nh[7] > 1, false
	}
	return len(nh) > 8 && nh[8] > 1, false
}

var _ filter.Match = (*benchTTL)(nil)

// gvisorTTLMatcher is benchttl for gVisor.
type gvisorTTLMatcher struct{}

func (gvisorTTLMatcher) Match(_ stack.Hook, pkt *stack.PacketBuffer, _, _ string) (bool, bool) {
	nh := header.IPv4(pkt.NetworkHeader().Slice())
	return len(nh) >= header.IPv4MinimumSize && nh.TTL() > 1, false
}

// gvisorMixedTable is the rules in gVisor's layout (gvisorFilterTable's).
func gvisorMixedTable(rules []mixedRule) stack.Table {
	const v4 = header.IPv4ProtocolNumber
	accept := func() stack.Rule {
		return stack.Rule{Filter: stack.EmptyFilter4(), Target: &stack.AcceptTarget{NetworkProtocol: v4}}
	}
	mask := func(bits int) tcpip.Address { return tcpip.AddrFrom4(ip4(^uint32(0) << (32 - bits))) }
	out := []stack.Rule{accept()} // INPUT
	fwd := len(out)
	for _, r := range rules {
		f := stack.EmptyFilter4()
		if r.srcBits > 0 {
			f.Src, f.SrcMask, f.SrcInvert = tcpip.AddrFrom4(ip4(r.src)), mask(r.srcBits), r.srcInv
		}
		if r.dstBits > 0 {
			f.Dst, f.DstMask = tcpip.AddrFrom4(ip4(r.dst)), mask(r.dstBits)
		}
		if r.links {
			f.InputInterface, f.OutputInterface = "a", "b"
		}
		var ms []stack.Matcher
		if r.udp {
			f.Protocol, f.CheckProtocol = header.UDPProtocolNumber, true
			if r.sportInv {
				// ! --sport 0:1023 is --sport 1024:65535.
				ms = append(ms, &gvisorUDPMatcher{sportLo: r.sportHi + 1, sportHi: 0xffff, dportLo: r.dportLo, dportHi: r.dportHi})
			} else {
				m := &gvisorUDPMatcher{sportLo: 0, sportHi: 0xffff, dportLo: 0, dportHi: 0xffff}
				if r.sportSet {
					m.sportLo, m.sportHi = r.sportLo, r.sportHi
				}
				if r.dportSet {
					m.dportLo, m.dportHi = r.dportLo, r.dportHi
				}
				ms = append(ms, m)
			}
		}
		if r.custom {
			ms = append(ms, gvisorTTLMatcher{})
		}
		var t stack.Target = &stack.AcceptTarget{NetworkProtocol: v4}
		if r.drop {
			t = &stack.DropTarget{NetworkProtocol: v4}
		}
		out = append(out, stack.Rule{Filter: f, Matchers: ms, Target: t})
	}
	policy := len(out)
	out = append(out, accept())
	o := len(out)
	out = append(out, accept(), stack.Rule{Filter: stack.EmptyFilter4(), Target: &stack.ErrorTarget{NetworkProtocol: v4}})
	return stack.Table{
		Rules: out,
		BuiltinChains: [stack.NumHooks]int{
			stack.Prerouting: stack.HookUnset, stack.Input: 0, stack.Forward: fwd, stack.Output: o, stack.Postrouting: stack.HookUnset,
		},
		Underflows: [stack.NumHooks]int{
			stack.Prerouting: stack.HookUnset, stack.Input: 0, stack.Forward: policy, stack.Output: o, stack.Postrouting: stack.HookUnset,
		},
	}
}

// mixedCase: n < 0 is no filter section at all (gVisor: iptables off).
func mixedName(n int) string {
	if n < 0 {
		return "none"
	}
	return fmt.Sprint(n)
}

func setupMixedPipestack(tb testing.TB, n int, drop bool, opts pipeline.Options) (pass func(int) int, fs *flowSet) {
	section := ""
	if n >= 0 {
		section = mixedSection(mixedRules(n, drop))
	}
	_, in, out := newPipestackRouterWith(tb, false, section, opts)
	fs = newFilterFlowSet()
	buf := make([]*pipeline.Packet, batchSize)
	return func(k int) int {
		frames, _ := fs.batch(k)
		in.InjectFrames(frames)
		got := out.Read(buf)
		pipeline.ReleaseBatch(buf[:got])
		return got
	}, fs
}

func newGVisorMixedRouter(tb testing.TB, n int, drop bool) *gvisorRouter {
	r := newGVisorRouterWith(tb, false, []stack.TransportProtocolFactory{udp.NewProtocol})
	if n >= 0 {
		r.s.IPTables().ForceReplaceTable(stack.FilterID, gvisorMixedTable(mixedRules(n, drop)), false)
	}
	return r
}

// BenchmarkForwardFilterMixed: both stacks, rules=none (no filter), 0 (an
// empty FORWARD chain) … 10000. Compare with
// benchstat -col /impl (ours against gVisor) or -col /rules (ours against
// itself): bench/README.md.
func BenchmarkForwardFilterMixed(b *testing.B) {
	for _, n := range append([]int{-1}, mixedRuleCounts...) {
		b.Run("rules="+mixedName(n), func(b *testing.B) {
			b.Run("impl=gvisor", func(b *testing.B) {
				r := newGVisorMixedRouter(b, n, false)
				runForwardGVisor(b, r, newFilterFlowSet(), filterSize, r.drain)
			})
			b.Run("impl=pipestack", func(b *testing.B) {
				section := ""
				if n >= 0 {
					section = mixedSection(mixedRules(n, false))
				}
				_, in, out := newPipestackRouterWith(b, false, section, pipeline.Options{})
				runForward(b, in, out, newFilterFlowSet(), filterSize, func(d, want []byte) { checkForwarded(b, d, want) })
			})
		})
	}
}

// TestForwardFilterMixedRulesApply: with every target DROP, both stacks
// forward exactly the flows without a rule (the last 10 %), at every
// chain length, so every other flow met a rule that matched it.
func TestForwardFilterMixedRulesApply(t *testing.T) {
	for _, n := range mixedRuleCounts[1:] {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			want := 0
			for i := 0; i < filterFlows; i++ {
				if i >= mixedMatching {
					want++
				}
			}
			pass, _ := setupMixedPipestack(t, n, true, pipeline.Options{})
			got := 0
			for sent := 0; sent < filterFlows; sent += batchSize {
				got += pass(batchSize)
			}
			if got != want {
				t.Errorf("pipestack forwarded %d of %d packets, want %d", got, filterFlows, want)
			}
			r := newGVisorMixedRouter(t, n, true)
			fs := newFilterFlowSet()
			got = 0
			for sent := 0; sent < filterFlows; sent += batchSize {
				frames, _ := fs.batch(batchSize)
				for _, f := range frames {
					r.inject(f)
				}
				for p := r.out.Read(); p != nil; p = r.out.Read() {
					got++
					p.DecRef()
				}
			}
			if got != want {
				t.Errorf("gVisor forwarded %d of %d packets, want %d", got, filterFlows, want)
			}
		})
	}
}

// TestForwardFilterMixedZeroAllocs: ours allocates nothing per packet
// through the compiled 10,000-rule chain, exactly (TestForwardFilterZeroAllocs'
// counting).
func TestForwardFilterMixedZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	clock := pipelinetest.NewManualClock()
	pass, fs := setupMixedPipestack(t, 10000, false, pipeline.Options{Clock: clock})
	clock.Advance(0)
	for range fs.warmBatches() {
		pass(batchSize)
	}
	runs := 2 * fs.warmBatches()
	if a := totalAllocs(runs, func() {
		if got := pass(batchSize); got != batchSize {
			t.Fatalf("forwarded %d of %d", got, batchSize)
		}
	}); a != 0 {
		t.Fatalf("%d allocations in %d batches of %d packets, want 0", a, runs, batchSize)
	}
}
