package ipv6_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// A reload that reopens a link (its LinkKey changes: here the channel
// queue size) keeps everything the link had: the NIC and its ID, its
// counters, its configured, link-local and SLAAC addresses, the routes
// Router Advertisements taught it, its neighbors and its NDP state. The
// host then sends through the learnt default route at once, to the
// router's known MAC, from its SLAAC address, on the new endpoint.
func TestReopenKeepsLinkState(t *testing.T) {
	name := pt.UniqueName(t)
	clock := pt.NewManualClock()
	opts := pipeline.Options{Clock: clock}
	r := pt.NewNode(t, "router", raRouterYAML, opts)
	host := func(extra string) string {
		return `
name: host
modules: [network.ipv6, {module: transport.collect, protocol: 58, name: "` + name + `"}]
links:
  - {name: eth0, module: link.channel, framing: ethernet, mac: "` + macA + `", addresses: ["2001:db8:9::5/64"]` + extra + `}
`
	}
	h := pt.NewNode(t, "host", host(""), opts)
	pt.Connect(t, h, "eth0", r, "lan")
	settle(clock, 8*time.Second)
	const slaac = "2001:db8:1::ff:fe00:a02"
	pt.Eventually(t, 5*time.Second, func() bool {
		k, ok := kindOf(t, h, "eth0", slaac)
		return ok && k == pipeline.Temporary
	}, "no SLAAC address (%s | %s)", h.DumpCounters(), r.DumpCounters())
	routerLL := mustAddr("fe80::ff:fe00:a01")
	sendEcho(t, h, "2001:db8:2::1", 3, 1, []byte("before"))
	pt.Collected(name).Wait(t, 5*time.Second)

	nic, _ := h.Stack.NIC("eth0")
	oldEP := h.Link(t, "eth0")
	addrs := func() []string {
		ni, _ := h.Stack.Generation().NICByName("eth0")
		var out []string
		for _, a := range ni.Addresses(6) {
			out = append(out, a.Prefix.String()+"/"+a.Kind.String())
		}
		return out
	}
	beforeAddrs := addrs()
	beforeRoutes := h.Stack.DynamicRoutes()
	beforeLink, _ := ipv6.Link(h.Stack, "eth0")
	neigh, ok := nic.Neighbors().Entry(routerLL)
	if !ok {
		t.Fatal("no neighbor entry for the router before the reload")
	}
	rx := nic.Stats.RxPackets.Load()
	if len(beforeAddrs) != 3 || len(beforeRoutes) == 0 || rx == 0 {
		t.Fatalf("before: addresses %v routes %v rx %d", beforeAddrs, beforeRoutes, rx)
	}

	if err := h.Reload(host(", queue: 256")); err != nil {
		t.Fatal(err)
	}
	if h.Link(t, "eth0") == oldEP {
		t.Fatal("the queue change did not reopen the link")
	}
	if n2, _ := h.Stack.NIC("eth0"); n2 != nic {
		t.Fatal("reopening the link made another NIC")
	}
	if got := addrs(); !slices.Equal(got, beforeAddrs) {
		t.Errorf("addresses %v, before the reload %v", got, beforeAddrs)
	}
	if got := h.Stack.DynamicRoutes(); !slices.Equal(got, beforeRoutes) {
		t.Errorf("dynamic routes %v, before %v", got, beforeRoutes)
	}
	li, _ := ipv6.Link(h.Stack, "eth0")
	if !slices.Equal(li.Routers, beforeLink.Routers) || !slices.Equal(li.Prefixes, beforeLink.Prefixes) || li.MTU != beforeLink.MTU {
		t.Errorf("NDP state %+v, before %+v", li, beforeLink)
	}
	if e, ok := nic.Neighbors().Entry(routerLL); !ok || e.LinkAddr != neigh.LinkAddr {
		t.Errorf("neighbor %v %v, before %v", e, ok, neigh)
	}
	if got := nic.Stats.RxPackets.Load(); got < rx {
		t.Errorf("rx_packets %d, before %d", got, rx)
	}
	if got := h.Counter("ndp", "dad_started"); got != 3 {
		t.Errorf("dad_started %d: the reopened link ran DAD again", got)
	}

	// The new endpoint sends at once through the learnt route to the
	// router's MAC (no neighbor solicitation), from the SLAAC address.
	sendEcho(t, h, "2001:db8:2::1", 3, 2, []byte("after"))
	var echo []byte
	for _, f := range pt.Drain(h.Link(t, "eth0")) {
		eth := wire.Ethernet(f)
		if eth.Type() == wire.EtherTypeIPv6 && f[wire.EthernetHeaderSize+40] == wire.ICMPv6EchoRequest {
			echo = f
		}
	}
	if echo == nil {
		t.Fatal("no echo request on the reopened endpoint")
	}
	if dst := wire.Ethernet(echo).Dst(); dst != mac(macRA) {
		t.Errorf("echo to %v, want the router's %s", dst, macRA)
	}
	if src := netip.AddrFrom16([16]byte(echo[wire.EthernetHeaderSize+8 : wire.EthernetHeaderSize+24])); src.String() != slaac {
		t.Errorf("echo from %s, want %s", src, slaac)
	}
	if strings.Contains(strings.Join(addrs(), " "), "tentative") {
		t.Errorf("an address went tentative: %v", addrs())
	}
}

