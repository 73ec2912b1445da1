package filter_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// syn4 is a TCP SYN from 10.0.1.2 to 10.0.2.2 port 80 with opts and a
// valid checksum.
func syn4(opts []byte) []byte {
	tl := 20 + 20 + (len(opts)+3)&^3
	b := make([]byte, tl)
	ip := wire.IPv4(b)
	ip.Encode(&wire.IPv4Fields{TotalLength: uint16(tl), ID: 1, TTL: 64, Protocol: wire.ProtocolTCP,
		Src: netip.MustParseAddr("10.0.1.2").As4(), Dst: netip.MustParseAddr("10.0.2.2").As4()})
	ip.SetChecksum(ip.CalculateChecksum())
	tcp := wire.TCP(b[20:])
	tcp.Encode(&wire.TCPFields{SrcPort: 40000, DstPort: 80, Flags: wire.TCPFlagSyn, Window: 65535, Options: opts})
	tcp.SetChecksum(tcp.CalculateChecksum(wire.IPv4PseudoChecksum(ip, uint16(len(tcp)))))
	return b
}

// TestTCPMSSForwarded: through a router, --clamp-mss-to-pmtu clamps to the
// lesser of the egress MTU and the MTU back to the source (Linux's
// tcpmss_reverse_mtu: link a is 1400, b 1500 → 1360), and a bare SYN gets
// an MSS option inserted (at most 536 for IPv4); what B receives is a
// well-formed SYN.
func TestTCPMSSForwarded(t *testing.T) {
	n := pt.NewNode(t, "r", `
name: r
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, framing: ip, mtu: 1400, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, framing: ip, mtu: 1500, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
filter:
  mangle:
    forward:
      rules: ["-p tcp --syn -j TCPMSS --clamp-mss-to-pmtu"]
`, pipeline.Options{Clock: pt.NewManualClock()})
	for _, tc := range []struct {
		opts []byte
		want uint16
	}{{[]byte{2, 4, 0x05, 0xb4}, 1360}, {nil, 536}} {
		n.Link(t, "a").InjectFrames([][]byte{syn4(tc.opts)})
		got := pt.Drain(n.Link(t, "b"))
		if len(got) != 1 {
			t.Fatalf("opts %x: %d forwarded (%s)", tc.opts, len(got), n.DumpCounters())
		}
		ip := wire.IPv4(got[0])
		if ip.Check() != nil || int(ip.TotalLength()) != len(got[0]) || wire.Checksum(ip[:20], 0) != 0xffff {
			t.Errorf("opts %x: bad IPv4 header", tc.opts)
		}
		tcp := wire.TCP(ip.Payload())
		if !tcp.IsChecksumValid(wire.IPv4PseudoChecksum(ip, uint16(len(tcp)))) || len(tcp) != tcp.DataOffset() {
			t.Errorf("opts %x: bad TCP header", tc.opts)
		}
		o := tcp.Options()
		if len(o) < 4 || o[0] != 2 || o[1] != 4 || binary.BigEndian.Uint16(o[2:]) != tc.want {
			t.Errorf("opts %x: options %x, want MSS %d", tc.opts, o, tc.want)
		}
	}
}
