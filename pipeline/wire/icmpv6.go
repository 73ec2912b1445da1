package wire

import "encoding/binary"

// ICMPv6 sizes.
const (
	// ICMPv6MinimumSize is the size of the type, code and checksum every
	// message starts with.
	ICMPv6MinimumSize = 4
	// ICMPv6HeaderSize is that plus the 32-bit word that error, echo, NDP
	// and MLD messages carry next (unused, MTU, pointer, ident and seq,
	// flags...).
	ICMPv6HeaderSize = 8
)

// ICMPv6 message types (RFC 4443, RFC 4861, RFC 2710, RFC 3810).
const (
	ICMPv6DstUnreachable        = 1
	ICMPv6PacketTooBig          = 2
	ICMPv6TimeExceeded          = 3
	ICMPv6ParamProblem          = 4
	ICMPv6EchoRequest           = 128
	ICMPv6EchoReply             = 129
	ICMPv6MLDQuery              = 130
	ICMPv6MLDReport             = 131
	ICMPv6MLDDone               = 132
	ICMPv6RouterSolicitation    = 133
	ICMPv6RouterAdvertisement   = 134
	ICMPv6NeighborSolicitation  = 135
	ICMPv6NeighborAdvertisement = 136
	ICMPv6Redirect              = 137
	ICMPv6MLDv2Report           = 143
)

// ICMPv6 destination-unreachable codes.
const (
	ICMPv6NoRoute            = 0
	ICMPv6AdminProhibited    = 1
	ICMPv6BeyondScope        = 2
	ICMPv6AddressUnreachable = 3
	ICMPv6PortUnreachable    = 4
	ICMPv6SourcePolicy       = 5
	ICMPv6RejectRoute        = 6
)

// ICMPv6 time-exceeded codes.
const (
	ICMPv6HopLimitExceeded  = 0
	ICMPv6ReassemblyTimeout = 1
)

// ICMPv6 parameter-problem codes (RFC 4443, RFC 7112).
const (
	ICMPv6ErroneousHeader        = 0
	ICMPv6UnrecognizedNextHeader = 1
	ICMPv6UnrecognizedOption     = 2
	ICMPv6IncompleteHeaderChain  = 3
)

// ICMPv6 is a view of an ICMPv6 message: type, code, checksum and the body.
// Call Check before any accessor.
//
// Most messages carry a 32-bit word after the checksum (ICMPv6HasRest);
// Check requires it for them. The accessors of that word (Rest, Ident, Seq,
// MTU, Pointer) return 0 for a shorter message, which only a type without
// it can be.
type ICMPv6 []byte

// ICMPv6Fields holds the fields of an ICMPv6 header for Encode. Rest is the
// 32-bit word after the checksum (bytes 4..8), in host order: build it with
// ICMPv6EchoRest, or put the MTU of a packet-too-big or the pointer of a
// parameter-problem message; 0 in the other error messages.
type ICMPv6Fields struct {
	Type, Code uint8
	Rest       uint32
}

// ICMPv6EchoRest returns the Rest word of an echo request or reply.
func ICMPv6EchoRest(ident, seq uint16) uint32 { return uint32(ident)<<16 | uint32(seq) }

// ICMPv6HasRest reports whether messages of type t carry the 32-bit word
// after the checksum: every error message (types below 128, known or not),
// echo, MLD and NDP messages.
func ICMPv6HasRest(t uint8) bool {
	return t <= ICMPv6Redirect || t == ICMPv6MLDv2Report
}

// Check returns ErrTooShort if b is shorter than 4 bytes, or than 8 bytes
// for a type that carries the 32-bit word (ICMPv6HasRest). It does not
// verify the checksum, nor the body of NDP messages (see the NDP views).
func (b ICMPv6) Check() error {
	if len(b) < ICMPv6MinimumSize {
		return ErrTooShort
	}
	if len(b) < ICMPv6HeaderSize && ICMPv6HasRest(b[0]) {
		return ErrTooShort
	}
	return nil
}

// Type returns the message type.
func (b ICMPv6) Type() uint8 { return b[0] }

// Code returns the message code.
func (b ICMPv6) Code() uint8 { return b[1] }

