package stackfuzz

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

func netipAddrPort(s string) net.Addr {
	return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s))
}

// rec encodes one operation of an input.
func rec(op byte, b []byte) []byte {
	out := []byte{op, 0, 0}
	binary.BigEndian.PutUint16(out[1:], uint16(len(b)))
	return append(out, b...)
}

func eth(dst, src wire.MAC, etherType uint16, payload []byte) []byte {
	return pt.EthFrame(dst, src, etherType, payload)
}

// ethIP wraps an IP packet in an Ethernet header from the lan peer to the
// router, choosing the EtherType from the version nibble.
func ethIP(p []byte) []byte {
	et := uint16(wire.EtherTypeIPv4)
	if len(p) > 0 && p[0]>>4 == 6 {
		et = wire.EtherTypeIPv6
	}
	return eth(routerMAC, peerMAC, et, p)
}

// ipPart returns the IP packet inside a record of the given op (the
// Ethernet payload for the Ethernet ops).
func ipPart(op byte, b []byte) []byte {
	switch op % numOps {
	case opLAN, opHost:
		if len(b) < wire.EthernetHeaderSize {
			return nil
		}
		return b[wire.EthernetHeaderSize:]
	case opWAN, opEthIP:
		return b
	}
	return nil
}

func sum(b []byte, initial uint32) uint32 {
	s := initial
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// fixChecksums recomputes, in place and only where the lengths allow, the
// IPv4 header checksum and the checksum of a UDP, TCP, ICMP or ICMPv6
// payload that directly follows the IP header. Malformed packets are left
// as they are: this only helps the fuzzer past the checksum checks.
func fixChecksums(p []byte) {
	if len(p) < 1 {
		return
	}
	switch p[0] >> 4 {
	case 4:
		hl := int(p[0]&0xf) * 4
		if hl < 20 || len(p) < hl {
			return
		}
		p[10], p[11] = 0, 0
		binary.BigEndian.PutUint16(p[10:], fold(sum(p[:hl], 0)))
		total := int(binary.BigEndian.Uint16(p[2:]))
		if total > len(p) || total < hl || binary.BigEndian.Uint16(p[6:])&0x1fff != 0 {
			return
		}
		seg := p[hl:total]
		pseudo := sum(p[12:20], uint32(p[9])+uint32(len(seg)))
		fixL4(p[9], seg, pseudo, true)
	case 6:
		if len(p) < 40 {
			return
		}
		plen := int(binary.BigEndian.Uint16(p[4:]))
		if 40+plen > len(p) {
			return
		}
		seg := p[40 : 40+plen]
		pseudo := sum(p[8:40], uint32(p[6])+uint32(len(seg)))
		fixL4(p[6], seg, pseudo, false)
	}
}

func fixL4(proto byte, seg []byte, pseudo uint32, v4 bool) {
	off := -1
	switch proto {
	case wire.ProtocolUDP:
		off = 6
	case wire.ProtocolTCP:
		off = 16
	case wire.ProtocolICMP:
		off, pseudo = 2, 0
	case wire.ProtocolICMPv6:
		off = 2
	}
	if off < 0 || len(seg) < off+2 {
		return
	}
	seg[off], seg[off+1] = 0, 0
	binary.BigEndian.PutUint16(seg[off:], fold(sum(seg, pseudo)))
}

func ip4(src, dst string, proto uint8, id uint16, flags uint8, offset uint16, options, payload []byte) []byte {
	hl := wire.IPv4HeaderSize(len(options))
	b := make([]byte, hl+len(payload))
	wire.IPv4(b).Encode(&wire.IPv4Fields{
		TotalLength: uint16(len(b)), ID: id, Flags: flags, FragmentOffset: offset, TTL: 64, Protocol: proto,
		Src: netip.MustParseAddr(src).As4(), Dst: netip.MustParseAddr(dst).As4(), Options: options,
	})
	copy(b[hl:], payload)
	return b
}

func ip6(src, dst string, next uint8, payload []byte) []byte {
	b := make([]byte, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6] = next
	b[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	copy(b[40:], payload)
	return b
}

// frag6 is a Fragment extension header followed by data.
func frag6(next uint8, offset uint16, more bool, id uint32, data []byte) []byte {
	h := make([]byte, 8, 8+len(data))
	h[0] = next
	v := offset &^ 7
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(h[2:], v)
	binary.BigEndian.PutUint32(h[4:], id)
	return append(h, data...)
}

// destOpts is a Destination Options header of n bytes (a multiple of 8,
// at least 8), padded with PadN.
func destOpts(next uint8, n int) []byte {
	h := make([]byte, n)
	h[0] = next
	h[1] = uint8(n/8 - 1)
	h[2] = 1 // PadN
	h[3] = uint8(n - 4)
	return h
}

func seeds() [][]byte {
	var out [][]byte
	cat := func(recs ...[]byte) []byte {
		var b []byte
		for _, r := range recs {
			b = append(b, r...)
		}
		return b
	}
	payload := make([]byte, 1480)
	for i := range payload {
		payload[i] = byte(i)
	}

	// A neighbor on the lan pings the router, asks for its MAC, and sends
	// UDP through it to the wan; the wan answers towards the host.
	arpReq := make([]byte, 28)
	wire.ARP(arpReq).Encode(&wire.ARPFields{Op: wire.ARPRequest, SenderMAC: peerMAC, SenderIP: [4]byte{10, 1, 0, 50}, TargetIP: [4]byte{10, 1, 0, 1}})
	out = append(out, cat(
		rec(opLAN, eth(wire.BroadcastMAC, peerMAC, wire.EtherTypeARP, arpReq)),
		rec(opEthIP, pt.Echo4("10.1.0.50", "10.1.0.1", 64, 1, 1, []byte("ping"))),
		rec(opEthIP, pt.UDP4("10.1.0.50", "10.2.0.2", 1000, 7, 64, []byte("out"))),
		rec(opWAN, pt.UDP4("10.2.0.2", "10.1.0.2", 7, 53, 64, []byte("to the host's socket"))),
		rec(opWAN, pt.UDP4("10.2.0.2", "10.1.0.1", 7, 999, 64, []byte("closed port"))),
		rec(opWAN, pt.UDP4("10.2.0.2", "10.1.0.2", 7, 53, 1, []byte("ttl 1"))),
		rec(opClock, []byte{50}),
	))
	// Oversize forwarded traffic: fragmentation towards the 1280-byte wan,
	// and DF set → fragmentation needed.
	big := pt.UDP4("10.1.0.50", "10.2.0.2", 1000, 7, 64, payload[:1400])
	df := append([]byte(nil), big...)
	df[6] |= 0x40
	out = append(out, cat(rec(opEthIP|fixSums, big), rec(opEthIP|fixSums, df)))
	// The host's socket sends everywhere.
	out = append(out, cat(
		rec(opSend, append([]byte{0}, payload[:1400]...)),
		rec(opSend, append([]byte{1}, payload[:1400]...)),
		rec(opSend, []byte{2, 'x'}), rec(opSend, []byte{3, 'x'}), rec(opSend, []byte{4, 'x'}), rec(opSend, []byte{5, 'x'}),
		rec(opClock, []byte{100}),
	))
	// The host's socket to itself (the loopback NIC), and fragmentation
	// needed about its datagram from the wan (path MTU discovery).
	quote := pt.UDP4("10.1.0.2", "10.2.0.2", 53, 7, 63, payload[:1372])[:28]
	quote[6] |= 0x40
	fn := make([]byte, 8+len(quote))
	wire.ICMPv4(fn).Encode(&wire.ICMPv4Fields{Type: wire.ICMPv4DstUnreachable, Code: wire.ICMPv4FragmentationNeeded, Rest: wire.ICMPv4FragNeededRest(576)})
	copy(fn[8:], quote)
	wire.ICMPv4(fn).SetChecksum(wire.ICMPv4(fn).CalculateChecksum())
	fnPkt := make([]byte, 20+len(fn))
	wire.IPv4(fnPkt).Encode(&wire.IPv4Fields{TotalLength: uint16(len(fnPkt)), TTL: 64, Protocol: wire.ProtocolICMP, Src: [4]byte{10, 2, 0, 2}, Dst: [4]byte{10, 1, 0, 2}})
	copy(fnPkt[20:], fn)
	out = append(out, cat(
		rec(opSend, []byte{6, 's', 'e', 'l', 'f'}), rec(opSend, []byte{7, 'x'}), rec(opSend, []byte{8, 'x'}), rec(opSend, []byte{9, 'x'}),
		rec(opWAN, fnPkt),
		rec(opSend, append([]byte{0}, payload[:1400]...)),
		rec(opClock, []byte{100}),
	))
	// IPv6: echo to the router from the wan, a UDP datagram to the host,
	// a neighbor solicitation on the lan.
	echo6 := []byte{128, 0, 0, 0, 0, 1, 0, 1, 'p'}
	ns := make([]byte, 32)
	ns[0] = 135
	tgt := netip.MustParseAddr("fd00:1::1").As16()
	copy(ns[8:], tgt[:])
	ns[24], ns[25] = 1, 1
	copy(ns[26:], peerMAC[:])
	nsPkt := ip6("fd00:1::50", "ff02::1:ff00:1", wire.ProtocolICMPv6, ns)
	nsPkt[7] = 255
	udp6 := make([]byte, 8+20)
	binary.BigEndian.PutUint16(udp6[0:], 7)
	binary.BigEndian.PutUint16(udp6[2:], 53)
	binary.BigEndian.PutUint16(udp6[4:], uint16(len(udp6)))
	out = append(out, cat(
		rec(opWAN|fixSums, ip6("fd00:2::2", "fd00:2::1", wire.ProtocolICMPv6, echo6)),
		rec(opEthIP|fixSums, nsPkt),
		rec(opWAN|fixSums, ip6("fd00:2::2", "fd00:1::2", wire.ProtocolUDP, udp6)),
		rec(opClock, []byte{200}),
	))

	// Through the filter: a SYN to the router's port 22 (REJECT
	// tcp-reset), UDP to 161 (admin prohibited), forwarded UDP from the
	// lan to port 4000 (rejected in from_lan), to 1050 (multiport reject),
	// a dropped source, a big datagram (LOG), a SYN forwarded (TCPMSS).
	syn := make([]byte, 24)
	binary.BigEndian.PutUint16(syn[0:], 40000)
	binary.BigEndian.PutUint16(syn[2:], 22)
	binary.BigEndian.PutUint32(syn[4:], 1)
	syn[12] = 6 << 4 // data offset 6: one option
	syn[13] = 0x02   // SYN
	binary.BigEndian.PutUint16(syn[14:], 65535)
	syn[20], syn[21], syn[22], syn[23] = 2, 4, 0x05, 0xb4 // MSS 1460
	fwdSyn := append([]byte(nil), syn...)
	binary.BigEndian.PutUint16(fwdSyn[2:], 80)
	out = append(out, cat(
		rec(opEthIP|fixSums, ip4("10.1.0.50", "10.1.0.1", wire.ProtocolTCP, 5, 0, 0, nil, syn)),
		rec(opEthIP, pt.UDP4("10.1.0.50", "10.1.0.1", 1000, 161, 64, []byte("snmp"))),
		rec(opEthIP, pt.UDP4("10.1.0.50", "10.2.0.2", 1000, 4000, 64, []byte("x"))),
		rec(opEthIP, pt.UDP4("10.1.0.50", "10.2.0.2", 1000, 1050, 64, []byte("x"))),
		rec(opEthIP, pt.UDP4("10.1.0.77", "10.2.0.2", 1000, 7, 64, []byte("x"))),
		rec(opEthIP, pt.UDP4("10.1.0.50", "10.2.0.2", 1000, 7, 64, payload[:1450])),
		rec(opEthIP|fixSums, ip4("10.1.0.50", "10.2.0.2", wire.ProtocolTCP, 6, 0, 0, nil, fwdSyn)),
		rec(opClock, []byte{20}),
	))

	// The outside review's two crashes, as fragment trains sent to the
	// router's own lan addresses (it reassembles what is addressed to
	// it). IPv4: a first fragment with 40 bytes of options, then plain
	// fragments whose last ends at 65,515 bytes of payload: within the
	// bound for a 20-byte header, 40 bytes over it with the first's 60.
	// IPv6: a first fragment carrying a 1000-byte Destination Options
	// header before its Fragment header, then plain fragments whose last
	// ends at 65,535: within the bound for their own (empty)
	// unfragmentable part, 1,000 bytes over it with the first's.
	out = append(out, rec(opFrags, train(4, 40, 1480, 65515, false, wire.ProtocolUDP)))
	out = append(out, rec(opFrags, train(6, 1000, 1400, 65535, false, wire.ProtocolUDP)))
	// Ordinary trains, forwarded (to the host, from the wan) and local.
	out = append(out, cat(
		rec(opFrags, train(4, 0, 1000, 3000, true, wire.ProtocolUDP)),
		rec(opFrags, train(6, 8, 1000, 3000, true, wire.ProtocolUDP)),
		rec(opFrags, train(4, 0, 600, 2000, false, wire.ProtocolICMP)),
		rec(opFrags, train(6, 0, 600, 2000, false, wire.ProtocolICMPv6)),
		rec(opClock, []byte{255}),
	))
	out = append(out, flowSeeds(cat, payload)...)
	return out
}

// tcpSeg is a TCP segment without options.
func tcpSeg(sport, dport uint16, seq, ack uint32, flags byte, data []byte) []byte {
	b := make([]byte, 20+len(data))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12] = 5 << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	copy(b[20:], data)
	return b
}

func udpSeg(sport, dport uint16, data []byte) []byte {
	b := make([]byte, 8+len(data))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], data)
	return b
}

