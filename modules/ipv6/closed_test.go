package ipv6_test

import (
	"net/netip"
	"testing"

	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// tcp6 builds an IPv6/TCP packet with a valid checksum.
func tcp6(src, dst string, sport, dport uint16, seq, ack uint32, flags uint8, payload []byte) []byte {
	seg := make(wire.TCP, wire.TCPMinimumSize+len(payload))
	seg.Encode(&wire.TCPFields{SrcPort: sport, DstPort: dport, Seq: seq, Ack: ack, Flags: flags, Window: 64240})
	copy(seg.Payload(), payload)
	s, d := a16(src), a16(dst)
	seg.SetChecksum(seg.CalculateChecksum(wire.PseudoHeaderChecksum(wire.ProtocolTCP, s[:], d[:], uint16(len(seg)))))
	return ip6(src, dst, wire.ProtocolTCP, 61, seg)
}

// only keeps the IPv6 packets whose next header is nh.
func only(frames [][]byte, nh uint8) [][]byte {
	var out [][]byte
	for _, f := range frames {
		if wire.IPv6(f).Check() == nil && wire.IPv6(f).NextHeader() == nh {
			out = append(out, f)
		}
	}
	return out
}

func checkReset6(t *testing.T, p []byte, from, to string, sport, dport uint16, seq, ack uint32, flags uint8) {
	t.Helper()
	h := wire.IPv6(p)
	if netip.AddrFrom16(h.Src()).String() != from || netip.AddrFrom16(h.Dst()).String() != to || h.HopLimit() != 64 {
		t.Errorf("reset %s → %s hop limit %d, want %s → %s, 64", netip.AddrFrom16(h.Src()), netip.AddrFrom16(h.Dst()), h.HopLimit(), from, to)
	}
	seg := wire.TCP(h.Payload())
	if seg.Check() != nil || len(seg) != wire.TCPMinimumSize {
		t.Fatalf("reset segment % x", seg)
	}
	if !seg.IsChecksumValid(wire.IPv6PseudoChecksum(h, wire.ProtocolTCP, uint32(len(seg)))) {
		t.Error("bad TCP checksum")
	}
	if seg.SrcPort() != sport || seg.DstPort() != dport || seg.Seq() != seq || seg.Ack() != ack || seg.Flags() != flags {
		t.Errorf("reset %d→%d seq %d ack %d flags %#x; want %d→%d seq %d ack %d flags %#x",
			seg.SrcPort(), seg.DstPort(), seg.Seq(), seg.Ack(), seg.Flags(), sport, dport, seq, ack, flags)
	}
}

// Without transport.tcp, TCP to the router's addresses (global or
// link-local) gets a reset from the address it was sent to; a reset, a
// corrupted segment or a segment to a multicast group gets nothing.
func TestTCPResetWithoutTransport6(t *testing.T) {
	r, _ := routerAlone(t, "")
	a := r.Link(t, "a")
	a.InjectFrames([][]byte{tcp6("2001:db8:1::2", "2001:db8:2::1", 40000, 22, 1000, 0, wire.TCPFlagSyn, nil)})
	back := only(pt.Drain(a), wire.ProtocolTCP)
	if len(back) != 1 {
		t.Fatalf("%d resets for a SYN (%s)", len(back), r.DumpCounters())
	}
	checkReset6(t, back[0], "2001:db8:2::1", "2001:db8:1::2", 22, 40000, 0, 1001, wire.TCPFlagRst|wire.TCPFlagAck)

	a.InjectFrames([][]byte{tcp6("2001:db8:1::2", "2001:db8:1::1", 40001, 80, 7, 99, wire.TCPFlagAck, []byte("x"))})
	if back = only(pt.Drain(a), wire.ProtocolTCP); len(back) != 1 {
		t.Fatalf("%d resets for an ACK", len(back))
	}
	checkReset6(t, back[0], "2001:db8:1::1", "2001:db8:1::2", 80, 40001, 99, 0, wire.TCPFlagRst)

	bad := tcp6("2001:db8:1::2", "2001:db8:1::1", 40003, 80, 1, 0, wire.TCPFlagSyn, nil)
	bad[len(bad)-1] ^= 1
	a.InjectFrames([][]byte{
		tcp6("2001:db8:1::2", "2001:db8:1::1", 40003, 80, 1, 0, wire.TCPFlagRst, nil),
		bad,
		tcp6("2001:db8:1::2", "ff02::1", 40003, 80, 1, 0, wire.TCPFlagSyn, nil),
	})
	if back = only(pt.Drain(a), wire.ProtocolTCP); len(back) != 0 {
		t.Fatalf("%d packets back for a reset, a corrupted segment and a multicast SYN", len(back))
	}
	r.WantCounters(t, "ipv6", map[string]uint64{"tcp_no_transport": 4, "tcp_reset_out": 2, "transport_bad_checksum": 1})
}

// Without transport.udp every UDP port is closed: ICMPv6 port unreachable
// (was: parameter problem, unrecognized next header).
func TestUDPPortUnreachableWithoutTransport6(t *testing.T) {
	r, _ := routerAlone(t, "")
	a := r.Link(t, "a")
	p := udp6("2001:db8:1::2", "2001:db8:1::1", 1000, 53, 64, []byte("query"))
	a.InjectFrames([][]byte{p})
	back := only(pt.Drain(a), wire.ProtocolICMPv6)
	if len(back) != 1 {
		t.Fatalf("%d ICMPv6 messages back, want port unreachable", len(back))
	}
	checkICMP6(t, back[0], "2001:db8:1::1", "2001:db8:1::2", wire.ICMPv6DstUnreachable, wire.ICMPv6PortUnreachable)
	// To the router's address on another link: the error comes from it.
	a.InjectFrames([][]byte{udp6("2001:db8:1::2", "2001:db8:2::1", 1000, 53, 64, []byte("query"))})
	if back = only(pt.Drain(a), wire.ProtocolICMPv6); len(back) != 1 {
		t.Fatalf("%d ICMPv6 messages back for the far address", len(back))
	}
	checkICMP6(t, back[0], "2001:db8:2::1", "2001:db8:1::2", wire.ICMPv6DstUnreachable, wire.ICMPv6PortUnreachable)
	// Another protocol still gets parameter problem.
	a.InjectFrames([][]byte{ip6("2001:db8:1::2", "2001:db8:1::1", 132, 64, make([]byte, 12))})
	if back = only(pt.Drain(a), wire.ProtocolICMPv6); len(back) != 1 {
		t.Fatalf("%d ICMPv6 messages for SCTP", len(back))
	}
	checkICMP6(t, back[0], "2001:db8:1::1", "2001:db8:1::2", wire.ICMPv6ParamProblem, wire.ICMPv6UnrecognizedNextHeader)
	r.WantCounters(t, "ipv6", map[string]uint64{"udp_no_transport": 2, "unknown_protocol": 1})
}
