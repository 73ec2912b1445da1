package bench

import (
	"fmt"
	"testing"

	_ "github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
)

// The same scenario as BenchmarkForward6GVisor, on pipestack: network.ipv6
// with two NICs on in-memory links, IPv6 forwarding on. The router has its
// link-local addresses (so the dynamic-address overlay that IsLocal6
// consults is in place, as in any real IPv6 router); duplicate address
// detection is off, as it is in gVisor's default ipv6.NewProtocol, so that
// no NDP packet appears on the links. eth/*: 2001:db8:2::2 is a static
// neighbor of nic 2.
const pipestackRouter6 = `
name: bench-router6
modules: [{module: network.ipv6, dad: {transmits: 0}}]
links:
  - {name: a, module: link.channel, framing: %[1]s, queue: %[2]d, addresses: ["2001:db8:1::1/64"]%[3]s}
  - {name: b, module: link.channel, framing: %[1]s, queue: %[2]d, addresses: ["2001:db8:2::1/64"]%[4]s}
forwarding: {ipv6: true}
routes:
  - {to: "2001:2::/48", via: "2001:db8:2::2", link: b}
`

func newPipestackRouter6(tb testing.TB, eth bool, opts pipeline.Options) (*pipeline.Stack, *channel.Endpoint, *channel.Endpoint) {
	framing, macA, macB := "ip", "", ""
	if eth {
		framing = "ethernet"
		macA = fmt.Sprintf(`, mac: "%s"`, macString(nic1MAC))
		macB = fmt.Sprintf(`, mac: "%s", neighbors: [{ip: "2001:db8:2::2", mac: "%s"}]`, macString(nic2MAC), macString(receiverMAC))
	}
	cfg, err := pipeline.ParseConfig("bench-router6.yaml", []byte(fmt.Sprintf(pipestackRouter6, framing, queueSize, macA, macB)))
	if err != nil {
		tb.Fatal(err)
	}
	s := pipeline.New(opts)
	if _, err := s.Apply(cfg); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	la, _ := s.Link("a")
	lb, _ := s.Link("b")
	return s, la.(*channel.Endpoint), lb.(*channel.Endpoint)
}

func BenchmarkForward6Pipestack(b *testing.B) {
	for _, framing := range []string{"ip", "eth"} {
		for _, size := range packetSizes6 {
			for _, flows := range flowCounts {
				b.Run(flowName(framing, size, flows), func(b *testing.B) {
					benchForward6Pipestack(b, framing == "eth", size, flows)
				})
			}
		}
	}
}

func benchForward6Pipestack(b *testing.B, eth bool, size, flows int) {
	in, out, fs, check := setupForward6(b, eth, size, flows, pipeline.Options{})
	runForward(b, in, out, fs, size, check)
}

// setupForward6 builds pipestack's IPv6 router, the flows and the check of
// one forwarding scenario.
func setupForward6(tb testing.TB, eth bool, size, flows int, opts pipeline.Options) (in, out *channel.Endpoint, fs *flowSet, check func(got, want []byte)) {
	_, in, out = newPipestackRouter6(tb, eth, opts)
	fs = newFlowSet(flows, func(i int) ([]byte, []byte) {
		ip := flowPacket6(size, i, flows)
		if eth {
			return ip, buildEthFrame6(nic1MAC, senderMAC, ip)
		}
		return ip, ip
	})
	check = func(d, want []byte) {
		if eth {
			checkEthHeader6(tb, d, receiverMAC, nic2MAC)
			d = d[ethHeaderLen:]
		}
		checkForwarded6(tb, d, want)
	}
	return in, out, fs, check
}