// flowSeeds are established flows through the router, so that their later
// packets take the flowtable's fast path (with MASQUERADE and DNAT
// applied), the SET target's and the sets' paths: each is several
// packets each way.
func flowSeeds(cat func(...[]byte) []byte, payload []byte) [][]byte {
	const (
		syn, ack, psh, fin, rst = 0x02, 0x10, 0x08, 0x01, 0x04
	)
	var out [][]byte
	u := func(src, dst string, sp, dp uint16, n int) []byte {
		return ip4(src, dst, wire.ProtocolUDP, 1, 0, 0, nil, udpSeg(sp, dp, payload[:n]))
	}
	// A UDP flow from the lan, masqueraded to 10.2.0.1, answered, then on
	// the fast path both ways; a big one over the wan's MTU (slow path:
	// fragmentation), the flowtable's timeout, the flow again.
	out = append(out, cat(
		rec(opEthIP|fixSums, u("10.1.0.50", "10.2.0.2", 3000, 7, 10)),
		rec(opWAN|fixSums, u("10.2.0.2", "10.2.0.1", 7, 3000, 10)),
		rec(opEthIP|fixSums, u("10.1.0.50", "10.2.0.2", 3000, 7, 20)),
		rec(opEthIP|fixSums, u("10.1.0.50", "10.2.0.2", 3000, 7, 30)),
		rec(opWAN|fixSums, u("10.2.0.2", "10.2.0.1", 7, 3000, 40)),
		rec(opEthIP|fixSums, u("10.1.0.50", "10.2.0.2", 3000, 7, 1400)),
		rec(opWAN|fixSums, u("10.2.0.2", "10.2.0.1", 7, 3000, 50)),
		rec(opClock, []byte{60}),
		rec(opEthIP|fixSums, u("10.1.0.50", "10.2.0.2", 3000, 7, 10)),
		rec(opWAN|fixSums, u("10.2.0.2", "10.2.0.1", 7, 3000, 10)),
	))
	// A TCP connection from the lan: handshake, data both ways (the fast
	// path), FIN (back to the slow path), RST.
	t := func(src, dst string, sp, dp uint16, seq, an uint32, fl byte, n int) []byte {
		return ip4(src, dst, wire.ProtocolTCP, 2, 0, 0, nil, tcpSeg(sp, dp, seq, an, fl, payload[:n]))
	}
	out = append(out, cat(
		rec(opEthIP|fixSums, t("10.1.0.50", "10.2.0.2", 40001, 80, 100, 0, syn, 0)),
		rec(opWAN|fixSums, t("10.2.0.2", "10.2.0.1", 80, 40001, 5000, 101, syn|ack, 0)),
		rec(opEthIP|fixSums, t("10.1.0.50", "10.2.0.2", 40001, 80, 101, 5001, ack, 0)),
		rec(opEthIP|fixSums, t("10.1.0.50", "10.2.0.2", 40001, 80, 101, 5001, ack|psh, 100)),
		rec(opWAN|fixSums, t("10.2.0.2", "10.2.0.1", 80, 40001, 5001, 201, ack|psh, 200)),
		rec(opEthIP|fixSums, t("10.1.0.50", "10.2.0.2", 40001, 80, 201, 5201, ack|psh, 100)),
		rec(opWAN|fixSums, t("10.2.0.2", "10.2.0.1", 80, 40001, 5201, 301, ack|psh, 200)),
		rec(opEthIP|fixSums, t("10.1.0.50", "10.2.0.2", 40001, 80, 301, 5401, ack|fin, 0)),
		rec(opWAN|fixSums, t("10.2.0.2", "10.2.0.1", 80, 40001, 5401, 302, ack|rst, 0)),
	))
	// A port forward: UDP from the wan to 10.2.0.1:5353, DNATed to the
	// host's socket, and the host's answers; TCP to 8080 (DNATed to the
	// host's listener: a SYN, a data segment and a reset for it).
	out = append(out, cat(
		rec(opWAN|fixSums, u("10.2.0.2", "10.2.0.1", 999, 5353, 10)),
		rec(opWAN|fixSums, u("10.2.0.2", "10.2.0.1", 999, 5353, 10)),
		rec(opSend, []byte{0, 'a'}),
		rec(opWAN|fixSums, u("10.2.0.2", "10.2.0.1", 999, 5353, 10)),
		rec(opWAN|fixSums, u("10.2.0.2", "10.2.0.1", 999, 5353, 10)),
		rec(opWAN|fixSums, t("10.2.0.2", "10.2.0.1", 40002, 8080, 1, 0, syn, 0)),
		rec(opWAN|fixSums, t("10.2.0.2", "10.2.0.1", 40002, 8080, 2, 1, ack|psh, 100)),
		rec(opWAN|fixSums, t("10.2.0.2", "10.2.0.1", 40002, 8080, 2, 0, rst, 0)),
	))
	// The sets: a knock (SET --add-set), a packet it lets through, the
	// element deleted; blocked sources and destinations; the verdict maps'
	// verdicts; the SET target's element timing out.
	out = append(out, cat(
		rec(opEthIP|fixSums, u("10.1.0.53", "10.2.0.2", 1, 7100, 1)),
		rec(opClock, []byte{1}),
		rec(opEthIP|fixSums, u("10.1.0.53", "10.2.0.2", 1, 4000, 1)),
		rec(opEthIP|fixSums, u("10.1.0.53", "10.2.0.2", 1, 7101, 1)),
		rec(opEthIP|fixSums, u("10.1.0.53", "10.2.0.2", 1, 7102, 1)),
		rec(opEthIP|fixSums, u("10.1.0.66", "10.2.0.2", 1, 7, 1)),
		rec(opEthIP|fixSums, u("10.1.0.50", "10.2.0.110", 1, 7, 1)),
		rec(opEthIP|fixSums, u("10.1.0.51", "10.2.0.2", 1, 7, 1)),
		rec(opEthIP|fixSums, t("10.1.0.52", "10.2.0.2", 2, 80, 1, 0, syn, 0)),
		rec(opEthIP|fixSums, t("10.1.0.52", "10.2.0.3", 2, 81, 1, 0, syn, 0)),
		rec(opEthIP|fixSums, u("10.1.0.50", "10.2.0.2", 1, 1234, 1)),
		rec(opEthIP|fixSums, u("10.1.0.50", "10.2.0.2", 1, 1235, 1)),
		rec(opEthIP|fixSums, u("10.1.0.50", "10.2.0.2", 1, 1236, 1)),
		rec(opEthIP|fixSums, u("10.1.0.50", "10.2.0.2", 1, 1237, 1)),
		rec(opEthIP|fixSums, u("10.1.0.50", "10.2.0.2", 1, 23, 1)),
		rec(opClock, []byte{50}),
		rec(opEthIP|fixSums, u("10.1.0.53", "10.2.0.2", 1, 4000, 1)),
	))
	// IPv6 flows (no NAT): UDP both ways, on the fast path from the third
	// packet; a blocked destination.
	u6 := func(src, dst string, sp, dp uint16, n int) []byte {
		return ip6(src, dst, wire.ProtocolUDP, udpSeg(sp, dp, payload[:n]))
	}
	out = append(out, cat(
		rec(opEthIP|fixSums, u6("fd00:1::50", "fd00:2::2:2", 3000, 7, 10)),
		rec(opWAN|fixSums, u6("fd00:2::2:2", "fd00:1::50", 7, 3000, 10)),
		rec(opEthIP|fixSums, u6("fd00:1::50", "fd00:2::2:2", 3000, 7, 20)),
		rec(opWAN|fixSums, u6("fd00:2::2:2", "fd00:1::50", 7, 3000, 20)),
		rec(opEthIP|fixSums, u6("fd00:1::50", "fd00:2::2:2", 3000, 7, 1300)),
		rec(opEthIP|fixSums, u6("fd00:1::51", "fd00:2::2", 3000, 7, 10)),
		rec(opClock, []byte{200}),
	))
	return out
}

