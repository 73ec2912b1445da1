package ipv6_test

import (
	"testing"

	_ "github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// A link with transparent: true takes unicast packets to any address as
// the stack's although forwarding is on: a datagram to a port nobody has
// is answered with port unreachable and a ping with a reply, both from
// the packet's destination (the link has no address of its own), and
// nothing is forwarded; the same datagram from a plain link is.
func TestTransparentLink6(t *testing.T) {
	n := pt.NewNode(t, "proxy6", `
name: proxy6
modules: [network.ipv6, transport.udp]
forwarding: {ipv6: true}
links:
  - {name: a, module: link.channel, framing: ip, transparent: true}
  - {name: b, module: link.channel, framing: ip, addresses: ["fd00:2::1/64"]}
routes:
  - {to: "fd00:1::/64", link: a}
  - {to: "::/0", via: "fd00:2::2", link: b}
`, pipeline.Options{})
	a, b := n.Link(t, "a"), n.Link(t, "b")
	pt.Drain(a)
	pt.Drain(b)
	a.InjectFrames([][]byte{udp6("fd00:1::2", "2001:db8::7", 5000, 53, 64, []byte("query"))})
	back := noNDP(pt.Drain(a))
	if len(back) != 1 {
		t.Fatalf("%d packets back for a datagram, want port unreachable (%s)", len(back), n.DumpCounters())
	}
	checkICMP6(t, back[0], "2001:db8::7", "fd00:1::2", wire.ICMPv6DstUnreachable, wire.ICMPv6PortUnreachable)
	a.InjectFrames([][]byte{echo6("fd00:1::2", "2001:db8::9", 64, 1, 1, []byte("ping"))})
	back = noNDP(pt.Drain(a))
	if len(back) != 1 {
		t.Fatalf("%d packets back for a ping", len(back))
	}
	checkEchoReply(t, back[0], "2001:db8::9", "fd00:1::2", 0, 1, 1, []byte("ping"))
	if got := noNDP(pt.Drain(b)); len(got) != 0 || n.Counter("ipv6", "forwarded") != 0 {
		t.Fatalf("forwarded %d packets from the transparent link", n.Counter("ipv6", "forwarded"))
	}
	b.InjectFrames([][]byte{udp6("fd00:2::2", "fd00:1::9", 5000, 53, 64, []byte("fwd"))})
	if got := noNDP(pt.Drain(a)); len(got) != 1 || n.Counter("ipv6", "forwarded") != 1 {
		t.Fatalf("not forwarded from a plain link: %d packets (%s)", len(got), n.DumpCounters())
	}
}
