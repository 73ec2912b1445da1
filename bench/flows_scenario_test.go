package bench

// Many-flow variants of the forwarding benchmarks (IPv4 and IPv6, both
// stacks), shared like scenario_test.go: it imports neither stack.
//
// flows = 1 is the original scenario, one packet (10.0.1.2:1000 →
// 10.0.2.2:2000, or its IPv6 twin) forwarded over and over. With 64 or
// 4,096 flows, flow i is its own (source address, source port, destination
// address, destination port) tuple and its packet is built up front; the
// batches of 64 take the flows in round robin, so no two consecutive
// packets belong to one flow and no cache of the last destination, route
// or neighbor can carry the result (64 flows: each batch is every flow
// once; 4,096: a flow comes back every 64 batches).
//
// The flows' destinations are beyond the router, behind the receiver as the
// next hop on nic 2 — many destinations behind one gateway, as a router
// sees them: 198.18.0.0/15 (RFC 2544's benchmarking range) via 10.0.2.2
// and 2001:2::/48 (RFC 5180's) via 2001:db8:2::2. Both stacks have these
// routes in every variant (flows = 1 too), beside the two connected ones.
//
//	IPv4 flow i: 10.0.1.(2 + i%250):(1024+i) → 198.18.0.1+i:(2000+i)
//	IPv6 flow i: 2001:db8:1::(2+i):(1024+i)  → 2001:2::(1+i):(2000+i)

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// flowCounts are the numbers of flows benchmarked.
var flowCounts = []int{1, 64, 4096}

const (
	beyond4     = 0xc6120000 // 198.18.0.0/15, via dstIP on nic 2
	beyond4Bits = 15
	beyond6Bits = 48 // beyond6/48, via dst6 on nic 2
)

var beyond6 = [16]byte{0x20, 0x01, 0x00, 0x02} // 2001:2::

// flowName is a sub-benchmark's name: "ip/46B" for one flow (the original
// names), "ip/46B/64flows" for more.
func flowName(framing string, size, flows int) string {
	if flows == 1 {
		return fmt.Sprintf("%s/%dB", framing, size)
	}
	return fmt.Sprintf("%s/%dB/%dflows", framing, size, flows)
}

// flowPacket4 is IPv4 flow i of n (n == 1: the single-flow packet).
func flowPacket4(size, i, n int) []byte {
	if n == 1 {
		return buildUDPPacket(size)
	}
	return buildUDPFlowPacket(size, srcIP+uint32(i%250), beyond4+1+uint32(i), uint16(1024+i), uint16(2000+i))
}

// flowPacket6 is IPv6 flow i of n (n == 1: the single-flow packet).
func flowPacket6(size, i, n int) []byte {
	if n == 1 {
		return buildUDP6Packet(size)
	}
	src, dst := src6, beyond6
	binary.BigEndian.PutUint16(src[14:], uint16(2+i))
	binary.BigEndian.PutUint16(dst[14:], uint16(1+i))
	return buildUDP6FlowPacket(size, src, dst, uint16(1024+i), uint16(2000+i))
}

// flowSet is the packets of n flows prepared up front, handed out in round
// robin a batch at a time without copying: wire[k] and ip[k] are flow k%n's
// frame and IP packet, for k < n+batchSize, so every batch is one slice.
type flowSet struct {
	wire, ip [][]byte
	n, next  int
}

// newFlowSet builds n flows; build(i) returns flow i's IP packet and the
// frame that carries it on the wire (the same slice on IP links).
func newFlowSet(n int, build func(i int) (ip, wire []byte)) *flowSet {
	f := &flowSet{n: n}
	for k := 0; k < n+batchSize; k++ {
		if k < n {
			ip, wire := build(k)
			f.ip = append(f.ip, ip)
			f.wire = append(f.wire, wire)
		} else {
			f.ip = append(f.ip, f.ip[k%n])
			f.wire = append(f.wire, f.wire[k%n])
		}
	}
	return f
}

// batch returns the next m ≤ batchSize frames and the IP packets they
// carry, and advances the round robin.
func (f *flowSet) batch(m int) (wire, ip [][]byte) {
	wire, ip = f.wire[f.next:f.next+m], f.ip[f.next:f.next+m]
	f.next = (f.next + m) % f.n
	return wire, ip
}

// warmBatches is how many batches the warm-up runs: every flow once.
func (f *flowSet) warmBatches() int { return (f.n + batchSize - 1) / batchSize }

// TestFlowSets checks the many-flow packets: valid, distinct tuples, and
// batches that cycle through every flow in order.
func TestFlowSets(t *testing.T) {
	for _, n := range flowCounts {
		fs := newFlowSet(n, func(i int) ([]byte, []byte) { p := flowPacket4(46, i, n); return p, p })
		fs6 := newFlowSet(n, func(i int) ([]byte, []byte) { p := flowPacket6(62, i, n); return p, p })
		seen, seen6 := map[string]bool{}, map[string]bool{}
		for i := 0; i < n; i++ {
			p, p6 := fs.ip[i], fs6.ip[i]
			if !ipv4HeaderChecksumOK(p[:ipv4HeaderLen]) || !udpChecksumOK(p) {
				t.Fatalf("%d flows: flow %d: bad IPv4/UDP checksum", n, i)
			}
			if udp6Checksum(p6) != binary.BigEndian.Uint16(p6[ipv6HeaderLen+6:]) {
				t.Fatalf("%d flows: flow %d: bad IPv6 UDP checksum", n, i)
			}
			seen[string(p[12:24])] = true // addresses and ports
			seen6[string(p6[8:44])] = true
			if n > 1 && (p[16] != 198 || p[17]&0xfe != 18 || string(p6[24:30]) != string(beyond6[:6])) {
				t.Fatalf("%d flows: flow %d: destination outside the routed prefixes", n, i)
			}
		}
		if len(seen) != n || len(seen6) != n {
			t.Fatalf("%d flows: %d distinct IPv4 and %d IPv6 tuples", n, len(seen), len(seen6))
		}
		for k := 0; k < 3*n+7; k += batchSize {
			_, ip := fs.batch(batchSize)
			for j, p := range ip {
				if string(p) != string(fs.ip[(k+j)%n]) {
					t.Fatalf("%d flows: batch at %d: packet %d is not flow %d", n, k, j, (k+j)%n)
				}
			}
		}
	}
}
