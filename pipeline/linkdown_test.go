package pipeline_test

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

func linkDownYAML(dev string) string {
	return `
name: router
modules: [network.ipv4, network.arp]
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, framing: ethernet, device: ` + dev + `, addresses: [10.0.2.1/24],
     neighbors: [{ip: 10.0.2.9, mac: "02:00:00:00:00:09"}]}
forwarding: {ipv4: true}
routes:
  - {to: 10.0.3.0/24, via: 10.0.2.3, link: b}
`
}

// routesThrough counts the running generation's routes through a NIC.
func routesThrough(s *pipeline.Stack, id pipeline.NICID) int {
	n := 0
	for _, r := range s.Generation().Routes().Routes() {
		if r.NIC == id {
			n++
		}
	}
	return n
}

// A device that disappears under a running stack: every route through it
// (connected and configured) is withdrawn, packets for it get ICMP net
// unreachable from the IP module, its dynamic neighbors go (static ones
// stay), the link shows as down with the reason and each failed reopen;
// when the device is back the stack reopens it on its retry timer (no
// reload), on the same NIC, and the routes and forwarding return.
func TestLinkDownAndUp(t *testing.T) {
	pt.CheckGoroutines(t)
	dev := pt.UniqueName(t)
	clock := pt.NewManualClock()
	r := pt.NewNode(t, "router", linkDownYAML(dev), pipeline.Options{Clock: clock})
	a := r.Link(t, "a")
	b := r.Link(t, "b")
	nic, _ := r.Stack.NIC("b")
	gen := r.Stack.Generation()
	nic.Neighbors().Set(pipeline.NeighborEntry{Addr: netip.MustParseAddr("10.0.2.2"), LinkAddr: wire.MAC{2, 0, 0, 0, 0, 2}, State: pipeline.NeighborReachable})

	a.InjectFrames([][]byte{pt.UDP4("10.0.1.2", "10.0.2.2", 1, 2, 64, nil), pt.UDP4("10.0.1.2", "10.0.3.5", 1, 2, 64, nil)})
	if got := len(pt.Drain(b)); got != 2 {
		t.Fatalf("before: %d packets forwarded on b, want 2", got)
	}
	if n := routesThrough(r.Stack, nic.ID()); n != 2 {
		t.Fatalf("before: %d routes through b, want 2", n)
	}
	if !nic.State().Up {
		t.Fatal("link b down before its device went")
	}

	channel.RemoveDevice(dev)
	pt.Eventually(t, 5*time.Second, func() bool { return !nic.State().Up }, "link b still up after its device went")
	st := nic.State()
	if !strings.Contains(st.Reason, "removed") || st.Downs != 1 {
		t.Errorf("state %+v: want the reason and one down", st)
	}
	if n := routesThrough(r.Stack, nic.ID()); n != 0 {
		t.Errorf("%d routes through the dead link b, want none: %v", n, r.Stack.Generation().Routes().Routes())
	}
	if rt, ok := r.Stack.Route(netip.MustParseAddr("10.0.3.5")); ok {
		t.Errorf("route to 10.0.3.5 through the dead link: %v", rt)
	}
	if r.Stack.Generation() != gen {
		t.Error("link down made a new generation")
	}
	if _, ok := nic.Neighbors().Entry(netip.MustParseAddr("10.0.2.2")); ok {
		t.Error("dynamic neighbor kept while the link is down")
	}
	if e, ok := nic.Neighbors().Entry(netip.MustParseAddr("10.0.2.9")); !ok || e.State != pipeline.NeighborStatic {
		t.Error("static neighbor lost while the link is down")
	}

	// Packets for destinations behind it: ICMP net unreachable, as for no
	// route.
	a.InjectFrames([][]byte{pt.UDP4("10.0.1.2", "10.0.2.2", 1, 2, 64, nil), pt.UDP4("10.0.1.2", "10.0.3.5", 1, 2, 64, nil)})
	back := pt.Drain(a)
	if len(back) != 2 {
		t.Fatalf("%d answers on a, want 2 ICMP errors", len(back))
	}
	for _, f := range back {
		pt.CheckIPv4(t, f, pt.SrcAddr("10.0.1.1"), pt.DstAddr("10.0.1.2"), pt.ICMP(wire.ICMPv4DstUnreachable, wire.ICMPv4NetUnreachable))
	}
	if got := r.Counter("ipv4", "no_route"); got != 2 {
		t.Errorf("ipv4 no_route %d, want 2", got)
	}
	txBefore := nic.Stats.TxPackets.Load()

	// Reopen attempts while the device is missing fail, are counted and
	// say why.
	clock.Advance(150 * time.Millisecond)
	pt.Eventually(t, 5*time.Second, func() bool { return nic.State().Attempts >= 1 }, "no reopen attempt after 150 ms")
	st = nic.State()
	if st.Up || !strings.Contains(st.Retry, "no such device") {
		t.Errorf("state after a failed reopen %+v", st)
	}

	// The device comes back: the next attempt (backoff 200 ms) reopens it.
	channel.RestoreDevice(dev)
	for i := 0; i < 50 && !nic.State().Up; i++ {
		clock.Advance(100 * time.Millisecond)
		time.Sleep(2 * time.Millisecond)
	}
	pt.Eventually(t, 5*time.Second, func() bool { return nic.State().Up }, "link b not back up: %+v", nic.State())
	if r.Stack.Generation() != gen {
		t.Error("link up made a new generation")
	}
	nb := r.Link(t, "b")
	if nb == b {
		t.Fatal("link b was not reopened")
	}
	if n2, _ := r.Stack.NIC("b"); n2 != nic {
		t.Fatal("reopening made another NIC")
	}
	if n := routesThrough(r.Stack, nic.ID()); n != 2 {
		t.Errorf("after: %d routes through b, want 2", n)
	}
	a.InjectFrames([][]byte{pt.UDP4("10.0.1.2", "10.0.3.5", 1, 2, 64, nil)})
	// 10.0.2.3 is resolved by ARP on the new endpoint.
	got := pt.Drain(nb)
	if len(got) != 1 || wire.Ethernet(got[0]).Type() != wire.EtherTypeARP {
		t.Fatalf("after: %d frames on b, want one ARP request", len(got))
	}
	a.InjectFrames([][]byte{pt.UDP4("10.0.1.2", "10.0.2.9", 1, 2, 64, nil)})
	if got := pt.Drain(nb); len(got) != 1 || wire.Ethernet(got[0]).Type() != wire.EtherTypeIPv4 {
		t.Fatalf("after: to the static neighbor %d frames, want 1", len(got))
	}
	if nic.Stats.TxPackets.Load() <= txBefore {
		t.Error("counters did not carry on")
	}
	if st := nic.State(); st.Downs != 1 || st.Reason != "" {
		t.Errorf("state after up %+v", st)
	}
}

