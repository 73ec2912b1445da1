package filter_test

import (
	"strings"
	"testing"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestLinkNamesResolvedPerGeneration: -i/-o names (exact and with "+")
// are resolved to NIC IDs when the generation is built (Context.LinkIDs);
// a link a reload adds is matched by the new generation's rules, a kept
// link keeps its ID, and a name no link has matches nothing (but "!" it
// does).
func TestLinkNamesResolvedPerGeneration(t *testing.T) {
	const base = `
name: r
modules: [network.ipv4]
links:
  - {name: lan0, module: link.channel, framing: ip, addresses: [10.0.1.1/24]}
  - {name: wan, module: link.channel, framing: ip, addresses: [10.0.2.1/24]}
%s
forwarding: {ipv4: true}
filter:
  filter:
    forward:
      rules:
        - "-i lan+ -o wan -p udp --dport 1 -j DROP"
        - "-i lan1 -p udp --dport 2 -j DROP"
        - "-i nosuch -j DROP"
        - "! -o nosuch+ -p udp --dport 3 -j DROP"
`
	cfg := func(extra string) string { return strings.Replace(base, "%s", extra, 1) }
	n := pt.NewNode(t, "r", cfg(""), pipeline.Options{Clock: pt.NewManualClock()})
	send := func(link, src string, dport uint16) bool {
		n.Link(t, link).InjectFrames([][]byte{filtertest.Packet{Src: src, Dst: "10.0.2.2", DstPort: dport}.Bytes()})
		return len(pt.Drain(n.Link(t, "wan"))) == 1
	}
	if send("lan0", "10.0.1.2", 1) || !send("lan0", "10.0.1.2", 2) || send("lan0", "10.0.1.2", 3) || !send("lan0", "10.0.1.2", 4) {
		t.Errorf("generation 1: %s", n.DumpCounters())
	}
	lan0, _ := n.Stack.NIC("lan0")
	id0 := lan0.ID()
	if err := n.Reload(cfg("  - {name: lan1, module: link.channel, framing: ip, addresses: [10.0.3.1/24]}")); err != nil {
		t.Fatal(err)
	}
	if lan0, _ := n.Stack.NIC("lan0"); lan0.ID() != id0 {
		t.Errorf("lan0 changed ID %d → %d", id0, lan0.ID())
	}
	if send("lan1", "10.0.3.2", 1) || send("lan1", "10.0.3.2", 2) || !send("lan1", "10.0.3.2", 4) || send("lan0", "10.0.1.2", 1) || !send("lan0", "10.0.1.2", 2) {
		t.Errorf("generation 2 (lan1 added): %s", n.DumpCounters())
	}
}
