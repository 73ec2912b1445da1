package ipv6_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

const raRouterYAML = `
name: router
modules:
  - module: network.ipv6
    router_advertisements:
      links:
        lan: {prefixes: ["2001:db8:1::/64"], mtu: 1480, rdnss: ["2001:db8::53"], interval: 200s, lifetime: 1800s}
links:
  - {name: lan, module: link.channel, framing: ethernet, mac: "` + macRA + `", addresses: ["2001:db8:1::1/64"]}
  - {name: wan, module: link.channel, framing: ethernet, mac: "` + macRB + `", addresses: ["2001:db8:2::1/64"]}
forwarding: {ipv6: true}
`

// A host pipeline with no address and no route configures itself from a
// router pipeline: link-local address (DAD), router solicitation, router
// advertisement, SLAAC address (DAD), default route, on-link prefix, MTU
// and RDNSS; then it pings the router's far address through the learnt
// default route.
func TestSLAACFromRouter(t *testing.T) {
	pt.CheckGoroutines(t)
	name := pt.UniqueName(t)
	clock := pt.NewManualClock()
	opts := pipeline.Options{Clock: clock}
	r := pt.NewNode(t, "router", raRouterYAML, opts)
	h := pt.NewNode(t, "host", `
name: host
modules: [network.ipv6, {module: transport.collect, protocol: 58, name: "`+name+`"}]
links:
  - {name: eth0, module: link.channel, framing: ethernet, mac: "`+macA+`"}
`, opts)
	pt.Connect(t, h, "eth0", r, "lan")
	settle(clock, 8*time.Second)

	const slaac = "2001:db8:1::ff:fe00:a02" // EUI-64 of 02:00:00:00:0a:02
	routerLL := mustAddr("fe80::ff:fe00:a01")
	pt.Eventually(t, 5*time.Second, func() bool {
		k, ok := kindOf(t, h, "eth0", slaac)
		return ok && k == pipeline.Temporary
	}, "no SLAAC address (%s | %s)", h.DumpCounters(), r.DumpCounters())
	li, _ := ipv6.Link(h.Stack, "eth0")
	if !slices.Equal(li.Routers, []netip.Addr{routerLL}) {
		t.Errorf("routers %v, want [%s]", li.Routers, routerLL)
	}
	if !slices.Equal(li.Prefixes, []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/64")}) {
		t.Errorf("prefixes %v", li.Prefixes)
	}
	if !slices.Equal(ipv6.RDNSS(h.Stack, "eth0"), []netip.Addr{mustAddr("2001:db8::53")}) {
		t.Errorf("RDNSS %v", li.RDNSS)
	}
	if li.MTU != 1480 || li.HopLimit != 64 {
		t.Errorf("MTU %d hop limit %d, want 1480 and 64", li.MTU, li.HopLimit)
	}
	if rl, _ := ipv6.Link(r.Stack, "lan"); !rl.Router {
		t.Error("the router does not call its link a router link")
	}
	// The learnt routes are in the stack's dynamic routes.
	rt, ok := h.Stack.Route(mustAddr("2001:db8:2::1"))
	if !ok || rt.Via != routerLL {
		t.Errorf("route to 2001:db8:2::1: %v %v", rt, ok)
	}
	h.WantCounters(t, "ndp", map[string]uint64{"slaac_addresses": 1, "routers_learnt": 1, "prefixes_learnt": 1, "dad_failed": 0})

	// Ping the router's other side through the default route.
	for seq := uint16(1); seq <= 2; seq++ {
		sendEcho(t, h, "2001:db8:2::1", 3, seq, []byte("slaac"))
		reply := pt.Collected(name).Wait(t, 5*time.Second)
		checkEchoReply(t, reply, "2001:db8:2::1", slaac, 64, 3, seq, []byte("slaac"))
	}
	// And the router reaches the host's new address on-link.
	if got := r.Counter("ipv6", "icmp_echo_reply_out"); got != 2 {
		t.Errorf("router echo replies %d", got)
	}
}

