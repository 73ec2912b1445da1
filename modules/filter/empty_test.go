package filter_test

import (
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

const emptyRouter = `
name: r
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
`

// policyOf returns the policy counters of a built-in chain of node n.
func policyOf(t *testing.T, n *pt.Node, table, chain string) (packets, bytes uint64) {
	t.Helper()
	for _, mc := range n.Stack.Generation().Config().Modules {
		if l, ok := mc.Module.(pipeline.RuleLister); ok {
			for _, c := range l.ListRules() {
				if c.Table == table && c.Chain == chain {
					return c.PolicyPackets, c.PolicyBytes
				}
			}
		}
	}
	t.Fatalf("no chain %s %s", table, chain)
	return 0, 0
}

// TestEmptyChains: built-in chains without rules decide every packet by
// their policies (a batch at a time, nothing parsed) and count them as
// the per-packet path does: an empty mangle FORWARD (accept) passes the
// batch to an empty filter FORWARD, whose drop policy drops it; with a
// rule in filter FORWARD the same packets take the per-packet path and
// count the same.
func TestEmptyChains(t *testing.T) {
	frames := make([][]byte, 64)
	for i := range frames {
		frames[i] = pt.UDP4("10.0.1.2", "10.0.2.2", uint16(1000+i), 2000, 64, []byte("empty"))
	}
	n, size := uint64(len(frames)), uint64(len(frames[0]))
	for _, tc := range []struct {
		name, section string
		sent          int
		filterPolicy  uint64 // packets filter FORWARD's policy decided
	}{
		{"accept", "filter:\n  filter:\n    forward: {policy: accept}\n", 64, n},
		{"mangle-accept/filter-drop", "filter:\n  mangle:\n    forward: {policy: accept}\n  filter:\n    forward: {policy: drop}\n", 0, n},
		{"per-packet", "filter:\n  mangle:\n    forward: {policy: accept}\n  filter:\n    forward: {policy: drop, rules: [\"-p tcp -j ACCEPT\"]}\n", 0, n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := pt.NewNode(t, "r", emptyRouter+tc.section, pipeline.Options{})
			a, b := r.Link(t, "a"), r.Link(t, "b")
			a.InjectFrames(frames)
			if sent := len(pt.Drain(b)); sent != tc.sent {
				t.Errorf("%d forwarded, want %d", sent, tc.sent)
			}
			if p, by := policyOf(t, r, "filter", "FORWARD"); p != tc.filterPolicy || by != tc.filterPolicy*size {
				t.Errorf("filter FORWARD policy counted %d packets %d bytes, want %d, %d", p, by, tc.filterPolicy, tc.filterPolicy*size)
			}
			if tc.name != "accept" {
				if p, _ := policyOf(t, r, "mangle", "FORWARD"); p != n {
					t.Errorf("mangle FORWARD policy counted %d, want %d", p, n)
				}
			}
			r.WantCounters(t, "stack", map[string]uint64{"filter_drop_forward": uint64(64 - tc.sent), "filter_malformed": 0})
		})
	}
}
