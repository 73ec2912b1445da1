package conntrack

import (
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// TestDefragLocalNotInvalid: a fragmented datagram to the router itself
// is reassembled before tracking too (Linux's nf_defrag at PREROUTING), so
// an INPUT rule dropping INVALID lets it in and it is answered (IPv4 and
// IPv6); left to local reassembly it had its last fragment's state,
// INVALID.
func TestDefragLocalNotInvalid(t *testing.T) {
	clk := pipeline.NewManualClock(time.Unix(1_000_000, 0))
	cfg := strings.ReplaceAll(statefulRouter, "%MAX%", "64") + `
    input:
      rules:
        - "-m conntrack --ctstate INVALID -j DROP"
`
	n := pipelinetest.NewNode(t, "r", cfg, pipeline.Options{Clock: clk})
	a := n.Link(t, "a")
	p := filtertest.Packet{Proto: filtertest.ICMP, Src: "10.0.1.2", Dst: "10.0.1.1", ICMPType: 8, Payload: 40}.Bytes()
	a.InjectFrames(fragments4(p))
	if out := pipelinetest.Drain(a); len(out) != 1 || len(out[0]) != len(p) {
		t.Fatalf("IPv4: %v back, want the %d-byte echo reply (%s)", sizes(out), len(p), n.DumpCounters())
	}
	p6 := filtertest.Packet{IPv6: true, Proto: filtertest.ICMPv6, Src: "2001:db8:1::2", Dst: "2001:db8:1::1", ICMPType: 128, Payload: 2000}.Bytes()
	a.InjectFrames(fragments6(p6, 1, 1280))
	out := pipelinetest.Drain(a)
	if len(out) != 2 {
		t.Fatalf("IPv6: %v back, want the reply in two fragments", sizes(out))
	}
	if c := n.Counter("stack", "filter_drop_input"); c != 0 {
		t.Fatalf("filter_drop_input %d", c)
	}
}
