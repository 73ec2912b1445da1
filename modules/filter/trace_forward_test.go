//go:build !race

package filter_test

import (
	"fmt"
	"testing"

	_ "github.com/pipestack/pipestack/modules/filter"
	_ "github.com/pipestack/pipestack/modules/ipv4"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// tracedRouter forwards a → b through ten filter rules that do not match
// and an accepting one.
const tracedRouter = `
name: r
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
filter:
  filter:
    forward:
      policy: drop
      rules: ["-p tcp --dport 1 -j DROP", "-p tcp --dport 2 -j DROP", "-p tcp --dport 3 -j DROP", "-p tcp --dport 4 -j DROP",
        "-p tcp --dport 5 -j DROP", "-p tcp --dport 6 -j DROP", "-p tcp --dport 7 -j DROP", "-p tcp --dport 8 -j DROP",
        "-s 192.0.2.0/24 -j DROP", "-d 192.0.2.0/24 -j DROP", "-p udp -j ACCEPT"]
`

// selectNone is a tracer that traces nothing: what a live trace costs the
// packets its filter does not select.
type selectNone struct{}

func (selectNone) Select(*pipeline.PacketContext) bool { return false }
func (selectNone) Trace(*pipeline.HookTrace)           {}

func tracedNode(t testing.TB) (*pipelinetest.Node, *channel.Endpoint, *channel.Endpoint, []byte) {
	n := pipelinetest.NewNode(t, "r", tracedRouter, pipeline.Options{})
	return n, n.Link(t, "a"), n.Link(t, "b"), pipelinetest.UDP4("10.0.1.2", "10.0.2.2", 1000, 2000, 64, make([]byte, 18))
}

// TestForwardFilterZeroAllocs: forwarding through filter rules allocates
// nothing, with no tracer and with a tracer that selects no packet.
func TestForwardFilterZeroAllocs(t *testing.T) {
	for _, tr := range []pipeline.Tracer{nil, selectNone{}} {
		t.Run(fmt.Sprintf("%T", tr), func(t *testing.T) {
			n, a, b, frame := tracedNode(t)
			n.Stack.SetTracer(tr)
			pipelinetest.ForwardZeroAllocs(t, n, a, b, frame, func([]byte) error { return nil }, nil)
		})
	}
}

// TestEmptyFilterForwardZeroAllocs: forwarding through an empty filter
// section (policies counted per batch) allocates nothing.
func TestEmptyFilterForwardZeroAllocs(t *testing.T) {
	n := pipelinetest.NewNode(t, "r", emptyRouter+"filter:\n  mangle:\n    forward: {policy: accept}\n  filter:\n    forward: {policy: accept}\n", pipeline.Options{})
	frame := pipelinetest.UDP4("10.0.1.2", "10.0.2.2", 1000, 2000, 64, make([]byte, 18))
	pipelinetest.ForwardZeroAllocs(t, n, n.Link(t, "a"), n.Link(t, "b"), frame, func([]byte) error { return nil }, nil)
}

// BenchmarkForwardFilter: per-packet cost of forwarding through the rules,
// untraced and with a tracer that selects nothing.
func BenchmarkForwardFilter(b *testing.B) {
	for _, tc := range []struct {
		name string
		tr   pipeline.Tracer
	}{{"untraced", nil}, {"tracer-selects-none", selectNone{}}} {
		b.Run(tc.name, func(b *testing.B) {
			n, in, out, frame := tracedNode(b)
			n.Stack.SetTracer(tc.tr)
			frames := make([][]byte, 64)
			for i := range frames {
				frames[i] = frame
			}
			buf := make([]*pipeline.Packet, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += len(frames) {
				in.InjectFrames(frames)
				k := out.Read(buf)
				if k != len(frames) {
					b.Fatalf("forwarded %d of %d", k, len(frames))
				}
				pipeline.ReleaseBatch(buf[:k])
			}
		})
	}
}
