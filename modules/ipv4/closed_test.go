package ipv4_test

import (
	"testing"

	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// tcp4 builds an IPv4/TCP packet with valid checksums.
func tcp4(src, dst string, sport, dport uint16, seq, ack uint32, flags uint8, payload []byte) []byte {
	s, d := addr4(src), addr4(dst)
	total := wire.IPv4MinimumSize + wire.TCPMinimumSize + len(payload)
	b := make([]byte, total)
	ip := wire.IPv4(b)
	ip.Encode(&wire.IPv4Fields{TotalLength: uint16(total), ID: 7, TTL: 61, Protocol: wire.ProtocolTCP, Src: s, Dst: d})
	ip.SetChecksum(ip.CalculateChecksum())
	seg := wire.TCP(b[wire.IPv4MinimumSize:])
	seg.Encode(&wire.TCPFields{SrcPort: sport, DstPort: dport, Seq: seq, Ack: ack, Flags: flags, Window: 64240})
	copy(seg.Payload(), payload)
	seg.SetChecksum(seg.CalculateChecksum(wire.IPv4PseudoChecksum(ip, uint16(len(seg)))))
	return b
}

// checkReset checks that p is a valid IPv4 TCP reset from → to (ports
// swapped) with the given seq, ack and flags, the default TTL and good
// checksums.
func checkReset(t *testing.T, p []byte, from, to string, sport, dport uint16, seq, ack uint32, flags uint8) {
	t.Helper()
	h := wire.IPv4(p)
	if h.Check() != nil || !h.IsChecksumValid() || h.Protocol() != wire.ProtocolTCP {
		t.Fatalf("not a valid IPv4 TCP packet: % x", p)
	}
	pt.CheckIPv4(t, p, pt.SrcAddr(from), pt.DstAddr(to), pt.TTL(64))
	seg := wire.TCP(h.Payload())
	if seg.Check() != nil || len(seg) != wire.TCPMinimumSize {
		t.Fatalf("reset segment % x", seg)
	}
	if !seg.IsChecksumValid(wire.IPv4PseudoChecksum(h, uint16(len(seg)))) {
		t.Error("bad TCP checksum")
	}
	if seg.SrcPort() != sport || seg.DstPort() != dport || seg.Seq() != seq || seg.Ack() != ack || seg.Flags() != flags || seg.Window() != 0 {
		t.Errorf("reset %d→%d seq %d ack %d flags %#x window %d; want %d→%d seq %d ack %d flags %#x",
			seg.SrcPort(), seg.DstPort(), seg.Seq(), seg.Ack(), seg.Flags(), seg.Window(), sport, dport, seq, ack, flags)
	}
}

// Without transport.tcp the stack answers TCP to its addresses as a Linux
// host with no listener does: a SYN gets RST|ACK (seq 0, ack SEG.SEQ+1), a
// segment with ACK gets RST with seq SEG.ACK, from the address the segment
// was sent to (here the router's address on another link); a reset, a
// corrupted segment and a segment to a broadcast address get nothing.
func TestTCPResetWithoutTransport(t *testing.T) {
	r, inject, readA, _ := routerAlone(t, "")
	inject(tcp4("10.0.1.2", "10.0.2.1", 40000, 22, 1000, 0, wire.TCPFlagSyn, nil))
	back := readA()
	if len(back) != 1 {
		t.Fatalf("%d packets back for a SYN, want a reset (%s)", len(back), r.DumpCounters())
	}
	checkReset(t, back[0], "10.0.2.1", "10.0.1.2", 22, 40000, 0, 1001, wire.TCPFlagRst|wire.TCPFlagAck)

	inject(tcp4("10.0.1.2", "10.0.1.1", 40001, 80, 5000, 0, wire.TCPFlagFin|wire.TCPFlagPsh, []byte("GET /")))
	if back = readA(); len(back) != 1 {
		t.Fatalf("%d packets back for FIN with data", len(back))
	}
	checkReset(t, back[0], "10.0.1.1", "10.0.1.2", 80, 40001, 0, 5006, wire.TCPFlagRst|wire.TCPFlagAck)

	inject(tcp4("10.0.1.2", "10.0.1.1", 40002, 80, 5000, 0xdeadbeef, wire.TCPFlagAck|wire.TCPFlagPsh, []byte("data")))
	if back = readA(); len(back) != 1 {
		t.Fatalf("%d packets back for ACK with data", len(back))
	}
	checkReset(t, back[0], "10.0.1.1", "10.0.1.2", 80, 40002, 0xdeadbeef, 0, wire.TCPFlagRst)

	bad := tcp4("10.0.1.2", "10.0.1.1", 40003, 80, 1, 0, wire.TCPFlagSyn, nil)
	bad[len(bad)-1] ^= 1
	inject(tcp4("10.0.1.2", "10.0.1.1", 40003, 80, 1, 0, wire.TCPFlagRst, nil),
		tcp4("10.0.1.2", "10.0.1.1", 40003, 80, 1, 2, wire.TCPFlagRst|wire.TCPFlagAck, nil),
		bad,
		tcp4("10.0.1.2", "10.0.1.255", 40003, 80, 1, 0, wire.TCPFlagSyn, nil))
	if back = readA(); len(back) != 0 {
		t.Fatalf("%d packets back for resets, a corrupted segment and a broadcast", len(back))
	}
	r.WantCounters(t, "ipv4", map[string]uint64{
		"tcp_no_transport": 6, "tcp_reset_out": 3, "transport_bad_checksum": 1, "unknown_protocol": 0, "icmp_error_out": 0,
	})
}

// Resets are not rate limited (as Linux, for closed ports), unlike ICMP.
func TestTCPResetNotRateLimited(t *testing.T) {
	_, inject, readA, _ := routerAlone(t, "")
	var syns [][]byte
	for i := 0; i < 200; i++ {
		syns = append(syns, tcp4("10.0.1.2", "10.0.1.1", uint16(30000+i), 22, uint32(i), 0, wire.TCPFlagSyn, nil))
	}
	inject(syns...)
	if got := len(readA()); got != 200 {
		t.Fatalf("%d resets for 200 SYNs", got)
	}
}

// Without transport.udp every UDP port is closed: port unreachable (was:
// protocol unreachable, which made nmap report every port "filtered"),
// through the ICMP limiter; a datagram with a bad checksum gets nothing.
func TestUDPPortUnreachableWithoutTransport(t *testing.T) {
	r, inject, readA, _ := routerAlone(t, "")
	p := pt.UDP4("10.0.1.2", "10.0.1.1", 1000, 161, 64, []byte("public"))
	inject(p)
	back := readA()
	if len(back) != 1 {
		t.Fatalf("got %d packets back, want port unreachable", len(back))
	}
	pt.CheckIPv4(t, back[0], pt.SrcAddr("10.0.1.1"), pt.DstAddr("10.0.1.2"), pt.TTL(64),
		pt.ICMP(wire.ICMPv4DstUnreachable, wire.ICMPv4PortUnreachable, pt.Quotes(p)))
	// To the router's address on another link: the error comes from that
	// address (as Linux; nmap calls a port unreachable from another
	// address "filtered").
	far := pt.UDP4("10.0.1.2", "10.0.2.1", 1000, 53, 64, []byte("query"))
	inject(far)
	if back = readA(); len(back) != 1 {
		t.Fatalf("got %d packets back for the far address", len(back))
	}
	pt.CheckIPv4(t, back[0], pt.SrcAddr("10.0.2.1"), pt.DstAddr("10.0.1.2"),
		pt.ICMP(wire.ICMPv4DstUnreachable, wire.ICMPv4PortUnreachable, pt.Quotes(far)))
	bad := append([]byte(nil), p...)
	bad[len(bad)-1] ^= 1
	inject(bad)
	if back = readA(); len(back) != 0 {
		t.Fatalf("%d packets back for a corrupted datagram", len(back))
	}
	r.WantCounters(t, "ipv4", map[string]uint64{"udp_no_transport": 2, "transport_bad_checksum": 1, "icmp_dest_unreachable_out": 2})
}

// With a transport for TCP configured, TCP goes to it: the network layer
// sends no reset of its own.
func TestTCPGoesToItsTransport(t *testing.T) {
	name := pt.UniqueName(t)
	l := newLab(t, "network.ipv4, {module: transport.collect, protocol: 6, name: "+name+"}")
	l.inject(l.a, tcp4("10.0.1.2", "10.0.1.1", 40000, 22, 1000, 0, wire.TCPFlagSyn, nil))
	if got := pt.Collected(name).Len(); got != 1 {
		t.Fatalf("%d segments reached the TCP transport", got)
	}
	if back := pt.Drain(l.a); len(back) != 0 {
		t.Fatalf("%d packets back: the network layer answered a segment its transport owns", len(back))
	}
}
