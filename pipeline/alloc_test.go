//go:build !race

// The race detector changes allocation behaviour, so the exact zero-alloc
// proof runs only without -race (CI runs it in its own step).

package pipeline_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

const ethRouterYAML = `
name: router-eth
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, framing: ethernet, mac: "02:00:00:00:0a:01", addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, framing: ethernet, mac: "02:00:00:00:0b:01", addresses: [10.0.2.1/24],
     neighbors: [{ip: 10.0.2.2, mac: "02:00:00:00:0b:02"}]}
forwarding: {ipv4: true}
`

// TestForwardingZeroAllocs proves exactly that forwarding allocates nothing
// per packet: mallocs counted by runtime.MemStats over 12,800 forwarded
// packets (after a warm-up that fills the pools) must be 0.
func TestForwardingZeroAllocs(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		eth        bool
	}{{"ip", routerYAML, false}, {"ethernet", ethRouterYAML, true}} {
		for _, size := range []int{46, 1500} {
			t.Run(fmt.Sprintf("%s/%dB", tc.name, size), func(t *testing.T) {
				r := pt.NewNode(t, "router", tc.yaml, pipeline.Options{})
				a, b := r.Link(t, "a"), r.Link(t, "b")
				pkt := pt.UDP4("10.0.1.2", "10.0.2.2", 1000, 2000, 64, make([]byte, size-28))
				if tc.eth {
					pkt = pt.EthFrame(a.LinkAddress(), wire.MAC{2, 0, 0, 0, 0x0a, 2}, wire.EtherTypeIPv4, pkt)
				}
				pt.ForwardZeroAllocs(t, r, a, b, pkt, func(d []byte) error {
					if tc.eth {
						d = d[wire.EthernetHeaderSize:]
					}
					if wire.IPv4(d).TTL() != 63 {
						return errors.New("TTL not decremented")
					}
					return nil
				}, nil)
			})
		}
	}
}
