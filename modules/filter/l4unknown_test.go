package filter_test

import (
	"fmt"
	"net/netip"
	"testing"

	_ "github.com/pipestack/pipestack/modules/filter"
	_ "github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// brokenChain6 is a UDP datagram from 2001:db8:1::2 to 2001:db8:2::2 (ports
// 7 → 9) behind Destination Options headers that no walk gets through,
// which network.ipv6 forwards as it is by default
// (transit_extension_headers: pass, RFC 7045): with unreadable, the first
// claims 80 bytes and names a second one, which then lies past the end
// (the upper layer unknown); without, the only one claims 80 bytes and
// names UDP (the protocol known, its header past the end).
func brokenChain6(unreadable bool) []byte {
	udp := make([]byte, 8+8)
	udp[1], udp[3], udp[5] = 7, 9, 16 // ports 7 → 9, length 16
	next := uint8(wire.ProtocolUDP)
	if unreadable {
		next = wire.ProtocolDestOptions
	}
	do := []byte{next, 9, 1, 4, 0, 0, 0, 0} // (9+1)*8 bytes claimed, 8 there
	pay := append(do, udp...)
	b := make([]byte, 40+len(pay))
	wire.IPv6(b).Encode(&wire.IPv6Fields{PayloadLength: uint16(len(pay)), NextHeader: wire.ProtocolDestOptions, HopLimit: 64,
		Src: netip.MustParseAddr("2001:db8:1::2").As16(), Dst: netip.MustParseAddr("2001:db8:2::2").As16()})
	copy(b[40:], pay)
	return b
}

// TestUnknownUpperLayer: an IPv6 packet whose extension chain cannot be
// walked is not malformed to the hooks, as with ip6tables (the
// differential test's rule set unknown-upper checks the same against
// Linux). When a header to read lies past the end, the upper layer is
// unknown: rules without -p judge the packet (forward it, or drop it by
// address or length), a rule with -p (also "! -p") hotdrops it — once its
// addresses and links matched (ip6_packet_match's order). When only the
// upper-layer header lies past the end, -p sees its protocol and the
// matchers that read the header (ports) hotdrop. Before, any filter table
// dropped both as filter_malformed, undoing transit_extension_headers:
// pass.
func TestUnknownUpperLayer(t *testing.T) {
	for _, unreadable := range []bool{true, false} {
		pkt := brokenChain6(unreadable)
		p := pipeline.DefaultPool.Get(len(pkt))
		p.SetData(pkt)
		p.SetNetworkHeader()
		p.NetProto = pipeline.IPv6ProtocolNumber
		var pc pipeline.PacketContext
		if !pipeline.ParseTuple(nil, p, &pc) || pc.L4Unknown != unreadable || pc.Tuple.DstPort != 0 {
			t.Errorf("unreadable %v: ParseTuple %+v", unreadable, pc)
		}
		p.Release()
	}
	cases := []struct {
		rules      string
		unreadable bool
		fwd        bool
		drops      uint64 // filter_drop_forward
	}{
		{`["-d 2001:db8:9::/48 -j DROP"]`, true, true, 0},
		{`["-s 2001:db8:1::2 -j DROP"]`, true, false, 1},
		{`["-p udp -j DROP"]`, true, false, 1},
		{`["-p udp -j ACCEPT", "-j DROP"]`, true, false, 1}, // hotdrop, though it would accept
		{`["! -p tcp -j ACCEPT"]`, true, false, 1},          // "! -p" hotdrops too
		{`["-p all -j ACCEPT", "-j DROP"]`, true, true, 0},  // -p all is no protocol check
		{`["-s 2001:db8:7::/48 -p udp -j DROP"]`, true, true, 0},
		{`["-i b -p udp -j DROP"]`, true, true, 0},
		{`["-m length --length 0:100 -j ACCEPT", "-j DROP"]`, true, true, 0},
		{`["-p udp -j ACCEPT", "-j DROP"]`, false, true, 0}, // the protocol is known
		{`["-p tcp -j DROP"]`, false, true, 0},
		{`["-p udp --dport 1:100 -j ACCEPT"]`, false, false, 1}, // its header is not there: hotdrop
		{`["-p udp --dport 1000 -j DROP"]`, false, false, 1},
	}
	for _, tc := range cases {
		cfg := `
name: r
modules: [network.ipv6]
links:
  - {name: a, module: link.channel, framing: ip, addresses: ["2001:db8:1::1/64"]}
  - {name: b, module: link.channel, framing: ip, addresses: ["2001:db8:2::1/64"]}
forwarding: {ipv6: true}
filter:
  filter:
    forward:
      rules: ` + tc.rules + "\n"
		n := pt.NewNode(t, "r", cfg, pipeline.Options{Clock: pt.NewManualClock()})
		n.Link(t, "a").InjectFrames([][]byte{brokenChain6(tc.unreadable)})
		var fw [][]byte
		for _, f := range pt.Drain(n.Link(t, "b")) {
			if len(f) >= 40 && f[6] == wire.ProtocolDestOptions {
				fw = append(fw, f)
			}
		}
		what := fmt.Sprintf("%s (unreadable %v)", tc.rules, tc.unreadable)
		if (len(fw) == 1) != tc.fwd {
			t.Errorf("%s: forwarded %d, want %v (%s)", what, len(fw), tc.fwd, n.DumpCounters())
		}
		if got := n.Counter("stack", "filter_drop_forward"); got != tc.drops {
			t.Errorf("%s: filter_drop_forward %d, want %d", what, got, tc.drops)
		}
		if got := n.Counter("stack", "filter_malformed"); got != 0 {
			t.Errorf("%s: filter_malformed %d", what, got)
		}
	}
}
