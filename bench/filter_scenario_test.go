package bench

// Shared scenario of the FORWARD-chain filter benchmarks (both stacks; it
// imports neither): the IPv4 forwarding scenario of forward_*_test.go on IP
// links, 46-byte packets, filterFlows flows in round robin
// (flows_scenario_test.go), with N rules in the filter table's FORWARD
// chain, evaluated one after the other for every packet (no verdict cache
// on either side).
//
// Rule shapes (iptables syntax; gVisor gets the same rules through its
// stack.IPTables API):
//
//	dst:   -d 100.64.x.y/32 -j ACCEPT          rule k: 100.64.0.0 + k
//	dport: -p udp --dport 20000+k -j ACCEPT
//
// Neither matches the traffic (destinations 198.18.0.1.., ports 2000..): with
// policy accept, every packet walks all N rules and the policy accepts it.
// The "-last" variants replace rule N by one that matches every flow
// (dst-last: -d 198.18.0.0/15 -j ACCEPT; dport-last: -p udp --dport
// 2000:6095 -j ACCEPT) and set the policy to drop, so a packet forwarded is
// one the last rule accepted: a benchmark whose last rule did not match
// loses every packet and fails.
//
// "nofilter" is the plain router (no filter section; gVisor: iptables never
// touched); "0rules" is a filter section with an empty FORWARD chain
// (gVisor: ForceReplaceTable of a filter table with no rule in FORWARD,
// which switches its iptables on).

import "fmt"

const (
	filterFlows = 4096
	filterSize  = 46

	ruleDstBase   = 0x64400000 // 100.64.0.0: dst rule k is 100.64.0.0+k/32
	rulePortBase  = 20000      // dport rule k is 20000+k
	flowPortFirst = 2000       // the flows' destination ports: 2000+i
)

// filterRuleCounts are the FORWARD chain lengths benchmarked.
var filterRuleCounts = []int{10, 100, 1000}

// filterRule is one rule of the FORWARD chain, target ACCEPT (DROP: the
// tests' rules): either a destination prefix (udp false) or -p udp with a
// destination port range.
type filterRule struct {
	udp, drop        bool
	dst              uint32 // host order
	dstBits          int
	dportLo, dportHi uint16
}

// iptables is the rule in iptables syntax (what follows iptables -A FORWARD).
func (r filterRule) iptables() string {
	target := "ACCEPT"
	if r.drop {
		target = "DROP"
	}
	if r.udp {
		if r.dportLo == r.dportHi {
			return fmt.Sprintf("-p udp --dport %d -j %s", r.dportLo, target)
		}
		return fmt.Sprintf("-p udp --dport %d:%d -j %s", r.dportLo, r.dportHi, target)
	}
	a := ip4(r.dst)
	return fmt.Sprintf("-d %d.%d.%d.%d/%d -j %s", a[0], a[1], a[2], a[3], r.dstBits, target)
}

// filterCase is one benchmarked configuration.
type filterCase struct {
	name       string // sub-benchmark name: nofilter, 0rules, dst/100rules, dport-last/1000rules, ...
	filter     bool   // false: no filter at all
	rules      []filterRule
	policyDrop bool // the -last variants: the policy drops, the last rule accepts
}

// filterShapeRules returns n rules of shape ("dst" or "dport"); last: the
// n-th matches every flow of filterFlows.
func filterShapeRules(shape string, n int, last bool) []filterRule {
	rules := make([]filterRule, n)
	for k := range rules {
		if shape == "dport" {
			p := uint16(rulePortBase + k)
			rules[k] = filterRule{udp: true, dportLo: p, dportHi: p}
		} else {
			rules[k] = filterRule{dst: ruleDstBase + uint32(k), dstBits: 32}
		}
	}
	if last && n > 0 {
		if shape == "dport" {
			rules[n-1] = filterRule{udp: true, dportLo: flowPortFirst, dportHi: flowPortFirst + filterFlows - 1}
		} else {
			rules[n-1] = filterRule{dst: beyond4, dstBits: beyond4Bits}
		}
	}
	return rules
}

// filterCases is every case, in the order the benchmarks run them.
func filterCases() []filterCase {
	cs := []filterCase{{name: "nofilter"}, {name: "0rules", filter: true}}
	for _, shape := range []string{"dst", "dport"} {
		for _, last := range []bool{false, true} {
			for _, n := range filterRuleCounts {
				name := shape
				if last {
					name += "-last"
				}
				cs = append(cs, filterCase{
					name:   fmt.Sprintf("%s/%drules", name, n),
					filter: true, rules: filterShapeRules(shape, n, last), policyDrop: last,
				})
			}
		}
	}
	return cs
}

// findFilterCase returns the case of that name (tests).
func findFilterCase(name string) filterCase {
	for _, c := range filterCases() {
		if c.name == name {
			return c
		}
	}
	panic("no filter case " + name)
}

// newFilterFlowSet is the flows of the filter benchmarks (IP links: the
// frame is the IP packet).
func newFilterFlowSet() *flowSet {
	return newFlowSet(filterFlows, func(i int) ([]byte, []byte) {
		ip := flowPacket4(filterSize, i, filterFlows)
		return ip, ip
	})
}
