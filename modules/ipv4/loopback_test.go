package ipv4_test

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/filter" // REJECT in OUTPUT
	"github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// loopNode is a dual-stack host on one IP link whose messages of protocol
// proto (1 or 58; all ICMP messages but echo requests) are collected, with
// filter rules.
func loopNode(t *testing.T, proto int, filter string) (*pt.Node, *pt.Collector) {
	t.Helper()
	name := pt.UniqueName(t) + "-" + strconv.Itoa(proto)
	n := pt.NewNode(t, "host", `
name: host
modules: [network.ipv4, network.ipv6, {module: transport.collect, protocol: `+strconv.Itoa(proto)+`, name: `+name+`}]
links:
  - {name: eth0, module: link.channel, framing: ip, addresses: [10.0.2.2/24, "fd00:2::2/64"]}
routes:
  - {to: default, via: 10.0.2.1, link: eth0}
`+filter, pipeline.Options{})
	return n, pt.Collected(name)
}

// icmpOut keeps the ICMP and ICMPv6 messages (not NDP) of packets read
// off an IP link.
func icmpOut(frames [][]byte) [][]byte {
	var out [][]byte
	for _, f := range frames {
		if len(f) >= 20 && f[0]>>4 == 4 && f[9] == 1 || len(f) >= 41 && f[0]>>4 == 6 && f[6] == 58 && (f[40] < 133 || f[40] > 137) {
			out = append(out, f)
		}
	}
	return out
}

func echo6Message(id, seq uint16) []byte {
	m := make([]byte, 16)
	wire.ICMPv6(m).Encode(&wire.ICMPv6Fields{Type: wire.ICMPv6EchoRequest, Rest: wire.ICMPv6EchoRest(id, seq)})
	return m
}

// An echo request the stack sends to one of its own addresses (the
// link's, 127/8, ::1) is answered by the stack through the loopback NIC:
// the reply comes from that address and nothing leaves the link.
func TestLoopbackEcho(t *testing.T) {
	t.Run("ipv4", func(t *testing.T) {
		n, c := loopNode(t, 1, "")
		lo, _ := n.Stack.NIC(pipeline.LoopbackName)
		echo := pt.Echo4("0.0.0.0", "0.0.0.0", 64, 7, 1, []byte("hello me"))[wire.IPv4MinimumSize:]
		// The source is the address itself, or 127.0.0.1 for the rest of
		// 127/8 (Linux's local routes' preferred sources); the reply
		// comes from where the echo went.
		for _, tc := range []struct{ dst, src string }{{"10.0.2.2", "10.0.2.2"}, {"127.0.0.1", "127.0.0.1"}, {"127.9.9.9", "127.0.0.1"}} {
			n.SendIPv4(t, tc.dst, pipeline.ICMPv4ProtocolNumber, echo)
			pt.CheckIPv4(t, c.Wait(t, 5*time.Second), pt.SrcAddr(tc.dst), pt.DstAddr(tc.src), pt.ICMP(wire.ICMPv4EchoReply, 0))
		}
		if out := icmpOut(pt.Drain(n.Link(t, "eth0"))); len(out) != 0 {
			t.Errorf("%d ICMP messages left link eth0", len(out))
		}
		if rx, tx := lo.Stats.RxPackets.Load(), lo.Stats.TxPackets.Load(); rx != 6 || tx != 6 {
			t.Errorf("lo rx %d tx %d, want 6 each (3 echoes, 3 replies)", rx, tx)
		}
		n.WantCounters(t, "ipv4", map[string]uint64{"icmp_echo_in": 3, "icmp_echo_reply_out": 3, "martian_source": 0, "martian_destination": 0})
	})
	t.Run("ipv6", func(t *testing.T) {
		n, c := loopNode(t, 58, "")
		lo, _ := n.Stack.NIC(pipeline.LoopbackName)
		for _, dst := range []string{"fd00:2::2", "::1"} {
			if err := ipv6.Send(n.Stack, netip.MustParseAddr(dst), pipeline.ICMPv6ProtocolNumber, echo6Message(7, 2)); err != nil {
				t.Fatal(err)
			}
			got := wire.IPv6(c.Wait(t, 5*time.Second))
			if got.Check() != nil || netip.AddrFrom16(got.Src()).String() != dst || netip.AddrFrom16(got.Dst()).String() != dst || got.Payload()[0] != wire.ICMPv6EchoReply {
				t.Errorf("to %s: got % x", dst, []byte(got))
			}
		}
		if out := icmpOut(pt.Drain(n.Link(t, "eth0"))); len(out) != 0 {
			t.Errorf("%d ICMPv6 messages left link eth0", len(out))
		}
		if rx, tx := lo.Stats.RxPackets.Load(), lo.Stats.TxPackets.Load(); rx != 4 || tx != 4 {
			t.Errorf("lo rx %d tx %d, want 4 each", rx, tx)
		}
	})
}

