package bench

// Connection-tracking benchmarks (issue 11), shared by both stacks: the
// IPv4 router of BenchmarkForwardPipestack/GVisor (IP links, 46 B UDP
// packets), its packets taking the flows of flows_scenario_test.go in round
// robin, untracked and tracked:
//
//   - untracked: no conntrack (pipestack: no netfilter.conntrack module;
//     gVisor: iptables off, so its ConnTrack does nothing);
//   - tracked: every packet looked up in the connection table (pipestack:
//     netfilter.conntrack with a table larger than the flows; gVisor:
//     all-accept filter and nat tables force-installed, which turn its
//     iptables on and make it create a connection per flow — with the
//     filter table alone it only looks flows up in an empty table).
//
// With 10,000 and 100,000 live flows the table holds every flow; each
// packet finds its entry (after the warm-up made them). newflows: every
// packet is a flow the table has not seen (262,144 distinct tuples in
// round robin through a table of 16,384 on pipestack, so each one is
// created and another early-dropped; gVisor's table is unbounded: it
// creates each and keeps it, so after the first round its packets find
// entries — its figure is for the first 262,144 packets only, see
// README.md).

import "fmt"

var conntrackFlowCounts = []int{10000, 100000}

const (
	conntrackSize     = 46
	conntrackNewFlows = 1 << 18
	conntrackNewMax   = 1 << 14
)

func conntrackName(mode string, flows int) string { return fmt.Sprintf("%s/%dflows", mode, flows) }

// conntrackFlowSet is the round robin of n flows, flow i
// 10.0.1.(2+i%250):(1024+i%50000) → 198.18.0.(1+i%100000):(2000+i/50000):
// distinct tuples, every destination within 198.18.0.0/15, no port
// wrapping round.
func conntrackFlowSet(n int) *flowSet {
	return newFlowSet(n, func(i int) ([]byte, []byte) {
		p := buildUDPFlowPacket(conntrackSize, srcIP+uint32(i%250), beyond4+1+uint32(i%100000), uint16(1024+i%50000), uint16(2000+i/50000))
		return p, p
	})
}
