package pipeline_test

import (
	"net/netip"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

func init() { pipeline.RegisterModule(new(bounceModule)) }

// bounceModule (transport.bounce_test, protocol 252) sends every packet it
// receives straight back to 127.0.0.1: a loop through the loopback NIC
// that never ends by itself.
type bounceModule struct{}

func (*bounceModule) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "transport.bounce_test", Summary: "test only: loops packets through lo", New: func() pipeline.Module { return new(bounceModule) }}
}

func (*bounceModule) TransportProtocol() pipeline.TransportProtocol { return bounceProto{} }

type bounceProto struct{}

func (bounceProto) Number() pipeline.TransportProtocolNumber { return 252 }
func (bounceProto) ParsePorts([]byte) (uint16, uint16, bool) { return 0, 0, false }
func (bounceProto) HandlePackets(b *pipeline.Batch, pkts []*pipeline.Packet) {
	lo := b.Gen.LoopbackNIC()
	self := netip.MustParseAddr("127.0.0.1")
	ri := pipeline.RouteInfo{NIC: lo, LocalAddr: self, RemoteAddr: self, NextHop: self}
	b.Gen.NetworkEndpoint(lo, pipeline.IPv4ProtocolNumber).WritePackets(b, ri, pipeline.NetworkHeaderParams{Protocol: 252}, pkts)
}

// What the stack sends itself is received when the batch flushes, in
// rounds, not inside the call that sent it — so a packet that is sent back
// every time it arrives neither recurses nor spins: after 64 rounds in one
// flush the rest is dropped (stack counter loopback_rounds), and the next
// batch starts afresh.
func TestLoopbackRoundsBounded(t *testing.T) {
	n := pt.NewNode(t, "host", `
name: host
modules: [network.ipv4, transport.bounce_test]
links:
  - {name: eth0, module: link.channel, framing: ip, addresses: [10.0.2.2/24]}
`, pipeline.Options{})
	lo, ok := n.Stack.NIC(pipeline.LoopbackName)
	if !ok {
		t.Fatal("no loopback NIC")
	}
	for i := 1; i <= 2; i++ {
		n.SendIPv4(t, "127.0.0.1", 252, []byte("around and around"))
		if got := n.Counter("stack", "loopback_rounds"); got != uint64(i) {
			t.Fatalf("loopback_rounds %d after send %d, want %d", got, i, i)
		}
		if got := lo.Stats.RxPackets.Load(); got != uint64(64*i) {
			t.Errorf("lo received %d, want %d (64 rounds a flush)", got, 64*i)
		}
	}
	if pt.Drain(n.Link(t, "eth0")) != nil {
		t.Error("the loop leaked out of eth0")
	}
}
