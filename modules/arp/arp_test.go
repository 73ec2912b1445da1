package arp_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/arp"
	"github.com/pipestack/pipestack/modules/ipv4"
	_ "github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

var (
	macA  = wire.MAC{2, 0, 0, 0, 0x0a, 2}
	macRA = wire.MAC{2, 0, 0, 0, 0x0a, 1}
	macRB = wire.MAC{2, 0, 0, 0, 0x0b, 1}
	macB  = wire.MAC{2, 0, 0, 0, 0x0b, 2}
)

func ip4(s string) [4]byte { return netip.MustParseAddr(s).As4() }

// routerFile is a router with network.arp and no static neighbors; arp is
// network.arp's entry under modules:.
func routerFile(arp, extra string) string {
	return fmt.Sprintf(`
name: router
modules: [network.ipv4, %s]
links:
  - {name: a, module: link.channel, framing: ethernet, mac: %q, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, framing: ethernet, mac: %q, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
%s`, arp, macRA, macRB, extra)
}

type rig struct {
	t   *testing.T
	clk *pt.ManualClock
	r   *pt.Node
}

func newRig(t *testing.T, arp, extra string) *rig {
	clk := pt.NewManualClock()
	r := pt.NewNode(t, "router", routerFile(arp, extra), pipeline.Options{Clock: clk})
	g := &rig{t: t, clk: clk, r: r}
	g.clk.Advance(0) // the gratuitous announcements
	g.read("a")
	g.read("b")
	return g
}

func (g *rig) read(link string) [][]byte { return pt.Drain(g.r.Link(g.t, link)) }

func (g *rig) inject(link string, frames ...[]byte) { g.r.Link(g.t, link).InjectFrames(frames) }

func arpFrame(dst, src wire.MAC, f wire.ARPFields) []byte {
	b := make([]byte, wire.ARPSize)
	wire.ARP(b).Encode(&f)
	return pt.EthFrame(dst, src, wire.EtherTypeARP, b)
}

// request is a broadcast who-has tip from (sha, sip).
func request(sha wire.MAC, sip, tip string) []byte {
	return arpFrame(wire.BroadcastMAC, sha, wire.ARPFields{Op: wire.ARPRequest, SenderMAC: sha, SenderIP: ip4(sip), TargetIP: ip4(tip)})
}

// checkARP parses a frame the router wrote and compares it.
func checkARP(t *testing.T, frame []byte, dst wire.MAC, want wire.ARPFields) {
	t.Helper()
	eth := wire.Ethernet(frame)
	if eth.Check() != nil || eth.Type() != wire.EtherTypeARP || eth.Dst() != dst || eth.Src() != want.SenderMAC {
		t.Fatalf("frame % x: not ARP from %v to %v", frame, want.SenderMAC, dst)
	}
	a := wire.ARP(eth.Payload())
	if err := a.Check(); err != nil || len(a) != wire.ARPSize {
		t.Fatalf("ARP %v, %d bytes", err, len(a))
	}
	got := wire.ARPFields{Op: a.Op(), SenderMAC: a.SenderMAC(), SenderIP: a.SenderIP(), TargetMAC: a.TargetMAC(), TargetIP: a.TargetIP()}
	if got != want {
		t.Fatalf("ARP\n got %+v\nwant %+v", got, want)
	}
}

func (g *rig) neighbor(link, addr string) pipeline.NeighborEntry {
	nic, _ := g.r.Stack.NIC(link)
	e, _ := nic.Neighbors().Entry(netip.MustParseAddr(addr))
	return e
}

