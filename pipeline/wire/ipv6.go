package wire

import "encoding/binary"

// IPv6 sizes and version.
const (
	IPv6HeaderSize = 40
	IPv6Version    = 6
	// IPv6MinimumMTU is the link MTU every IPv6 link must carry (RFC 8200
	// §5); ICMPv6 error messages are cut to fit in it.
	IPv6MinimumMTU = 1280
)

// IPv6 extension header and related protocol numbers (RFC 8200 §4, IANA
// "Assigned Internet Protocol Numbers"). ProtocolICMPv6 is in ipv4.go.
const (
	ProtocolHopByHop     = 0
	ProtocolRouting      = 43
	ProtocolFragment     = 44
	ProtocolESP          = 50
	ProtocolAH           = 51
	ProtocolNoNextHeader = 59
	ProtocolDestOptions  = 60
)

// Field offsets in the IPv6 header.
const (
	ipv6VersTCFlow = 0
	ipv6PayloadLen = 4
	ipv6NextHeader = 6
	ipv6HopLimit   = 7
	ipv6SrcAddr    = 8
	ipv6DstAddr    = 24
)

// IPv6NextHeaderOffset is the offset of the Next Header field in the IPv6
// header: the Parameter Problem pointer for an unrecognized first header.
const IPv6NextHeaderOffset = ipv6NextHeader

// IPv6 is a view of an IPv6 packet: the fixed 40-byte header, the extension
// headers and upper-layer data (together PayloadLength bytes), possibly
// followed by link-layer padding. Call Check before any accessor.
//
// Jumbograms (RFC 2675, PayloadLength 0 with a Jumbo Payload option) are not
// supported: a zero PayloadLength means an empty payload.
type IPv6 []byte

// IPv6Fields holds the fields of an IPv6 header for Encode.
type IPv6Fields struct {
	TrafficClass  uint8
	FlowLabel     uint32 // 20 bits; higher bits are ignored
	PayloadLength uint16
	NextHeader    uint8
	HopLimit      uint8
	Src, Dst      [16]byte
}

// Check validates the header: at least 40 bytes (ErrTooShort), version 6
// (ErrBadVersion) and 40+PayloadLength <= len(b) (ErrBadPayloadLength). It
// does not look at extension headers; see WalkExtensions. After Check returns
// nil no accessor panics.
func (b IPv6) Check() error {
	if len(b) < IPv6HeaderSize {
		return ErrTooShort
	}
	if b[ipv6VersTCFlow]>>4 != IPv6Version {
		return ErrBadVersion
	}
	if IPv6HeaderSize+int(binary.BigEndian.Uint16(b[ipv6PayloadLen:])) > len(b) {
		return ErrBadPayloadLength
	}
	return nil
}

// TrafficClass returns the traffic class (DSCP and ECN) byte.
func (b IPv6) TrafficClass() uint8 {
	return uint8(binary.BigEndian.Uint16(b[ipv6VersTCFlow:]) >> 4)
}

// FlowLabel returns the 20-bit flow label.
func (b IPv6) FlowLabel() uint32 {
	return binary.BigEndian.Uint32(b[ipv6VersTCFlow:]) & 0xfffff
}

// PayloadLength returns the payload length field: the bytes after the
// 40-byte header, extension headers included.
func (b IPv6) PayloadLength() uint16 { return binary.BigEndian.Uint16(b[ipv6PayloadLen:]) }

// NextHeader returns the type of the header after the fixed header: an
// extension header or the upper-layer protocol.
func (b IPv6) NextHeader() uint8 { return b[ipv6NextHeader] }

// HopLimit returns the hop limit.
func (b IPv6) HopLimit() uint8 { return b[ipv6HopLimit] }

// Src returns the source address.
func (b IPv6) Src() [16]byte { return [16]byte(b[ipv6SrcAddr : ipv6SrcAddr+16]) }

// Dst returns the destination address.
func (b IPv6) Dst() [16]byte { return [16]byte(b[ipv6DstAddr : ipv6DstAddr+16]) }

// SrcSlice returns the source address bytes in place (capacity 16).
func (b IPv6) SrcSlice() []byte { return b[ipv6SrcAddr : ipv6SrcAddr+16 : ipv6SrcAddr+16] }

