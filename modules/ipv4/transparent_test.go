package ipv4_test

import (
	"testing"

	_ "github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// A link with transparent: true takes unicast packets to any address as
// the stack's (pipeline.NetworkInterface.Transparent) although forwarding
// is on: a UDP datagram to a port nobody has is answered with port
// unreachable and a ping with a reply, both from the packet's destination
// (the link has no address of its own); a TCP SYN gets a reset from
// there. Nothing is forwarded. The same packets on a link without it are
// forwarded.
func TestTransparentLink(t *testing.T) {
	n := pt.NewNode(t, "proxy", `
name: proxy
modules: [network.ipv4, transport.udp]
forwarding: {ipv4: true}
links:
  - {name: a, module: link.channel, framing: ip, transparent: true}
  - {name: b, module: link.channel, framing: ip, addresses: [10.0.2.1/24]}
routes:
  - {to: 10.0.1.0/24, link: a}
  - {to: default, via: 10.0.2.2, link: b}
`, pipeline.Options{})
	a, b := n.Link(t, "a"), n.Link(t, "b")
	a.InjectFrames([][]byte{pt.UDP4("10.0.1.2", "198.51.100.7", 5000, 53, 64, []byte("query"))})
	back := pt.Drain(a)
	if len(back) != 1 {
		t.Fatalf("%d packets back for a datagram, want port unreachable (%s)", len(back), n.DumpCounters())
	}
	pt.CheckIPv4(t, back[0], pt.SrcAddr("198.51.100.7"), pt.DstAddr("10.0.1.2"),
		pt.ICMP(wire.ICMPv4DstUnreachable, wire.ICMPv4PortUnreachable))
	a.InjectFrames([][]byte{pt.Echo4("10.0.1.2", "203.0.113.1", 64, 1, 1, []byte("ping"))})
	back = pt.Drain(a)
	if len(back) != 1 {
		t.Fatalf("%d packets back for a ping", len(back))
	}
	pt.CheckIPv4(t, back[0], pt.SrcAddr("203.0.113.1"), pt.DstAddr("10.0.1.2"), pt.ICMP(wire.ICMPv4EchoReply, 0))
	a.InjectFrames([][]byte{tcp4("10.0.1.2", "192.0.2.80", 40000, 80, 1000, 0, wire.TCPFlagSyn, nil)})
	back = pt.Drain(a)
	if len(back) != 1 {
		t.Fatalf("%d packets back for a SYN", len(back))
	}
	checkReset(t, back[0], "192.0.2.80", "10.0.1.2", 80, 40000, 0, 1001, wire.TCPFlagRst|wire.TCPFlagAck)
	if got := pt.Drain(b); len(got) != 0 || n.Counter("ipv4", "forwarded") != 0 {
		t.Fatalf("forwarded %d packets from the transparent link", n.Counter("ipv4", "forwarded"))
	}
	// Broadcast is not taken: no answer to a datagram for 255.255.255.255.
	a.InjectFrames([][]byte{pt.UDP4("10.0.1.2", "255.255.255.255", 5000, 53, 64, []byte("bcast"))})
	if got := pt.Drain(a); len(got) != 0 {
		t.Fatalf("answered a broadcast: %d packets", len(got))
	}
	// From b (not transparent) the same datagram is forwarded.
	b.InjectFrames([][]byte{pt.UDP4("10.0.2.2", "10.0.1.9", 5000, 53, 64, []byte("fwd"))})
	if got := pt.Drain(a); len(got) != 1 || n.Counter("ipv4", "forwarded") != 1 {
		t.Fatalf("not forwarded from a plain link: %d packets (%s)", len(got), n.DumpCounters())
	}
}
