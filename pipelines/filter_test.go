package pipelines_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// filterRouter is inmemory-router.yaml with a filter section.
const filterRouter = `
name: router
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, framing: ip, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, framing: ip, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
filter:
  filter:
    forward:
      policy: drop
      rules:
        - {id: web, proto: udp, dport: 80, target: accept}
        - "-p udp --dport 81 -j REJECT"
        - "-p udp --dport 82 -j REJECT --reject-with icmp-admin-prohibited"
        - "-p udp --dport 83 -j REJECT --reject-with icmp-net-prohibited"
        - "-i a -p udp --dport 90:99 -j from_a"
        - "-p udp --dport 100 -g from_a"
        - "-p icmp -j ACCEPT"
    from_a:
      rules:
        - "-p udp --dport 95 -j ACCEPT"
        - "-j RETURN"
    input:
      rules:
        - "-p udp --dport 7 -j DROP"
`

func inject(ep *channel.Endpoint, pkts ...[]byte) { ep.InjectFrames(pkts) }

func ruleListing(t *testing.T, n *pt.Node, chain string, num int) pipeline.RuleListing {
	t.Helper()
	for _, mc := range n.Stack.Generation().Config().Modules {
		rl, ok := mc.Module.(pipeline.RuleLister)
		if !ok {
			continue
		}
		for _, c := range rl.ListRules() {
			if c.Chain == chain && num <= len(c.Rules) {
				return c.Rules[num-1]
			}
		}
	}
	t.Fatalf("no rule %s %d", chain, num)
	return pipeline.RuleListing{}
}

func TestFilterRouter(t *testing.T) {
	r := pt.NewNode(t, "router", filterRouter, pipeline.Options{})
	a, b := r.Link(t, "a"), r.Link(t, "b")
	udp := func(dport uint16) []byte { return pt.UDP4("10.0.1.2", "10.0.2.2", 5000, dport, 64, []byte("hello")) }

	cases := []struct {
		dport     uint16
		forwarded bool
		icmpCode  int // -1: no error
	}{
		{80, true, -1},
		{81, false, wire.ICMPv4PortUnreachable},
		{82, false, wire.ICMPv4AdminProhibited},
		{83, false, wire.ICMPv4NetProhibited},
		{95, true, -1},  // jump to from_a, accept
		{96, false, -1}, // from_a returns, policy drop
		{100, false, -1},
		{1234, false, -1},
	}
	for _, c := range cases {
		inject(a, udp(c.dport))
		out, back := pt.Drain(b), pt.Drain(a)
		if got := len(out) == 1; got != c.forwarded {
			t.Errorf("dport %d: forwarded %d, want %v", c.dport, len(out), c.forwarded)
		}
		if c.icmpCode < 0 {
			if len(back) != 0 {
				t.Errorf("dport %d: %d packets back to a", c.dport, len(back))
			}
			continue
		}
		if len(back) != 1 {
			t.Errorf("dport %d: %d ICMP errors, want 1", c.dport, len(back))
			continue
		}
		// The forward hook sees the packet with its TTL decremented, as
		// Linux's: the error quotes it so.
		quoted := udp(c.dport)
		ip := wire.IPv4(quoted)
		ip.DecTTL()
		pt.CheckIPv4(t, back[0], pt.SrcAddr("10.0.1.1"), pt.DstAddr("10.0.1.2"),
			pt.ICMP(wire.ICMPv4DstUnreachable, uint8(c.icmpCode), pt.Quotes(quoted[:28])))
	}
	if got := r.Counter("stack", "filter_drop_forward"); got != 3 {
		t.Errorf("filter_drop_forward %d, want 3 (96, 100, 1234)\n%s", got, r.DumpCounters())
	}
	if got := r.Counter("filter", "rejected"); got != 3 {
		t.Errorf("rejected %d, want 3", got)
	}
	for _, mc := range r.Stack.Generation().Config().Modules {
		if rl, ok := mc.Module.(pipeline.RuleLister); ok {
			for _, c := range rl.ListRules() {
				// 96, 100 (the end of a chain gone to: the policy,
				// counted as netfilter's underflow) and 1234.
				if c.Chain == "FORWARD" && (c.PolicyPackets != 3 || c.Policy != "DROP") {
					t.Errorf("FORWARD policy %s counted %d, want DROP 3", c.Policy, c.PolicyPackets)
				}
			}
		}
	}
	web := ruleListing(t, r, "FORWARD", 1)
	if web.Packets != 1 || web.Bytes != uint64(len(udp(80))) || web.Target != "ACCEPT" || web.Prot != "udp" || web.Options != "udp dpt:80" && !strings.Contains(web.Options, "80") {
		t.Errorf("web rule listing %+v", web)
	}
	if l := ruleListing(t, r, "from_a", 2); l.Packets != 2 {
		t.Errorf("from_a RETURN counted %d, want 2 (96 by jump, 100 by goto; 95 was accepted before)", l.Packets)
	}
	if l := ruleListing(t, r, "FORWARD", 6); l.Packets != 1 || !strings.Contains(l.Options, "[goto]") {
		t.Errorf("goto rule %+v", l)
	}

	// Input: dropped before delivery.
	inject(a, pt.UDP4("10.0.1.2", "10.0.1.1", 5000, 7, 64, nil))
	if got := r.Counter("stack", "filter_drop_input"); got != 1 {
		t.Errorf("filter_drop_input %d, want 1", got)
	}

	// Reload: the web rule (by id) and the unchanged rules keep their
	// counters; the rule for 81 is gone (and its counter with it).
	changed := strings.Replace(filterRouter, `        - "-p udp --dport 81 -j REJECT"`+"\n", "", 1)
	changed = strings.Replace(changed, "{id: web, proto: udp, dport: 80, target: accept}", "{id: web, proto: udp, dport: \"80:80\", target: accept}", 1)
	if err := r.Reload(changed); err != nil {
		t.Fatal(err)
	}
	inject(a, udp(80), udp(95))
	if out := pt.Drain(b); len(out) != 2 {
		t.Fatalf("after reload forwarded %d, want 2", len(out))
	}
	if l := ruleListing(t, r, "FORWARD", 1); l.Packets != 2 {
		t.Errorf("web (same id) counted %d after reload, want 2", l.Packets)
	}
	if l := ruleListing(t, r, "from_a", 1); l.Packets != 2 {
		t.Errorf("unchanged rule counted %d after reload, want 2", l.Packets)
	}
	if l := ruleListing(t, r, "FORWARD", 2); !strings.Contains(l.Rule, "--dport 82") || l.Packets != 1 {
		t.Errorf("rule 2 is now %+v", l)
	}
	// A broken rule set is refused, with file:line, and the old one runs on.
	broken := strings.Replace(changed, `"-p icmp -j ACCEPT"`, `"-p icmp -j nochain"`, 1)
	err := r.Reload(broken)
	if err == nil || !strings.Contains(err.Error(), "router.yaml:") || !strings.Contains(err.Error(), "filter (table filter, chain forward, rule 6)") {
		t.Fatalf("broken reload: %v", err)
	}
	inject(a, udp(80))
	if out := pt.Drain(b); len(out) != 1 {
		t.Fatalf("after the broken reload forwarded %d, want 1", len(out))
	}
	if l := ruleListing(t, r, "FORWARD", 1); l.Packets != 3 {
		t.Errorf("web counted %d after a failed reload, want 3", l.Packets)
	}
	// Removing the filter section removes the tables.
	plain := filterRouter[:strings.Index(filterRouter, "filter:\n")]
	if err := r.Reload(plain); err != nil {
		t.Fatal(err)
	}
	inject(a, udp(1234))
	if out := pt.Drain(b); len(out) != 1 {
		t.Errorf("without a filter forwarded %d, want 1", len(out))
	}
}

