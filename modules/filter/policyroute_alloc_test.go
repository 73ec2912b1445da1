//go:build !race

package filter_test

import (
	"testing"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// TestPolicyRoutingZeroAllocs: forwarding routed by mark (a mangle MARK,
// the rule, table 100) allocates nothing per packet, IPv4 and IPv6.
func TestPolicyRoutingZeroAllocs(t *testing.T) {
	n := pipelinetest.NewNode(t, "r", policyRouter, pipeline.Options{})
	a, c := n.Link(t, "a"), n.Link(t, "c")
	for _, p := range [][]byte{
		filtertest.Packet{Proto: filtertest.UDP, Src: "10.0.1.2", Dst: "192.0.2.53", SrcPort: 1000, DstPort: 53, Payload: 18}.Bytes(),
		filtertest.Packet{IPv6: true, Proto: filtertest.UDP, Src: "2001:db8:1::2", Dst: "2001:db8:99::53", SrcPort: 1000, DstPort: 53, Payload: 18}.Bytes(),
	} {
		pipelinetest.ForwardZeroAllocs(t, n, a, c, p, func([]byte) error { return nil }, nil)
	}
}
