package arp_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// host A 10.0.1.2 ──(a)── 10.0.1.1 ROUTER 10.0.2.1 ──(b)── 10.0.2.2 host B,
// every link Ethernet, every stack with network.arp and no static neighbor,
// on the system clock, cabled by channel pipes.

func hostFile(name, collector string, mac wire.MAC, addr, gw string) string {
	route := ""
	if gw != "" {
		route = fmt.Sprintf("routes: [{to: default, via: %s, link: eth0}]", gw)
	}
	return fmt.Sprintf(`
name: %s
modules: [network.ipv4, network.arp, {module: transport.collect, protocol: 1, name: %q}]
links:
  - {name: eth0, module: link.channel, framing: ethernet, mac: %q, addresses: [%s]}
%s
`, name, collector, mac, addr, route)
}

func echo(id, seq uint16, payload []byte) []byte {
	m := make([]byte, wire.ICMPv4MinimumSize+len(payload))
	wire.ICMPv4(m).Encode(&wire.ICMPv4Fields{Type: wire.ICMPv4Echo, Rest: wire.ICMPv4EchoRest(id, seq)})
	copy(m[wire.ICMPv4MinimumSize:], payload)
	wire.ICMPv4(m).SetChecksum(wire.ICMPv4(m).CalculateChecksum())
	return m
}

// pingBurst sends n echo requests from a to dst back to back (the first
// ones wait for ARP on a and on the router) and expects every reply.
func pingBurst(t *testing.T, a *pt.Node, collector *pt.Collector, dst string, n int) {
	t.Helper()
	payload := []byte("pipestack arp")
	for seq := 1; seq <= n; seq++ {
		a.SendIPv4(t, dst, pipeline.ICMPv4ProtocolNumber, echo(9, uint16(seq), payload))
	}
	seen := map[uint16]bool{}
	for i := 0; i < n; i++ {
		reply := collector.Wait(t, 5*time.Second)
		pt.CheckIPv4(t, reply, pt.SrcAddr(dst), pt.DstAddr("10.0.1.2"), pt.TTL(63),
			pt.ICMP(wire.ICMPv4EchoReply, 0, func(m wire.ICMPv4) error {
				if m.Ident() != 9 || !bytes.Equal(m.Payload(), payload) {
					return fmt.Errorf("echo reply id %d payload %q", m.Ident(), m.Payload())
				}
				seen[m.Seq()] = true
				return nil
			}))
	}
	if len(seen) != n {
		t.Fatalf("replies for %d distinct sequence numbers, want %d", len(seen), n)
	}
}

func noNeighborLoss(t *testing.T, nodes ...*pt.Node) {
	t.Helper()
	for _, n := range nodes {
		for _, c := range []string{"queue_dropped", "resolution_failed", "table_full"} {
			if v := n.Counter("neighbor", c); v != 0 {
				t.Errorf("%s: neighbor.%s = %d (%s)", n.Name, c, v, n.DumpCounters())
			}
		}
	}
}

