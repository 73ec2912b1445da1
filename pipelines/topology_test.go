package pipelines_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestInMemoryTopology runs the example files together, as their headers
// describe: host-a pings host-b through the router, on bare-IP links and on
// Ethernet links (inmemory-router-eth.yaml, with the hosts' files switched to
// the MACs that file names).
func TestInMemoryTopology(t *testing.T) {
	read := func(file string) string {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// The hosts also collect the ICMP messages delivered to them.
	collect := func(config, name string) string {
		return strings.Replace(config, "modules: [network.ipv4]",
			fmt.Sprintf("modules: [network.ipv4, {module: transport.collect, protocol: 1, name: %q}]", name), 1)
	}
	ethernet := func(config, mac, gw, gwMAC string) string {
		return strings.Replace(config, "framing: ip,",
			fmt.Sprintf("framing: ethernet, mac: %q, neighbors: [{ip: %s, mac: %q}],", mac, gw, gwMAC), 1)
	}
	for _, tc := range []struct{ name, router string }{
		{"ip", "inmemory-router.yaml"},
		{"ethernet", "inmemory-router-eth.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			collector := "pipelines-" + tc.name + "-host-a"
			hostA := collect(read("inmemory-host-a.yaml"), collector)
			hostB := read("inmemory-host-b.yaml")
			if tc.name == "ethernet" {
				hostA = ethernet(hostA, "02:00:00:00:01:02", "10.0.1.1", "02:00:00:00:01:01")
				hostB = ethernet(hostB, "02:00:00:00:02:02", "10.0.2.1", "02:00:00:00:02:01")
			}
			a := pt.NewNode(t, "host-a", hostA, pipeline.Options{})
			r := pt.NewNode(t, "router", read(tc.router), pipeline.Options{})
			b := pt.NewNode(t, "host-b", hostB, pipeline.Options{})
			pt.Connect(t, a, "a", r, "a")
			pt.Connect(t, b, "b", r, "b")

			echo := pt.Echo4("10.0.1.2", "10.0.2.2", 64, 7, 1, []byte("pipestack"))
			a.SendIPv4(t, "10.0.2.2", pipeline.ICMPv4ProtocolNumber, echo[wire.IPv4MinimumSize:])
			reply := pt.Collected(collector).Wait(t, 5*time.Second)
			pt.CheckIPv4(t, reply, pt.SrcAddr("10.0.2.2"), pt.DstAddr("10.0.1.2"), pt.TTL(63), pt.ICMP(wire.ICMPv4EchoReply, 0))
			if got := r.Counter("ipv4", "forwarded"); got != 2 {
				t.Errorf("router forwarded %d packets, want 2 (request and reply)\n%s", got, r.DumpCounters())
			}
		})
	}
}