// train encodes the parameters of an opFrags record.
func train(family int, unfrag, size, end int, wan bool, proto uint8) []byte {
	b := make([]byte, 9)
	b[0] = byte(family)
	if wan {
		b[0] |= 0x80
	}
	binary.BigEndian.PutUint16(b[1:], uint16(unfrag))
	binary.BigEndian.PutUint16(b[3:], uint16(size))
	binary.BigEndian.PutUint16(b[5:], uint16(end))
	b[7] = proto
	b[8] = 0x5a
	return b
}

// fragTrain makes the fragments an opFrags record describes: family
// (b[0] bit 0x80: from the wan to the host, else from the lan to the
// router), the first fragment's options (IPv4, bytes, ≤ 40) or
// Destination Options header (IPv6, bytes, ≤ 2040) before the Fragment
// header, the fragment size, the end of the last fragment, the upper
// protocol, and bytes to fill the data with. At most 256 fragments.
func fragTrain(b []byte) (wan bool, frags [][]byte) {
	if len(b) < 9 {
		return false, nil
	}
	wan = b[0]&0x80 != 0
	v6 := b[0]&1 == 0 && b[0]&0x7f == 6
	unfrag := int(binary.BigEndian.Uint16(b[1:]))
	size := max(int(binary.BigEndian.Uint16(b[3:]))&^7, 64)
	end := int(binary.BigEndian.Uint16(b[5:]))
	proto := b[7]
	fill := b[8:]
	data := make([]byte, 65536)
	for i := range data {
		data[i] = fill[i%len(fill)]
	}
	src4, dst4, src6, dst6 := "10.1.0.50", "10.1.0.1", "fd00:1::50", "fd00:1::1"
	if wan {
		src4, dst4, src6, dst6 = "10.2.0.2", "10.1.0.2", "fd00:2::2", "fd00:1::2"
	}
	// The first fragment's extra header takes room from its data, so that
	// every fragment is about size bytes on the wire.
	extra := 0
	if unfrag > 0 {
		if v6 {
			extra = max(unfrag&^7, 8)
			extra = min(extra, 2040)
		} else {
			extra = min(unfrag, 40)
		}
	}
	for off := 0; off < end && len(frags) < 256; {
		n, more := size, true
		if off == 0 {
			n = max((size-extra)&^7, 8)
		}
		if off+n >= end {
			n, more = end-off, false
		}
		if v6 {
			f := frag6(proto, uint16(off), more, 99, data[:n])
			next := uint8(wire.ProtocolFragment)
			if off == 0 && extra > 0 {
				f = append(destOpts(wire.ProtocolFragment, extra), f...)
				next = wire.ProtocolDestOptions
			}
			frags = append(frags, ip6(src6, dst6, next, f))
		} else {
			var opts []byte
			if off == 0 && extra > 0 {
				opts = make([]byte, extra)
				for i := range opts {
					opts[i] = 1 // NOP
				}
			}
			var flags uint8
			if more {
				flags = wire.IPv4FlagMoreFragments
			}
			frags = append(frags, ip4(src4, dst4, proto, 77, flags, uint16(off), opts, data[:n]))
		}
		off += n
	}
	return wan, frags
}