// REJECT in OUTPUT of the stack's own echo reply: the ICMP error goes to
// the reply's source, the stack's own address, so it is delivered
// locally through the loopback NIC (Linux: by the local table through
// lo), not sent out of the link the reply would have left by. The peer
// gets nothing.
func TestRejectOwnEchoReplyDeliveredLocally(t *testing.T) {
	const rules = `
filter:
  filter:
    output:
      rules:
        - "-4 -p icmp --icmp-type echo-reply -j REJECT --reject-with icmp-admin-prohibited"
        - "-6 -p icmpv6 --icmpv6-type echo-reply -j REJECT --reject-with icmp6-adm-prohibited"
`
	t.Run("ipv4", func(t *testing.T) {
		n, c := loopNode(t, 1, rules)
		link := n.Link(t, "eth0")
		lo, _ := n.Stack.NIC(pipeline.LoopbackName)
		link.InjectFrames([][]byte{pt.Echo4("10.0.2.9", "10.0.2.2", 64, 1, 1, []byte("ping"))})
		got := c.Wait(t, 5*time.Second)
		pt.CheckIPv4(t, got, pt.SrcAddr("10.0.2.2"), pt.DstAddr("10.0.2.2"), pt.ICMP(wire.ICMPv4DstUnreachable, wire.ICMPv4AdminProhibited))
		if q := wire.ICMPv4(wire.IPv4(got).Payload()).Payload(); len(q) < 28 || q[20] != wire.ICMPv4EchoReply || netip.AddrFrom4([4]byte(q[16:20])).String() != "10.0.2.9" {
			t.Errorf("the error does not quote the echo reply to 10.0.2.9: % x", q)
		}
		if out := icmpOut(pt.Drain(link)); len(out) != 0 {
			t.Errorf("%d ICMP messages left link eth0, want none", len(out))
		}
		if rx := lo.Stats.RxPackets.Load(); rx != 1 {
			t.Errorf("lo received %d, want the error", rx)
		}
	})
	t.Run("ipv6", func(t *testing.T) {
		n, c := loopNode(t, 58, rules)
		link := n.Link(t, "eth0")
		lo, _ := n.Stack.NIC(pipeline.LoopbackName)
		m := echo6Message(1, 1)
		s, d := netip.MustParseAddr("fd00:2::9").As16(), netip.MustParseAddr("fd00:2::2").As16()
		wire.ICMPv6(m).SetChecksum(wire.ICMPv6(m).CalculateChecksum(wire.PseudoHeaderChecksum(wire.ProtocolICMPv6, s[:], d[:], uint16(len(m)))))
		p := make([]byte, 40+len(m))
		wire.IPv6(p).Encode(&wire.IPv6Fields{PayloadLength: uint16(len(m)), NextHeader: wire.ProtocolICMPv6, HopLimit: 64, Src: s, Dst: d})
		copy(p[40:], m)
		link.InjectFrames([][]byte{p})
		got := wire.IPv6(c.Wait(t, 5*time.Second))
		if got.Check() != nil || netip.AddrFrom16(got.Src()).String() != "fd00:2::2" || netip.AddrFrom16(got.Dst()).String() != "fd00:2::2" ||
			got.Payload()[0] != wire.ICMPv6DstUnreachable || got.Payload()[1] != 1 {
			t.Errorf("got % x, want admin prohibited from and to fd00:2::2", []byte(got))
		}
		if out := icmpOut(pt.Drain(link)); len(out) != 0 {
			t.Errorf("%d ICMPv6 messages left link eth0, want none", len(out))
		}
		if rx := lo.Stats.RxPackets.Load(); rx != 1 {
			t.Errorf("lo received %d, want the error", rx)
		}
	})
}

