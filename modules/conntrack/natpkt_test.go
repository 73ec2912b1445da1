package conntrack

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

func keyOf(t *testing.T, proto uint8, src, dst string, sport, dport uint16) Key {
	t.Helper()
	var k Key
	k.SetAddrs(netip.MustParseAddr(src), netip.MustParseAddr(dst))
	k.Proto, k.SPort, k.DPort = proto, sport, dport
	return k
}

// TestManipChecksums: after a source and a destination rewrite of TCP,
// UDP and ICMP over IPv4 and IPv6, every checksum verifies (incremental
// equals recomputed); a UDP checksum of 0 (none, IPv4) stays 0.
func TestManipChecksums(t *testing.T) {
	for _, c := range []struct {
		name string
		p    filtertest.Packet
		to   Key
	}{
		{"tcp4", filtertest.Packet{Proto: filtertest.TCP, Src: "10.0.1.2", Dst: "10.0.2.2", SrcPort: 1000, DstPort: 80, Payload: 33}, keyOf(t, wire.ProtocolTCP, "192.0.2.7", "198.51.100.9", 61000, 8080)},
		{"udp4", filtertest.Packet{Proto: filtertest.UDP, Src: "10.0.1.2", Dst: "10.0.2.2", SrcPort: 1000, DstPort: 53, Payload: 7}, keyOf(t, wire.ProtocolUDP, "192.0.2.7", "198.51.100.9", 0xffff, 1)},
		{"icmp4", filtertest.Packet{Proto: filtertest.ICMP, Src: "10.0.1.2", Dst: "10.0.2.2", ICMPType: 8, Payload: 5}, keyOf(t, wire.ProtocolICMP, "192.0.2.7", "198.51.100.9", 4242, 8<<8)},
		{"tcp6", filtertest.Packet{IPv6: true, Proto: filtertest.TCP, Src: "2001:db8:1::2", Dst: "2001:db8:2::2", SrcPort: 1000, DstPort: 80, Payload: 3}, keyOf(t, wire.ProtocolTCP, "2001:db8:9::1", "2001:db8:8::ff", 2, 3)},
		{"udp6", filtertest.Packet{IPv6: true, Proto: filtertest.UDP, Src: "2001:db8:1::2", Dst: "2001:db8:2::2", SrcPort: 1000, DstPort: 53, Payload: 1}, keyOf(t, wire.ProtocolUDP, "2001:db8:9::1", "2001:db8:8::ff", 5, 6)},
		{"icmp6", filtertest.Packet{IPv6: true, Proto: filtertest.ICMPv6, Src: "2001:db8:1::2", Dst: "2001:db8:2::2", ICMPType: 128, Payload: 4}, keyOf(t, wire.ProtocolICMPv6, "2001:db8:9::1", "2001:db8:8::ff", 99, 128<<8)},
	} {
		for _, dst := range []bool{false, true} {
			b := c.p.Bytes()
			l4 := 20
			if c.p.IPv6 {
				l4 = 40
			}
			if !manip(b, l4, len(b), false, &c.to, dst, false) {
				t.Fatalf("%s dst=%v: manip refused", c.name, dst)
			}
			if err := filtertest.VerifyChecksums(b); err != nil {
				t.Errorf("%s dst=%v: %v", c.name, dst, err)
			}
			want := c.to.SrcAddr()
			off := 12
			if dst {
				want, off = c.to.DstAddr(), 16
			}
			if c.p.IPv6 {
				off = map[bool]int{false: 8, true: 24}[dst]
			}
			if got, _ := netip.AddrFromSlice(b[off : off+want.BitLen()/8]); got != want {
				t.Errorf("%s dst=%v: address %s, want %s", c.name, dst, got, want)
			}
		}
	}
	// UDP without a checksum.
	b := filtertest.Packet{Proto: filtertest.UDP, SrcPort: 1, DstPort: 2, Payload: 4}.Bytes()
	binary.BigEndian.PutUint16(b[26:], 0)
	to := keyOf(t, wire.ProtocolUDP, "192.0.2.7", "198.51.100.9", 3, 4)
	manip(b, 20, len(b), false, &to, false, false)
	if binary.BigEndian.Uint16(b[26:]) != 0 || !wire.IPv4(b).IsChecksumValid() || binary.BigEndian.Uint16(b[20:]) != 3 {
		t.Fatalf("UDP without checksum: field %#x, port %d", binary.BigEndian.Uint16(b[26:]), binary.BigEndian.Uint16(b[20:]))
	}
	// Too short for the transport header: refused, not a panic.
	short := filtertest.Packet{Proto: filtertest.TCP, SrcPort: 1, DstPort: 2}.Bytes()[:30]
	tcpTo := keyOf(t, wire.ProtocolTCP, "192.0.2.7", "198.51.100.9", 3, 4)
	if manip(short, 20, len(short), false, &tcpTo, false, false) {
		t.Fatal("a cut TCP header was rewritten")
	}
}