// raRouterAlone is a router advertising on link lan (interval 30 s,
// lifetime 90 s) whose link the test reads by hand.
func TestRouterAdvertisementSchedule(t *testing.T) {
	clock := pt.NewManualClock()
	r := pt.NewNode(t, "router", `
name: router
modules:
  - module: network.ipv6
    router_advertisements:
      links:
        lan: {prefixes: ["2001:db8:1::/64", "2001:db8:5::/64"], rdnss: ["2001:db8::53", "2001:db8::54"], interval: 30s, lifetime: 90s, hop_limit: 32}
links:
  - {name: lan, module: link.channel, framing: ethernet, mac: "`+macRA+`", addresses: ["2001:db8:1::1/64"]}
forwarding: {ipv6: true}
`, pipeline.Options{Clock: clock})
	l := r.Link(t, "lan")
	start := clock.Now()
	var times []time.Duration
	var first []byte
	for clock.Now().Sub(start) < 600*time.Second {
		clock.Advance(100 * time.Millisecond)
		for _, p := range onlyICMP6(pt.Drain(l), true, wire.ICMPv6RouterAdvertisement) {
			times = append(times, clock.Now().Sub(start))
			if first == nil {
				first = p
			}
		}
	}
	if len(times) < 20 {
		t.Fatalf("%d advertisements in 600 s", len(times))
	}
	// The first waits for the link-local address (DAD, 1 s).
	if times[0] < time.Second || times[0] > 1200*time.Millisecond {
		t.Errorf("first advertisement at %v", times[0])
	}
	for i := 1; i < len(times); i++ {
		gap := times[i] - times[i-1]
		lo, hi := 10*time.Second, 30*time.Second+100*time.Millisecond
		if i <= 3 {
			hi = 16*time.Second + 100*time.Millisecond // MAX_INITIAL_RTR_ADVERT_INTERVAL
		}
		if gap < lo-100*time.Millisecond || gap > hi {
			t.Errorf("advertisement %d after %v", i, gap)
		}
	}
	// Its contents.
	m := checkICMP6(t, first, "fe80::ff:fe00:a01", "ff02::1", wire.ICMPv6RouterAdvertisement, 0)
	if wire.IPv6(first).HopLimit() != 255 {
		t.Error("hop limit not 255")
	}
	ra := wire.NDPRouterAdvertisement(m[4:])
	if ra.RouterLifetime() != 90 || ra.CurHopLimit() != 32 {
		t.Errorf("router lifetime %d hop limit %d", ra.RouterLifetime(), ra.CurHopLimit())
	}
	var prefixes []netip.Prefix
	var dns []netip.Addr
	it := ra.Options().Iter()
	for it.Next() {
		o := it.Option()
		if pi, ok := o.PrefixInfo(); ok {
			prefixes = append(prefixes, netip.PrefixFrom(netip.AddrFrom16(pi.Prefix()), int(pi.PrefixLength())))
			if !pi.OnLink() || !pi.Autonomous() || pi.ValidLifetime() != 86400 || pi.PreferredLifetime() != 14400 {
				t.Errorf("prefix option flags %#x lifetimes %d %d", pi.Flags(), pi.ValidLifetime(), pi.PreferredLifetime())
			}
		}
		if rd, ok := o.RDNSS(); ok {
			for i := 0; i < rd.Count(); i++ {
				dns = append(dns, netip.AddrFrom16(rd.Address(i)))
			}
			if rd.Lifetime() != 90 {
				t.Errorf("RDNSS lifetime %d, want 3 × interval", rd.Lifetime())
			}
		}
		if ll, ok := o.LinkLayerAddress(); ok && ll != mac(macRA) {
			t.Errorf("source link-layer address %s", ll)
		}
	}
	if len(prefixes) != 2 || len(dns) != 2 {
		t.Errorf("prefixes %v RDNSS %v", prefixes, dns)
	}

	// A solicitation is answered, but not sooner than 3 s after the last
	// advertisement.
	clock.Advance(time.Second)
	pt.Drain(l)
	rs := ndpPacket("fe80::1234", "ff02::2", wire.ICMPv6RouterSolicitation,
		wire.AppendNDPLinkLayerAddress(make([]byte, 4), wire.NDPOptionSourceLinkLayerAddress, mac(macA)))
	l.InjectFrames([][]byte{frame(mac("33:33:00:00:00:02"), mac(macA), rs)})
	got := len(onlyICMP6(pt.Drain(l), true, wire.ICMPv6RouterAdvertisement))
	clock.Advance(3 * time.Second)
	got += len(onlyICMP6(pt.Drain(l), true, wire.ICMPv6RouterAdvertisement))
	if got < 1 {
		t.Errorf("no advertisement after a solicitation (%s)", r.DumpCounters())
	}
	if e := neighbor(t, r, "lan", "fe80::1234"); e.LinkAddr != mac(macA) {
		t.Errorf("the solicitation's source made no neighbor entry: %+v", e)
	}
}

