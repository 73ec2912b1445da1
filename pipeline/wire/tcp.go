package wire

import "encoding/binary"

// TCPMinimumSize is the size of a TCP header without options.
const TCPMinimumSize = 20

// TCP flag bits, as returned by Flags.
const (
	TCPFlagFin uint8 = 1 << iota
	TCPFlagSyn
	TCPFlagRst
	TCPFlagPsh
	TCPFlagAck
	TCPFlagUrg
	TCPFlagEce
	TCPFlagCwr
)

// TCP is a view of a TCP segment: header, options and payload (to the end of
// the slice, which the caller bounds with the IP payload). Call Check before
// any accessor.
type TCP []byte

// TCPFields holds the fields of a TCP header for Encode.
type TCPFields struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
	Window           uint16
	Checksum         uint16 // usually 0, then SetChecksum(CalculateChecksum(...))
	UrgentPointer    uint16
	Options          []byte // at most 40 bytes; padded with zeros (EOL) to 4 bytes
}

// Check validates the segment: at least 20 bytes (ErrTooShort), data offset
// >= 5 and data offset*4 <= len(b) (ErrBadDataOffset). It does not verify the
// checksum.
func (b TCP) Check() error {
	if len(b) < TCPMinimumSize {
		return ErrTooShort
	}
	off := int(b[12]>>4) * 4
	if off < TCPMinimumSize || off > len(b) {
		return ErrBadDataOffset
	}
	return nil
}

// SrcPort returns the source port.
func (b TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(b[0:]) }

// DstPort returns the destination port.
func (b TCP) DstPort() uint16 { return binary.BigEndian.Uint16(b[2:]) }

// Seq returns the sequence number.
func (b TCP) Seq() uint32 { return binary.BigEndian.Uint32(b[4:]) }

// Ack returns the acknowledgment number.
func (b TCP) Ack() uint32 { return binary.BigEndian.Uint32(b[8:]) }

// DataOffset returns the header length in bytes, options included.
func (b TCP) DataOffset() int { return int(b[12]>>4) * 4 }

// Flags returns the eight flag bits (TCPFlagFin ... TCPFlagCwr).
func (b TCP) Flags() uint8 { return b[13] }

// Window returns the (unscaled) window field.
func (b TCP) Window() uint16 { return binary.BigEndian.Uint16(b[14:]) }

// Checksum returns the checksum field as stored.
func (b TCP) Checksum() uint16 { return binary.BigEndian.Uint16(b[16:]) }

// UrgentPointer returns the urgent pointer field.
func (b TCP) UrgentPointer() uint16 { return binary.BigEndian.Uint16(b[18:]) }

// Options returns the option bytes, unparsed.
func (b TCP) Options() []byte { return b[TCPMinimumSize:b.DataOffset()] }

// Payload returns the bytes after the options, to the end of the slice.
func (b TCP) Payload() []byte { return b[b.DataOffset():] }

// SetSrcPort sets the source port.
func (b TCP) SetSrcPort(v uint16) { binary.BigEndian.PutUint16(b[0:], v) }

// SetDstPort sets the destination port.
func (b TCP) SetDstPort(v uint16) { binary.BigEndian.PutUint16(b[2:], v) }

// SetSeq sets the sequence number.
func (b TCP) SetSeq(v uint32) { binary.BigEndian.PutUint32(b[4:], v) }

// SetAck sets the acknowledgment number.
func (b TCP) SetAck(v uint32) { binary.BigEndian.PutUint32(b[8:], v) }

// SetFlags sets the eight flag bits.
func (b TCP) SetFlags(v uint8) { b[13] = v }

// SetWindow sets the window field.
func (b TCP) SetWindow(v uint16) { binary.BigEndian.PutUint16(b[14:], v) }

// SetChecksum stores the checksum field.
func (b TCP) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[16:], v) }

// Encode writes the header and options, options padded with zeros to a
// multiple of 4: exactly TCPMinimumSize + padded options bytes. It panics if
// b is shorter or the options exceed 40 bytes. The reserved bits are zeroed.
func (b TCP) Encode(f *TCPFields) {
	off := TCPMinimumSize + (len(f.Options)+3)&^3
	if off > 60 {
		panic("wire: TCP options longer than 40 bytes")
	}
	_ = b[off-1]
	binary.BigEndian.PutUint16(b[0:], f.SrcPort)
	binary.BigEndian.PutUint16(b[2:], f.DstPort)
	binary.BigEndian.PutUint32(b[4:], f.Seq)
	binary.BigEndian.PutUint32(b[8:], f.Ack)
	b[12] = uint8(off/4) << 4
	b[13] = f.Flags
	binary.BigEndian.PutUint16(b[14:], f.Window)
	binary.BigEndian.PutUint16(b[16:], f.Checksum)
	binary.BigEndian.PutUint16(b[18:], f.UrgentPointer)
	n := copy(b[TCPMinimumSize:off], f.Options)
	clear(b[TCPMinimumSize+n : off])
}

// CalculateChecksum returns the checksum over the whole slice (header,
// options, payload) with the checksum field taken as zero, starting from the
// partial pseudo-header sum pseudo, inverted and ready to store.
func (b TCP) CalculateChecksum(pseudo uint16) uint16 {
	sum := Checksum(b[:16], pseudo)
	sum = Checksum(b[18:], sum)
	return ^sum
}

// CalculateChecksumPayload is CalculateChecksum for a segment whose
// payload (the bytes after its header, DataOffset) the caller has summed
// already (Checksum or CopyChecksum, not inverted): only the header is
// summed here. The result is CalculateChecksum's.
func (b TCP) CalculateChecksumPayload(pseudo, payload uint16) uint16 {
	sum := Checksum(b[:16], ChecksumCombine(pseudo, payload))
	sum = Checksum(b[18:b.DataOffset()], sum)
	return ^sum
}

// IsChecksumValid reports whether the checksum over the whole slice verifies
// against the partial pseudo-header sum.
func (b TCP) IsChecksumValid(pseudo uint16) bool {
	return Checksum(b, pseudo) == 0xffff
}

// TCPResetFields returns the header of the reset a TCP sends in answer to
// seg when no connection accepts it (RFC 9293 §3.10.7.1, a segment arriving
// for a connection in CLOSED state; also what a filter's "reject with tcp
// reset" sends): the ports swapped, no options, window 0, and
//
//   - if seg has ACK: <SEQ=SEG.ACK><CTL=RST>;
//   - otherwise: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, SEG.LEN being
//     the payload length plus one for SYN and one for FIN.
//
// seg must have passed Check and be bounded by the IP payload (its payload
// is what follows the options). ok is false when seg is itself a reset,
// which is never answered. The checksum is left 0: the caller computes it
// over the pseudo-header of the reset's addresses (the offending packet's,
// swapped).
func TCPResetFields(seg TCP) (f TCPFields, ok bool) {
	flags := seg.Flags()
	if flags&TCPFlagRst != 0 {
		return f, false
	}
	f.SrcPort, f.DstPort = seg.DstPort(), seg.SrcPort()
	if flags&TCPFlagAck != 0 {
		f.Seq, f.Flags = seg.Ack(), TCPFlagRst
		return f, true
	}
	n := uint32(len(seg) - seg.DataOffset())
	if flags&TCPFlagSyn != 0 {
		n++
	}
	if flags&TCPFlagFin != 0 {
		n++
	}
	f.Ack, f.Flags = seg.Seq()+n, TCPFlagRst|TCPFlagAck
	return f, true
}