// TestManipPartialChecksum: a packet whose transport checksum is left to
// the device (GSO.NeedsCsum: the field holds the pseudo-header sum) gets
// the address change in that sum and nothing for the port: finishing it
// afterwards gives a valid checksum.
func TestManipPartialChecksum(t *testing.T) {
	for _, proto := range []uint8{filtertest.TCP, filtertest.UDP} {
		b := filtertest.Packet{Proto: proto, SrcPort: 1000, DstPort: 80, Payload: 20}.Bytes()
		co := map[uint8]int{filtertest.TCP: 36, filtertest.UDP: 26}[proto]
		// As a sender with offload leaves it: the pseudo-header sum.
		ip := wire.IPv4(b)
		binary.BigEndian.PutUint16(b[co:], wire.IPv4PseudoChecksum(ip, uint16(len(b)-20)))
		to := keyOf(t, proto, "192.0.2.7", "198.51.100.9", 61000, 8080)
		manip(b, 20, len(b), false, &to, false, true)
		if want := wire.IPv4PseudoChecksum(wire.IPv4(b), uint16(len(b)-20)); binary.BigEndian.Uint16(b[co:]) != want {
			t.Fatalf("proto %d: partial sum %#x, want the new pseudo-header sum %#x", proto, binary.BigEndian.Uint16(b[co:]), want)
		}
		// Finish it as the device would: the sum over the segment.
		binary.BigEndian.PutUint16(b[co:], ^wire.Checksum(b[20:], 0))
		if err := filtertest.VerifyChecksums(b); err != nil {
			t.Fatalf("proto %d: finished checksum: %v", proto, err)
		}
	}
}

// FuzzNAT: the rewrite and the ICMP error translation on any bytes (with
// targets of either family and protocol), and any frame through the NAT
// router both ways: never a panic.
func FuzzNAT(f *testing.F) {
	u := udp("10.0.1.3", "10.0.2.2", 4000, 53)
	e := filtertest.Packet{Proto: filtertest.ICMP, Src: "10.0.2.2", Dst: "10.0.2.1", ICMPType: 3, ICMPCode: 3, Payload: len(u)}.Bytes()
	copy(e[28:], u)
	f.Add(e, uint8(0))
	f.Add(u, uint8(1))
	f.Add(filtertest.Packet{IPv6: true, Proto: filtertest.ICMPv6, ICMPType: 1, Payload: 48}.Bytes(), uint8(2))
	f.Add(filtertest.Packet{Proto: filtertest.TCP, Src: "10.0.2.2", Dst: "10.0.2.1", SrcPort: 1, DstPort: 8080, TCPFlags: 2}.Bytes(), uint8(3))
	f.Fuzz(func(t *testing.T, b []byte, op uint8) {
		protos := []uint8{wire.ProtocolTCP, wire.ProtocolUDP, wire.ProtocolICMP, wire.ProtocolICMPv6, protoSCTP, 47}
		k := keyOf(t, protos[int(op)%len(protos)], "192.0.2.1", "192.0.2.2", 1, 2)
		if op&0x40 != 0 {
			k = keyOf(t, k.Proto, "2001:db8::1", "2001:db8::2", 1, 2)
		}
		for _, l4off := range []int{0, 20, 40, len(b) / 2, len(b), len(b) + 3} {
			c := append([]byte(nil), b...)
			manip(c, l4off, len(c)+int(op&3), op&4 != 0, &k, op&8 != 0, op&16 != 0)
			pkt := pipeline.DefaultPool.Get(len(c))
			if pkt == nil || !pkt.SetData(c) {
				if pkt != nil {
					pkt.Release()
				}
				continue
			}
			pkt.SetNetworkHeader()
			pc := &pipeline.PacketContext{Pkt: pkt, L4Off: l4off, L4End: len(c) + int(op&3)}
			other := k.Invert()
			translateICMPError(pc, &k, &other, op&8 != 0)
			pkt.Release()
		}
	})
}
