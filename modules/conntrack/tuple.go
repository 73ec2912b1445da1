package conntrack

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Key is one direction of a connection (netfilter's nf_conntrack_tuple):
// addresses, protocol and the protocol's two "ports". For TCP, UDP and
// the other port protocols they are the ports; for ICMP and ICMPv6 the
// source "port" is the echo identifier and the destination one the type
// (high byte) and code (low byte), so that a request and its reply have
// inverse keys; for the generic protocol both are 0. IPv4 addresses are
// in the first four bytes. A Key has no pointers: the table's entries are
// not scanned by the garbage collector.
type Key struct {
	Src, Dst     [16]byte
	SPort, DPort uint16
	Proto        uint8
	Family       uint8 // 4 or 6
}

// equal is k == *o, field by field: the struct's == is a call to the
// runtime's memequal for its 38 bytes, on every tracked packet.
func (k *Key) equal(o *Key) bool {
	return k.Src == o.Src && k.Dst == o.Dst && k.SPort == o.SPort && k.DPort == o.DPort && k.Proto == o.Proto && k.Family == o.Family
}

// SrcAddr and DstAddr return the addresses.
func (k *Key) SrcAddr() netip.Addr { return k.addr(&k.Src) }

// DstAddr returns the destination address.
func (k *Key) DstAddr() netip.Addr { return k.addr(&k.Dst) }

func (k *Key) addr(a *[16]byte) netip.Addr {
	if k.Family == 4 {
		return netip.AddrFrom4([4]byte(a[:4]))
	}
	return netip.AddrFrom16(*a)
}

// SetAddrs sets both addresses (both of one family).
func (k *Key) SetAddrs(src, dst netip.Addr) {
	k.Src, k.Dst = [16]byte{}, [16]byte{}
	if src.Is4() {
		k.Family = 4
		s, d := src.As4(), dst.As4()
		copy(k.Src[:], s[:])
		copy(k.Dst[:], d[:])
		return
	}
	k.Family = 6
	k.Src, k.Dst = src.As16(), dst.As16()
}

// String is the conntrack-tools form of the key ("src=… dst=… sport=… dport=…").
func (k *Key) String() string {
	s := fmt.Sprintf("src=%s dst=%s", k.SrcAddr(), k.DstAddr())
	switch k.Proto {
	case wire.ProtocolICMP, wire.ProtocolICMPv6:
		return s + fmt.Sprintf(" type=%d code=%d id=%d", k.DPort>>8, k.DPort&0xff, k.SPort)
	case wire.ProtocolTCP, wire.ProtocolUDP, protoSCTP, protoUDPLite, protoDCCP:
		return s + fmt.Sprintf(" sport=%d dport=%d", k.SPort, k.DPort)
	}
	return s
}

// Protocol numbers with ports besides TCP and UDP.
const (
	protoDCCP    = 33
	protoSCTP    = 132
	protoUDPLite = 136
)

// hasPorts reports whether the protocol's first four bytes are two ports.
func hasPorts(p uint8) bool {
	switch p {
	case wire.ProtocolTCP, wire.ProtocolUDP, protoSCTP, protoUDPLite, protoDCCP:
		return true
	}
	return false
}

// hash mixes the key with the table's seed (a multiply-xorshift over its
// words; the seed is random per table, so that flows cannot be chosen to
// share a bucket). An IPv4 key's addresses are one word (the rest of
// Src and Dst is zero): two rounds, the hash every tracked packet
// computes twice (the batch pass and Track).
func (k *Key) hash(seed uint64) uint64 {
	h := seed
	mix := func(w uint64) {
		h ^= w
		hi, lo := bits.Mul64(h, 0x9e3779b97f4a7c15)
		h = hi ^ lo
	}
	if k.Family == 6 {
		mix(binary.LittleEndian.Uint64(k.Src[0:]))
		mix(binary.LittleEndian.Uint64(k.Dst[0:]))
		mix(binary.LittleEndian.Uint64(k.Src[8:]))
		mix(binary.LittleEndian.Uint64(k.Dst[8:]))
	} else {
		mix(uint64(binary.LittleEndian.Uint32(k.Src[0:])) | uint64(binary.LittleEndian.Uint32(k.Dst[0:]))<<32)
	}
	mix(uint64(k.SPort) | uint64(k.DPort)<<16 | uint64(k.Proto)<<32 | uint64(k.Family)<<40)
	return h ^ h>>29
}

// ICMP types that open a flow, with the type of their reply (0: not a
// query). Linux's invmap in nf_conntrack_proto_icmp.c / icmpv6.c.
var icmp4Reply = [256]uint16{
	wire.ICMPv4Echo: wire.ICMPv4EchoReply + 0x100, // +0x100: 0 is a valid reply type
	13:              14 + 0x100,                   // timestamp
	15:              16 + 0x100,                   // information
	17:              18 + 0x100,                   // address mask
}

var icmp6Reply = [256]uint16{
	wire.ICMPv6EchoRequest: wire.ICMPv6EchoReply + 0x100,
	139:                    140 + 0x100, // node information
}

// icmpReplyType is the reply type of a query type, and whether t is one.
// The reverse (a reply's request) is found too, so that Invert works on
// either key.
func icmpReplyType(v6 bool, t uint8) (uint8, bool) {
	tab := &icmp4Reply
	if v6 {
		tab = &icmp6Reply
	}
	if r := tab[t]; r != 0 {
		return uint8(r - 0x100), true
	}
	for q, r := range tab {
		if r != 0 && uint8(r-0x100) == t {
			return uint8(q), true
		}
	}
	return 0, false
}

// isICMPQuery reports whether t is a request that opens a flow.
func isICMPQuery(v6 bool, t uint8) bool {
	if v6 {
		return icmp6Reply[t] != 0
	}
	return icmp4Reply[t] != 0
}

// isICMPError reports whether t is an error that quotes a packet.
func isICMPError(v6 bool, t uint8) bool {
	if v6 {
		return t < 128 && t >= 1 && t <= 4
	}
	switch t {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

// Invert returns the key of the other direction (nf_ct_invert_tuple).
func (k *Key) Invert() Key {
	r := Key{Src: k.Dst, Dst: k.Src, Proto: k.Proto, Family: k.Family}
	switch {
	case k.Proto == wire.ProtocolICMP || k.Proto == wire.ProtocolICMPv6:
		t, _ := icmpReplyType(k.Proto == wire.ProtocolICMPv6, uint8(k.DPort>>8))
		r.SPort, r.DPort = k.SPort, uint16(t)<<8|k.DPort&0xff
	default:
		r.SPort, r.DPort = k.DPort, k.SPort
	}
	return r
}

// l4 returns the upper-layer bytes of the packet pc describes (the header
// and what the IP length says follows, within the buffer).
func l4(pc *pipeline.PacketContext) []byte {
	nh := pc.Pkt.NetworkHeader()
	end := pc.L4End
	if end > len(nh) {
		end = len(nh)
	}
	if pc.L4Off > end || pc.L4Off < 0 {
		return nil
	}
	return nh[pc.L4Off:end]
}

// icmpKey fills k's ports from an ICMP header (k.Proto set): false when
// the message is too short.
func icmpKey(k *Key, b []byte) bool {
	if len(b) < 8 {
		return false
	}
	k.SPort = binary.BigEndian.Uint16(b[4:])
	k.DPort = uint16(b[0])<<8 | uint16(b[1])
	return true
}

// quotedKey parses the packet quoted by an ICMP error (the IP header and
// at least 8 bytes of what followed it) into the key of that packet, as
// icmp_error_message does: false when it is too short, of the wrong
// family or itself an ICMP error.
func quotedKey(v6 bool, q []byte) (Key, bool) {
	var k Key
	var l4b []byte
	if !v6 {
		if len(q) < wire.IPv4MinimumSize || q[0]>>4 != 4 {
			return k, false
		}
		hl := int(q[0]&0x0f) * 4
		if hl < wire.IPv4MinimumSize || len(q) < hl+8 {
			return k, false
		}
		if binary.BigEndian.Uint16(q[6:])&0x1fff != 0 {
			return k, false // a non-first fragment has no ports
		}
		k.Family, k.Proto = 4, q[9]
		copy(k.Src[:4], q[12:16])
		copy(k.Dst[:4], q[16:20])
		l4b = q[hl:]
	} else {
		if len(q) < wire.IPv6HeaderSize || q[0]>>4 != 6 {
			return k, false
		}
		proto, off, ok := walkQuoted6(q)
		if !ok {
			return k, false
		}
		k.Family, k.Proto = 6, proto
		copy(k.Src[:], q[8:24])
		copy(k.Dst[:], q[24:40])
		l4b = q[off:]
	}
	switch {
	case hasPorts(k.Proto):
		k.SPort, k.DPort = binary.BigEndian.Uint16(l4b), binary.BigEndian.Uint16(l4b[2:])
	case k.Proto == wire.ProtocolICMP && !v6, k.Proto == wire.ProtocolICMPv6 && v6:
		if !isICMPQuery(v6, l4b[0]) && !isReplyType(v6, l4b[0]) {
			return k, false // an error about an error, or a non-query
		}
		icmpKey(&k, l4b)
	}
	return k, true
}

// isReplyType reports whether t answers a query.
func isReplyType(v6 bool, t uint8) bool {
	if isICMPQuery(v6, t) {
		return false
	}
	_, ok := icmpReplyType(v6, t)
	return ok
}

// walkQuoted6 walks the extension headers of a quoted IPv6 packet, which
// an ICMPv6 error may cut anywhere (its Payload Length says more than is
// there, so wire.IPv6.WalkExtensions, which needs a checked packet, does
// not apply): the upper-layer protocol and its offset, with 8 bytes of it
// present; false when a header is cut, there are more than 8, or the
// packet is a non-first fragment.
func walkQuoted6(q []byte) (proto uint8, off int, ok bool) {
	proto, off = q[6], wire.IPv6HeaderSize
	for i := 0; i < 8; i++ {
		var hl int
		switch proto {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if off+2 > len(q) {
				return 0, 0, false
			}
			hl = (int(q[off+1]) + 1) * 8
		case 44: // fragment
			if off+8 > len(q) || binary.BigEndian.Uint16(q[off+2:])&0xfff8 != 0 {
				return 0, 0, false
			}
			hl = 8
		case 51: // AH
			if off+2 > len(q) {
				return 0, 0, false
			}
			hl = (int(q[off+1]) + 2) * 4
		default:
			return proto, off, off+8 <= len(q)
		}
		if off+hl > len(q) {
			return 0, 0, false
		}
		proto = q[off]
		off += hl
	}
	return 0, 0, false
}