// While a link's device is gone the routes Router Advertisements taught it
// are withdrawn with the others (the host has no route to the far side any
// more); its addresses stay; when the device is back the learnt routes
// return with it.
func TestLinkDownWithdrawsLearntRoutes(t *testing.T) {
	dev := pt.UniqueName(t)
	clock := pt.NewManualClock()
	opts := pipeline.Options{Clock: clock}
	r := pt.NewNode(t, "router", raRouterYAML, opts)
	h := pt.NewNode(t, "host", `
name: host
modules: [network.ipv6]
links:
  - {name: eth0, module: link.channel, framing: ethernet, mac: "`+macA+`", device: `+dev+`}
`, opts)
	pt.Connect(t, h, "eth0", r, "lan")
	settle(clock, 8*time.Second)
	far := mustAddr("2001:db8:2::1")
	pt.Eventually(t, 5*time.Second, func() bool { _, ok := h.Stack.Route(far); return ok }, "no learnt route (%s)", h.DumpCounters())
	learnt := h.Stack.DynamicRoutes()
	nic, _ := h.Stack.NIC("eth0")
	addrs := len(nic.DynamicAddresses())

	channel.RemoveDevice(dev)
	defer channel.RestoreDevice(dev)
	pt.Eventually(t, 5*time.Second, func() bool { return !nic.State().Up }, "link still up")
	if rt, ok := h.Stack.Route(far); ok {
		t.Errorf("learnt route kept while the link is down: %v", rt)
	}
	if rs := h.Stack.DynamicRoutes(); len(rs) != 0 {
		t.Errorf("dynamic routes while the link is down: %v", rs)
	}
	if got := len(nic.DynamicAddresses()); got != addrs {
		t.Errorf("%d dynamic addresses while down, %d before", got, addrs)
	}
	// And it solicits routers again once the link is back, on the new
	// device, as a Linux host whose device comes up does (after the
	// random delay of RFC 4861 §6.3.7, at most a second of stack clock).
	rs := h.Counter("ndp", "rs_out")
	channel.RestoreDevice(dev)
	for i := 0; i < 100 && !nic.State().Up; i++ {
		clock.Advance(100 * time.Millisecond)
		time.Sleep(time.Millisecond)
	}
	pt.Eventually(t, 5*time.Second, func() bool { return nic.State().Up }, "link not back up")
	if got := h.Stack.DynamicRoutes(); !slices.Equal(got, learnt) {
		t.Errorf("learnt routes after the link came back %v, before %v", got, learnt)
	}
	for i := 0; i < 30 && h.Counter("ndp", "rs_out") == rs; i++ {
		clock.Advance(100 * time.Millisecond)
		time.Sleep(time.Millisecond)
	}
	if h.Counter("ndp", "rs_out") == rs {
		t.Errorf("no router solicitation within 3 s of the link coming back (%s)", h.DumpCounters())
	}
}