// TestFilterRouter6: dual-stack rules, ICMPv6 rejects.
func TestFilterRouter6(t *testing.T) {
	r := pt.NewNode(t, "router6", `
name: router6
modules: [network.ipv6]
links:
  - {name: a, module: link.channel, framing: ip, addresses: ["2001:db8:1::1/64"]}
  - {name: b, module: link.channel, framing: ip, addresses: ["2001:db8:2::1/64"]}
forwarding: {ipv6: true}
filter:
  filter:
    forward:
      rules:
        - "-p udp --dport 81 -j REJECT --reject-with icmp6-adm-prohibited"
        - "-p udp --dport 82 -j DROP"
        - "-s 10.0.0.0/8 -j DROP"
`, pipeline.Options{})
	a, b := r.Link(t, "a"), r.Link(t, "b")
	udp6 := func(dport uint16) []byte {
		return udp6Packet("2001:db8:1::2", "2001:db8:2::2", 5000, dport)
	}
	for _, c := range []struct {
		dport     uint16
		forwarded bool
		icmp      bool
	}{{80, true, false}, {81, false, true}, {82, false, false}} {
		inject(a, udp6(c.dport))
		out, back := pt.Drain(b), pt.Drain(a)
		if (len(out) == 1) != c.forwarded {
			t.Errorf("dport %d: forwarded %d", c.dport, len(out))
		}
		if c.icmp {
			if len(back) != 1 || back[0][40] != wire.ICMPv6DstUnreachable || back[0][41] != wire.ICMPv6AdminProhibited {
				t.Errorf("dport %d: ICMPv6 back %x", c.dport, back)
			}
		}
	}
}

