package pipeline_test

import (
	"testing"

	_ "github.com/pipestack/pipestack/modules/ipv6"
	_ "github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

const dyn6YAML = `
name: dyn
modules: [{module: network.ipv6, link_local: false, router_solicitations: 0}]
links:
  - {name: a, module: link.channel, addresses: ["2001:db8:1::1/64"]}
  - {name: b, module: link.channel, addresses: ["2001:db8:2::1/64"]}
routes:
  - {to: "2001:db8:9::/48", via: "2001:db8:2::9", link: b}
`

// Dynamic addresses live on the NIC, outside generations: they are local,
// listed, chosen as sources by scope, survive a reload, and leave with their
// NIC; a kind override hides a configured address while it is tentative.
func TestDynamicAddresses(t *testing.T) {
	n := pt.NewNode(t, "dyn", dyn6YAML, pipeline.Options{})
	s := n.Stack
	a, _ := s.NIC("a")
	ll := mustPrefix("fe80::1/64")
	a.SetDynamicAddress(pipeline.AddressInfo{Prefix: ll, Kind: pipeline.Temporary})
	g := s.Generation()
	if id, ok := g.IsLocal6(ll.Addr().As16()); !ok || id != a.ID() {
		t.Errorf("IsLocal6(link-local) = %d %v", id, ok)
	}
	nic, _ := g.NIC(a.ID())
	if got := len(nic.Addresses(6)); got != 2 {
		t.Errorf("%d addresses, want 2", got)
	}
	if p, _ := nic.PrimaryAddress(6); p.Addr() != mustAddr("2001:db8:1::1") {
		t.Errorf("primary %s: link-local addresses come last", p)
	}
	if src, _ := nic.SourceAddress(mustAddr("fe80::9")); src != ll.Addr() {
		t.Errorf("source for a link-local destination %s", src)
	}
	if src, _ := nic.SourceAddress(mustAddr("2001:db8:5::9")); src != mustAddr("2001:db8:1::1") {
		t.Errorf("source for a global destination %s", src)
	}
	// Tentative: not local, not a source.
	a.SetAddressKind(mustAddr("2001:db8:1::1"), pipeline.PermanentTentative)
	if _, ok := g.IsLocal6(mustAddr("2001:db8:1::1").As16()); ok {
		t.Error("a tentative configured address is local")
	}
	if src, _ := nic.SourceAddress(mustAddr("2001:db8:5::9")); src == mustAddr("2001:db8:1::1") {
		t.Error("a tentative address is a source")
	}
	a.SetAddressKind(mustAddr("2001:db8:1::1"), pipeline.Permanent)
	if _, ok := g.IsLocal6(mustAddr("2001:db8:1::1").As16()); !ok {
		t.Error("override not cleared")
	}
	// A reload keeps them; a reload without the link drops them.
	if err := n.Reload(dyn6YAML + "\n# touched\n"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Generation().IsLocal6(ll.Addr().As16()); !ok {
		t.Error("dynamic address lost in a reload")
	}
	if err := n.Reload(`
name: dyn
modules: [{module: network.ipv6, link_local: false}]
links:
  - {name: b, module: link.channel, addresses: ["2001:db8:2::1/64"]}
`); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Generation().IsLocal6(ll.Addr().As16()); ok {
		t.Error("dynamic address outlived its link")
	}
}

// Dynamic routes are consulted with the generation's: the longer prefix
// wins, then the lower metric, then the configured route.
func TestDynamicRoutes(t *testing.T) {
	n := pt.NewNode(t, "dyn", dyn6YAML, pipeline.Options{})
	s := n.Stack
	a, _ := s.NIC("a")
	s.SetDynamicRoutes("test/a", []pipeline.Route{
		{Dst: mustPrefix("::/0"), Via: mustAddr("fe80::1"), NIC: a.ID(), Metric: 1024},
		{Dst: mustPrefix("2001:db8:9:1::/64"), NIC: a.ID()},
		{Dst: mustPrefix("2001:db8:9::/48"), NIC: a.ID(), Metric: 5},
	})
	for _, tc := range []struct {
		dst string
		via string
		nic pipeline.NICID
	}{
		{"2001:db8:77::1", "fe80::1", a.ID()},   // only the learnt default
		{"2001:db8:9:1::5", "", a.ID()},         // longer learnt prefix
		{"2001:db8:9:2::5", "2001:db8:2::9", 2}, // configured wins on metric 0 < 5
		{"2001:db8:2::5", "", 2},                // connected
	} {
		r, ok := s.Route(mustAddr(tc.dst))
		if !ok || r.NIC != tc.nic || (tc.via != "" && r.Via != mustAddr(tc.via)) || (tc.via == "" && r.Via.IsValid()) {
			t.Errorf("route to %s: %v %v", tc.dst, r, ok)
		}
	}
	s.SetDynamicRoutes("test/a", nil)
	if _, ok := s.Route(mustAddr("2001:db8:77::1")); ok {
		t.Error("route outlived its owner's removal")
	}
	if len(s.DynamicRoutes()) != 0 {
		t.Error("dynamic routes left")
	}
}

// ParseTuple finds the upper layer past IPv6 extension headers.
func TestParseTupleIPv6Extensions(t *testing.T) {
	p := make([]byte, 40+8+8)
	wire.IPv6(p).Encode(&wire.IPv6Fields{PayloadLength: 16, NextHeader: wire.ProtocolDestOptions, HopLimit: 64,
		Src: mustAddr("2001:db8::1").As16(), Dst: mustAddr("2001:db8::2").As16()})
	wire.IPv6Options(p[40:]).Encode(&wire.IPv6OptionsFields{NextHeader: wire.ProtocolUDP})
	wire.UDP(p[48:]).Encode(&wire.UDPFields{SrcPort: 53, DstPort: 5353, Length: 8})
	pkt := pipeline.DefaultPool.Get(len(p))
	defer pkt.Release()
	pkt.SetData(p)
	pkt.SetNetworkHeader()
	pkt.NetProto = pipeline.IPv6ProtocolNumber
	var pc pipeline.PacketContext
	if !pipeline.ParseTuple(nil, pkt, &pc) {
		t.Fatal("not parsed")
	}
	if pc.Tuple.Proto != pipeline.UDPProtocolNumber || pc.Tuple.SrcPort != 53 || pc.Tuple.DstPort != 5353 || pc.Fragment {
		t.Errorf("tuple %+v", pc.Tuple)
	}
}

// ParseTuple walks the extension headers as ip6tables does (Linux's
// ipv6_find_hdr): a header claiming more bytes than there are still names
// the protocol after it, whose header is then empty; one it cannot read
// (past the end), 65 headers, or a non-first fragment followed by an
// extension header leave the upper layer unknown instead of failing;
// Hop-by-Hop after Destination Options is walked. A well-formed packet
// after them clears the mark (a reused context).
func TestParseTupleUnknownUpperLayer(t *testing.T) {
	// build is n Destination Options headers (the i-th's Next Header
	// next(i)) and a UDP header.
	build := func(n int, next func(i int) uint8) []byte {
		p := make([]byte, 40+8*n+8)
		first := uint8(wire.ProtocolUDP)
		if n > 0 {
			first = wire.ProtocolDestOptions
		}
		wire.IPv6(p).Encode(&wire.IPv6Fields{PayloadLength: uint16(8*n + 8), NextHeader: first, HopLimit: 64,
			Src: mustAddr("2001:db8::1").As16(), Dst: mustAddr("2001:db8::2").As16()})
		for i := 0; i < n; i++ {
			wire.IPv6Options(p[40+8*i:]).Encode(&wire.IPv6OptionsFields{NextHeader: next(i)})
		}
		wire.UDP(p[40+8*n:]).Encode(&wire.UDPFields{SrcPort: 53, DstPort: 5353, Length: 8})
		return p
	}
	chain := func(n int) func(int) uint8 {
		return func(i int) uint8 {
			if i == n-1 {
				return wire.ProtocolUDP
			}
			return wire.ProtocolDestOptions
		}
	}
	past := build(1, chain(1))
	past[41] = 9 // (9+1)*8 bytes: past the payload; the UDP header is "there" no more
	unreadable := build(2, chain(2))
	unreadable[41] = 9 // the second header lies past the end
	hbhLate := build(2, func(i int) uint8 { return []uint8{wire.ProtocolHopByHop, wire.ProtocolUDP}[i] })
	var pc pipeline.PacketContext
	for _, tc := range []struct {
		name    string
		p       []byte
		unknown bool
		proto   pipeline.TransportProtocolNumber
		dport   uint16
		emptyL4 bool
	}{
		{"65 headers", build(65, chain(65)), true, 0, 0, false},
		{"a header past the end", unreadable, true, 0, 0, false},
		{"the upper layer past the end", past, false, pipeline.UDPProtocolNumber, 0, true},
		{"hop-by-hop after destination options", hbhLate, false, pipeline.UDPProtocolNumber, 5353, false},
		{"one header", build(1, chain(1)), false, pipeline.UDPProtocolNumber, 5353, false},
	} {
		pkt := pipeline.DefaultPool.Get(len(tc.p))
		pkt.SetData(tc.p)
		pkt.SetNetworkHeader()
		pkt.NetProto = pipeline.IPv6ProtocolNumber
		ok := pipeline.ParseTuple(nil, pkt, &pc)
		pkt.Release()
		if !ok || pc.L4Unknown != tc.unknown || pc.Tuple.Proto != tc.proto || pc.Tuple.DstPort != tc.dport {
			t.Errorf("%s: ok %v, L4Unknown %v, tuple %+v", tc.name, ok, pc.L4Unknown, pc.Tuple)
		}
		if tc.unknown && pc.L4End != 0 || !tc.unknown && (pc.L4End != len(tc.p) || (pc.L4Off == pc.L4End) != tc.emptyL4) {
			t.Errorf("%s: L4 %d:%d of %d", tc.name, pc.L4Off, pc.L4End, len(tc.p))
		}
	}
}
