package pipeline_test

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/ipv4"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// The NUD state machine is protocol-neutral: these tests drive it through
// network.nudtest, a resolver that records its probes instead of speaking
// ARP or NDP, and feed it confirmations by hand, on a manual clock.

func init() { pipeline.RegisterModule(new(nudTestModule)) }

type nudTestModule struct {
	Name         string `yaml:"name"`
	MaxEntries   int    `yaml:"max_entries"`
	Pending      int    `yaml:"pending"`
	PendingTotal int    `yaml:"pending_total"`
}

func (*nudTestModule) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "network.nudtest",
		Summary: "test only: an IPv4 link-address resolver that records its probes",
		New:     func() pipeline.Module { return new(nudTestModule) },
	}
}

func (m *nudTestModule) NetworkProtocol() pipeline.NetworkProtocol {
	return &nudTestProto{m: m, rec: probesOf(m.Name)}
}

type probe struct {
	nic    pipeline.NICID
	addr   netip.Addr
	remote wire.MAC
}

type probeLog struct {
	mu  sync.Mutex
	all []probe
}

var (
	probeLogsMu sync.Mutex
	probeLogs   = map[string]*probeLog{}
)

func probesOf(name string) *probeLog {
	probeLogsMu.Lock()
	defer probeLogsMu.Unlock()
	if probeLogs[name] == nil {
		probeLogs[name] = &probeLog{}
	}
	return probeLogs[name]
}

// take returns and forgets the probes recorded so far.
func (l *probeLog) take() []probe {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.all
	l.all = nil
	return p
}

type nudTestProto struct {
	m   *nudTestModule
	rec *probeLog
}

func (p *nudTestProto) Number() pipeline.NetworkProtocolNumber { return 0x88b5 }
func (p *nudTestProto) NewEndpoint(pipeline.NetworkInterface) pipeline.NetworkEndpoint {
	return nudTestEndpoint{}
}
func (p *nudTestProto) ResolvesFor() pipeline.NetworkProtocolNumber {
	return pipeline.IPv4ProtocolNumber
}
func (p *nudTestProto) ResolveLinkAddress(b *pipeline.Batch, nic pipeline.NetworkInterface, pkt *pipeline.Packet) {
	b.Gen.Neighbors(nic.ID()).QueuePacket(b, pkt)
}
func (p *nudTestProto) LinkAddressRequest(b *pipeline.Batch, nic pipeline.NetworkInterface, addr netip.Addr, remote wire.MAC) bool {
	p.rec.mu.Lock()
	p.rec.all = append(p.rec.all, probe{nic: nic.ID(), addr: addr, remote: remote})
	p.rec.mu.Unlock()
	return true
}
func (p *nudTestProto) NUDConfigurations() pipeline.NUDConfigurations {
	// Factor 1: the reachable time is exactly BaseReachableTime (30 s).
	return pipeline.NUDConfigurations{
		MinRandomFactor: 1, MaxRandomFactor: 1,
		MaxEntries: p.m.MaxEntries, MaxPendingPackets: p.m.Pending, MaxPendingTotal: p.m.PendingTotal,
	}
}

type nudTestEndpoint struct{}

func (nudTestEndpoint) HandlePackets(b *pipeline.Batch, pkts []*pipeline.Packet) {
	for i, p := range pkts {
		if p != nil {
			pkts[i] = nil
			b.Drop(p, nil)
		}
	}
}
func (nudTestEndpoint) WritePackets(b *pipeline.Batch, _ pipeline.RouteInfo, _ pipeline.NetworkHeaderParams, pkts []*pipeline.Packet) {
	pipeline.ReleaseBatch(pkts)
}
func (nudTestEndpoint) ReturnError(_ *pipeline.Batch, pkt *pipeline.Packet, _ pipeline.TransportErrorKind) {
	pkt.Release()
}
func (nudTestEndpoint) Close() {}

// eventLog is a NUDDispatcher that records events.
type eventLog struct {
	mu  sync.Mutex
	all []string
}

func (l *eventLog) add(kind string, e pipeline.NeighborEntry) {
	l.mu.Lock()
	l.all = append(l.all, fmt.Sprintf("%s %s %s", kind, e.Addr, e.State))
	l.mu.Unlock()
}
func (l *eventLog) OnNeighborAdded(_ pipeline.NICID, e pipeline.NeighborEntry)   { l.add("added", e) }
func (l *eventLog) OnNeighborChanged(_ pipeline.NICID, e pipeline.NeighborEntry) { l.add("changed", e) }
func (l *eventLog) OnNeighborRemoved(_ pipeline.NICID, e pipeline.NeighborEntry) { l.add("removed", e) }