func udp6Packet(src, dst string, sport, dport uint16) []byte {
	b := make([]byte, 40+8+4)
	ip := wire.IPv6(b)
	ip.Encode(&wire.IPv6Fields{PayloadLength: 12, NextHeader: wire.ProtocolUDP, HopLimit: 64,
		Src: mustAddr(src).As16(), Dst: mustAddr(dst).As16()})
	u := wire.UDP(b[40:])
	u.Encode(&wire.UDPFields{SrcPort: sport, DstPort: dport, Length: 12})
	u.SetChecksum(u.CalculateChecksum(wire.IPv6PseudoChecksum(ip, wire.ProtocolUDP, 12)))
	return b
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// tcp4 builds an IPv4 TCP segment with valid checksums.
func tcp4(src, dst string, sport, dport uint16, flags uint8, opts []byte) []byte {
	l4 := 20 + (len(opts)+3)&^3
	b := make([]byte, 20+l4)
	ip := wire.IPv4(b)
	ip.Encode(&wire.IPv4Fields{TotalLength: uint16(len(b)), ID: 1, TTL: 64, Protocol: wire.ProtocolTCP,
		Src: mustAddr(src).As4(), Dst: mustAddr(dst).As4()})
	ip.SetChecksum(ip.CalculateChecksum())
	tc := wire.TCP(b[20:])
	tc.Encode(&wire.TCPFields{SrcPort: sport, DstPort: dport, Seq: 1000, Flags: flags, Window: 100, Options: opts})
	tc.SetChecksum(tc.CalculateChecksum(wire.IPv4PseudoChecksum(ip, uint16(l4))))
	return b
}

// TestFilterTCPResetAndMSS: REJECT --reject-with tcp-reset answers with a
// reset from the destination (forward and input); TCPMSS clamps a SYN's MSS
// to the egress MTU, checksum still valid.
func TestFilterTCPResetAndMSS(t *testing.T) {
	r := pt.NewNode(t, "router", `
name: router
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, framing: ip, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, framing: ip, mtu: 1400, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
filter:
  mangle:
    forward:
      rules: ["-p tcp --tcp-flags SYN,RST SYN -o b -j TCPMSS --clamp-mss-to-pmtu"]
  filter:
    forward:
      rules: ["-p tcp --dport 23 -j REJECT --reject-with tcp-reset"]
    input:
      rules: ["-p tcp --dport 24 -j REJECT --reject-with tcp-reset"]
`, pipeline.Options{})
	a, b := r.Link(t, "a"), r.Link(t, "b")
	checkReset := func(pkt []byte, from string, port uint16) {
		t.Helper()
		pt.CheckIPv4(t, pkt, pt.SrcAddr(from), pt.DstAddr("10.0.1.2"))
		ip := wire.IPv4(pkt)
		tc := wire.TCP(ip.Payload())
		if ip.Protocol() != wire.ProtocolTCP || tc.Flags()&wire.TCPFlagRst == 0 || tc.SrcPort() != port || tc.DstPort() != 5000 ||
			!tc.IsChecksumValid(wire.IPv4PseudoChecksum(ip, uint16(len(tc)))) {
			t.Errorf("not the reset wanted: % x", pkt)
		}
	}
	for _, c := range []struct {
		dst  string
		port uint16
	}{{"10.0.2.2", 23}, {"10.0.1.1", 24}} {
		inject(a, tcp4("10.0.1.2", c.dst, 5000, c.port, wire.TCPFlagSyn, nil))
		out, back := pt.Drain(b), pt.Drain(a)
		if len(out) != 0 || len(back) != 1 {
			t.Fatalf("port %d: %d forwarded, %d back; want 0, 1 (a reset)\n%s", c.port, len(out), len(back), r.DumpCounters())
		}
		checkReset(back[0], c.dst, c.port)
	}
	// A reset is not answered.
	inject(a, tcp4("10.0.1.2", "10.0.2.2", 5000, 23, wire.TCPFlagRst, nil))
	if back := pt.Drain(a); len(back) != 0 {
		t.Errorf("a reset was answered: % x", back)
	}

	// TCPMSS: 1460 → 1400-40.
	inject(a, tcp4("10.0.1.2", "10.0.2.2", 5000, 80, wire.TCPFlagSyn, []byte{2, 4, 0x05, 0xb4}))
	out := pt.Drain(b)
	if len(out) != 1 {
		t.Fatalf("SYN not forwarded")
	}
	ip := wire.IPv4(out[0])
	tc := wire.TCP(ip.Payload())
	if mss := uint16(tc.Options()[2])<<8 | uint16(tc.Options()[3]); mss != 1360 {
		t.Errorf("mss %d, want 1360", mss)
	}
	if !tc.IsChecksumValid(wire.IPv4PseudoChecksum(ip, uint16(len(tc)))) {
		t.Errorf("checksum broken by the MSS clamp")
	}
}