// A host learns from an advertisement and forgets as the lifetimes run
// out: the preferred lifetime deprecates the SLAAC address, the router
// lifetime removes the default route, the RDNSS lifetime the servers, the
// valid lifetime the prefix and the address.
func TestRouterAdvertisementLifetimes(t *testing.T) {
	h, l, clock := hostAlone(t, "", "")
	clock.Advance(0)
	clock.Advance(1100 * time.Millisecond) // link-local DAD
	pt.Drain(l)
	body := make([]byte, wire.NDPRouterAdvertisementSize)
	wire.NDPRouterAdvertisement(body).Encode(&wire.NDPRouterAdvertisementFields{CurHopLimit: 50, RouterLifetime: 30})
	body = wire.AppendNDPLinkLayerAddress(body, wire.NDPOptionSourceLinkLayerAddress, mac(macRA))
	body = wire.AppendNDPPrefixInfo(body, &wire.NDPPrefixInfoFields{PrefixLength: 64, Flags: wire.NDPPrefixOnLink | wire.NDPPrefixAutonomous,
		ValidLifetime: 60, PreferredLifetime: 20, Prefix: a16("2001:db8:7::")})
	body = wire.AppendNDPRDNSS(body, 40, [][16]byte{a16("2001:db8::53")})
	l.InjectFrames([][]byte{frame(mac("33:33:00:00:00:01"), mac(macRA), ndpPacket("fe80::1", "ff02::1", wire.ICMPv6RouterAdvertisement, body))})

	const addr = "2001:db8:7::ff:fe00:a02"
	if k, ok := kindOf(t, h, "eth0", addr); !ok || k != pipeline.PermanentTentative {
		t.Fatalf("SLAAC address kind %v %v, want tentative (DAD)", k, ok)
	}
	clock.Advance(1100 * time.Millisecond)
	if k, _ := kindOf(t, h, "eth0", addr); k != pipeline.Temporary {
		t.Fatalf("SLAAC address kind %v after DAD", k)
	}
	if _, ok := h.Stack.Route(mustAddr("2001:db8:99::1")); !ok {
		t.Fatal("no default route")
	}
	if r, ok := h.Stack.Route(mustAddr("2001:db8:7::99")); !ok || r.Via.IsValid() {
		t.Fatalf("on-link route %v %v", r, ok)
	}
	if e := neighbor(t, h, "eth0", "fe80::1"); e.LinkAddr != mac(macRA) {
		t.Errorf("the router's neighbor entry: %+v", e)
	}
	clock.Advance(19 * time.Second) // 20.1 s after the RA
	if k, _ := kindOf(t, h, "eth0", addr); k != pipeline.PermanentExpired {
		t.Errorf("kind %v after the preferred lifetime, want deprecated", k)
	}
	clock.Advance(10 * time.Second) // 30.1 s
	if _, ok := h.Stack.Route(mustAddr("2001:db8:99::1")); ok {
		t.Error("default route outlived the router lifetime")
	}
	if len(ipv6.RDNSS(h.Stack, "eth0")) != 1 {
		t.Error("RDNSS gone too early")
	}
	clock.Advance(10 * time.Second) // 40.1 s
	if len(ipv6.RDNSS(h.Stack, "eth0")) != 0 {
		t.Error("RDNSS outlived its lifetime")
	}
	clock.Advance(20 * time.Second) // 60.1 s
	if _, ok := kindOf(t, h, "eth0", addr); ok {
		t.Error("SLAAC address outlived the valid lifetime")
	}
	if _, ok := h.Stack.Route(mustAddr("2001:db8:7::99")); ok {
		t.Error("on-link route outlived the valid lifetime")
	}
	h.WantCounters(t, "ndp", map[string]uint64{"lifetimes_expired": 4})
}