// Checksum returns the checksum field as stored.
func (b ICMPv6) Checksum() uint16 { return binary.BigEndian.Uint16(b[2:]) }

// IsError reports whether the message is an error message (type below 128).
func (b ICMPv6) IsError() bool { return b[0] < 128 }

// Rest returns the 32-bit word after the checksum, or 0 for a message
// shorter than 8 bytes.
func (b ICMPv6) Rest() uint32 {
	if len(b) < ICMPv6HeaderSize {
		return 0
	}
	return binary.BigEndian.Uint32(b[4:8])
}

// Ident returns the identifier of an echo request or reply (bytes 4..6).
func (b ICMPv6) Ident() uint16 { return uint16(b.Rest() >> 16) }

// Seq returns the sequence number of an echo request or reply (bytes 6..8).
func (b ICMPv6) Seq() uint16 { return uint16(b.Rest()) }

// MTU returns the MTU of a packet-too-big message (32 bits).
func (b ICMPv6) MTU() uint32 { return b.Rest() }

// Pointer returns the pointer of a parameter-problem message: the offset of
// the offending byte in the quoted packet (32 bits).
func (b ICMPv6) Pointer() uint32 { return b.Rest() }

// Body returns everything after the 4-byte type, code and checksum: the
// view NDP messages are parsed from (NDPRouterAdvertisement(b.Body()), ...).
func (b ICMPv6) Body() []byte { return b[ICMPv6MinimumSize:] }

// Payload returns the bytes after the 8-byte header: echo data, or as much
// of the offending packet as an error message quotes. It is empty for a
// message shorter than 8 bytes.
func (b ICMPv6) Payload() []byte {
	if len(b) < ICMPv6HeaderSize {
		return b[len(b):]
	}
	return b[ICMPv6HeaderSize:]
}

// SetType sets the message type.
func (b ICMPv6) SetType(v uint8) { b[0] = v }

// SetCode sets the message code.
func (b ICMPv6) SetCode(v uint8) { b[1] = v }

// SetChecksum stores the checksum field.
func (b ICMPv6) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[2:], v) }

// SetRest sets the 32-bit word after the checksum.
func (b ICMPv6) SetRest(v uint32) { binary.BigEndian.PutUint32(b[4:], v) }

// SetIdent sets the echo identifier.
func (b ICMPv6) SetIdent(v uint16) { binary.BigEndian.PutUint16(b[4:], v) }

// SetSeq sets the echo sequence number.
func (b ICMPv6) SetSeq(v uint16) { binary.BigEndian.PutUint16(b[6:], v) }

// SetMTU sets the MTU of a packet-too-big message.
func (b ICMPv6) SetMTU(v uint32) { b.SetRest(v) }

// SetPointer sets the pointer of a parameter-problem message.
func (b ICMPv6) SetPointer(v uint32) { b.SetRest(v) }

// Encode writes exactly the 8-byte header with a zero checksum; write the
// body, then SetChecksum(CalculateChecksum(pseudo)). b must be at least 8
// bytes.
func (b ICMPv6) Encode(f *ICMPv6Fields) {
	_ = b[ICMPv6HeaderSize-1]
	b[0] = f.Type
	b[1] = f.Code
	binary.BigEndian.PutUint16(b[2:], 0)
	binary.BigEndian.PutUint32(b[4:], f.Rest)
}

// CalculateChecksum returns the checksum over the whole slice with the
// checksum field taken as zero, starting from the partial pseudo-header sum
// pseudo, inverted and ready to store. Unlike ICMPv4, the ICMPv6 checksum
// covers the IPv6 pseudo-header (RFC 4443 §2.3): pass
// IPv6PseudoChecksum(ip, ProtocolICMPv6, uint32(len(b))).
func (b ICMPv6) CalculateChecksum(pseudo uint16) uint16 {
	sum := Checksum(b[:2], pseudo)
	sum = Checksum(b[ICMPv6MinimumSize:], sum)
	return ^sum
}

// IsChecksumValid reports whether the checksum over the whole slice
// verifies against the partial pseudo-header sum.
func (b ICMPv6) IsChecksumValid(pseudo uint16) bool {
	return Checksum(b, pseudo) == 0xffff
}
