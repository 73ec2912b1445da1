package wire

import "encoding/binary"

// IPv4 sizes and version.
const (
	IPv4MinimumSize       = 20
	IPv4MaximumHeaderSize = 60
	IPv4Version           = 4
)

// IPv4 flag bits, as bits of the 3-bit flags field returned by Flags.
const (
	IPv4FlagMoreFragments = 1 << 0
	IPv4FlagDontFragment  = 1 << 1
)

// IP protocol numbers.
const (
	ProtocolICMP   = 1
	ProtocolTCP    = 6
	ProtocolUDP    = 17
	ProtocolICMPv6 = 58
)

// Field offsets in the IPv4 header.
const (
	ipv4VersIHL    = 0
	ipv4TOS        = 1
	ipv4TotalLen   = 2
	ipv4ID         = 4
	ipv4FlagsFrag  = 6
	ipv4TTL        = 8
	ipv4Protocol   = 9
	ipv4Checksum   = 10
	ipv4SrcAddr    = 12
	ipv4DstAddr    = 16
	ipv4OptionsOff = 20
)

// IPv4 is a view of an IPv4 packet: the header followed by the payload,
// possibly followed by link-layer padding beyond TotalLength. Call Check
// before any accessor.
type IPv4 []byte

// IPv4Fields holds the fields of an IPv4 header for Encode.
type IPv4Fields struct {
	TOS            uint8
	TotalLength    uint16
	ID             uint16
	Flags          uint8  // IPv4FlagDontFragment, IPv4FlagMoreFragments
	FragmentOffset uint16 // in bytes; must be a multiple of 8
	TTL            uint8
	Protocol       uint8
	Src, Dst       [4]byte
	Options        []byte // at most 40 bytes; padded with zeros to 4 bytes
}

// IPv4HeaderSize returns the header size for optionsLen bytes of options,
// padded to a multiple of 4.
func IPv4HeaderSize(optionsLen int) int {
	return IPv4MinimumSize + (optionsLen+3)&^3
}

// Check validates the header: at least 20 bytes (ErrTooShort), version 4
// (ErrBadVersion), IHL >= 5 and IHL*4 <= len(b) (ErrBadHeaderLength), and
// IHL*4 <= TotalLength <= len(b) (ErrBadTotalLength). It does not verify the
// checksum; see IsChecksumValid. After Check returns nil no accessor panics.
func (b IPv4) Check() error {
	if len(b) < IPv4MinimumSize {
		return ErrTooShort
	}
	if b[ipv4VersIHL]>>4 != IPv4Version {
		return ErrBadVersion
	}
	hl := int(b[ipv4VersIHL]&0xf) * 4
	if hl < IPv4MinimumSize || hl > len(b) {
		return ErrBadHeaderLength
	}
	tl := int(binary.BigEndian.Uint16(b[ipv4TotalLen:]))
	if tl < hl || tl > len(b) {
		return ErrBadTotalLength
	}
	return nil
}

// HeaderLength returns the header length in bytes (IHL*4), options included.
func (b IPv4) HeaderLength() int { return int(b[ipv4VersIHL]&0xf) * 4 }

// TOS returns the type-of-service (DSCP and ECN) byte.
func (b IPv4) TOS() uint8 { return b[ipv4TOS] }

// TotalLength returns the total length field: header plus payload.
func (b IPv4) TotalLength() uint16 { return binary.BigEndian.Uint16(b[ipv4TotalLen:]) }

// ID returns the identification field.
func (b IPv4) ID() uint16 { return binary.BigEndian.Uint16(b[ipv4ID:]) }

// Flags returns the 3-bit flags field (IPv4FlagDontFragment,
// IPv4FlagMoreFragments; the top bit is reserved).
func (b IPv4) Flags() uint8 { return b[ipv4FlagsFrag] >> 5 }

// FragmentOffset returns the fragment offset in bytes (the field times 8).
func (b IPv4) FragmentOffset() uint16 {
	return binary.BigEndian.Uint16(b[ipv4FlagsFrag:]) << 3
}

// MoreFragments reports whether the MF flag is set.
func (b IPv4) MoreFragments() bool { return b[ipv4FlagsFrag]&(IPv4FlagMoreFragments<<5) != 0 }

// DontFragment reports whether the DF flag is set.
func (b IPv4) DontFragment() bool { return b[ipv4FlagsFrag]&(IPv4FlagDontFragment<<5) != 0 }

// TTL returns the time-to-live.
func (b IPv4) TTL() uint8 { return b[ipv4TTL] }

// Protocol returns the transport protocol number.
func (b IPv4) Protocol() uint8 { return b[ipv4Protocol] }

// Checksum returns the header checksum field as stored.
func (b IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[ipv4Checksum:]) }

// Src returns the source address.
func (b IPv4) Src() [4]byte { return [4]byte(b[ipv4SrcAddr : ipv4SrcAddr+4]) }

// Dst returns the destination address.
func (b IPv4) Dst() [4]byte { return [4]byte(b[ipv4DstAddr : ipv4DstAddr+4]) }

// SrcSlice returns the source address bytes in place (capacity 4, so an
// append cannot overwrite the header).
func (b IPv4) SrcSlice() []byte { return b[ipv4SrcAddr : ipv4SrcAddr+4 : ipv4SrcAddr+4] }

// DstSlice returns the destination address bytes in place (capacity 4).
func (b IPv4) DstSlice() []byte { return b[ipv4DstAddr : ipv4DstAddr+4 : ipv4DstAddr+4] }