// Filter rules name the loopback NIC as Linux's do: `-i lo -j ACCEPT` in
// an INPUT chain whose policy drops lets the stack's traffic to itself
// through, and `-o lo` in OUTPUT matches it on its way out.
func TestLoopbackFilterRules(t *testing.T) {
	echo := pt.Echo4("0.0.0.0", "0.0.0.0", 64, 7, 1, []byte("me"))[wire.IPv4MinimumSize:]
	t.Run("input_policy_drop_lo_accepted", func(t *testing.T) {
		n, c := loopNode(t, 1, `
filter:
  filter:
    input:
      policy: drop
      rules: ["-i lo -j ACCEPT"]
`)
		n.SendIPv4(t, "10.0.2.2", pipeline.ICMPv4ProtocolNumber, echo)
		pt.CheckIPv4(t, c.Wait(t, 5*time.Second), pt.SrcAddr("10.0.2.2"), pt.ICMP(wire.ICMPv4EchoReply, 0))
		n.WantCounters(t, "stack", map[string]uint64{"filter_drop_input": 0})
	})
	t.Run("output_lo_dropped", func(t *testing.T) {
		n, c := loopNode(t, 1, `
filter:
  filter:
    output:
      rules: ["-o lo -p icmp --icmp-type echo-request -j DROP"]
`)
		n.SendIPv4(t, "127.0.0.1", pipeline.ICMPv4ProtocolNumber, echo)
		n.WantCounters(t, "stack", map[string]uint64{"filter_drop_output": 1})
		if c.Len() != 0 {
			t.Error("a reply came to an echo dropped in OUTPUT")
		}
	})
}

// A TCP segment the stack sends to one of its own closed ports (what
// transport.tcp's connect to its own address will do) is answered with a
// reset through the loopback NIC too, from and to the address, and nothing
// leaves the link.
func TestLoopbackTCPReset(t *testing.T) {
	n, _ := loopNode(t, 1, "")
	lo, _ := n.Stack.NIC(pipeline.LoopbackName)
	src, dst := netip.MustParseAddr("10.0.2.2").As4(), netip.MustParseAddr("10.0.2.2").As4()
	seg := make([]byte, wire.TCPMinimumSize)
	wire.TCP(seg).Encode(&wire.TCPFields{SrcPort: 40000, DstPort: 7, Seq: 1000, Flags: wire.TCPFlagSyn, Window: 65535})
	wire.TCP(seg).SetChecksum(wire.TCP(seg).CalculateChecksum(wire.PseudoHeaderChecksum(wire.ProtocolTCP, src[:], dst[:], uint16(len(seg)))))
	n.SendIPv4(t, "10.0.2.2", pipeline.TCPProtocolNumber, seg)
	n.WantCounters(t, "ipv4", map[string]uint64{"tcp_no_transport": 2, "tcp_reset_out": 1})
	if got := lo.Stats.RxPackets.Load(); got != 2 {
		t.Errorf("lo received %d, want the SYN and the reset", got)
	}
	for _, f := range pt.Drain(n.Link(t, "eth0")) {
		if len(f) >= 20 && f[0]>>4 == 4 && f[9] == wire.ProtocolTCP {
			t.Errorf("a TCP segment left eth0: % x", f)
		}
	}
}
