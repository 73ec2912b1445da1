package wire

import "encoding/binary"

// UDPHeaderSize is the size of a UDP header.
const UDPHeaderSize = 8

// UDP is a view of a UDP datagram: header and payload, possibly followed by
// bytes beyond the Length field. Call Check before any accessor.
type UDP []byte

// UDPFields holds the fields of a UDP header for Encode.
type UDPFields struct {
	SrcPort, DstPort, Length, Checksum uint16
}

// Check validates the datagram: at least 8 bytes (ErrTooShort) and
// 8 <= Length <= len(b) (ErrBadLength). It does not verify the checksum.
func (b UDP) Check() error {
	if len(b) < UDPHeaderSize {
		return ErrTooShort
	}
	l := int(binary.BigEndian.Uint16(b[4:]))
	if l < UDPHeaderSize || l > len(b) {
		return ErrBadLength
	}
	return nil
}

// SrcPort returns the source port.
func (b UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(b[0:]) }

// DstPort returns the destination port.
func (b UDP) DstPort() uint16 { return binary.BigEndian.Uint16(b[2:]) }

// Length returns the length field: header plus payload.
func (b UDP) Length() uint16 { return binary.BigEndian.Uint16(b[4:]) }

// Checksum returns the checksum field as stored (0 means none).
func (b UDP) Checksum() uint16 { return binary.BigEndian.Uint16(b[6:]) }

// Payload returns the bytes after the header, up to Length.
func (b UDP) Payload() []byte { return b[UDPHeaderSize:b.Length()] }

// SetSrcPort sets the source port.
func (b UDP) SetSrcPort(v uint16) { binary.BigEndian.PutUint16(b[0:], v) }

// SetDstPort sets the destination port.
func (b UDP) SetDstPort(v uint16) { binary.BigEndian.PutUint16(b[2:], v) }

// SetLength sets the length field. A value that Check would refuse voids the
// accessor guarantee.
func (b UDP) SetLength(v uint16) { binary.BigEndian.PutUint16(b[4:], v) }

// SetChecksum stores the checksum field.
func (b UDP) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[6:], v) }

// Encode writes exactly the 8 header bytes; b must be at least that long.
func (b UDP) Encode(f *UDPFields) {
	_ = b[UDPHeaderSize-1]
	binary.BigEndian.PutUint16(b[0:], f.SrcPort)
	binary.BigEndian.PutUint16(b[2:], f.DstPort)
	binary.BigEndian.PutUint16(b[4:], f.Length)
	binary.BigEndian.PutUint16(b[6:], f.Checksum)
}

// CalculateChecksum returns the checksum over the header and payload (up to
// Length) with the checksum field taken as zero, starting from the partial
// pseudo-header sum pseudo (see PseudoHeaderChecksum, IPv4PseudoChecksum),
// inverted and ready to store. A computed 0 is returned as 0xffff, since 0
// on the wire means "no checksum" (RFC 768).
func (b UDP) CalculateChecksum(pseudo uint16) uint16 {
	sum := Checksum(b[:6], pseudo)
	sum = Checksum(b[UDPHeaderSize:b.Length()], sum)
	if cs := ^sum; cs != 0 {
		return cs
	}
	return 0xffff
}

// IsChecksumValid reports whether the checksum verifies against the partial
// pseudo-header sum. A zero Checksum field means "no checksum" and is
// reported valid: that is right for IPv4, but for IPv6 a zero checksum is
// forbidden (RFC 8200 §8.1) and the caller must refuse it before asking.
func (b UDP) IsChecksumValid(pseudo uint16) bool {
	if b.Checksum() == 0 {
		return true
	}
	return Checksum(b[:b.Length()], pseudo) == 0xffff
}
