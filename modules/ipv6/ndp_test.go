package ipv6_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

func mac(s string) wire.MAC {
	m, err := wire.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// frame wraps an IPv6 packet in an Ethernet frame.
func frame(dst, src wire.MAC, pkt []byte) []byte {
	return pt.EthFrame(dst, src, wire.EtherTypeIPv6, pkt)
}

// na builds a Neighbor Advertisement packet.
func na(src, dst, target string, flags uint8, tll string) []byte {
	body := make([]byte, wire.NDPNeighborAdvertisementSize)
	wire.NDPNeighborAdvertisement(body).Encode(&wire.NDPNeighborAdvertisementFields{Flags: flags, Target: a16(target)})
	if tll != "" {
		body = wire.AppendNDPLinkLayerAddress(body, wire.NDPOptionTargetLinkLayerAddress, mac(tll))
	}
	return ndpPacket(src, dst, wire.ICMPv6NeighborAdvertisement, body)
}

// ns builds a Neighbor Solicitation packet.
func ns(src, dst, target string, sll string) []byte {
	body := make([]byte, wire.NDPNeighborSolicitationSize)
	wire.NDPNeighborSolicitation(body).Encode(a16(target))
	if sll != "" {
		body = wire.AppendNDPLinkLayerAddress(body, wire.NDPOptionSourceLinkLayerAddress, mac(sll))
	}
	return ndpPacket(src, dst, wire.ICMPv6NeighborSolicitation, body)
}

// ndpPacket builds an NDP message of type typ (body after type, code and
// checksum) in an IPv6 packet with hop limit 255.
func ndpPacket(src, dst string, typ uint8, body []byte) []byte {
	m := make([]byte, wire.ICMPv6MinimumSize+len(body))
	m[0] = typ
	copy(m[4:], body)
	s, d := a16(src), a16(dst)
	wire.ICMPv6(m).SetChecksum(wire.ICMPv6(m).CalculateChecksum(wire.PseudoHeaderChecksum(wire.ProtocolICMPv6, s[:], d[:], uint16(len(m)))))
	return ip6(src, dst, wire.ProtocolICMPv6, 255, m)
}

// ethRouter is the two-link router on Ethernet links driven by hand, after
// DAD of its addresses.
func ethRouter(t *testing.T, extra string) (r *pt.Node, a, b *channel.Endpoint, clock *pt.ManualClock) {
	t.Helper()
	clock = pt.NewManualClock()
	r = pt.NewNode(t, "router", routerConfig("ethernet", extra), pipeline.Options{Clock: clock})
	a, b = r.Link(t, "a"), r.Link(t, "b")
	clock.Advance(0)
	clock.Advance(1100 * time.Millisecond)
	pt.Drain(a)
	pt.Drain(b)
	return r, a, b, clock
}

func neighbor(t *testing.T, n *pt.Node, link, addr string) pipeline.NeighborEntry {
	t.Helper()
	nic, _ := n.Stack.NIC(link)
	e, _ := nic.Neighbors().Entry(mustAddr(addr))
	return e
}

// unwrap returns the IPv6 packet of an Ethernet frame and checks the
// frame's addresses.
func unwrap(t *testing.T, f []byte, dst, src string) []byte {
	t.Helper()
	eth := wire.Ethernet(f)
	if eth.Check() != nil || eth.Type() != wire.EtherTypeIPv6 {
		t.Fatalf("not an IPv6 frame: % x", f)
	}
	if eth.Dst() != mac(dst) || eth.Src() != mac(src) {
		t.Errorf("frame %s → %s, want %s → %s", eth.Src(), eth.Dst(), src, dst)
	}
	return f[wire.EthernetHeaderSize:]
}

// The router resolves a next hop with NDP and walks the entry through the
// NUD states: INCOMPLETE (multicast solicitation) → REACHABLE (solicited
// advertisement, the queued packet leaves) → STALE (reachable time) →
// DELAY (used) → PROBE (unicast solicitation) → REACHABLE; an unanswered
// next hop becomes UNREACHABLE and the sender hears Address Unreachable.
func TestNDPResolutionAndNUD(t *testing.T) {
	r, a, b, clock := ethRouter(t, "")
	ping := func(dst string, seq uint16) []byte {
		return frame(mac(macRA), mac(macA), echo6("2001:db8:1::2", dst, 64, 9, seq, []byte("nud")))
	}
	// A is known (so that errors can go back to it).
	nicA, _ := r.Stack.NIC("a")
	nicA.Neighbors().Set(pipeline.NeighborEntry{Addr: mustAddr("2001:db8:1::2"), LinkAddr: mac(macA), State: pipeline.NeighborStatic})

	a.InjectFrames([][]byte{ping("2001:db8:2::2", 1)})
	out := pt.Drain(b)
	if len(out) != 1 {
		t.Fatalf("%d frames on b, want one solicitation (%s)", len(out), r.DumpCounters())
	}
	p := unwrap(t, out[0], "33:33:ff:00:00:02", macRB)
	checkICMP6(t, p, "2001:db8:2::1", "ff02::1:ff00:2", wire.ICMPv6NeighborSolicitation, 0)
	sol := wire.NDPNeighborSolicitation(wire.IPv6(p).Payload()[4:])
	if wire.IPv6(p).HopLimit() != 255 || netip.AddrFrom16(sol.Target()) != mustAddr("2001:db8:2::2") {
		t.Errorf("solicitation: hop limit %d target %v", wire.IPv6(p).HopLimit(), netip.AddrFrom16(sol.Target()))
	}
	if m, ok := sol.Options().Find(wire.NDPOptionSourceLinkLayerAddress).LinkLayerAddress(); !ok || m != mac(macRB) {
		t.Errorf("source link-layer address %v %v", m, ok)
	}
	if s := neighbor(t, r, "b", "2001:db8:2::2").State; s != pipeline.NeighborIncomplete {
		t.Fatalf("state %v, want INCOMPLETE", s)
	}

	// B answers: solicited, override.
	b.InjectFrames([][]byte{frame(mac(macRB), mac(macB), na("2001:db8:2::2", "2001:db8:2::1", "2001:db8:2::2", wire.NDPNASolicited|wire.NDPNAOverride, macB))})
	out = pt.Drain(b)
	if len(out) != 1 {
		t.Fatalf("%d frames after the advertisement, want the queued echo", len(out))
	}
	checkICMP6(t, unwrap(t, out[0], macB, macRB), "2001:db8:1::2", "2001:db8:2::2", wire.ICMPv6EchoRequest, 0)
	if s := neighbor(t, r, "b", "2001:db8:2::2").State; s != pipeline.NeighborReachable {
		t.Fatalf("state %v, want REACHABLE", s)
	}

	// Reachable time (at most 1.5 × 30 s) → STALE; a packet → DELAY.
	clock.Advance(46 * time.Second)
	if s := neighbor(t, r, "b", "2001:db8:2::2").State; s != pipeline.NeighborStale {
		t.Fatalf("state %v, want STALE", s)
	}
	a.InjectFrames([][]byte{ping("2001:db8:2::2", 2)})
	if out = pt.Drain(b); len(out) != 1 {
		t.Fatalf("STALE entry: %d frames, want the echo", len(out))
	}
	if s := neighbor(t, r, "b", "2001:db8:2::2").State; s != pipeline.NeighborDelay {
		t.Fatalf("state %v, want DELAY", s)
	}
	// DELAY → PROBE: a unicast solicitation to B's MAC.
	clock.Advance(5 * time.Second)
	if s := neighbor(t, r, "b", "2001:db8:2::2").State; s != pipeline.NeighborProbe {
		t.Fatalf("state %v, want PROBE", s)
	}
	out = pt.Drain(b)
	if len(out) != 1 {
		t.Fatalf("PROBE: %d frames, want one unicast solicitation", len(out))
	}
	checkICMP6(t, unwrap(t, out[0], macB, macRB), "2001:db8:2::1", "2001:db8:2::2", wire.ICMPv6NeighborSolicitation, 0)
	b.InjectFrames([][]byte{frame(mac(macRB), mac(macB), na("2001:db8:2::2", "2001:db8:2::1", "2001:db8:2::2", wire.NDPNASolicited, ""))})
	if s := neighbor(t, r, "b", "2001:db8:2::2").State; s != pipeline.NeighborReachable {
		t.Fatalf("state %v, want REACHABLE after the probe's answer", s)
	}

	// A solicitation from a new neighbor creates its entry STALE and is
	// answered directly to its MAC.
	b.InjectFrames([][]byte{frame(mac(macRB), mac("02:00:00:00:0b:03"), ns("2001:db8:2::3", "ff02::1:ff00:1", "2001:db8:2::1", "02:00:00:00:0b:03"))})
	out = pt.Drain(b)
	if len(out) != 1 {
		t.Fatalf("%d frames after a solicitation, want an advertisement", len(out))
	}
	m := checkICMP6(t, unwrap(t, out[0], "02:00:00:00:0b:03", macRB), "2001:db8:2::1", "2001:db8:2::3", wire.ICMPv6NeighborAdvertisement, 0)
	adv := wire.NDPNeighborAdvertisement(m[4:])
	if !adv.Solicited() || !adv.Override() || !adv.Router() {
		t.Errorf("advertisement flags %#x, want S, O and R", adv.Flags())
	}
	if e := neighbor(t, r, "b", "2001:db8:2::3"); e.State != pipeline.NeighborStale || e.LinkAddr != mac("02:00:00:00:0b:03") {
		t.Errorf("entry from a solicitation: %+v", e)
	}

	// Nobody answers for 2001:db8:2::4: three solicitations a second
	// apart, then UNREACHABLE and Address Unreachable to A.
	a.InjectFrames([][]byte{ping("2001:db8:2::4", 3)})
	for i := 0; i < 3; i++ {
		clock.Advance(time.Second)
	}
	if n := len(onlyICMP6(pt.Drain(b), true, wire.ICMPv6NeighborSolicitation)); n != 3 {
		t.Errorf("%d solicitations for an absent neighbor, want 3", n)
	}
	if s := neighbor(t, r, "b", "2001:db8:2::4").State; s != pipeline.NeighborUnreachable {
		t.Errorf("state %v, want UNREACHABLE", s)
	}
	back := onlyICMP6(pt.Drain(a), true, wire.ICMPv6DstUnreachable)
	if len(back) != 1 {
		t.Fatalf("%d destination unreachable to A, want 1 (%s)", len(back), r.DumpCounters())
	}
	checkICMP6(t, back[0], "2001:db8:1::1", "2001:db8:1::2", wire.ICMPv6DstUnreachable, wire.ICMPv6AddressUnreachable)
}

// hostAlone is a host on one Ethernet link driven by hand.
func hostAlone(t *testing.T, extra, addrs string) (*pt.Node, *channel.Endpoint, *pt.ManualClock) {
	t.Helper()
	clock := pt.NewManualClock()
	h := pt.NewNode(t, "host", `
name: host
modules: [{module: network.ipv6`+extra+`}]
links:
  - {name: eth0, module: link.channel, framing: ethernet, mac: "`+macA+`", addresses: [`+addrs+`]}
`, pipeline.Options{Clock: clock})
	return h, h.Link(t, "eth0"), clock
}

func kindOf(t *testing.T, n *pt.Node, link, addr string) (pipeline.AddressKind, bool) {
	t.Helper()
	li, ok := ipv6.Link(n.Stack, link)
	if !ok {
		t.Fatalf("no IPv6 state for link %s", link)
	}
	for _, a := range li.Addresses {
		if a.Prefix.Addr() == mustAddr(addr) {
			return a.Kind, true
		}
	}
	return 0, false
}

// Duplicate address detection: a configured address stays tentative (not
// a destination, not a source) until its probe went unanswered for a
// second; an advertisement for it, or another node's probe for it, makes it
// a duplicate for good.
func TestDAD(t *testing.T) {
	const ll = "fe80::ff:fe00:a02" // EUI-64 of 02:00:00:00:0a:02
	t.Run("unique", func(t *testing.T) {
		h, l, clock := hostAlone(t, "", `"2001:db8:1::2/64"`)
		if k, _ := kindOf(t, h, "eth0", "2001:db8:1::2"); k != pipeline.PermanentTentative {
			t.Fatalf("kind %v before DAD, want tentative", k)
		}
		if _, local := h.Stack.Generation().IsLocal6(a16("2001:db8:1::2")); local {
			t.Error("a tentative address is local")
		}
		clock.Advance(0)
		probes := onlyICMP6(pt.Drain(l), true, wire.ICMPv6NeighborSolicitation)
		var targets []netip.Addr
		for _, p := range probes {
			m := checkICMP6(t, p, "::", "", wire.ICMPv6NeighborSolicitation, 0)
			s := wire.NDPNeighborSolicitation(m[4:])
			if len(s.Options()) != 0 {
				t.Error("a DAD probe carries options")
			}
			tg := netip.AddrFrom16(s.Target())
			if got := netip.AddrFrom16(wire.IPv6(p).Dst()); got != netip.AddrFrom16(solicited(tg)) {
				t.Errorf("probe for %s sent to %s", tg, got)
			}
			targets = append(targets, tg)
		}
		slices.SortFunc(targets, func(a, b netip.Addr) int { return a.Compare(b) })
		if !slices.Equal(targets, []netip.Addr{mustAddr("2001:db8:1::2"), mustAddr(ll)}) {
			t.Fatalf("DAD probes for %v", targets)
		}
		clock.Advance(time.Second)
		if k, _ := kindOf(t, h, "eth0", "2001:db8:1::2"); k != pipeline.Permanent {
			t.Errorf("kind %v after DAD, want permanent", k)
		}
		if k, _ := kindOf(t, h, "eth0", ll); k != pipeline.Temporary {
			t.Errorf("link-local kind %v after DAD, want usable", k)
		}
		h.WantCounters(t, "ndp", map[string]uint64{"dad_started": 2, "dad_ok": 2, "dad_failed": 0})
		// Now it answers.
		l.InjectFrames([][]byte{frame(mac(macA), mac(macB), echo6("2001:db8:1::7", "2001:db8:1::2", 64, 1, 1, nil))})
		h.Stack.NIC("eth0")
		nic, _ := h.Stack.NIC("eth0")
		nic.Neighbors().Set(pipeline.NeighborEntry{Addr: mustAddr("2001:db8:1::7"), LinkAddr: mac(macB), State: pipeline.NeighborStatic})
		l.InjectFrames([][]byte{frame(mac(macA), mac(macB), echo6("2001:db8:1::7", "2001:db8:1::2", 64, 1, 2, nil))})
		if n := len(onlyICMP6(pt.Drain(l), true, wire.ICMPv6EchoReply)); n < 1 {
			t.Errorf("no echo reply once DAD passed (%s)", h.DumpCounters())
		}
	})
	t.Run("advertised", func(t *testing.T) {
		h, l, clock := hostAlone(t, "", `"2001:db8:1::2/64"`)
		clock.Advance(0)
		pt.Drain(l)
		// Another node owns the address and says so.
		l.InjectFrames([][]byte{frame(mac("33:33:00:00:00:01"), mac(macB), na("2001:db8:1::2", "ff02::1", "2001:db8:1::2", wire.NDPNAOverride, macB))})
		clock.Advance(2 * time.Second)
		if k, _ := kindOf(t, h, "eth0", "2001:db8:1::2"); k != pipeline.PermanentTentative {
			t.Errorf("kind %v, want tentative for good", k)
		}
		li, _ := ipv6.Link(h.Stack, "eth0")
		if !slices.Equal(li.Duplicates, []netip.Addr{mustAddr("2001:db8:1::2")}) {
			t.Errorf("duplicates %v", li.Duplicates)
		}
		h.WantCounters(t, "ndp", map[string]uint64{"dad_failed": 1, "dad_ok": 1})
		// Not a destination, not a source.
		if _, local := h.Stack.Generation().IsLocal6(a16("2001:db8:1::2")); local {
			t.Error("a duplicate address is local")
		}
		nic, _ := h.Stack.Generation().NIC(1)
		if src, _ := nic.SourceAddress(mustAddr("2001:db8:1::9")); src == mustAddr("2001:db8:1::2") {
			t.Error("a duplicate address is used as a source")
		}
		// And it never answers for it.
		l.InjectFrames([][]byte{frame(mac("33:33:ff:00:00:02"), mac(macB), ns("2001:db8:1::9", "ff02::1:ff00:2", "2001:db8:1::2", macB))})
		if n := len(onlyICMP6(pt.Drain(l), true, wire.ICMPv6NeighborAdvertisement)); n != 0 {
			t.Errorf("%d advertisements for a duplicate address", n)
		}
	})
	t.Run("probed", func(t *testing.T) {
		h, l, clock := hostAlone(t, "", `"2001:db8:1::2/64"`)
		clock.Advance(0)
		pt.Drain(l)
		// Another node runs DAD for the same address at the same time.
		l.InjectFrames([][]byte{frame(mac("33:33:ff:00:00:02"), mac(macB), ns("::", "ff02::1:ff00:2", "2001:db8:1::2", ""))})
		clock.Advance(2 * time.Second)
		if k, _ := kindOf(t, h, "eth0", "2001:db8:1::2"); k != pipeline.PermanentTentative {
			t.Errorf("kind %v, want tentative", k)
		}
		h.WantCounters(t, "ndp", map[string]uint64{"dad_failed": 1})
	})
	t.Run("off", func(t *testing.T) {
		h, _, _ := hostAlone(t, ", dad: {transmits: 0}", `"2001:db8:1::2/64"`)
		if k, _ := kindOf(t, h, "eth0", "2001:db8:1::2"); k != pipeline.Permanent {
			t.Errorf("kind %v without DAD, want permanent", k)
		}
	})
}

func solicited(a netip.Addr) [16]byte {
	x := a.As16()
	return [16]byte{0: 0xff, 1: 0x02, 11: 1, 12: 0xff, 13: x[13], 14: x[14], 15: x[15]}
}

// A reload keeps the DAD state of the addresses it keeps; a new address is
// probed, a removed one forgotten.
func TestDADAcrossReload(t *testing.T) {
	h, l, clock := hostAlone(t, "", `"2001:db8:1::2/64"`)
	clock.Advance(0)
	clock.Advance(1100 * time.Millisecond)
	pt.Drain(l)
	if err := h.Reload(`
name: host
modules: [{module: network.ipv6}]
links:
  - {name: eth0, module: link.channel, framing: ethernet, mac: "` + macA + `", addresses: ["2001:db8:1::2/64", "2001:db8:1::3/64"]}
`); err != nil {
		t.Fatal(err)
	}
	if k, _ := kindOf(t, h, "eth0", "2001:db8:1::2"); k != pipeline.Permanent {
		t.Errorf("kept address %v after reload", k)
	}
	if k, _ := kindOf(t, h, "eth0", "2001:db8:1::3"); k != pipeline.PermanentTentative {
		t.Errorf("new address %v after reload, want tentative", k)
	}
	clock.Advance(0)
	probes := onlyICMP6(pt.Drain(l), true, wire.ICMPv6NeighborSolicitation)
	if len(probes) != 1 || netip.AddrFrom16(wire.NDPNeighborSolicitation(wire.IPv6(probes[0]).Payload()[4:]).Target()) != mustAddr("2001:db8:1::3") {
		t.Fatalf("%d probes after the reload, want one for the new address", len(probes))
	}
	clock.Advance(time.Second)
	if k, _ := kindOf(t, h, "eth0", "2001:db8:1::3"); k != pipeline.Permanent {
		t.Errorf("new address %v after DAD", k)
	}
	h.WantCounters(t, "ndp", map[string]uint64{"dad_started": 3, "dad_ok": 3})
}