func TestPingThroughRouterWithARP(t *testing.T) {
	pt.CheckGoroutines(t)
	name := strings.ReplaceAll(t.Name(), "/", "_")
	a := pt.NewNode(t, "host-a", hostFile("host-a", name+"-a", macA, "10.0.1.2/24", "10.0.1.1"), pipeline.Options{})
	r := pt.NewNode(t, "router", routerFile("network.arp", ""), pipeline.Options{})
	b := pt.NewNode(t, "host-b", hostFile("host-b", name+"-b", macB, "10.0.2.2/24", "10.0.2.1"), pipeline.Options{})
	pt.Connect(t, a, "eth0", r, "a")
	pt.Connect(t, r, "b", b, "eth0")

	const burst = 5 // within the default queue bound (8)
	pingBurst(t, a, pt.Collected(name+"-a"), "10.0.2.2", burst)
	if got := r.Counter("ipv4", "forwarded"); got != 2*burst {
		t.Errorf("router forwarded %d, want %d", got, 2*burst)
	}
	noNeighborLoss(t, a, r, b)
	nic, _ := a.Stack.NIC("eth0")
	if e, _ := nic.Neighbors().Entry(netip.MustParseAddr("10.0.1.1")); e.State != pipeline.NeighborReachable || e.LinkAddr != macRA {
		t.Errorf("host A's router entry %+v", e)
	}
	nic, _ = r.Stack.NIC("b")
	if e, _ := nic.Neighbors().Entry(netip.MustParseAddr("10.0.2.2")); !usable(e.State) || e.LinkAddr != macB {
		t.Errorf("router's entry for B %+v", e)
	}
	for _, n := range []*pt.Node{a, r, b} {
		pt.Eventually(t, 5*time.Second, func() bool { return n.Counter("arp", "gratuitous_out") != 0 },
			"%s sent no gratuitous ARP", n.Name)
	}
	// Resolved: a second burst goes straight through.
	pingBurst(t, a, pt.Collected(name+"-a"), "10.0.2.2", 20)
	noNeighborLoss(t, a, r, b)
}

// Host A believes 10.0.0.0/16 is on its link; the router answers for B's
// subnet by proxy ARP, and forwards.
func TestPingThroughProxyARP(t *testing.T) {
	pt.CheckGoroutines(t)
	name := strings.ReplaceAll(t.Name(), "/", "_")
	a := pt.NewNode(t, "host-a", hostFile("host-a", name+"-a", macA, "10.0.1.2/16", ""), pipeline.Options{})
	r := pt.NewNode(t, "router", routerFile("{module: network.arp, proxy: [10.0.2.0/24]}", ""), pipeline.Options{})
	b := pt.NewNode(t, "host-b", hostFile("host-b", name+"-b", macB, "10.0.2.2/24", "10.0.2.1"), pipeline.Options{})
	pt.Connect(t, a, "eth0", r, "a")
	pt.Connect(t, r, "b", b, "eth0")

	pingBurst(t, a, pt.Collected(name+"-a"), "10.0.2.2", 3)
	if r.Counter("arp", "proxy_replies_out") == 0 {
		t.Errorf("no proxy reply: %s", r.DumpCounters())
	}
	nic, _ := a.Stack.NIC("eth0")
	if e, _ := nic.Neighbors().Entry(netip.MustParseAddr("10.0.2.2")); e.LinkAddr != macRA {
		t.Errorf("host A's entry for B %+v, want the router's MAC", e)
	}
	noNeighborLoss(t, a, r, b)
}

func usable(s pipeline.NeighborState) bool {
	switch s {
	case pipeline.NeighborReachable, pipeline.NeighborStale, pipeline.NeighborDelay, pipeline.NeighborProbe:
		return true
	}
	return false
}

// The example pipeline file works as its header says.
func TestExamplePipelineFile(t *testing.T) {
	file, err := os.ReadFile("../../pipelines/inmemory-router-arp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ReplaceAll(t.Name(), "/", "_")
	ha, hb := wire.MAC{2, 0, 0, 0, 1, 2}, wire.MAC{2, 0, 0, 0, 2, 2}
	a := pt.NewNode(t, "host-a", hostFile("host-a", name+"-a", ha, "10.0.1.2/24", "10.0.1.1"), pipeline.Options{})
	r := pt.NewNode(t, "router", string(file), pipeline.Options{})
	b := pt.NewNode(t, "host-b", hostFile("host-b", name+"-b", hb, "10.0.2.2/24", "10.0.2.1"), pipeline.Options{})
	pt.Connect(t, a, "eth0", r, "a")
	pt.Connect(t, r, "b", b, "eth0")
	pingBurst(t, a, pt.Collected(name+"-a"), "10.0.2.2", 3)
	noNeighborLoss(t, a, r, b)
}
