package bench

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pipestack/pipestack/modules/conntrack"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
)

// newConntrackRouter is pipestack's router with netfilter.conntrack of
// max entries (0: none).
func newConntrackRouter(tb testing.TB, max int) (*pipeline.Stack, *channel.Endpoint, *channel.Endpoint) {
	cfg := fmt.Sprintf(pipestackRouter, "ip", queueSize, "", "")
	if max > 0 {
		cfg = strings.Replace(cfg, "modules: [network.ipv4]", fmt.Sprintf("modules: [network.ipv4, {module: netfilter.conntrack, max: %d}]", max), 1)
	}
	c, err := pipeline.ParseConfig("bench-conntrack.yaml", []byte(cfg))
	if err != nil {
		tb.Fatal(err)
	}
	s := pipeline.New(pipeline.Options{})
	if _, err := s.Apply(c); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	la, _ := s.Link("a")
	lb, _ := s.Link("b")
	return s, la.(*channel.Endpoint), lb.(*channel.Endpoint)
}

// BenchmarkConntrackPipestack: untracked and tracked forwarding with 10 k
// and 100 k live flows, and new flows (conntrack_scenario_test.go). The
// tracked runs report B/entry: the table's preallocated arrays per entry
// (Table.MemoryBytes; a heap delta was at the mercy of the previous
// sub-benchmark's garbage).
func BenchmarkConntrackPipestack(b *testing.B) {
	check := func(d, want []byte) { checkForwarded(b, d, want) }
	for _, flows := range conntrackFlowCounts {
		for _, mode := range []string{"untracked", "tracked"} {
			b.Run(conntrackName(mode, flows), func(b *testing.B) {
				max := 0
				if mode == "tracked" {
					max = 1 << 18
				}
				s, in, out := newConntrackRouter(b, max)
				runForward(b, in, out, conntrackFlowSet(flows), conntrackSize, check)
				if t := conntrack.StackTable(s); t != nil { // after runForward: ResetTimer drops reported metrics
					b.ReportMetric(float64(t.MemoryBytes())/float64(t.Max()), "B/entry")
				}
			})
		}
	}
	for _, mode := range []string{"untracked", "tracked"} {
		b.Run(conntrackName("newflows-"+mode, conntrackNewFlows), func(b *testing.B) {
			max := 0
			if mode == "tracked" {
				max = conntrackNewMax
			}
			_, in, out := newConntrackRouter(b, max)
			runForward(b, in, out, conntrackFlowSet(conntrackNewFlows), conntrackSize, check)
		})
	}
}