// A link whose device comes back after it was gone runs duplicate address
// detection again for every address, as Linux's addrconf does when a
// device comes up: the addresses stay, tentative (not local, not a
// source) until their probes go unanswered; one another node on the new
// link answers for becomes a duplicate.
func TestLinkUpRerunsDAD(t *testing.T) {
	dev := pt.UniqueName(t)
	clock := pt.NewManualClock()
	h := pt.NewNode(t, "host", `
name: host
modules: [network.ipv6]
links:
  - {name: eth0, module: link.channel, framing: ethernet, mac: "`+macA+`", device: `+dev+`, addresses: ["2001:db8:1::2/64", "2001:db8:1::3/64"]}
`, pipeline.Options{Clock: clock})
	const ll = "fe80::ff:fe00:a02"
	settle(clock, 3*time.Second)
	h.WantCounters(t, "ndp", map[string]uint64{"dad_started": 3, "dad_ok": 3, "dad_failed": 0})
	for _, a := range []string{"2001:db8:1::2", "2001:db8:1::3", ll} {
		if _, local := h.Stack.Generation().IsLocal6(a16(a)); !local {
			t.Fatalf("%s not usable after the first DAD", a)
		}
	}
	nic, _ := h.Stack.NIC("eth0")

	channel.RemoveDevice(dev)
	defer channel.RestoreDevice(dev)
	pt.Eventually(t, 5*time.Second, func() bool { return !nic.State().Up }, "link still up")
	if got := h.Counter("ndp", "dad_started"); got != 3 {
		t.Errorf("dad_started %d while the link is down", got)
	}
	channel.RestoreDevice(dev)
	for i := 0; i < 100 && !nic.State().Up; i++ {
		clock.Advance(100 * time.Millisecond)
		time.Sleep(time.Millisecond)
	}
	pt.Eventually(t, 5*time.Second, func() bool { return nic.State().Up }, "link not back up")
	if got := h.Counter("ndp", "dad_started"); got != 6 {
		t.Fatalf("dad_started %d after the link came back, want 6 (%s)", got, h.DumpCounters())
	}
	for _, a := range []string{"2001:db8:1::2", "2001:db8:1::3", ll} {
		if k, _ := kindOf(t, h, "eth0", a); k != pipeline.PermanentTentative {
			t.Errorf("%s kind %v right after link up, want tentative", a, k)
		}
		if _, local := h.Stack.Generation().IsLocal6(a16(a)); local {
			t.Errorf("%s local while DAD runs again", a)
		}
	}
	// The probes leave on the new endpoint; another node answers for one.
	l := h.Link(t, "eth0")
	clock.Advance(0)
	var targets []netip.Addr
	for _, p := range onlyICMP6(pt.Drain(l), true, wire.ICMPv6NeighborSolicitation) {
		m := checkICMP6(t, p, "::", "", wire.ICMPv6NeighborSolicitation, 0)
		targets = append(targets, netip.AddrFrom16(wire.NDPNeighborSolicitation(m[4:]).Target()))
	}
	slices.SortFunc(targets, func(a, b netip.Addr) int { return a.Compare(b) })
	if want := []netip.Addr{mustAddr("2001:db8:1::2"), mustAddr("2001:db8:1::3"), mustAddr(ll)}; !slices.Equal(targets, want) {
		t.Fatalf("DAD probes after link up for %v, want %v", targets, want)
	}
	l.InjectFrames([][]byte{frame(mac("33:33:00:00:00:01"), mac(macB), na("2001:db8:1::3", "ff02::1", "2001:db8:1::3", wire.NDPNAOverride, macB))})
	clock.Advance(2 * time.Second)
	h.WantCounters(t, "ndp", map[string]uint64{"dad_ok": 5, "dad_failed": 1})
	if _, local := h.Stack.Generation().IsLocal6(a16("2001:db8:1::2")); !local {
		t.Error("2001:db8:1::2 not usable after DAD on link up")
	}
	if _, local := h.Stack.Generation().IsLocal6(a16("2001:db8:1::3")); local {
		t.Error("2001:db8:1::3, a duplicate on the new link, is local")
	}
	li, _ := ipv6.Link(h.Stack, "eth0")
	if !slices.Equal(li.Duplicates, []netip.Addr{mustAddr("2001:db8:1::3")}) {
		t.Errorf("duplicates %v", li.Duplicates)
	}
}
