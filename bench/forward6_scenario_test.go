package bench

// Shared scenario for the IPv6 forwarding benchmarks (BenchmarkForward6GVisor
// and BenchmarkForward6Pipestack), the IPv6 twin of scenario_test.go:
//
//	2001:db8:1::2:1000 --> [nic1 2001:db8:1::1/64 | router | nic2 2001:db8:2::1/64] --> 2001:db8:2::2:2000
//
// Like scenario_test.go it imports neither stack. The MACs and the batch and
// queue sizes are those of the IPv4 scenario.

import (
	"encoding/binary"
	"testing"
)

const (
	ipv6HeaderLen = 40
	etherTypeIPv6 = 0x86dd
	initialHop    = 64
)

// Scenario addresses.
var (
	src6  = [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 15: 2} // 2001:db8:1::2
	dst6  = [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 2, 15: 2} // 2001:db8:2::2
	nic16 = [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 15: 1} // 2001:db8:1::1/64
	nic26 = [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 2, 15: 1} // 2001:db8:2::1/64
)

// packetSizes6 are the IPv6 packet sizes (40-byte header included)
// benchmarked: 62 B is the smallest IPv6/UDP packet that fills a
// minimum-size Ethernet frame (the IPv6 twin of IPv4's 46 B), 1500 B a
// full-MTU packet.
var packetSizes6 = []int{62, 1500}

// buildUDP6Packet returns an IPv6/UDP packet src6:1000 → dst6:2000 with hop
// limit 64, total length totalLen (payload length totalLen-40), a
// deterministic UDP payload of totalLen-48 bytes and a valid UDP checksum.
func buildUDP6Packet(totalLen int) []byte {
	return buildUDP6FlowPacket(totalLen, src6, dst6, srcPort, dstPort)
}

// buildUDP6FlowPacket is buildUDP6Packet for the flow src:sport → dst:dport.
func buildUDP6FlowPacket(totalLen int, src, dst [16]byte, sport, dport uint16) []byte {
	if totalLen < ipv6HeaderLen+udpHeaderLen || totalLen > ipv6HeaderLen+0xffff {
		panic("buildUDP6Packet: bad total length")
	}
	p := make([]byte, totalLen)
	p[0] = 0x60 // version 6, traffic class 0, flow label 0
	binary.BigEndian.PutUint16(p[4:6], uint16(totalLen-ipv6HeaderLen))
	p[6] = 17 // UDP
	p[7] = initialHop
	copy(p[8:24], src[:])
	copy(p[24:40], dst[:])
	udp := p[ipv6HeaderLen:]
	binary.BigEndian.PutUint16(udp[0:2], sport)
	binary.BigEndian.PutUint16(udp[2:4], dport)
	binary.BigEndian.PutUint16(udp[4:6], uint16(len(udp)))
	payload := udp[udpHeaderLen:]
	for i := range payload {
		payload[i] = payloadByte(i)
	}
	binary.BigEndian.PutUint16(udp[6:8], udp6Checksum(p))
	return p
}

// udp6Checksum computes the UDP checksum of an IPv6/UDP packet (no
// extension headers) over the RFC 8200 pseudo-header; 0 becomes 0xffff.
func udp6Checksum(p []byte) uint16 {
	udp := p[ipv6HeaderLen:]
	sum := checksumAdd(0, p[8:40]) // source and destination
	sum += uint32(len(udp)) + 17   // upper-layer length, next header
	old := binary.BigEndian.Uint16(udp[6:8])
	udp[6], udp[7] = 0, 0
	sum = checksumAdd(sum, udp)
	binary.BigEndian.PutUint16(udp[6:8], old)
	c := ^checksumFold(sum)
	if c == 0 {
		c = 0xffff
	}
	return c
}

// buildEthFrame6 returns an Ethernet II frame dst <- src carrying ipPkt.
func buildEthFrame6(dst, src [6]byte, ipPkt []byte) []byte {
	f := buildEthFrame(dst, src, ipPkt)
	binary.BigEndian.PutUint16(f[12:14], etherTypeIPv6)
	return f
}

// checkForwarded6 checks that got is want as a router must emit it: hop
// limit decremented by exactly one, every other byte unchanged (IPv6 has no
// header checksum; the UDP checksum does not cover the hop limit). It does
// not allocate on success.
func checkForwarded6(tb testing.TB, got []byte, want []byte) {
	if len(got) != len(want) {
		tb.Helper()
		tb.Fatalf("forwarded packet length %d, want %d", len(got), len(want))
	}
	if len(got) < ipv6HeaderLen {
		tb.Helper()
		tb.Fatalf("forwarded packet too short: %d bytes", len(got))
	}
	if got[7] != want[7]-1 {
		tb.Helper()
		tb.Fatalf("forwarded hop limit %d, want %d", got[7], want[7]-1)
	}
	if string(got[:7]) != string(want[:7]) || string(got[8:]) != string(want[8:]) {
		tb.Helper()
		for i := range got {
			if i != 7 && got[i] != want[i] {
				tb.Fatalf("forwarded packet differs at byte %d: got %#02x, want %#02x", i, got[i], want[i])
			}
		}
		tb.Fatalf("forwarded packet differs")
	}
}

// checkEthHeader6 checks the Ethernet header of a forwarded IPv6 frame.
func checkEthHeader6(tb testing.TB, frame []byte, dst, src [6]byte) {
	if len(frame) < ethHeaderLen {
		tb.Helper()
		tb.Fatalf("forwarded frame too short: %d bytes", len(frame))
	}
	if [6]byte(frame[0:6]) != dst || [6]byte(frame[6:12]) != src ||
		binary.BigEndian.Uint16(frame[12:14]) != etherTypeIPv6 {
		tb.Helper()
		failEthHeader(tb, frame, dst, src)
	}
}

// TestScenario6Packets sanity-checks the IPv6 packet builders and checker.
func TestScenario6Packets(t *testing.T) {
	for _, size := range packetSizes6 {
		p := buildUDP6Packet(size)
		if len(p) != size || int(binary.BigEndian.Uint16(p[4:6]))+ipv6HeaderLen != size || p[0]>>4 != 6 {
			t.Fatalf("size %d: bad length or version", size)
		}
		if udp6Checksum(p) != binary.BigEndian.Uint16(p[ipv6HeaderLen+6:]) {
			t.Fatalf("size %d: bad UDP checksum", size)
		}
		fwd := append([]byte(nil), p...)
		fwd[7]--
		checkForwarded6(t, fwd, p)
		f := buildEthFrame6(nic1MAC, senderMAC, p)
		checkEthHeader6(t, f, nic1MAC, senderMAC)
		if string(f[ethHeaderLen:]) != string(p) {
			t.Fatalf("size %d: bad frame payload", size)
		}
	}
}