// An unchanged file reloaded while a link is down retries at once, and a
// reload that drops the link ends the retries.
func TestLinkDownReloadRetries(t *testing.T) {
	pt.CheckGoroutines(t)
	dev := pt.UniqueName(t)
	clock := pt.NewManualClock()
	r := pt.NewNode(t, "router", linkDownYAML(dev), pipeline.Options{Clock: clock})
	nic, _ := r.Stack.NIC("b")
	channel.RemoveDevice(dev)
	pt.Eventually(t, 5*time.Second, func() bool { return !nic.State().Up }, "link b still up")
	channel.RestoreDevice(dev)
	if err := r.Reload(linkDownYAML(dev)); err != nil {
		t.Fatal(err)
	}
	pt.Eventually(t, 5*time.Second, func() bool { return nic.State().Up }, "an unchanged reload did not retry at once: %+v", nic.State())

	channel.RemoveDevice(dev)
	defer channel.RestoreDevice(dev)
	pt.Eventually(t, 5*time.Second, func() bool { return !nic.State().Up }, "link b still up")
	if err := r.Reload(`
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}
forwarding: {ipv4: true}
`); err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * time.Second)
	if _, ok := r.Stack.NIC("b"); ok {
		t.Fatal("link b still there")
	}
	if rs := r.Stack.Generation().Routes().Routes(); len(rs) != 1 {
		t.Errorf("routes %v", rs)
	}
}

// A reload that changes only a link's mtu reaches the device (SetMTU) and
// the stack's effective MTU, both ways.
func TestReloadMTUOnly(t *testing.T) {
	cfg := func(mtu int) string {
		return strings.Replace(routerYAML, "{name: b, module: link.channel, queue: 4096,", "{name: b, module: link.channel, queue: 4096, mtu: "+strconv.Itoa(mtu)+",", 1)
	}
	r := pt.NewNode(t, "router", cfg(1500), pipeline.Options{})
	b := r.Link(t, "b")
	for _, mtu := range []int{1280, 9000, 1400} {
		if err := r.Reload(cfg(mtu)); err != nil {
			t.Fatal(err)
		}
		if r.Link(t, "b") != b {
			t.Fatal("an mtu change reopened the link")
		}
		ni, _ := r.Stack.Generation().NICByName("b")
		if b.MTU() != mtu || ni.MTU() != mtu {
			t.Errorf("mtu %d: device %d, stack %d", mtu, b.MTU(), ni.MTU())
		}
	}
	// The forwarding path uses it: a 1401-byte DF packet is too big.
	big := pt.UDP4("10.0.1.2", "10.0.2.2", 1, 2, 64, make([]byte, 1401-28))
	wire.IPv4(big).SetFlagsFragmentOffset(wire.IPv4FlagDontFragment, 0)
	wire.IPv4(big).SetChecksum(0)
	wire.IPv4(big).SetChecksum(wire.IPv4(big).CalculateChecksum())
	r.Link(t, "a").InjectFrames([][]byte{big})
	back := pt.Drain(r.Link(t, "a"))
	if len(back) != 1 {
		t.Fatalf("%d answers to a too-big packet", len(back))
	}
	pt.CheckIPv4(t, back[0], pt.ICMP(wire.ICMPv4DstUnreachable, wire.ICMPv4FragmentationNeeded, pt.NextHopMTU(1400)))
}