// Options returns the option bytes, unparsed (empty if IHL is 5).
func (b IPv4) Options() []byte { return b[ipv4OptionsOff:b.HeaderLength()] }

// Payload returns the bytes between the end of the header and TotalLength;
// link-layer padding beyond TotalLength is excluded.
func (b IPv4) Payload() []byte { return b[b.HeaderLength():b.TotalLength()] }

// SetTTL sets the TTL without updating the checksum (see DecTTL).
func (b IPv4) SetTTL(v uint8) { b[ipv4TTL] = v }

// SetChecksum stores the header checksum field.
func (b IPv4) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[ipv4Checksum:], v) }

// SetSrc sets the source address without updating the checksum.
func (b IPv4) SetSrc(a [4]byte) { copy(b[ipv4SrcAddr:ipv4SrcAddr+4], a[:]) }

// SetDst sets the destination address without updating the checksum.
func (b IPv4) SetDst(a [4]byte) { copy(b[ipv4DstAddr:ipv4DstAddr+4], a[:]) }

// SetTotalLength sets the total length field without updating the checksum.
// A value that Check would refuse voids the accessor guarantee.
func (b IPv4) SetTotalLength(v uint16) { binary.BigEndian.PutUint16(b[ipv4TotalLen:], v) }

// SetID sets the identification field without updating the checksum.
func (b IPv4) SetID(v uint16) { binary.BigEndian.PutUint16(b[ipv4ID:], v) }

// SetFlagsFragmentOffset sets the 3-bit flags and the fragment offset, given
// in bytes (a multiple of 8; the low 3 bits are dropped), without updating
// the checksum.
func (b IPv4) SetFlagsFragmentOffset(flags uint8, offsetBytes uint16) {
	binary.BigEndian.PutUint16(b[ipv4FlagsFrag:], uint16(flags)<<13|offsetBytes>>3)
}

// DecTTL decrements the TTL by one and updates the checksum incrementally
// (RFC 1624), so a valid checksum stays valid. The caller checks that TTL is
// above 1 before forwarding; a TTL of 0 wraps to 255, checksum still kept.
func (b IPv4) DecTTL() {
	_ = b[ipv4Checksum+1]
	ttl := b[ipv4TTL]
	b[ipv4TTL] = ttl - 1
	// RFC 1624 eqn. 3 as in ChecksumUpdate16, with ~m + m' expanded for the
	// TTL/protocol word m: the protocol byte cancels, leaving
	// 0xffff + (ttl-1)<<8 - ttl<<8 (ttl-1 wrapping as a byte).
	s := uint32(^binary.BigEndian.Uint16(b[ipv4Checksum:])) + 0xffff +
		uint32(ttl-1)<<8 - uint32(ttl)<<8
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	binary.BigEndian.PutUint16(b[ipv4Checksum:], ^uint16(s))
}

// CalculateChecksum returns the header checksum computed with the checksum
// field taken as zero, inverted and ready to store with SetChecksum.
func (b IPv4) CalculateChecksum() uint16 {
	hl := b.HeaderLength()
	sum := Checksum(b[:ipv4Checksum], 0)
	sum = Checksum(b[ipv4Checksum+2:hl], sum)
	return ^sum
}

// IsChecksumValid reports whether the header checksum verifies.
func (b IPv4) IsChecksumValid() bool {
	return Checksum(b[:b.HeaderLength()], 0) == 0xffff
}

// Encode writes the header described by f: IHL from len(f.Options), options
// padded to a multiple of 4 with zeros, and the checksum. It writes exactly
// IPv4HeaderSize(len(f.Options)) bytes and panics if b is shorter or the
// options exceed 40 bytes.
func (b IPv4) Encode(f *IPv4Fields) {
	hl := IPv4HeaderSize(len(f.Options))
	if hl > IPv4MaximumHeaderSize {
		panic("wire: IPv4 options longer than 40 bytes")
	}
	_ = b[hl-1]
	b[ipv4VersIHL] = IPv4Version<<4 | uint8(hl/4)
	b[ipv4TOS] = f.TOS
	binary.BigEndian.PutUint16(b[ipv4TotalLen:], f.TotalLength)
	binary.BigEndian.PutUint16(b[ipv4ID:], f.ID)
	b.SetFlagsFragmentOffset(f.Flags, f.FragmentOffset)
	b[ipv4TTL] = f.TTL
	b[ipv4Protocol] = f.Protocol
	binary.BigEndian.PutUint16(b[ipv4Checksum:], 0)
	copy(b[ipv4SrcAddr:ipv4SrcAddr+4], f.Src[:])
	copy(b[ipv4DstAddr:ipv4DstAddr+4], f.Dst[:])
	n := copy(b[ipv4OptionsOff:hl], f.Options)
	clear(b[ipv4OptionsOff+n : hl])
	b.SetChecksum(^Checksum(b[:hl], 0))
}

// IPv4PseudoChecksum returns the partial pseudo-header sum for the transport
// segment carried by b (source, destination, protocol, transportLen), to pass
// to UDP.CalculateChecksum or TCP.CalculateChecksum. b must have passed Check.
func IPv4PseudoChecksum(b IPv4, transportLen uint16) uint16 {
	return PseudoHeaderChecksum(b.Protocol(), b.SrcSlice(), b.DstSlice(), transportLen)
}