// One gratuitous ARP per address when a link comes up; a reload announces
// only the addresses a link gains.
func TestGratuitousARP(t *testing.T) {
	clk := pt.NewManualClock()
	r := pt.NewNode(t, "router", routerFile("network.arp", ""), pipeline.Options{Clock: clk})
	g := &rig{t: t, clk: clk, r: r}
	clk.Advance(0)
	for link, w := range map[string]struct {
		mac wire.MAC
		ip  string
	}{"a": {macRA, "10.0.1.1"}, "b": {macRB, "10.0.2.1"}} {
		out := g.read(link)
		if len(out) != 1 {
			t.Fatalf("link %s: %d frames at start, want 1 gratuitous ARP", link, len(out))
		}
		checkARP(t, out[0], wire.BroadcastMAC, wire.ARPFields{Op: wire.ARPRequest, SenderMAC: w.mac, SenderIP: ip4(w.ip), TargetIP: ip4(w.ip)})
	}
	if r.Counter("arp", "gratuitous_out") != 2 {
		t.Errorf("gratuitous_out %d", r.Counter("arp", "gratuitous_out"))
	}
	// A reload that keeps the addresses announces nothing.
	if err := r.Reload(routerFile("network.arp", "routes: [{to: 10.0.9.0/24, via: 10.0.2.2, link: b}]")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if out := append(g.read("a"), g.read("b")...); len(out) != 0 {
		t.Fatalf("%d frames after a reload that adds no address", len(out))
	}
	// One that adds an address announces it alone.
	file := strings.Replace(routerFile("network.arp", ""), "addresses: [10.0.1.1/24]", "addresses: [10.0.1.1/24, 10.0.5.1/24]", 1)
	if err := r.Reload(file); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	out := g.read("a")
	if len(out) != 1 || len(g.read("b")) != 0 {
		t.Fatalf("%d frames on a after adding an address", len(out))
	}
	checkARP(t, out[0], wire.BroadcastMAC, wire.ARPFields{Op: wire.ARPRequest, SenderMAC: macRA, SenderIP: ip4("10.0.5.1"), TargetIP: ip4("10.0.5.1")})
	// gratuitous: false turns them off.
	clk2 := pt.NewManualClock()
	r2 := pt.NewNode(t, "quiet", routerFile("{module: network.arp, gratuitous: false}", ""), pipeline.Options{Clock: clk2})
	clk2.Advance(time.Second)
	if r2.Link(t, "a").Pending() != 0 {
		t.Fatal("gratuitous ARP sent although off")
	}
}

func TestReplyForOurAddress(t *testing.T) {
	g := newRig(t, "network.arp", "")
	req := request(macA, "10.0.1.2", "10.0.1.1")
	req = append(req, make([]byte, 60-len(req))...) // Ethernet padding
	g.inject("a", req)
	out := g.read("a")
	if len(out) != 1 {
		t.Fatalf("%d frames, want the reply", len(out))
	}
	checkARP(t, out[0], macA, wire.ARPFields{
		Op: wire.ARPReply, SenderMAC: macRA, SenderIP: ip4("10.0.1.1"), TargetMAC: macA, TargetIP: ip4("10.0.1.2"),
	})
	if len(out[0]) != wire.EthernetHeaderSize+wire.ARPSize {
		t.Errorf("reply of %d bytes: padding kept", len(out[0]))
	}
	// The asker is now a neighbor (STALE, as Linux).
	if e := g.neighbor("a", "10.0.1.2"); e.State != pipeline.NeighborStale || e.LinkAddr != macA {
		t.Fatalf("neighbor %+v", e)
	}
	// An RFC 5227 probe (sender 0.0.0.0) for our address is answered too,
	// and creates no entry.
	g.inject("a", request(macB, "0.0.0.0", "10.0.1.1"))
	out = g.read("a")
	if len(out) != 1 {
		t.Fatalf("probe: %d frames", len(out))
	}
	checkARP(t, out[0], macB, wire.ARPFields{Op: wire.ARPReply, SenderMAC: macRA, SenderIP: ip4("10.0.1.1"), TargetMAC: macB})
	if e := g.neighbor("a", "0.0.0.0"); e.State != pipeline.NeighborUnknown {
		t.Fatalf("probe made an entry %+v", e)
	}
	if c := g.r.Counter("arp", "replies_out"); c != 2 {
		t.Errorf("replies_out %d", c)
	}
}

func TestRequestNotOursUnanswered(t *testing.T) {
	g := newRig(t, "network.arp", "")
	g.inject("a", request(macA, "10.0.1.2", "10.0.1.77"))
	// The router's address on another link is not answered on this one.
	g.inject("a", request(macA, "10.0.1.2", "10.0.2.1"))
	if out := g.read("a"); len(out) != 0 {
		t.Fatalf("answered a request for an address not ours: % x", out[0])
	}
	if c := g.r.Counter("arp", "not_ours"); c != 2 {
		t.Errorf("not_ours %d (%s)", c, g.r.DumpCounters())
	}
	// And it does not create an entry for the asker.
	if e := g.neighbor("a", "10.0.1.2"); e.State != pipeline.NeighborUnknown {
		t.Errorf("entry %+v", e)
	}
}

func TestProxyARP(t *testing.T) {
	g := newRig(t, "{module: network.arp, proxy: [10.0.2.0/24, 10.0.9.0/24]}", "routes: [{to: 10.0.9.0/24, via: 10.0.2.2, link: b}]")
	g.inject("a", request(macA, "10.0.1.2", "10.0.2.50"), request(macA, "10.0.1.2", "10.0.9.7"))
	out := g.read("a")
	if len(out) != 2 {
		t.Fatalf("%d proxy replies, want 2 (%s)", len(out), g.r.DumpCounters())
	}
	checkARP(t, out[0], macA, wire.ARPFields{Op: wire.ARPReply, SenderMAC: macRA, SenderIP: ip4("10.0.2.50"), TargetMAC: macA, TargetIP: ip4("10.0.1.2")})
	checkARP(t, out[1], macA, wire.ARPFields{Op: wire.ARPReply, SenderMAC: macRA, SenderIP: ip4("10.0.9.7"), TargetMAC: macA, TargetIP: ip4("10.0.1.2")})
	// Not for a target reached through the asking link, nor outside the
	// prefixes, nor for a sender announcing itself.
	g.inject("b", request(macB, "10.0.2.2", "10.0.2.50"))
	g.inject("a", request(macA, "10.0.1.2", "10.0.1.77"))
	g.inject("a", request(macA, "10.0.2.50", "10.0.2.50"))
	if out := append(g.read("a"), g.read("b")...); len(out) != 0 {
		t.Fatalf("%d unexpected replies", len(out))
	}
	if c := g.r.Counter("arp", "proxy_replies_out"); c != 2 {
		t.Errorf("proxy_replies_out %d", c)
	}
}

// A forwarded packet waits for ARP: a broadcast request, the reply, the
// packet. The sender of a request the router answers gets an entry that
// the reply to it then uses at once.
func TestResolveAndForward(t *testing.T) {
	g := newRig(t, "network.arp", "")
	// Host A asks for the router first (as a real host would).
	g.inject("a", request(macA, "10.0.1.2", "10.0.1.1"))
	g.read("a")
	udp := func(port uint16) []byte {
		return pt.EthFrame(macRA, macA, wire.EtherTypeIPv4, pt.UDP4("10.0.1.2", "10.0.2.2", port, 7, 64, []byte("x")))
	}
	g.inject("a", udp(1), udp(2), udp(3))
	out := g.read("b")
	if len(out) != 1 {
		t.Fatalf("%d frames on b, want one ARP request", len(out))
	}
	checkARP(t, out[0], wire.BroadcastMAC, wire.ARPFields{Op: wire.ARPRequest, SenderMAC: macRB, SenderIP: ip4("10.0.2.1"), TargetIP: ip4("10.0.2.2")})
	if e := g.neighbor("b", "10.0.2.2"); e.State != pipeline.NeighborIncomplete {
		t.Fatalf("entry %+v", e)
	}
	g.inject("b", arpFrame(macRB, macB, wire.ARPFields{Op: wire.ARPReply, SenderMAC: macB, SenderIP: ip4("10.0.2.2"), TargetMAC: macRB, TargetIP: ip4("10.0.2.1")}))
	out = g.read("b")
	if len(out) != 3 {
		t.Fatalf("%d frames after the reply, want the 3 queued packets", len(out))
	}
	for i, f := range out {
		eth := wire.Ethernet(f)
		if eth.Dst() != macB || eth.Type() != wire.EtherTypeIPv4 {
			t.Fatalf("frame to %v type %#x", eth.Dst(), eth.Type())
		}
		pt.CheckIPv4(t, eth.Payload(), pt.DstAddr("10.0.2.2"), pt.TTL(63))
		if port := wire.UDP(wire.IPv4(eth.Payload()).Payload()).SrcPort(); port != uint16(i+1) {
			t.Errorf("packet %d has port %d: order lost", i, port)
		}
	}
	if e := g.neighbor("b", "10.0.2.2"); e.State != pipeline.NeighborReachable || e.LinkAddr != macB {
		t.Fatalf("entry %+v", e)
	}
	// The way back uses the entry the request created (STALE → DELAY).
	g.inject("b", pt.EthFrame(macRB, macB, wire.EtherTypeIPv4, pt.UDP4("10.0.2.2", "10.0.1.2", 7, 1, 64, []byte("y"))))
	if out := g.read("a"); len(out) != 1 || wire.Ethernet(out[0]).Dst() != macA {
		t.Fatalf("return path: %d frames", len(out))
	}
	if e := g.neighbor("a", "10.0.1.2"); e.State != pipeline.NeighborDelay {
		t.Fatalf("entry %+v", e)
	}
	// DELAY → PROBE sends a unicast request.
	g.clk.Advance(5 * time.Second)
	out = g.read("a")
	if len(out) != 1 {
		t.Fatalf("%d frames, want a unicast probe", len(out))
	}
	checkARP(t, out[0], macA, wire.ARPFields{Op: wire.ARPRequest, SenderMAC: macRA, SenderIP: ip4("10.0.1.1"), TargetIP: ip4("10.0.1.2")})
	// Its reply, unicast to us, makes the entry REACHABLE.
	g.inject("a", arpFrame(macRA, macA, wire.ARPFields{Op: wire.ARPReply, SenderMAC: macA, SenderIP: ip4("10.0.1.2"), TargetMAC: macRA, TargetIP: ip4("10.0.1.1")}))
	if e := g.neighbor("a", "10.0.1.2"); e.State != pipeline.NeighborReachable {
		t.Fatalf("entry %+v", e)
	}
	// A broadcast reply (not solicited) from a changed address: STALE with it.
	macA2 := wire.MAC{2, 0, 0, 0, 0x0a, 0x22}
	g.inject("a", arpFrame(wire.BroadcastMAC, macA2, wire.ARPFields{Op: wire.ARPReply, SenderMAC: macA2, SenderIP: ip4("10.0.1.2"), TargetIP: ip4("10.0.1.2")}))
	if e := g.neighbor("a", "10.0.1.2"); e.State != pipeline.NeighborStale || e.LinkAddr != macA2 {
		t.Fatalf("entry %+v", e)
	}
}

// Failed resolution: three broadcast requests a second apart, then the
// queued packets get ICMP host unreachable.
func TestResolutionFailure(t *testing.T) {
	g := newRig(t, "{module: network.arp, pending_packets: 2}", "")
	g.inject("a", request(macA, "10.0.1.2", "10.0.1.1"))
	g.read("a")
	for i := 0; i < 3; i++ {
		g.inject("a", pt.EthFrame(macRA, macA, wire.EtherTypeIPv4, pt.UDP4("10.0.1.2", "10.0.2.9", uint16(i), 7, 64, nil)))
	}
	for i := 0; i < 3; i++ {
		out := g.read("b")
		if len(out) != 1 {
			t.Fatalf("second %d: %d frames on b, want a request", i, len(out))
		}
		checkARP(t, out[0], wire.BroadcastMAC, wire.ARPFields{Op: wire.ARPRequest, SenderMAC: macRB, SenderIP: ip4("10.0.2.1"), TargetIP: ip4("10.0.2.9")})
		g.clk.Advance(time.Second)
	}
	back := g.read("a")
	if len(back) != 2 {
		t.Fatalf("%d frames back, want 2 host unreachable (%s)", len(back), g.r.DumpCounters())
	}
	for _, f := range back {
		pt.CheckIPv4(t, wire.Ethernet(f).Payload(), pt.SrcAddr("10.0.1.1"), pt.DstAddr("10.0.1.2"),
			pt.ICMP(wire.ICMPv4DstUnreachable, wire.ICMPv4HostUnreachable))
	}
	if e := g.neighbor("b", "10.0.2.9"); e.State != pipeline.NeighborUnreachable {
		t.Fatalf("entry %+v", e)
	}
	if g.r.Counter("neighbor", "queue_dropped") != 1 || g.r.Counter("neighbor", "resolution_failed") != 2 {
		t.Errorf("counters %s", g.r.DumpCounters())
	}
}

// Malformed and hostile ARP is counted and dropped, never answered.
func TestMalformedAndMartian(t *testing.T) {
	g := newRig(t, "network.arp", "")
	good := request(macA, "10.0.1.2", "10.0.1.1")
	short := good[:wire.EthernetHeaderSize+20]
	badFormat := append([]byte(nil), good...)
	badFormat[wire.EthernetHeaderSize+4] = 8 // hardware length 8
	rarp := append([]byte(nil), good...)
	rarp[wire.EthernetHeaderSize+7] = 3 // opcode 3
	g.inject("a",
		short, badFormat, rarp,
		request(macA, "127.0.0.1", "10.0.1.1"),                         // loopback sender
		request(macA, "224.0.0.1", "10.0.1.1"),                         // multicast sender
		request(wire.MAC{1, 0, 0x5e, 0, 0, 1}, "10.0.1.2", "10.0.1.1"), // multicast MAC
		request(macA, "10.0.1.255", "10.0.1.1"),                        // our broadcast
		request(macA, "10.0.1.2", "224.0.0.5"),                         // multicast target
		request(macB, "10.0.1.1", "10.0.1.1"),                          // someone claims our address
		request(macRA, "10.0.1.9", "10.0.1.1"),                         // our own frame back
		arpFrame(macRA, macA, wire.ARPFields{Op: wire.ARPReply, SenderMAC: macA, TargetMAC: macRA, TargetIP: ip4("10.0.1.1")}), // reply from 0.0.0.0
		good[:wire.EthernetHeaderSize],
	)
	if out := g.read("a"); len(out) != 0 {
		t.Fatalf("answered %d hostile requests", len(out))
	}
	want := map[string]uint64{
		"malformed_too_short": 2, "malformed_bad_arp_format": 1, "unknown_opcode": 1,
		"martian": 6, "duplicate_address": 1, "looped": 1,
	}
	for k, v := range want {
		if got := g.r.Counter("arp", k); got != v {
			t.Errorf("arp.%s = %d, want %d (%s)", k, got, v, g.r.DumpCounters())
		}
	}
	nic, _ := g.r.Stack.NIC("a")
	if got := nic.Stats.RxDropped.Load(); got != 12 {
		t.Errorf("rx_dropped %d, want 12", got)
	}
	if n := len(nic.Neighbors().Entries()); n != 0 {
		t.Errorf("%d entries from hostile ARP", n)
	}
}

// Broadcast and multicast next hops need no resolution.
func TestBroadcastNextHop(t *testing.T) {
	g := newRig(t, "network.arp", "routes: [{to: 224.0.0.0/4, link: b}]")
	if err := ipv4.Send(g.r.Stack, netip.MustParseAddr("10.0.2.255"), pipeline.UDPProtocolNumber, make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	if err := ipv4.Send(g.r.Stack, netip.MustParseAddr("224.1.2.3"), pipeline.UDPProtocolNumber, make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	out := g.read("b")
	if len(out) != 2 || wire.Ethernet(out[0]).Dst() != wire.BroadcastMAC || wire.Ethernet(out[1]).Dst() != (wire.MAC{1, 0, 0x5e, 1, 2, 3}) {
		t.Fatalf("frames %d: % x", len(out), out)
	}
}

func TestModuleConfig(t *testing.T) {
	for _, tc := range []struct{ arp, want string }{
		{"{module: network.arp, base_reachable_time: 10s, retransmit_timer: 500ms, max_entries: 64, pending_packets: 4, proxy: [10.9.0.0/16]}", ""},
		{"{module: network.arp, min_random_factor: 1.6}", ""},
		{"{module: network.arp, max_random_factor: 0.2}", ""},
		{"{module: network.arp, retransmit_timer: 5}", "retransmit_timer"},
		{"{module: network.arp, proxy: [nope]}", `proxy: "nope" is not an IPv4 prefix`},
		{"{module: network.arp, pending_packets: 20, pending_packets_total: 10}", "pending_packets_total must be at least pending_packets"},
		{"{module: network.arp, max_unicast_probes: 300}", "max_unicast_probes 300 out of range"},
		{"{module: network.arp, min_random_factor: 2, max_random_factor: 1}", "random factors"},
		{"{module: network.arp, gc_stale: 1s}", `unknown field "gc_stale"`},
	} {
		cfg, err := pipeline.ParseConfig("arp.yaml", []byte(routerFile(tc.arp, "")))
		if err == nil {
			err = pipeline.Check(cfg)
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.arp, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "network.arp")):
			t.Errorf("%s: error %v, want %q", tc.arp, err, tc.want)
		}
	}
}
