package bench

// Shared scenario for the IPv4 forwarding benchmarks.
//
// Both halves of the comparison (BenchmarkForwardGVisor and, once it lands,
// the pipestack benchmark) forward the same packets through the same
// topology and check them the same way:
//
//	10.0.1.2:1000 --> [nic1 10.0.1.1/24 | router | nic2 10.0.2.1/24] --> 10.0.2.2:2000
//
// Everything in this file is self-contained on purpose: it must not import
// packages of the main module (nor of gVisor), so that it measures neither
// stack's helpers.

import (
	"encoding/binary"
	"testing"
	"time"
)

// Scenario addresses (IPv4, host byte order) and ports.
const (
	srcIP = 0x0a000102 // 10.0.1.2, the sender behind nic 1
	dstIP = 0x0a000202 // 10.0.2.2, the receiver behind nic 2

	nic1IP = 0x0a000101 // 10.0.1.1/24
	nic2IP = 0x0a000201 // 10.0.2.1/24

	srcPort = 1000
	dstPort = 2000

	initialTTL = 64

	ipv4HeaderLen = 20
	udpHeaderLen  = 8
	ethHeaderLen  = 14
	etherTypeIPv4 = 0x0800

	// batchSize is the number of packets injected before draining the
	// egress NIC. Link queues must hold at least this many packets.
	batchSize = 64
	// queueSize is the capacity of the link-level queues in the benchmarks.
	queueSize = 1024
)

// MAC addresses used by the eth/* variants.
var (
	senderMAC   = [6]byte{0x02, 0x00, 0x00, 0x00, 0x01, 0x02} // 10.0.1.2
	nic1MAC     = [6]byte{0x02, 0x00, 0x00, 0x00, 0x01, 0x01} // 10.0.1.1
	nic2MAC     = [6]byte{0x02, 0x00, 0x00, 0x00, 0x02, 0x01} // 10.0.2.1
	receiverMAC = [6]byte{0x02, 0x00, 0x00, 0x00, 0x02, 0x02} // 10.0.2.2
)

// packetSizes are the IP total lengths benchmarked (46 B is the smallest
// IPv4/UDP packet that fills a minimum-size Ethernet frame).
var packetSizes = []int{46, 1500}

// ip4 returns the network-order bytes of a host-order IPv4 address.
func ip4(a uint32) [4]byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], a)
	return b
}

// payloadByte is the deterministic payload pattern: byte i of the UDP payload.
func payloadByte(i int) byte { return byte(i*7 + 3) }

// checksumAdd adds b to a running ones'-complement sum (not folded).
func checksumAdd(sum uint32, b []byte) uint32 {
	n := len(b)
	for i := 0; i+1 < n; i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if n%2 == 1 {
		sum += uint32(b[n-1]) << 8
	}
	return sum
}

// checksumFold folds a running sum to 16 bits (not complemented).
func checksumFold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// ipv4HeaderChecksumOK reports whether the IPv4 header h (including its
// checksum field) sums to 0xffff.
func ipv4HeaderChecksumOK(h []byte) bool {
	return checksumFold(checksumAdd(0, h)) == 0xffff
}

// udpChecksumOK verifies the UDP checksum of the IPv4/UDP packet pkt
// (20-byte IP header, no options).
func udpChecksumOK(pkt []byte) bool {
	udp := pkt[ipv4HeaderLen:]
	if binary.BigEndian.Uint16(udp[6:8]) == 0 {
		return true // checksum not used
	}
	sum := checksumAdd(0, pkt[12:20]) // src + dst
	sum += 17 + uint32(len(udp))      // protocol + UDP length
	sum = checksumAdd(sum, udp)
	return checksumFold(sum) == 0xffff
}

// buildUDPPacket returns an IPv4/UDP packet from srcIP:srcPort to
// dstIP:dstPort with TTL 64, IP total length totalLen, a deterministic
// payload of totalLen-28 bytes and valid IP and UDP checksums.
func buildUDPPacket(totalLen int) []byte {
	return buildUDPFlowPacket(totalLen, srcIP, dstIP, srcPort, dstPort)
}

// buildUDPFlowPacket is buildUDPPacket for the flow src:sport → dst:dport.
func buildUDPFlowPacket(totalLen int, srcA, dstA uint32, sport, dport uint16) []byte {
	if totalLen < ipv4HeaderLen+udpHeaderLen || totalLen > 0xffff {
		panic("buildUDPPacket: bad total length")
	}
	p := make([]byte, totalLen)
	src, dst := ip4(srcA), ip4(dstA)

	// IPv4 header.
	p[0] = 0x45 // version 4, IHL 5
	p[1] = 0    // TOS
	binary.BigEndian.PutUint16(p[2:4], uint16(totalLen))
	binary.BigEndian.PutUint16(p[4:6], 0x1234) // identification
	binary.BigEndian.PutUint16(p[6:8], 0)      // flags/fragment offset
	p[8] = initialTTL
	p[9] = 17 // UDP
	copy(p[12:16], src[:])
	copy(p[16:20], dst[:])
	binary.BigEndian.PutUint16(p[10:12], ^checksumFold(checksumAdd(0, p[:ipv4HeaderLen])))

	// UDP header + payload.
	udp := p[ipv4HeaderLen:]
	binary.BigEndian.PutUint16(udp[0:2], sport)
	binary.BigEndian.PutUint16(udp[2:4], dport)
	binary.BigEndian.PutUint16(udp[4:6], uint16(len(udp)))
	payload := udp[udpHeaderLen:]
	for i := range payload {
		payload[i] = payloadByte(i)
	}
	sum := checksumAdd(0, p[12:20])
	sum += 17 + uint32(len(udp))
	sum = checksumAdd(sum, udp)
	c := ^checksumFold(sum)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:8], c)
	return p
}

