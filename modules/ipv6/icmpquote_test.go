package ipv6_test

import (
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// An ICMPv6 error must quote the offending packet's fixed header, its
// extension headers and 8 bytes after them: one that quotes less is
// malformed, counted and dropped — not handed to an ICMPv6 transport nor
// to the quoted packet's. A complete quote is handed on.
func TestICMPErrorTruncatedQuote(t *testing.T) {
	name := pt.UniqueName(t) + "-icmp"
	h := pt.NewNode(t, "host", `
name: host
modules: [network.ipv6, {module: transport.collect, protocol: 58, name: "`+name+`"}]
links:
  - {name: eth0, module: link.channel, mtu: 1500, addresses: ["2001:db8:1::2/64"]}
`, pipeline.Options{Clock: pt.NewManualClock()})
	l := h.Link(t, "eth0")
	col := pt.Collected(name)
	const me, peer = "2001:db8:1::2", "2001:db8:1::9"
	orig := udp6(me, peer, 4000, 53, 64, []byte("query"))
	withDO := withExt(orig, wire.ProtocolDestOptions, optHeader(wire.ProtocolUDP, 1, 4, 0, 0, 0, 0))
	errorQuoting := func(q []byte) []byte {
		return ip6(peer, me, wire.ProtocolICMPv6, 64, icmp6(peer, me, wire.ICMPv6DstUnreachable, wire.ICMPv6PortUnreachable, 0, q))
	}
	for i, q := range [][]byte{orig[:8], orig[:39], orig[:40], orig[:47], withDO[:44], withDO[:55]} {
		l.InjectFrames([][]byte{errorQuoting(q)})
		if col.Len() != 0 {
			t.Fatalf("quote %d (%d bytes) handed on", i, len(q))
		}
	}
	h.WantCounters(t, "ipv6", map[string]uint64{"icmp_malformed": 6})
	l.InjectFrames([][]byte{errorQuoting(orig[:48]), errorQuoting(withDO[:56])})
	if col.Len() != 2 {
		t.Fatalf("%d errors with a complete quote handed on, want 2", col.Len())
	}
	h.WantCounters(t, "ipv6", map[string]uint64{"icmp_malformed": 6})
}
