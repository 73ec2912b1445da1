package filter_test

import (
	"net/netip"
	"strings"
	"testing"

	_ "github.com/pipestack/pipestack/modules/filter"
	_ "github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// brokenChain6 is a UDP datagram from 2001:db8:1::2 to 2001:db8:2::2 behind
// a Destination Options header whose length runs past the payload: a chain
// no walk gets through, which network.ipv6 forwards as it is by default
// (transit_extension_headers: pass, RFC 7045).
func brokenChain6() []byte {
	udp := make([]byte, 8+8)
	udp[1], udp[3], udp[5] = 7, 9, 16                   // ports 7 → 9, length 16
	do := []byte{wire.ProtocolUDP, 9, 1, 4, 0, 0, 0, 0} // (9+1)*8 bytes claimed, 8 there
	pay := append(do, udp...)
	b := make([]byte, 40+len(pay))
	wire.IPv6(b).Encode(&wire.IPv6Fields{PayloadLength: uint16(len(pay)), NextHeader: wire.ProtocolDestOptions, HopLimit: 64,
		Src: netip.MustParseAddr("2001:db8:1::2").As16(), Dst: netip.MustParseAddr("2001:db8:2::2").As16()})
	copy(b[40:], pay)
	return b
}

// TestUnknownUpperLayer: an IPv6 packet whose extension chain cannot be
// walked is not malformed to the hooks: ParseTuple marks its upper layer
// unknown, rules without -p judge it (here: forward it, or drop it by
// address), and a rule with -p (also "! -p") hotdrops it, as ip6tables —
// but only once its addresses and links matched (ip6_packet_match's
// order). Before, any filter table dropped it as filter_malformed, undoing
// transit_extension_headers: pass.
func TestUnknownUpperLayer(t *testing.T) {
	pkt := brokenChain6()
	p := pipeline.DefaultPool.Get(len(pkt))
	p.SetData(pkt)
	p.SetNetworkHeader()
	p.NetProto = pipeline.IPv6ProtocolNumber
	var pc pipeline.PacketContext
	if !pipeline.ParseTuple(nil, p, &pc) || !pc.L4Unknown || pc.Tuple.Proto != 0 || pc.Tuple.DstPort != 0 || pc.L4End != 0 {
		t.Errorf("ParseTuple: %+v", pc)
	}
	p.Release()
	cases := []struct {
		rules    string
		fwd      bool
		drops    uint64 // filter_drop_forward
		malforms uint64
	}{
		{`["-d 2001:db8:9::/48 -j DROP"]`, true, 0, 0},
		{`["-s 2001:db8:1::2 -j DROP"]`, false, 1, 0},
		{`["-p udp -j ACCEPT"]`, false, 1, 0},           // hotdrop, though it would accept
		{`["! -p tcp -j ACCEPT"]`, false, 1, 0},         // "! -p" hotdrops too
		{`["-p all -j ACCEPT", "-j DROP"]`, true, 0, 0}, // -p all is no protocol check
		{`["-s 2001:db8:7::/48 -p udp -j DROP"]`, true, 0, 0},
		{`["-i b -p udp -j DROP"]`, true, 0, 0},
		{`["-m length --length 0:100 -j ACCEPT", "-j DROP"]`, true, 0, 0},
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
		n.Link(t, "a").InjectFrames([][]byte{brokenChain6()})
		var fw [][]byte
		for _, f := range pt.Drain(n.Link(t, "b")) {
			if len(f) >= 40 && f[6] == wire.ProtocolDestOptions {
				fw = append(fw, f)
			}
		}
		if (len(fw) == 1) != tc.fwd {
			t.Errorf("%s: forwarded %d, want %v (%s)", tc.rules, len(fw), tc.fwd, n.DumpCounters())
		}
		if got := n.Counter("stack", "filter_drop_forward"); got != tc.drops {
			t.Errorf("%s: filter_drop_forward %d, want %d", tc.rules, got, tc.drops)
		}
		if got := n.Counter("stack", "filter_malformed"); got != tc.malforms {
			t.Errorf("%s: filter_malformed %d, want %d", tc.rules, got, tc.malforms)
		}
		if t.Failed() && strings.Contains(n.DumpCounters(), "malformed") {
			t.Log(n.DumpCounters())
		}
	}
}
