package ipv4_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/ipv4"
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

func hostConfig(name, collector, framing, mac, addr, gw, gwMAC string) string {
	eth := ""
	if framing == "ethernet" {
		eth = fmt.Sprintf(", mac: %q, neighbors: [{ip: %s, mac: %q}]", mac, gw, gwMAC)
	}
	return fmt.Sprintf(`
name: %s
modules: [network.ipv4, {module: transport.collect, protocol: 1, name: %q}]
links:
  - {name: eth0, module: link.channel, framing: %s, addresses: [%s]%s}
routes:
  - {to: default, via: %s, link: eth0}
`, name, collector, framing, addr, eth, gw)
}

func routerConfig(framing, extra string) string {
	ethA, ethB := "", ""
	if framing == "ethernet" {
		ethA = fmt.Sprintf(", mac: %q, neighbors: [{ip: 10.0.1.2, mac: %q}]", macRA, macA)
		ethB = fmt.Sprintf(", mac: %q, neighbors: [{ip: 10.0.2.2, mac: %q}]", macRB, macB)
	}
	return fmt.Sprintf(`
name: router
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, framing: %s, addresses: [10.0.1.1/24]%s}
  - {name: b, module: link.channel, framing: %s, mtu: 1400, addresses: [10.0.2.1/24]%s}
forwarding: {ipv4: true}
%s`, framing, ethA, framing, ethB, extra)
}

type topo struct {
	a, r, b *pt.Node
	aICMP   *pt.Collector
}

func newTopo(t *testing.T, framing string) *topo {
	t.Helper()
	name := strings.ReplaceAll(t.Name(), "/", "_")
	a := pt.NewNode(t, "host-a", hostConfig("host-a", name+"-a", framing, macA, "10.0.1.2/24", "10.0.1.1", macRA), pipeline.Options{})
	r := pt.NewNode(t, "router", routerConfig(framing, ""), pipeline.Options{})
	b := pt.NewNode(t, "host-b", hostConfig("host-b", name+"-b", framing, macB, "10.0.2.2/24", "10.0.2.1", macRB), pipeline.Options{})
	pt.Connect(t, a, "eth0", r, "a")
	pt.Connect(t, r, "b", b, "eth0")
	return &topo{a: a, r: r, b: b, aICMP: pt.Collected(name + "-a")}
}

func echoMessage(id, seq uint16, payload []byte) []byte {
	m := make([]byte, wire.ICMPv4MinimumSize+len(payload))
	wire.ICMPv4(m).Encode(&wire.ICMPv4Fields{Type: wire.ICMPv4Echo, Rest: wire.ICMPv4EchoRest(id, seq)})
	copy(m[8:], payload)
	wire.ICMPv4(m).SetChecksum(wire.ICMPv4(m).CalculateChecksum())
	return m
}

// A pings B through the router, over IP-only and Ethernet links.
func TestPingThroughRouter(t *testing.T) {
	for _, framing := range []string{"ip", "ethernet"} {
		t.Run(framing, func(t *testing.T) {
			pt.CheckGoroutines(t)
			tp := newTopo(t, framing)
			payload := []byte("pipestack ping payload 0123456789")
			for seq := uint16(1); seq <= 3; seq++ {
				tp.a.SendIPv4(t, "10.0.2.2", pipeline.ICMPv4ProtocolNumber, echoMessage(7, seq, payload))
				reply := tp.aICMP.Wait(t, 5*time.Second)
				pt.CheckIPv4(t, reply, pt.SrcAddr("10.0.2.2"), pt.DstAddr("10.0.1.2"), pt.TTL(63),
					pt.ICMP(wire.ICMPv4EchoReply, 0, func(m wire.ICMPv4) error {
						if m.Ident() != 7 || m.Seq() != seq || !bytes.Equal(m.Payload(), payload) {
							return fmt.Errorf("echo reply id %d seq %d payload %q", m.Ident(), m.Seq(), m.Payload())
						}
						return nil
					}))
			}
			if got := tp.r.Counter("ipv4", "forwarded"); got != 6 {
				t.Errorf("router forwarded %d, want 6 (%s)", got, tp.r.DumpCounters())
			}
			if got := tp.b.Counter("ipv4", "icmp_echo_reply_out"); got != 3 {
				t.Errorf("host B sent %d echo replies, want 3", got)
			}
			// The router counts a transmission once its link's
			// WritePackets returns, which may be after the cable's
			// goroutine delivered the frame and the reply came back.
			for _, name := range []string{"a", "b"} {
				nic, _ := tp.r.Stack.NIC(name)
				deadline := time.Now().Add(5 * time.Second)
				for nic.Stats.TxPackets.Load() < 3 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				if rx, tx := nic.Stats.RxPackets.Load(), nic.Stats.TxPackets.Load(); rx != 3 || tx != 3 {
					t.Errorf("router nic %s rx %d tx %d, want 3 and 3", name, rx, tx)
				}
			}
		})
	}
}

