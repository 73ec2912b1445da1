package wire

import "encoding/binary"

// ICMPv4MinimumSize is the size of the fixed ICMPv4 header.
const ICMPv4MinimumSize = 8

// ICMPv4 message types.
const (
	ICMPv4EchoReply      = 0
	ICMPv4DstUnreachable = 3
	ICMPv4Redirect       = 5
	ICMPv4Echo           = 8
	ICMPv4TimeExceeded   = 11
	ICMPv4ParamProblem   = 12
)

// ICMPv4 destination-unreachable codes.
const (
	ICMPv4NetUnreachable      = 0
	ICMPv4HostUnreachable     = 1
	ICMPv4ProtoUnreachable    = 2
	ICMPv4PortUnreachable     = 3
	ICMPv4FragmentationNeeded = 4
	ICMPv4SourceRouteFailed   = 5
	ICMPv4NetProhibited       = 9
	ICMPv4HostProhibited      = 10
	ICMPv4AdminProhibited     = 13
)

// ICMPv4 time-exceeded codes.
const (
	ICMPv4TTLExceeded       = 0
	ICMPv4ReassemblyTimeout = 1
)

// ICMPv4 is a view of an ICMPv4 message: the 8-byte header (type, code,
// checksum and 4 type-specific bytes) followed by the body. Call Check before
// any accessor.
type ICMPv4 []byte

// ICMPv4Fields holds the fields of an ICMPv4 header for Encode. Rest is the
// type-specific 32-bit word after the checksum (bytes 4..8), in host order;
// build it with ICMPv4EchoRest, ICMPv4FragNeededRest or
// ICMPv4ParamProblemRest, or leave it 0 (unused in most error messages).
type ICMPv4Fields struct {
	Type, Code uint8
	Rest       uint32
}

// ICMPv4EchoRest returns the Rest word of an echo request or reply.
func ICMPv4EchoRest(ident, seq uint16) uint32 { return uint32(ident)<<16 | uint32(seq) }

// ICMPv4FragNeededRest returns the Rest word of a fragmentation-needed
// message carrying the next-hop MTU (RFC 1191).
func ICMPv4FragNeededRest(mtu uint16) uint32 { return uint32(mtu) }

// ICMPv4ParamProblemRest returns the Rest word of a parameter-problem
// message pointing at byte ptr of the offending header.
func ICMPv4ParamProblemRest(ptr uint8) uint32 { return uint32(ptr) << 24 }

// Check returns ErrTooShort if b is shorter than ICMPv4MinimumSize. It does
// not verify the checksum.
func (b ICMPv4) Check() error {
	if len(b) < ICMPv4MinimumSize {
		return ErrTooShort
	}
	return nil
}

// Type returns the message type.
func (b ICMPv4) Type() uint8 { return b[0] }

// Code returns the message code.
func (b ICMPv4) Code() uint8 { return b[1] }

// Checksum returns the checksum field as stored.
func (b ICMPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[2:]) }

// Rest returns the four type-specific bytes after the checksum.
func (b ICMPv4) Rest() uint32 { return binary.BigEndian.Uint32(b[4:]) }

// Ident returns the identifier of an echo request or reply (bytes 4..6).
func (b ICMPv4) Ident() uint16 { return binary.BigEndian.Uint16(b[4:]) }

// Seq returns the sequence number of an echo request or reply (bytes 6..8).
func (b ICMPv4) Seq() uint16 { return binary.BigEndian.Uint16(b[6:]) }

// MTU returns the next-hop MTU of a fragmentation-needed message (bytes 6..8).
func (b ICMPv4) MTU() uint16 { return binary.BigEndian.Uint16(b[6:]) }

// Pointer returns the pointer of a parameter-problem message (byte 4).
func (b ICMPv4) Pointer() uint8 { return b[4] }

// Payload returns the body after the 8-byte header: echo data, or the
// offending IP header and leading payload bytes of an error message.
func (b ICMPv4) Payload() []byte { return b[ICMPv4MinimumSize:] }

// SetType sets the message type.
func (b ICMPv4) SetType(v uint8) { b[0] = v }

// SetCode sets the message code.
func (b ICMPv4) SetCode(v uint8) { b[1] = v }

// SetChecksum stores the checksum field.
func (b ICMPv4) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[2:], v) }

// SetIdent sets the echo identifier.
func (b ICMPv4) SetIdent(v uint16) { binary.BigEndian.PutUint16(b[4:], v) }

// SetSeq sets the echo sequence number.
func (b ICMPv4) SetSeq(v uint16) { binary.BigEndian.PutUint16(b[6:], v) }

// SetMTU sets the next-hop MTU of a fragmentation-needed message.
func (b ICMPv4) SetMTU(v uint16) { binary.BigEndian.PutUint16(b[6:], v) }

// Encode writes exactly the 8-byte header with a zero checksum; write the
// body, then SetChecksum(CalculateChecksum()). b must be at least 8 bytes.
func (b ICMPv4) Encode(f *ICMPv4Fields) {
	_ = b[ICMPv4MinimumSize-1]
	b[0] = f.Type
	b[1] = f.Code
	binary.BigEndian.PutUint16(b[2:], 0)
	binary.BigEndian.PutUint32(b[4:], f.Rest)
}

// CalculateChecksum returns the checksum over the whole slice with the
// checksum field taken as zero, inverted and ready to store.
func (b ICMPv4) CalculateChecksum() uint16 {
	sum := Checksum(b[:2], 0)
	sum = Checksum(b[4:], sum)
	return ^sum
}

// IsChecksumValid reports whether the checksum over the whole slice verifies.
func (b ICMPv4) IsChecksumValid() bool {
	return Checksum(b, 0) == 0xffff
}