// expect waits until the events recorded so far, in order, are want (the
// dispatcher runs on a goroutine of the table's), and forgets them.
func (l *eventLog) expect(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		got := append([]string(nil), l.all...)
		l.mu.Unlock()
		if fmt.Sprint(got) == fmt.Sprint(want) {
			l.mu.Lock()
			l.all = l.all[len(got):]
			l.mu.Unlock()
			return
		}
		if time.Now().After(deadline) || len(got) > len(want) {
			t.Fatalf("events\n got %q\nwant %q", got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

var (
	macA  = wire.MAC{2, 0, 0, 0, 0x0a, 2}
	macRA = wire.MAC{2, 0, 0, 0, 0x0a, 1}
	macRB = wire.MAC{2, 0, 0, 0, 0x0b, 1}
	macB  = wire.MAC{2, 0, 0, 0, 0x0b, 2}
	macB2 = wire.MAC{2, 0, 0, 0, 0x0b, 0x22}
)

type nudRig struct {
	t      *testing.T
	clk    *pt.ManualClock
	r      *pt.Node
	ev     *eventLog
	probes *probeLog
}

// newNUDRig is a router (host A, 10.0.1.2, is a static neighbor on link a;
// link b, 10.0.2.0/24, has none) with network.nudtest as IPv4's resolver.
func newNUDRig(t *testing.T, extra string) *nudRig {
	name := t.Name()
	clk := pt.NewManualClock()
	ev := &eventLog{}
	cfg := fmt.Sprintf(`
name: nud
modules: [network.ipv4, {module: network.nudtest, name: %q%s}]
links:
  - {name: a, module: link.channel, framing: ethernet, mac: %q, addresses: [10.0.1.1/24],
     neighbors: [{ip: 10.0.1.2, mac: %q}]}
  - {name: b, module: link.channel, framing: ethernet, mac: %q, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
`, name, extra, macRA, macA, macRB)
	r := pt.NewNode(t, "router", cfg, pipeline.Options{Clock: clk, NUDDispatcher: ev})
	ev.expect(t, "added 10.0.1.2 PERMANENT")
	return &nudRig{t: t, clk: clk, r: r, ev: ev, probes: probesOf(name)}
}

// send injects n UDP packets from host A to dst into link a.
func (g *nudRig) send(dst string, n int) {
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = pt.EthFrame(macRA, macA, wire.EtherTypeIPv4, pt.UDP4("10.0.1.2", dst, uint16(1000+i), 7, 64, []byte("nud")))
	}
	g.r.Link(g.t, "a").InjectFrames(frames)
}

// read returns the frames the router wrote to a link.
func (g *nudRig) read(link string) [][]byte { return pt.Drain(g.r.Link(g.t, link)) }

func (g *nudRig) table(link string) *pipeline.NeighborTable {
	nic, ok := g.r.Stack.NIC(link)
	if !ok {
		g.t.Fatalf("no link %s", link)
	}
	return nic.Neighbors()
}

func (g *nudRig) state(link, addr string) pipeline.NeighborState {
	e, ok := g.table(link).Entry(netip.MustParseAddr(addr))
	if !ok {
		return pipeline.NeighborUnknown
	}
	return e.State
}

func (g *nudRig) wantState(link, addr string, want pipeline.NeighborState) {
	g.t.Helper()
	if got := g.state(link, addr); got != want {
		g.t.Fatalf("%s on %s is %s, want %s", addr, link, got, want)
	}
}

// confirm feeds the table of link b a confirmation, as a reply would.
func (g *nudRig) confirm(addr string, mac wire.MAC, f pipeline.ReachabilityConfirmationFlags) {
	nic, _ := g.r.Stack.NIC("b")
	g.r.Stack.Do(func(b *pipeline.Batch) {
		b.Gen.Neighbors(nic.ID()).HandleConfirmation(b, netip.MustParseAddr(addr), mac, f)
	})
}

func (g *nudRig) wantProbes(want ...probe) {
	g.t.Helper()
	got := g.probes.take()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		g.t.Fatalf("probes\n got %v\nwant %v", got, want)
	}
}

// wantFrames checks that n frames to dst left through link b.
func (g *nudRig) wantFrames(n int, dst wire.MAC) {
	g.t.Helper()
	out := g.read("b")
	if len(out) != n {
		g.t.Fatalf("%d frames on b, want %d (%s)", len(out), n, g.r.DumpCounters())
	}
	for _, f := range out {
		if eth := wire.Ethernet(f); eth.Dst() != dst || eth.Src() != macRB {
			g.t.Fatalf("frame %v -> %v, want -> %v", eth.Src(), eth.Dst(), dst)
		}
	}
}

var (
	solicited = pipeline.ReachabilityConfirmationFlags{Solicited: true, Override: true}
	b2        = netip.MustParseAddr("10.0.2.2")
)

func TestNUDIncompleteToReachable(t *testing.T) {
	g := newNUDRig(t, "")
	g.send("10.0.2.2", 2)
	g.wantState("b", "10.0.2.2", pipeline.NeighborIncomplete)
	g.wantProbes(probe{nic: 2, addr: b2}) // broadcast: no remote
	g.wantFrames(0, macB)
	g.ev.expect(t, "added 10.0.2.2 INCOMPLETE")

	g.confirm("10.0.2.2", macB, solicited)
	g.wantState("b", "10.0.2.2", pipeline.NeighborReachable)
	g.wantFrames(2, macB) // the queued packets, none lost
	g.ev.expect(t, "changed 10.0.2.2 REACHABLE")
	if mac, ok := g.table("b").Lookup(b2); !ok || mac != macB {
		t.Fatalf("Lookup %v %v", mac, ok)
	}
	// Forwarding through the entry now neither queues nor probes.
	g.send("10.0.2.2", 3)
	g.wantFrames(3, macB)
	g.wantProbes()
	if q, r := g.r.Counter("neighbor", "queued"), g.r.Counter("neighbor", "resolved"); q != 2 || r != 1 {
		t.Errorf("queued %d resolved %d", q, r)
	}
}

// REACHABLE → STALE → DELAY → REACHABLE, then STALE → DELAY → PROBE →
// REACHABLE, then PROBE → UNREACHABLE, then removed.
func TestNUDReachabilityCycle(t *testing.T) {
	g := newNUDRig(t, "")
	g.send("10.0.2.2", 1)
	g.confirm("10.0.2.2", macB, solicited)
	g.wantFrames(1, macB)
	g.probes.take()
	g.ev.expect(t, "added 10.0.2.2 INCOMPLETE", "changed 10.0.2.2 REACHABLE")

	// REACHABLE → STALE after the reachable time (exactly 30 s here).
	g.clk.Advance(29 * time.Second)
	g.wantState("b", "10.0.2.2", pipeline.NeighborReachable)
	g.clk.Advance(time.Second)
	g.wantState("b", "10.0.2.2", pipeline.NeighborStale)
	g.ev.expect(t, "changed 10.0.2.2 STALE")

	// STALE → DELAY on use; the packet leaves at once.
	g.send("10.0.2.2", 1)
	g.wantFrames(1, macB)
	g.wantState("b", "10.0.2.2", pipeline.NeighborDelay)
	g.ev.expect(t, "changed 10.0.2.2 DELAY")

	// DELAY → REACHABLE on a confirmation, without a probe.
	g.clk.Advance(4 * time.Second)
	g.confirm("10.0.2.2", macB, solicited)
	g.wantState("b", "10.0.2.2", pipeline.NeighborReachable)
	g.ev.expect(t, "changed 10.0.2.2 REACHABLE")
	g.clk.Advance(5 * time.Second) // the DELAY timer is gone
	g.wantState("b", "10.0.2.2", pipeline.NeighborReachable)
	g.wantProbes()

	// Again STALE, DELAY; DELAY → PROBE after DelayFirstProbeTime with a
	// unicast probe.
	g.clk.Advance(30 * time.Second)
	g.send("10.0.2.2", 1)
	g.wantFrames(1, macB)
	g.clk.Advance(5*time.Second - time.Millisecond)
	g.wantState("b", "10.0.2.2", pipeline.NeighborDelay)
	g.clk.Advance(time.Millisecond)
	g.wantState("b", "10.0.2.2", pipeline.NeighborProbe)
	g.wantProbes(probe{nic: 2, addr: b2, remote: macB})
	g.ev.expect(t, "changed 10.0.2.2 STALE", "changed 10.0.2.2 DELAY", "changed 10.0.2.2 PROBE")
	// PROBE still sends (the address is believed good).
	g.send("10.0.2.2", 1)
	g.wantFrames(1, macB)

	// PROBE → REACHABLE on a confirmation.
	g.confirm("10.0.2.2", macB, solicited)
	g.wantState("b", "10.0.2.2", pipeline.NeighborReachable)
	g.ev.expect(t, "changed 10.0.2.2 REACHABLE")

	// PROBE → UNREACHABLE after MaxUnicastProbes unanswered, one
	// RetransmitTimer apart.
	g.clk.Advance(30 * time.Second)
	g.send("10.0.2.2", 1)
	g.wantFrames(1, macB)
	g.clk.Advance(5 * time.Second)
	g.wantState("b", "10.0.2.2", pipeline.NeighborProbe)
	g.clk.Advance(time.Second)
	g.clk.Advance(time.Second)
	g.wantState("b", "10.0.2.2", pipeline.NeighborProbe)
	unicast := probe{nic: 2, addr: b2, remote: macB}
	g.wantProbes(unicast, unicast, unicast)
	g.clk.Advance(time.Second)
	g.wantState("b", "10.0.2.2", pipeline.NeighborUnreachable)
	g.wantProbes()
	g.ev.expect(t, "changed 10.0.2.2 STALE", "changed 10.0.2.2 DELAY", "changed 10.0.2.2 PROBE", "changed 10.0.2.2 FAILED")
	if _, ok := g.table("b").Lookup(b2); ok {
		t.Fatal("an UNREACHABLE entry is usable")
	}

	// UNREACHABLE is forgotten after GCStaleTime.
	g.clk.Advance(60 * time.Second)
	g.wantState("b", "10.0.2.2", pipeline.NeighborUnknown)
	g.ev.expect(t, "removed 10.0.2.2 FAILED")
}

// INCOMPLETE → UNREACHABLE after MaxMulticastProbes: the queued packets
// (bounded) are dropped and each gets ICMP host unreachable.
func TestNUDResolutionFails(t *testing.T) {
	g := newNUDRig(t, ", pending: 3")
	g.send("10.0.2.9", 5)
	g.wantState("b", "10.0.2.9", pipeline.NeighborIncomplete)
	if got := g.r.Counter("neighbor", "queue_dropped"); got != 2 {
		t.Fatalf("queue_dropped %d, want 2 (bound 3, 5 sent)", got)
	}
	nine := netip.MustParseAddr("10.0.2.9")
	bcast := probe{nic: 2, addr: nine}
	g.wantProbes(bcast)
	g.clk.Advance(time.Second)
	g.clk.Advance(time.Second)
	g.wantProbes(bcast, bcast)
	g.wantState("b", "10.0.2.9", pipeline.NeighborIncomplete)
	if back := g.read("a"); len(back) != 0 {
		t.Fatalf("%d frames back before the failure", len(back))
	}
	g.clk.Advance(time.Second)
	g.wantState("b", "10.0.2.9", pipeline.NeighborUnreachable)
	g.wantProbes()
	g.ev.expect(t, "added 10.0.2.9 INCOMPLETE", "changed 10.0.2.9 FAILED")

	back := g.read("a")
	if len(back) != 3 {
		t.Fatalf("%d ICMP errors back, want 3 (%s)", len(back), g.r.DumpCounters())
	}
	ports := map[uint16]bool{}
	for _, f := range back {
		eth := wire.Ethernet(f)
		if eth.Dst() != macA || eth.Type() != wire.EtherTypeIPv4 {
			t.Fatalf("error frame to %v type %#x", eth.Dst(), eth.Type())
		}
		pt.CheckIPv4(t, eth.Payload(), pt.SrcAddr("10.0.1.1"), pt.DstAddr("10.0.1.2"),
			pt.ICMP(wire.ICMPv4DstUnreachable, wire.ICMPv4HostUnreachable, func(m wire.ICMPv4) error {
				q := wire.IPv4(m.Payload())
				if q.Check() != nil || q.Dst() != [4]byte{10, 0, 2, 9} || q.TTL() != 63 {
					return fmt.Errorf("quote % x", m.Payload())
				}
				ports[uint16(q.Payload()[0])<<8|uint16(q.Payload()[1])] = true
				return nil
			}))
	}
	// The oldest two were dropped: the newest three waited.
	if !ports[1002] || !ports[1003] || !ports[1004] {
		t.Errorf("quoted source ports %v, want 1002..1004", ports)
	}
	if got := g.r.Counter("neighbor", "resolution_failed"); got != 3 {
		t.Errorf("resolution_failed %d", got)
	}
	if g.r.Counter("neighbor", "probes_sent") != 3 {
		t.Errorf("probes_sent %d", g.r.Counter("neighbor", "probes_sent"))
	}

	// A new packet restarts resolution (UNREACHABLE → INCOMPLETE).
	g.send("10.0.2.9", 1)
	g.wantState("b", "10.0.2.9", pipeline.NeighborIncomplete)
	g.wantProbes(bcast)
	g.ev.expect(t, "changed 10.0.2.9 INCOMPLETE")
}

// The per-NIC bound on all waiting packets.
func TestNUDPendingTotalBound(t *testing.T) {
	g := newNUDRig(t, ", pending: 3, pending_total: 4")
	g.send("10.0.2.20", 3)
	g.send("10.0.2.21", 3) // one fits; the others are dropped
	if got := g.r.Counter("neighbor", "queue_dropped"); got != 2 {
		t.Fatalf("queue_dropped %d, want 2", got)
	}
	g.confirm("10.0.2.20", macB, solicited)
	g.confirm("10.0.2.21", macB2, solicited)
	out := g.read("b")
	if len(out) != 4 {
		t.Fatalf("%d frames sent, want 4", len(out))
	}
}

func TestNUDStaticNeverChanges(t *testing.T) {
	g := newNUDRig(t, "")
	a2 := netip.MustParseAddr("10.0.1.2")
	ta := g.table("a")
	g.r.Stack.Do(func(b *pipeline.Batch) {
		ta.HandleConfirmation(b, a2, macB2, solicited)
		ta.HandleProbe(b, a2, macB2)
		ta.HandleUpperLevelConfirmation(b, a2)
	})
	g.clk.Advance(time.Hour)
	e, ok := ta.Entry(a2)
	if !ok || e.State != pipeline.NeighborStatic || e.LinkAddr != macA {
		t.Fatalf("static entry became %+v", e)
	}
	g.ev.expect(t)
}

// The entry bound: the least useful entry is evicted, never a static one.
func TestNUDEntryBound(t *testing.T) {
	g := newNUDRig(t, ", max_entries: 3")
	tb := g.table("b")
	g.send("10.0.2.10", 1)
	g.confirm("10.0.2.10", macB, solicited) // REACHABLE
	g.r.Stack.Do(func(b *pipeline.Batch) {
		tb.HandleProbe(b, netip.MustParseAddr("10.0.2.11"), macB2) // STALE
	})
	g.clk.Advance(100 * time.Millisecond)
	g.send("10.0.2.12", 1) // INCOMPLETE: the table is full
	if n := len(tb.Entries()); n != 3 {
		t.Fatalf("%d entries", n)
	}
	g.clk.Advance(100 * time.Millisecond)
	g.send("10.0.2.13", 1) // evicts the STALE one
	g.wantState("b", "10.0.2.11", pipeline.NeighborUnknown)
	g.clk.Advance(100 * time.Millisecond)
	g.send("10.0.2.14", 1) // then the REACHABLE one
	g.wantState("b", "10.0.2.10", pipeline.NeighborUnknown)
	g.clk.Advance(100 * time.Millisecond)
	g.send("10.0.2.15", 1) // then the oldest INCOMPLETE one, whose packet goes
	g.wantState("b", "10.0.2.12", pipeline.NeighborUnknown)
	if n := len(tb.Entries()); n != 3 {
		t.Fatalf("%d entries, bound 3", n)
	}
	if g.r.Counter("neighbor", "evicted") != 3 || g.r.Counter("neighbor", "queue_dropped") != 1 {
		t.Errorf("counters: %s", g.r.DumpCounters())
	}
	// Static entries count on their own table and are never evicted.
	g.wantState("a", "10.0.1.2", pipeline.NeighborStatic)
	// A table of statics only refuses new entries.
	tb.Set(pipeline.NeighborEntry{Addr: netip.MustParseAddr("10.0.2.100"), LinkAddr: macB, State: pipeline.NeighborStatic})
	tb.Set(pipeline.NeighborEntry{Addr: netip.MustParseAddr("10.0.2.101"), LinkAddr: macB, State: pipeline.NeighborStatic})
	tb.Set(pipeline.NeighborEntry{Addr: netip.MustParseAddr("10.0.2.102"), LinkAddr: macB, State: pipeline.NeighborStatic})
	for _, e := range tb.Entries() {
		if e.State != pipeline.NeighborStatic {
			tb.Remove(e.Addr)
		}
	}
	g.send("10.0.2.16", 1)
	if g.r.Counter("neighbor", "table_full") != 1 {
		t.Errorf("table_full not counted: %s", g.r.DumpCounters())
	}
}

// Set and Remove from Go: a packet waiting for an address leaves when it is
// set; Remove drops the waiting ones; STALE entries nobody uses are
// collected; a confirmation without Override keeps the link address.
func TestNUDSetRemoveAndOverride(t *testing.T) {
	g := newNUDRig(t, "")
	tb := g.table("b")
	g.send("10.0.2.2", 2)
	tb.Set(pipeline.NeighborEntry{Addr: b2, LinkAddr: macB, State: pipeline.NeighborReachable})
	g.wantFrames(2, macB)
	g.confirm("10.0.2.2", macB2, pipeline.ReachabilityConfirmationFlags{Solicited: true})
	if e, _ := tb.Entry(b2); e.State != pipeline.NeighborStale || e.LinkAddr != macB {
		t.Fatalf("without override: %+v", e)
	}
	g.confirm("10.0.2.2", macB2, solicited)
	if e, _ := tb.Entry(b2); e.State != pipeline.NeighborReachable || e.LinkAddr != macB2 {
		t.Fatalf("with override: %+v", e)
	}
	g.clk.Advance(30 * time.Second) // STALE
	g.clk.Advance(60 * time.Second) // unused: collected
	g.wantState("b", "10.0.2.2", pipeline.NeighborUnknown)

	g.send("10.0.2.3", 2)
	if !tb.Remove(netip.MustParseAddr("10.0.2.3")) {
		t.Fatal("Remove")
	}
	if g.r.Counter("neighbor", "queue_dropped") != 2 {
		t.Errorf("queue_dropped %d", g.r.Counter("neighbor", "queue_dropped"))
	}
	g.clk.Advance(10 * time.Second) // its timer is stopped
	g.wantFrames(0, macB)
}

// Entries survive a reload; the new generation's resolver takes over.
func TestNUDEntriesSurviveReload(t *testing.T) {
	g := newNUDRig(t, "")
	g.send("10.0.2.2", 1)
	g.confirm("10.0.2.2", macB, solicited)
	g.wantFrames(1, macB)
	cfg := fmt.Sprintf(`
name: nud
modules: [network.ipv4, {module: network.nudtest, name: %q, pending: 2}]
links:
  - {name: a, module: link.channel, framing: ethernet, mac: %q, addresses: [10.0.1.1/24],
     neighbors: [{ip: 10.0.1.2, mac: %q}]}
  - {name: b, module: link.channel, framing: ethernet, mac: %q, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
`, t.Name(), macRA, macA, macRB)
	if err := g.r.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	g.wantState("b", "10.0.2.2", pipeline.NeighborReachable)
	g.send("10.0.2.2", 1)
	g.wantFrames(1, macB)
	g.clk.Advance(30 * time.Second)
	g.wantState("b", "10.0.2.2", pipeline.NeighborStale)
}

// Closing the stack releases packets still waiting and stops the timers.
func TestNUDCloseReleasesQueued(t *testing.T) {
	pool := pipeline.NewPool(1024)
	clk := pt.NewManualClock()
	r := pt.NewNode(t, "router", fmt.Sprintf(`
modules: [network.ipv4, {module: network.nudtest, name: close}]
links:
  - {name: a, module: link.channel, framing: ethernet, mac: %q, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, framing: ethernet, mac: %q, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
`, macRA, macRB), pipeline.Options{Clock: clk, Pool: pool})
	a := r.Link(t, "a")
	a.InjectFrames([][]byte{pt.EthFrame(macRA, macA, wire.EtherTypeIPv4, pt.UDP4("10.0.1.2", "10.0.2.2", 1, 2, 64, nil))})
	nic, _ := r.Stack.NIC("b")
	if e, _ := nic.Neighbors().Entry(b2); e.State != pipeline.NeighborIncomplete {
		t.Fatalf("entry %+v", e)
	}
	r.Stack.Close()
	if _, ok := nic.Neighbors().Entry(b2); ok {
		t.Fatal("entry kept after close")
	}
	clk.Advance(time.Minute) // no timer left to fire on a closed stack
}