// buildEthFrame returns an Ethernet II frame dst <- src carrying ipPkt.
func buildEthFrame(dst, src [6]byte, ipPkt []byte) []byte {
	f := make([]byte, ethHeaderLen+len(ipPkt))
	copy(f[0:6], dst[:])
	copy(f[6:12], src[:])
	binary.BigEndian.PutUint16(f[12:14], etherTypeIPv4)
	copy(f[ethHeaderLen:], ipPkt)
	return f
}

// checkForwarded checks that got is want (the injected IPv4 packet) as a
// router must emit it: TTL decremented by exactly one, a valid IPv4 header
// checksum, and every other byte (rest of the header, UDP header, payload)
// unchanged. It fails tb fatally on any mismatch. It does not allocate on
// success.
func checkForwarded(tb testing.TB, got []byte, want []byte) {
	if len(got) != len(want) {
		tb.Helper()
		tb.Fatalf("forwarded packet length %d, want %d", len(got), len(want))
	}
	if len(got) < ipv4HeaderLen {
		tb.Helper()
		tb.Fatalf("forwarded packet too short: %d bytes", len(got))
	}
	if got[8] != want[8]-1 {
		tb.Helper()
		tb.Fatalf("forwarded TTL %d, want %d", got[8], want[8]-1)
	}
	if !ipv4HeaderChecksumOK(got[:ipv4HeaderLen]) {
		tb.Helper()
		tb.Fatalf("forwarded packet has bad IPv4 header checksum %#04x", binary.BigEndian.Uint16(got[10:12]))
	}
	// Bytes 0..7 (before TTL), 9 (protocol) and 12.. (addresses, UDP, payload)
	// must be untouched.
	if string(got[:8]) != string(want[:8]) || got[9] != want[9] || string(got[12:]) != string(want[12:]) {
		tb.Helper()
		for i := range got {
			if i != 8 && i != 10 && i != 11 && got[i] != want[i] {
				tb.Fatalf("forwarded packet differs at byte %d: got %#02x, want %#02x", i, got[i], want[i])
			}
		}
		tb.Fatalf("forwarded packet differs")
	}
}

// checkEthHeader checks the Ethernet header of a forwarded frame.
func checkEthHeader(tb testing.TB, frame []byte, dst, src [6]byte) {
	if len(frame) < ethHeaderLen {
		tb.Helper()
		tb.Fatalf("forwarded frame too short: %d bytes", len(frame))
	}
	if [6]byte(frame[0:6]) != dst || [6]byte(frame[6:12]) != src ||
		binary.BigEndian.Uint16(frame[12:14]) != etherTypeIPv4 {
		tb.Helper()
		failEthHeader(tb, frame, dst, src)
	}
}

// failEthHeader is checkEthHeader's failure path, kept apart so that the
// arguments escaping into Fatalf do not make the check allocate.
//
//go:noinline
func failEthHeader(tb testing.TB, frame []byte, dst, src [6]byte) {
	tb.Helper()
	tb.Fatalf("forwarded frame header dst=%x src=%x type=%#04x, want dst=%x src=%x type=0x0800",
		frame[0:6], frame[6:12], binary.BigEndian.Uint16(frame[12:14]), dst[:], src[:])
}

// reportRates reports the rates of a forwarding benchmark whose timed loop
// began when the process had used cpu0 of CPU time: pps (wall clock) and
// cpu-ns/pkt, the process's CPU time (every thread: the stack's goroutines
// and the garbage collector too) per packet. On a shared machine the wall
// clock includes the time the benchmark waited for a CPU; the CPU time
// does not, so the ratio of the cpu-ns/pkt figures holds when other work
// is running (bench/ratio.sh prints both ratios).
func reportRates(b *testing.B, cpu0 time.Duration) {
	cpu := processCPU() - cpu0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pps")
	if cpu0 > 0 && cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/pkt")
	}
}

// TestScenarioPackets sanity-checks the packet builders and the checker.
func TestScenarioPackets(t *testing.T) {
	for _, size := range packetSizes {
		p := buildUDPPacket(size)
		if len(p) != size || int(binary.BigEndian.Uint16(p[2:4])) != size {
			t.Fatalf("size %d: bad length", size)
		}
		if !ipv4HeaderChecksumOK(p[:ipv4HeaderLen]) {
			t.Fatalf("size %d: bad IP checksum", size)
		}
		if !udpChecksumOK(p) {
			t.Fatalf("size %d: bad UDP checksum", size)
		}
		// Simulate a router: TTL-1, incremental checksum via recomputation.
		fwd := append([]byte(nil), p...)
		fwd[8]--
		fwd[10], fwd[11] = 0, 0
		binary.BigEndian.PutUint16(fwd[10:12], ^checksumFold(checksumAdd(0, fwd[:ipv4HeaderLen])))
		checkForwarded(t, fwd, p)
		if !udpChecksumOK(fwd) {
			t.Fatalf("size %d: forwarded UDP checksum changed", size)
		}
		f := buildEthFrame(nic1MAC, senderMAC, p)
		checkEthHeader(t, f, nic1MAC, senderMAC)
		if string(f[ethHeaderLen:]) != string(p) {
			t.Fatalf("size %d: bad frame payload", size)
		}
	}
}
