package bench

import (
	"strconv"
	"strings"
	"testing"

	_ "github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
)

// filterSection is the filter: section of the pipeline file for c ("" for
// nofilter): the filter table's FORWARD chain with c's rules as iptables
// strings and c's policy.
func filterSection(c filterCase) string {
	if !c.filter {
		return ""
	}
	var sb strings.Builder
	policy := "accept"
	if c.policyDrop {
		policy = "drop"
	}
	sb.WriteString("filter:\n  filter:\n    forward:\n      policy: " + policy + "\n")
	if len(c.rules) > 0 {
		sb.WriteString("      rules:\n")
		for _, r := range c.rules {
			sb.WriteString("        - " + strconv.Quote(r.iptables()) + "\n")
		}
	}
	return sb.String()
}

// setupFilterPipestack builds pipestack's IPv4 router (IP links) with c's
// filter section, the flows and the check.
func setupFilterPipestack(tb testing.TB, c filterCase, opts pipeline.Options) (in, out *channel.Endpoint, fs *flowSet, check func(got, want []byte)) {
	_, in, out = newPipestackRouterWith(tb, false, filterSection(c), opts)
	check = func(d, want []byte) { checkForwarded(tb, d, want) }
	return in, out, newFilterFlowSet(), check
}

// BenchmarkForwardFilterPipestack: the FORWARD chain with 0 to 1,000 rules
// (filter_scenario_test.go), 4,096 flows, ip/46B.
func BenchmarkForwardFilterPipestack(b *testing.B) {
	for _, c := range filterCases() {
		b.Run(c.name, func(b *testing.B) {
			in, out, fs, check := setupFilterPipestack(b, c, pipeline.Options{})
			runForward(b, in, out, fs, filterSize, check)
		})
	}
}
