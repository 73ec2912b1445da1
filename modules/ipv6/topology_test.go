package ipv6_test

import (
	"fmt"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/ipv6"
	_ "github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

const (
	macA  = "02:00:00:00:0a:02"
	macRA = "02:00:00:00:0a:01"
	macRB = "02:00:00:00:0b:01"
	macB  = "02:00:00:00:0b:02"
)

// hostConfig is a host with one link, a global address and a default route
// via gw. On Ethernet it resolves its neighbors with NDP (no static
// entries).
func hostConfig(name, collector, framing, mac, addr, gw string) string {
	eth := ""
	if framing == "ethernet" {
		eth = fmt.Sprintf(", mac: %q", mac)
	}
	return fmt.Sprintf(`
name: %s
modules: [network.ipv6, {module: transport.collect, protocol: 58, name: %q}]
links:
  - {name: eth0, module: link.channel, framing: %s, addresses: [%q]%s}
routes:
  - {to: default6, via: %q, link: eth0}
`, name, collector, framing, addr, eth, gw)
}

// routerConfig is a router between 2001:db8:1::/64 (link a) and
// 2001:db8:2::/64 (link b, MTU 1400).
func routerConfig(framing, extra string) string {
	ethA, ethB := "", ""
	if framing == "ethernet" {
		ethA = fmt.Sprintf(", mac: %q", macRA)
		ethB = fmt.Sprintf(", mac: %q", macRB)
	}
	return fmt.Sprintf(`
name: router
modules: [network.ipv6]
links:
  - {name: a, module: link.channel, framing: %s, addresses: ["2001:db8:1::1/64"]%s}
  - {name: b, module: link.channel, framing: %s, mtu: 1400, addresses: ["2001:db8:2::1/64"]%s}
forwarding: {ipv6: true}
%s`, framing, ethA, framing, ethB, extra)
}

type topo struct {
	a, r, b    *pt.Node
	aICMP      *pt.Collector
	bICMP      *pt.Collector
	clock      *pt.ManualClock
	eth        bool
	dadSettled bool
}

// newTopo builds host A — router — host B on one manual clock and lets
// duplicate address detection finish (1 s on Ethernet).
func newTopo(t *testing.T, framing string) *topo {
	t.Helper()
	name := pt.UniqueName(t)
	clock := pt.NewManualClock()
	opts := pipeline.Options{Clock: clock}
	a := pt.NewNode(t, "host-a", hostConfig("host-a", name+"-a", framing, macA, "2001:db8:1::2/64", "2001:db8:1::1"), opts)
	r := pt.NewNode(t, "router", routerConfig(framing, ""), opts)
	b := pt.NewNode(t, "host-b", hostConfig("host-b", name+"-b", framing, macB, "2001:db8:2::2/64", "2001:db8:2::1"), opts)
	pt.Connect(t, a, "eth0", r, "a")
	pt.Connect(t, r, "b", b, "eth0")
	tp := &topo{a: a, r: r, b: b, aICMP: pt.Collected(name + "-a"), bICMP: pt.Collected(name + "-b"), clock: clock, eth: framing == "ethernet"}
	settle(clock, 1500*time.Millisecond)
	return tp
}

// A pings B through the router, over IP-only and Ethernet links (where
// every next hop is resolved by NDP).
func TestPing6ThroughRouter(t *testing.T) {
	for _, framing := range []string{"ip", "ethernet"} {
		t.Run(framing, func(t *testing.T) {
			pt.CheckGoroutines(t)
			tp := newTopo(t, framing)
			payload := []byte("pipestack ping6 payload 0123456789")
			for seq := uint16(1); seq <= 3; seq++ {
				sendEcho(t, tp.a, "2001:db8:2::2", 7, seq, payload)
				reply := tp.aICMP.Wait(t, 5*time.Second)
				checkEchoReply(t, reply, "2001:db8:2::2", "2001:db8:1::2", 63, 7, seq, payload)
			}
			tp.r.WantCounters(t, "ipv6", map[string]uint64{"forwarded": 6})
			tp.b.WantCounters(t, "ipv6", map[string]uint64{"icmp_echo_reply_out": 3})
			if tp.eth {
				// Resolution by NDP: the router resolved both hosts, the
				// hosts the router.
				if got := tp.r.Counter("ndp", "ns_out"); got < 2 {
					t.Errorf("router sent %d neighbor solicitations", got)
				}
				nic, _ := tp.a.Stack.NIC("eth0")
				e, ok := nic.Neighbors().Entry(mustAddr("2001:db8:1::1"))
				if !ok || e.State != pipeline.NeighborReachable && e.State != pipeline.NeighborStale && e.State != pipeline.NeighborDelay {
					t.Errorf("host A's entry for the router: %+v %v", e, ok)
				}
				if e.LinkAddr.String() != macRA {
					t.Errorf("router MAC %s, want %s", e.LinkAddr, macRA)
				}
			}
		})
	}
}

// routerAlone is a router whose links the test drives by hand (IP links).
func routerAlone(t *testing.T, extra string) (r *pt.Node, clock *pt.ManualClock) {
	clock = pt.NewManualClock()
	r = pt.NewNode(t, "router", routerConfig("ip", extra), pipeline.Options{Clock: clock})
	return r, clock
}

// A packet whose hop limit runs out at the router gets Time Exceeded, from
// the router's address on the link back, quoting the packet.
func TestHopLimitExceeded(t *testing.T) {
	r, _ := routerAlone(t, "")
	a, b := r.Link(t, "a"), r.Link(t, "b")
	pkt := echo6("2001:db8:1::2", "2001:db8:2::2", 1, 1, 1, []byte("hop"))
	a.InjectFrames([][]byte{pkt})
	if got := pt.Drain(b); len(got) != 0 {
		t.Fatalf("forwarded %d packets with hop limit 1", len(got))
	}
	out := pt.Drain(a)
	if len(out) != 1 {
		t.Fatalf("%d packets back, want 1 (%s)", len(out), r.DumpCounters())
	}
	m := checkICMP6(t, out[0], "2001:db8:1::1", "2001:db8:1::2", wire.ICMPv6TimeExceeded, wire.ICMPv6HopLimitExceeded)
	if string(m[8:]) != string(pkt) {
		t.Error("the error does not quote the packet")
	}
	// Hop limit 2 passes with 1 left.
	a.InjectFrames([][]byte{echo6("2001:db8:1::2", "2001:db8:2::2", 2, 1, 2, []byte("hop"))})
	fw := pt.Drain(b)
	if len(fw) != 1 || wire.IPv6(fw[0]).HopLimit() != 1 {
		t.Fatalf("hop limit 2: forwarded %d", len(fw))
	}
	r.WantCounters(t, "ipv6", map[string]uint64{"hop_limit_exceeded": 1, "icmp_time_exceeded_out": 1, "forwarded": 1})
	// An ICMPv6 error is never answered with an error.
	te := ip6("2001:db8:1::2", "2001:db8:2::2", wire.ProtocolICMPv6, 1,
		icmp6("2001:db8:1::2", "2001:db8:2::2", wire.ICMPv6DstUnreachable, 4, 0, pkt))
	a.InjectFrames([][]byte{te})
	if got := pt.Drain(a); len(got) != 0 {
		t.Errorf("error about an error sent")
	}
	r.WantCounters(t, "ipv6", map[string]uint64{"hop_limit_exceeded": 2, "icmp_error_suppressed": 1})
}

// A packet larger than the outgoing link's MTU is not fragmented: the
// router answers Packet Too Big with that MTU, quoting as much as fits in
// 1280 bytes.
func TestPacketTooBig(t *testing.T) {
	r, _ := routerAlone(t, "")
	a, b := r.Link(t, "a"), r.Link(t, "b")
	big := udp6("2001:db8:1::2", "2001:db8:2::2", 1000, 2000, 64, make([]byte, 1500-48))
	a.InjectFrames([][]byte{big})
	if got := pt.Drain(b); len(got) != 0 {
		t.Fatalf("a %d-byte packet crossed a 1400-byte link", len(big))
	}
	out := pt.Drain(a)
	if len(out) != 1 {
		t.Fatalf("%d packets back, want 1 (%s)", len(out), r.DumpCounters())
	}
	m := checkICMP6(t, out[0], "2001:db8:1::1", "2001:db8:1::2", wire.ICMPv6PacketTooBig, 0)
	if m.MTU() != 1400 {
		t.Errorf("MTU %d, want 1400", m.MTU())
	}
	if len(out[0]) != 1280 || string(m[8:]) != string(big[:1280-48]) {
		t.Errorf("error of %d bytes; it must fill 1280 with the quote", len(out[0]))
	}
	// 1400 bytes fit.
	a.InjectFrames([][]byte{udp6("2001:db8:1::2", "2001:db8:2::2", 1000, 2000, 64, make([]byte, 1400-48))})
	if got := pt.Drain(b); len(got) != 1 {
		t.Errorf("a 1400-byte packet was not forwarded")
	}
	r.WantCounters(t, "ipv6", map[string]uint64{"too_big": 1, "icmp_packet_too_big_out": 1, "forwarded": 1})
}

// ICMPv6 errors go through the token bucket; Packet Too Big does not wait
// for the global one.
func TestICMPv6RateLimit(t *testing.T) {
	r, _ := routerAlone(t, "")
	if err := r.Reload(`
name: router
modules: [{module: network.ipv6, icmp_rate: 1, icmp_burst: 2, icmp_jitter: 0}]
links:
  - {name: a, module: link.channel, addresses: ["2001:db8:1::1/64"]}
  - {name: b, module: link.channel, mtu: 1400, addresses: ["2001:db8:2::1/64"]}
forwarding: {ipv6: true}
`); err != nil {
		t.Fatal(err)
	}
	a := r.Link(t, "a")
	var frames [][]byte
	for i := 0; i < 10; i++ {
		frames = append(frames, echo6("2001:db8:1::2", "2001:db8:2::2", 1, 1, uint16(i), nil))
	}
	a.InjectFrames(frames)
	if got := len(onlyICMP6(pt.Drain(a), false, wire.ICMPv6TimeExceeded)); got != 2 {
		t.Errorf("%d time exceeded for 10 packets with a burst of 2", got)
	}
	frames = frames[:0]
	for i := 0; i < 5; i++ {
		frames = append(frames, udp6("2001:db8:1::2", "2001:db8:2::2", 1, 2, 64, make([]byte, 1500-48)))
	}
	a.InjectFrames(frames)
	if got := len(onlyICMP6(pt.Drain(a), false, wire.ICMPv6PacketTooBig)); got != 5 {
		t.Errorf("%d packet too big for 5, want all (exempt)", got)
	}
	r.WantCounters(t, "ipv6", map[string]uint64{"icmp_rate_limited": 8})
}

// The per-destination limit is on by default (Linux icmpv6 ratelimit,
// 1000 ms, burst 6), shortened for wider prefixes as Linux does: a source
// on a connected /64 earns one error per 250 ms.
func TestICMPv6PerDestinationLimit(t *testing.T) {
	r, clock := routerAlone(t, "")
	a := r.Link(t, "a")
	total := 0
	for i := 0; i < 40; i++ { // 4 s, 500 packets every 100 ms
		var frames [][]byte
		for j := 0; j < 50; j++ {
			frames = append(frames, echo6("2001:db8:1::2", "2001:db8:2::2", 1, 1, uint16(j), nil))
		}
		a.InjectFrames(frames)
		total += len(onlyICMP6(pt.Drain(a), false, wire.ICMPv6TimeExceeded))
		clock.Advance(100 * time.Millisecond)
	}
	if total != 6+15 {
		t.Errorf("%d time exceeded to one source in 4 s, want 21 (burst 6, then one per 250 ms)", total)
	}
	var frames [][]byte
	for j := 0; j < 50; j++ {
		frames = append(frames, echo6("2001:db8:1::3", "2001:db8:2::2", 1, 1, uint16(j), nil))
	}
	a.InjectFrames(frames)
	if got := len(onlyICMP6(pt.Drain(a), false, wire.ICMPv6TimeExceeded)); got != 6 {
		t.Errorf("%d time exceeded to another source, want its burst of 6", got)
	}
}