// routerAlone is a router whose links the test drives by hand.
func routerAlone(t *testing.T, extra string) (r *pt.Node, inject func(frames ...[]byte), readA, readB func() [][]byte) {
	r = pt.NewNode(t, "router", routerConfig("ip", extra), pipeline.Options{})
	a, b := r.Link(t, "a"), r.Link(t, "b")
	return r, func(frames ...[]byte) { a.InjectFrames(frames) }, func() [][]byte { return pt.Drain(a) }, func() [][]byte { return pt.Drain(b) }
}

func TestTTLExceeded(t *testing.T) {
	r, inject, readA, readB := routerAlone(t, "")
	orig := pt.UDP4("10.0.1.2", "10.0.2.2", 1000, 33434, 1, []byte("traceroute probe"))
	inject(orig)
	if out := readB(); len(out) != 0 {
		t.Fatalf("a TTL 1 packet was forwarded")
	}
	back := readA()
	if len(back) != 1 {
		t.Fatalf("got %d packets back, want 1 time exceeded (%s)", len(back), r.DumpCounters())
	}
	pt.CheckIPv4(t, back[0], pt.SrcAddr("10.0.1.1"), pt.DstAddr("10.0.1.2"), pt.TTL(64),
		pt.ICMP(wire.ICMPv4TimeExceeded, wire.ICMPv4TTLExceeded, pt.Quotes(orig)))
	if r.Counter("ipv4", "ttl_exceeded") != 1 || r.Counter("ipv4", "icmp_error_out") != 1 {
		t.Errorf("counters: %s", r.DumpCounters())
	}
}

func TestNetUnreachable(t *testing.T) {
	r, inject, readA, readB := routerAlone(t, "")
	orig := pt.UDP4("10.0.1.2", "192.0.2.9", 1000, 53, 64, []byte("nowhere"))
	inject(orig)
	if len(readB()) != 0 {
		t.Fatal("an unroutable packet left through b")
	}
	back := readA()
	if len(back) != 1 {
		t.Fatalf("got %d packets back, want 1 net unreachable", len(back))
	}
	pt.CheckIPv4(t, back[0], pt.SrcAddr("10.0.1.1"), pt.DstAddr("10.0.1.2"),
		pt.ICMP(wire.ICMPv4DstUnreachable, wire.ICMPv4NetUnreachable, pt.Quotes(orig)))
	if r.Counter("ipv4", "no_route") != 1 {
		t.Errorf("no_route not counted: %s", r.DumpCounters())
	}
}

func TestFragmentationNeeded(t *testing.T) {
	r, inject, readA, readB := routerAlone(t, "")
	big := pt.UDP4("10.0.1.2", "10.0.2.2", 1000, 2000, 64, make([]byte, 1450))
	wire.IPv4(big).SetFlagsFragmentOffset(wire.IPv4FlagDontFragment, 0)
	wire.IPv4(big).SetChecksum(wire.IPv4(big).CalculateChecksum())
	inject(big)
	if len(readB()) != 0 {
		t.Fatal("a DF packet over the MTU was forwarded")
	}
	back := readA()
	if len(back) != 1 {
		t.Fatalf("got %d packets back, want 1 fragmentation needed", len(back))
	}
	pt.CheckIPv4(t, back[0], pt.SrcAddr("10.0.1.1"),
		pt.ICMP(wire.ICMPv4DstUnreachable, wire.ICMPv4FragmentationNeeded, pt.NextHopMTU(1400), pt.Quotes(big)))
	// At the MTU exactly it goes through.
	fits := pt.UDP4("10.0.1.2", "10.0.2.2", 1000, 2000, 64, make([]byte, 1400-28))
	inject(fits)
	if out := readB(); len(out) != 1 {
		t.Fatalf("a packet of exactly the MTU was not forwarded (%s)", r.DumpCounters())
	}
}

// A protocol no module handles gets protocol unreachable (UDP and TCP are
// answered as closed ports: closed_test.go).
func TestProtocolUnreachable(t *testing.T) {
	_, inject, readA, _ := routerAlone(t, "")
	p := withHeader(pt.UDP4("10.0.1.2", "10.0.1.1", 1000, 2000, 64, []byte("to the router")), func(h wire.IPv4) {
		h[9] = 132 // SCTP
	})
	inject(p)
	back := readA()
	if len(back) != 1 {
		t.Fatalf("got %d packets back, want protocol unreachable", len(back))
	}
	pt.CheckIPv4(t, back[0], pt.SrcAddr("10.0.1.1"), pt.ICMP(wire.ICMPv4DstUnreachable, wire.ICMPv4ProtoUnreachable, pt.Quotes(p)))
}