// DstSlice returns the destination address bytes in place (capacity 16).
func (b IPv6) DstSlice() []byte { return b[ipv6DstAddr : ipv6DstAddr+16 : ipv6DstAddr+16] }

// Payload returns the PayloadLength bytes after the fixed header: extension
// headers and upper-layer data. Link-layer padding is excluded.
func (b IPv6) Payload() []byte {
	return b[IPv6HeaderSize : IPv6HeaderSize+int(b.PayloadLength())]
}

// SetTrafficClass sets the traffic class byte.
func (b IPv6) SetTrafficClass(v uint8) {
	w := binary.BigEndian.Uint16(b[ipv6VersTCFlow:])
	binary.BigEndian.PutUint16(b[ipv6VersTCFlow:], w&0xf00f|uint16(v)<<4)
}

// SetFlowLabel sets the 20-bit flow label; higher bits of v are ignored.
func (b IPv6) SetFlowLabel(v uint32) {
	w := binary.BigEndian.Uint32(b[ipv6VersTCFlow:])
	binary.BigEndian.PutUint32(b[ipv6VersTCFlow:], w&^0xfffff|v&0xfffff)
}

// SetPayloadLength sets the payload length. A value that Check would refuse
// voids the accessor guarantee.
func (b IPv6) SetPayloadLength(v uint16) { binary.BigEndian.PutUint16(b[ipv6PayloadLen:], v) }

// SetNextHeader sets the next header field.
func (b IPv6) SetNextHeader(v uint8) { b[ipv6NextHeader] = v }

// SetHopLimit sets the hop limit.
func (b IPv6) SetHopLimit(v uint8) { b[ipv6HopLimit] = v }

// SetSrc sets the source address. Transport checksums cover it through the
// pseudo-header; the caller updates them.
func (b IPv6) SetSrc(a [16]byte) { copy(b[ipv6SrcAddr:ipv6SrcAddr+16], a[:]) }

// SetDst sets the destination address (see SetSrc).
func (b IPv6) SetDst(a [16]byte) { copy(b[ipv6DstAddr:ipv6DstAddr+16], a[:]) }

// DecHopLimit decrements the hop limit by one. IPv6 has no header checksum,
// so nothing else changes. The caller checks that the hop limit is above 1
// before forwarding; 0 wraps to 255.
func (b IPv6) DecHopLimit() { b[ipv6HopLimit]-- }

// Encode writes exactly the 40-byte fixed header described by f. It panics
// if b is shorter.
func (b IPv6) Encode(f *IPv6Fields) {
	_ = b[IPv6HeaderSize-1]
	binary.BigEndian.PutUint32(b[ipv6VersTCFlow:],
		IPv6Version<<28|uint32(f.TrafficClass)<<20|f.FlowLabel&0xfffff)
	binary.BigEndian.PutUint16(b[ipv6PayloadLen:], f.PayloadLength)
	b[ipv6NextHeader] = f.NextHeader
	b[ipv6HopLimit] = f.HopLimit
	copy(b[ipv6SrcAddr:ipv6SrcAddr+16], f.Src[:])
	copy(b[ipv6DstAddr:ipv6DstAddr+16], f.Dst[:])
}

// IPv6PseudoChecksum returns the partial (non-inverted) sum of the IPv6
// pseudo-header of RFC 8200 §8.1 for an upper-layer message of length bytes
// and protocol proto carried by b: source and destination addresses, the
// 32-bit upper-layer packet length, three zero bytes and the next header
// value. Pass it as the pseudo argument of UDP, TCP and ICMPv6
// CalculateChecksum and IsChecksumValid. proto is the upper-layer protocol,
// not b.NextHeader() when extension headers are present; length counts the
// upper-layer header and data, not the extension headers. b must have
// passed Check. (A Routing header changes the destination used here to the
// final one; the caller then builds the sum with PseudoHeaderChecksum.)
func IPv6PseudoChecksum(b IPv6, proto uint8, length uint32) uint16 {
	sum := Checksum(b[ipv6SrcAddr:ipv6DstAddr+16], 0)
	return ChecksumCombine(sum, ChecksumCombine(
		ChecksumCombine(uint16(length>>16), uint16(length)), uint16(proto)))
}