func TestEchoReplyFromRouter(t *testing.T) {
	_, inject, readA, _ := routerAlone(t, "")
	inject(pt.Echo4("10.0.1.2", "10.0.1.1", 64, 1, 2, []byte("hi")))
	back := readA()
	if len(back) != 1 {
		t.Fatalf("got %d replies", len(back))
	}
	pt.CheckIPv4(t, back[0], pt.SrcAddr("10.0.1.1"), pt.DstAddr("10.0.1.2"), pt.ICMP(wire.ICMPv4EchoReply, 0))
	// Echo to the subnet broadcast is ignored, like Linux.
	inject(pt.Echo4("10.0.1.2", "10.0.1.255", 64, 1, 3, []byte("hi")))
	if back := readA(); len(back) != 0 {
		t.Fatalf("answered a broadcast echo")
	}
}

// Every packet is accounted for: forwarded, or dropped under a reason.
func TestCountersAccountForEveryPacket(t *testing.T) {
	r, inject, readA, readB := routerAlone(t, "")
	good := pt.UDP4("10.0.1.2", "10.0.2.2", 1, 2, 64, []byte("ok"))
	badSum := pt.UDP4("10.0.1.2", "10.0.2.2", 1, 2, 64, []byte("bad"))
	badSum[10] ^= 0xff
	truncated := good[:15]
	badVersion := append([]byte(nil), good...)
	badVersion[0] = 0x55
	lying := append([]byte(nil), good...)
	wire.IPv4(lying).SetTotalLength(500)
	ttl1 := pt.UDP4("10.0.1.2", "10.0.2.2", 1, 2, 1, []byte("x"))
	noRoute := pt.UDP4("10.0.1.2", "198.51.100.1", 1, 2, 64, []byte("x"))
	martian := pt.UDP4("127.0.0.1", "10.0.2.2", 1, 2, 64, []byte("x"))
	inject(good, badSum, truncated, badVersion, lying, ttl1, noRoute, martian, good)
	if got := len(readB()); got != 2 {
		t.Fatalf("forwarded %d, want 2", got)
	}
	readA()
	want := map[string]uint64{
		"forwarded": 2, "malformed_bad_checksum": 1, "malformed_too_short": 1, "malformed_bad_version": 0,
		"malformed_bad_total_length": 1, "ttl_exceeded": 1, "no_route": 1, "martian_source": 1,
	}
	for k, v := range want {
		if got := r.Counter("ipv4", k); got != v {
			t.Errorf("ipv4.%s = %d, want %d", k, got, v)
		}
	}
	// The bad-version packet never reaches IPv4: the IP-only link cannot
	// tell its protocol and counts it as malformed.
	if ep := r.Link(t, "a"); ep.RxMalformed.Load() != 1 {
		t.Errorf("link malformed = %d, want 1", ep.RxMalformed.Load())
	}
	var drops uint64
	for _, k := range []string{"malformed_bad_checksum", "malformed_too_short", "malformed_bad_total_length", "ttl_exceeded", "no_route", "martian_source"} {
		drops += r.Counter("ipv4", k)
	}
	if rx := r.Counter("ipv4", "rx"); rx != drops+r.Counter("ipv4", "forwarded") {
		t.Errorf("ipv4 rx %d != drops %d + forwarded %d", rx, drops, r.Counter("ipv4", "forwarded"))
	}
	nic, _ := r.Stack.NIC("a")
	if nic.Stats.RxDropped.Load() != drops {
		t.Errorf("nic a rx_dropped %d, want %d", nic.Stats.RxDropped.Load(), drops)
	}
}

func TestForwardingOff(t *testing.T) {
	r := pt.NewNode(t, "host", `
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, addresses: [10.0.2.1/24]}
`, pipeline.Options{})
	r.Link(t, "a").InjectFrames([][]byte{pt.UDP4("10.0.1.2", "10.0.2.2", 1, 2, 64, nil)})
	if r.Link(t, "b").Pending() != 0 || r.Counter("ipv4", "not_forwarding") != 1 {
		t.Fatalf("a host forwarded: %s", r.DumpCounters())
	}
}

// A frame sent to the link broadcast address is not forwarded even when its
// IP destination is unicast.
func TestLinkBroadcastNotForwarded(t *testing.T) {
	r := pt.NewNode(t, "router", routerConfig("ethernet", ""), pipeline.Options{})
	pkt := pt.UDP4("10.0.1.2", "10.0.2.2", 1, 2, 64, []byte("x"))
	r.Link(t, "a").InjectFrames([][]byte{pt.EthFrame(wire.BroadcastMAC, wire.MAC{2, 0, 0, 0, 0x0a, 2}, wire.EtherTypeIPv4, pkt)})
	if r.Link(t, "b").Pending() != 0 || r.Counter("ipv4", "link_broadcast") != 1 {
		t.Fatalf("broadcast frame forwarded: %s", r.DumpCounters())
	}
}
