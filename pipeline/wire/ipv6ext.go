package wire

import "encoding/binary"

// IPv6Error reports why an IPv6 extension header chain, an option list in a
// Hop-by-Hop or Destination Options header, or an NDP option list is
// malformed. Like ParseError it is a small integer, so returning it as an
// error never allocates; the offset of the offending byte is returned next
// to it (IPv6ExtInfo.ErrorOffset, IPv6OptionIter.Offset,
// NDPOptionIter.Offset).
type IPv6Error uint8

// IPv6 extension and option errors. The zero IPv6Error is not a valid code.
const (
	// ErrIPv6HopByHopNotFirst: a Next Header field other than the fixed
	// header's names a Hop-by-Hop Options header (RFC 8200 §4.1).
	// ParamProblemCode: unrecognized next header; the pointer is that
	// Next Header field.
	ErrIPv6HopByHopNotFirst IPv6Error = iota + 1
	// ErrIPv6TooManyExtHeaders: more extension headers than the walk
	// allows. No ICMPv6 error; the offset is the Next Header field naming
	// the first header over the limit.
	ErrIPv6TooManyExtHeaders
	// ErrIPv6ExtHeaderTruncated: an extension header, or its length,
	// runs past PayloadLength (or an option past its header). No ICMPv6
	// error.
	ErrIPv6ExtHeaderTruncated
	// ErrIPv6IncompleteHeaderChain: a first fragment (offset 0, M set)
	// ends before the upper-layer header (RFC 7112, RFC 8200 §4.5).
	// ParamProblemCode: first fragment has incomplete header chain; the
	// pointer is 0.
	ErrIPv6IncompleteHeaderChain
	// ErrIPv6BadAHLength: an Authentication Header length that is not a
	// multiple of 8 bytes (RFC 4302 §2.2). ParamProblemCode: erroneous
	// header field, pointing at the length byte.
	ErrIPv6BadAHLength
	// ErrIPv6DuplicateFragment: a second Fragment header after an atomic
	// or first-fragment one. No ICMPv6 error.
	ErrIPv6DuplicateFragment
	// ErrNDPOptionZeroLength: an NDP option with length 0 (RFC 4861
	// §4.6: the packet must be discarded).
	ErrNDPOptionZeroLength
	// ErrNDPOptionTruncated: an NDP option runs past the message, or
	// fewer than 2 bytes are left for its type and length.
	ErrNDPOptionTruncated

	numIPv6Errors
)

var ipv6ErrorText = [numIPv6Errors]string{
	"unknown IPv6 error",
	"hop-by-hop options header not first",
	"too many IPv6 extension headers",
	"IPv6 extension header truncated",
	"first fragment has incomplete header chain",
	"bad authentication header length",
	"duplicate fragment header",
	"NDP option of length zero",
	"NDP option truncated",
}

var ipv6ErrorFull = [numIPv6Errors]string{
	"wire: unknown IPv6 error",
	"wire: hop-by-hop options header not first",
	"wire: too many IPv6 extension headers",
	"wire: IPv6 extension header truncated",
	"wire: first fragment has incomplete header chain",
	"wire: bad authentication header length",
	"wire: duplicate fragment header",
	"wire: NDP option of length zero",
	"wire: NDP option truncated",
}

var ipv6ErrorReason = [numIPv6Errors]string{
	"unknown",
	"hop_by_hop_not_first",
	"too_many_ext_headers",
	"ext_header_truncated",
	"incomplete_header_chain",
	"bad_ah_length",
	"duplicate_fragment",
	"ndp_option_zero_length",
	"ndp_option_truncated",
}

// ipv6ErrorCode is the ICMPv6 Parameter Problem code of each error, or
// noParamProblem.
var ipv6ErrorCode = [numIPv6Errors]int16{
	noParamProblem,
	ICMPv6UnrecognizedNextHeader,
	noParamProblem,
	noParamProblem,
	ICMPv6IncompleteHeaderChain,
	ICMPv6ErroneousHeader,
	noParamProblem,
	noParamProblem,
	noParamProblem,
}

const noParamProblem = -1

func (e IPv6Error) index() int {
	if e >= numIPv6Errors {
		return 0
	}
	return int(e)
}

// Error implements error. It returns a static string and does not allocate.
func (e IPv6Error) Error() string { return ipv6ErrorFull[e.index()] }

// String returns a human-readable description without the package prefix.
func (e IPv6Error) String() string { return ipv6ErrorText[e.index()] }

// Reason returns a snake_case name for the error, suitable as a drop-counter
// label, or "unknown" for a value that is not one of the constants.
func (e IPv6Error) Reason() string { return ipv6ErrorReason[e.index()] }

// ParamProblemCode returns the ICMPv6 Parameter Problem code a node sends
// about a packet refused with e, pointing at the error offset, and true; or
// false when the packet is dropped silently.
func (e IPv6Error) ParamProblemCode() (uint8, bool) {
	c := ipv6ErrorCode[e.index()]
	return uint8(c), c >= 0
}

// IPv6ExtInfo is the result of IPv6.WalkExtensions. All offsets are counted
// from the start of the IPv6 header, so they are Parameter Problem pointers
// as they stand.
type IPv6ExtInfo struct {
	// Protocol is the upper-layer protocol: the first Next Header value
	// that is not a Hop-by-Hop, Routing, Fragment, Destination Options or
	// Authentication header. ESP and No Next Header end the walk too. In
	// a fragment with a nonzero offset the walk stops at the Fragment
	// header and Protocol is its Next Header value.
	Protocol uint8
	// ProtocolOffset is the offset of the upper-layer header (or of the
	// fragment data) and at most 40+PayloadLength.
	ProtocolOffset int
	// NextHeaderOffset is the offset of the Next Header field that holds
	// Protocol: the pointer of an "unrecognized next header" Parameter
	// Problem.
	NextHeaderOffset int
	// Count is the number of extension headers walked.
	Count int
	// HopByHop reports a Hop-by-Hop Options header, always at offset 40.
	HopByHop bool
	// RoutingOffset is the offset of the first Routing header, 0 if none.
	RoutingOffset int
	// Fragment reports a Fragment header; the fields after it describe
	// it. A packet is a fragment to reassemble when Fragment is true and
	// FragmentOffset or MoreFragments is nonzero (see IsFragment); a
	// Fragment header with both zero is an atomic fragment (RFC 6946).
	Fragment             bool
	FragmentHeaderOffset int
	FragmentOffset       uint16 // in bytes, a multiple of 8
	MoreFragments        bool
	FragmentID           uint32
	// UnfragmentableLength is the length of the unfragmentable part: the
	// offset of the Fragment header when there is one; otherwise what RFC
	// 8200 §4.5 says a fragmenting source keeps in every fragment — the
	// fixed header and the extension headers up to and including the
	// last Routing header, or else the Hop-by-Hop header, or else none.
	UnfragmentableLength int
	// ErrorOffset is the offset of the offending byte when the walk
	// returns an error (see IPv6Error.ParamProblemCode).
	ErrorOffset int
}

// IsFragment reports whether the packet is a fragment of a larger one: a
// Fragment header with a nonzero offset or the M flag.
func (x *IPv6ExtInfo) IsFragment() bool {
	return x.Fragment && (x.FragmentOffset != 0 || x.MoreFragments)
}

// WalkExtensions walks the extension headers of a packet that passed Check,
// within PayloadLength, and returns where the upper-layer header starts. It
// walks Hop-by-Hop (only as the first header), Routing, Fragment,
// Destination Options (length (n+1)*8) and Authentication headers (length
// (n+2)*4, a multiple of 8), at most max of them; it does not look inside
// them (see IPv6Options, IPv6Routing). It stops at the first other value,
// at ESP and No Next Header, and after the Fragment header of a fragment
// with a nonzero offset, whose data is not a header.
//
// It checks that each extension header fits, not the upper-layer header:
// ProtocolOffset may equal 40+PayloadLength. An incomplete chain is reported
// as such (RFC 7112) only when a header after the Fragment header of a first
// fragment is cut.
//
// On error the returned info holds what was walked so far and ErrorOffset
// (at most 40+PayloadLength: a header cut at the very end points just past
// it); the error is an IPv6Error. It never panics and never allocates.
func (b IPv6) WalkExtensions(max int) (IPv6ExtInfo, error) {
	nh := b[ipv6NextHeader]
	switch nh {
	case ProtocolHopByHop, ProtocolRouting, ProtocolFragment, ProtocolDestOptions, ProtocolAH:
	default:
		// The common case: no extension header.
		return IPv6ExtInfo{
			Protocol:             nh,
			ProtocolOffset:       IPv6HeaderSize,
			NextHeaderOffset:     ipv6NextHeader,
			UnfragmentableLength: IPv6HeaderSize,
		}, nil
	}
	end := IPv6HeaderSize + int(b.PayloadLength())
	x := IPv6ExtInfo{
		NextHeaderOffset: ipv6NextHeader,
		ProtocolOffset:   IPv6HeaderSize,
	}
	unfrag := IPv6HeaderSize // RFC 8200 §4.5, without a Fragment header
	off := IPv6HeaderSize
	for {
		switch nh {
		case ProtocolHopByHop:
			if off != IPv6HeaderSize {
				return x.fail(ErrIPv6HopByHopNotFirst, x.NextHeaderOffset)
			}
		case ProtocolFragment:
			if x.Fragment {
				return x.fail(ErrIPv6DuplicateFragment, x.NextHeaderOffset)
			}
		case ProtocolRouting, ProtocolDestOptions, ProtocolAH:
		default:
			x.Protocol = nh
			if !x.Fragment {
				x.UnfragmentableLength = unfrag
			}
			return x, nil
		}
		if x.Count >= max {
			return x.fail(ErrIPv6TooManyExtHeaders, x.NextHeaderOffset)
		}
		if off+8 > end {
			// Every extension header is at least 8 bytes.
			return x.truncated(off)
		}
		var hl int
		switch nh {
		case ProtocolFragment:
			hl = IPv6FragmentSize
		case ProtocolAH:
			if b[off+1]&1 != 0 {
				return x.fail(ErrIPv6BadAHLength, off+1)
			}
			hl = (int(b[off+1]) + 2) * 4
		default:
			hl = (int(b[off+1]) + 1) * 8
		}
		if off+hl > end {
			return x.truncated(off + 1)
		}
		x.Count++
		x.NextHeaderOffset = off
		switch nh {
		case ProtocolHopByHop:
			x.HopByHop = true
			unfrag = off + hl
		case ProtocolRouting:
			if x.RoutingOffset == 0 {
				x.RoutingOffset = off
			}
			unfrag = off + hl
		case ProtocolFragment:
			f := IPv6Fragment(b[off : off+IPv6FragmentSize])
			x.Fragment = true
			x.FragmentHeaderOffset = off
			x.FragmentOffset = f.FragmentOffset()
			x.MoreFragments = f.More()
			x.FragmentID = f.ID()
			x.UnfragmentableLength = off
		}
		later := nh == ProtocolFragment && x.FragmentOffset != 0
		nh = b[off]
		off += hl
		x.ProtocolOffset = off
		if later {
			// The data of a later fragment is not a header.
			x.Protocol = nh
			return x, nil
		}
	}
}

func (x IPv6ExtInfo) fail(e IPv6Error, at int) (IPv6ExtInfo, error) {
	x.ErrorOffset = at
	return x, e
}

// truncated reports a header at off running past end: in a first fragment
// that is an incomplete header chain (RFC 7112), otherwise a plain drop.
func (x IPv6ExtInfo) truncated(at int) (IPv6ExtInfo, error) {
	if x.Fragment && x.FragmentOffset == 0 && x.MoreFragments {
		return x.fail(ErrIPv6IncompleteHeaderChain, 0)
	}
	return x.fail(ErrIPv6ExtHeaderTruncated, at)
}

// IPv6FragmentSize is the size of a Fragment header.
const IPv6FragmentSize = 8

// IPv6Fragment is a view of a Fragment extension header (RFC 8200 §4.5).
// Call Check before any accessor.
type IPv6Fragment []byte

// IPv6FragmentFields holds the fields of a Fragment header for Encode.
type IPv6FragmentFields struct {
	NextHeader     uint8
	FragmentOffset uint16 // in bytes; must be a multiple of 8
	More           bool
	ID             uint32
}

// Check returns ErrTooShort if b is shorter than IPv6FragmentSize.
func (b IPv6Fragment) Check() error {
	if len(b) < IPv6FragmentSize {
		return ErrTooShort
	}
	return nil
}

// NextHeader returns the type of the first header of the fragmentable part.
func (b IPv6Fragment) NextHeader() uint8 { return b[0] }

// FragmentOffset returns the fragment offset in bytes (the field times 8).
func (b IPv6Fragment) FragmentOffset() uint16 { return binary.BigEndian.Uint16(b[2:]) &^ 7 }

// More reports whether the M (more fragments) flag is set.
func (b IPv6Fragment) More() bool { return b[3]&1 != 0 }

// ID returns the 32-bit identification.
func (b IPv6Fragment) ID() uint32 { return binary.BigEndian.Uint32(b[4:]) }

// SetNextHeader sets the next header field.
func (b IPv6Fragment) SetNextHeader(v uint8) { b[0] = v }

// SetFragmentOffset sets the offset, given in bytes (the low 3 bits are
// dropped), and the M flag; the reserved bits are cleared.
func (b IPv6Fragment) SetFragmentOffset(offsetBytes uint16, more bool) {
	w := offsetBytes &^ 7
	if more {
		w |= 1
	}
	binary.BigEndian.PutUint16(b[2:], w)
}

// SetID sets the identification.
func (b IPv6Fragment) SetID(v uint32) { binary.BigEndian.PutUint32(b[4:], v) }

// Encode writes exactly the 8-byte header, reserved fields zero. It panics if
// b is shorter.
func (b IPv6Fragment) Encode(f *IPv6FragmentFields) {
	_ = b[IPv6FragmentSize-1]
	b[0] = f.NextHeader
	b[1] = 0
	b.SetFragmentOffset(f.FragmentOffset, f.More)
	b.SetID(f.ID)
}

// IPv6 Hop-by-Hop and Destination option types (RFC 8200 §4.2, RFC 2711,
// RFC 2675).
const (
	IPv6OptionPad1        = 0x00
	IPv6OptionPadN        = 0x01
	IPv6OptionRouterAlert = 0x05
	IPv6OptionJumbo       = 0xc2
)

// Router Alert values (RFC 2711, RFC 2710).
const (
	IPv6RouterAlertMLD            = 0
	IPv6RouterAlertRSVP           = 1
	IPv6RouterAlertActiveNetworks = 2
)

// Actions for an unrecognized option, the two high-order bits of its type
// (RFC 8200 §4.2), as returned by IPv6Option.Action.
const (
	// IPv6OptionActionSkip: skip the option and go on.
	IPv6OptionActionSkip = 0
	// IPv6OptionActionDiscard: discard the packet silently.
	IPv6OptionActionDiscard = 1
	// IPv6OptionActionDiscardICMP: discard and send a Parameter Problem,
	// code unrecognized option, pointing at the option type, whatever the
	// destination.
	IPv6OptionActionDiscardICMP = 2
	// IPv6OptionActionDiscardICMPUnicast: as DiscardICMP, but only when the
	// destination is not a multicast address.
	IPv6OptionActionDiscardICMPUnicast = 3
)

// IPv6Options is a view of a Hop-by-Hop or Destination Options header: next
// header, length and type-length-value options (RFC 8200 §4.3, §4.6). Call
// Check before any accessor.
type IPv6Options []byte

// IPv6OptionsFields holds the fields of an options header for Encode.
// Options holds the encoded options without padding.
type IPv6OptionsFields struct {
	NextHeader uint8
	Options    []byte
}

// IPv6OptionsSize returns the size of an options header carrying optionsLen
// bytes of options: 2 + optionsLen rounded up to a multiple of 8.
func IPv6OptionsSize(optionsLen int) int { return (2 + optionsLen + 7) &^ 7 }

// Check returns ErrTooShort if b is shorter than 8 bytes and
// ErrExtHeaderTruncated if the length field runs past b. It does not look
// at the options; the iterator does.
func (b IPv6Options) Check() error {
	if len(b) < 8 {
		return ErrTooShort
	}
	if (int(b[1])+1)*8 > len(b) {
		return ErrExtHeaderTruncated
	}
	return nil
}

// NextHeader returns the type of the following header.
func (b IPv6Options) NextHeader() uint8 { return b[0] }

// HeaderLength returns the header length in bytes, (length field + 1) * 8.
func (b IPv6Options) HeaderLength() int { return (int(b[1]) + 1) * 8 }

// Options returns the option bytes after the next header and length bytes.
func (b IPv6Options) Options() []byte { return b[2:b.HeaderLength()] }

// SetNextHeader sets the next header field.
func (b IPv6Options) SetNextHeader(v uint8) { b[0] = v }

// Encode writes exactly IPv6OptionsSize(len(f.Options)) bytes: the next
// header, the length, the options and a Pad1 or PadN option filling the
// header to a multiple of 8. It panics if b is shorter or the options do
// not fit in 2048 bytes.
func (b IPv6Options) Encode(f *IPv6OptionsFields) {
	hl := IPv6OptionsSize(len(f.Options))
	if hl > 256*8 {
		panic("wire: IPv6 options longer than 2046 bytes")
	}
	_ = b[hl-1]
	b[0] = f.NextHeader
	b[1] = uint8(hl/8 - 1)
	n := 2 + copy(b[2:], f.Options)
	switch pad := hl - n; pad {
	case 0:
	case 1:
		b[n] = IPv6OptionPad1
	default:
		b[n] = IPv6OptionPadN
		b[n+1] = uint8(pad - 2)
		clear(b[n+2 : hl])
	}
}

// IPv6RouterAlertOption returns a Router Alert option (RFC 2711) carrying v,
// e.g. IPv6RouterAlertMLD, to pass in IPv6OptionsFields.Options.
func IPv6RouterAlertOption(v uint16) [4]byte {
	return [4]byte{IPv6OptionRouterAlert, 2, byte(v >> 8), byte(v)}
}

// IPv6Option is one option of an options header, as returned by
// IPv6OptionIter.
type IPv6Option struct {
	Type uint8
	// Data is the option data in place, without type and length.
	Data []byte
	// Offset is the offset of the option type byte from the start of
	// the options header; add the header's offset in the packet for a
	// Parameter Problem pointer.
	Offset int
}

// Action returns what to do with the option if its type is not recognized,
// one of the IPv6OptionAction constants: the two high-order bits of Type.
func (o IPv6Option) Action() uint8 { return o.Type >> 6 }

// MayChange reports whether the option data may change en route (the third
// high-order bit of Type), in which case an Authentication Header treats it
// as zeros.
func (o IPv6Option) MayChange() bool { return o.Type&0x20 != 0 }

// RouterAlert returns the value of a Router Alert option and true, or false
// if o is not a well-formed Router Alert option.
func (o IPv6Option) RouterAlert() (uint16, bool) {
	if o.Type != IPv6OptionRouterAlert || len(o.Data) != 2 {
		return 0, false
	}
	return binary.BigEndian.Uint16(o.Data), true
}

// IPv6OptionIter iterates over the options of an options header, skipping
// Pad1 and PadN. Use it as
//
//	it := opts.Iter()
//	for it.Next() {
//		o := it.Option()
//		...
//	}
//	if err := it.Err(); err != nil { // it.Offset() is the bad byte
//	}
type IPv6OptionIter struct {
	b   []byte
	off int // of the next option
	cur IPv6Option
	err error
}

// Iter returns an iterator over the options of b, which must have passed
// Check.
func (b IPv6Options) Iter() IPv6OptionIter {
	return IPv6OptionIter{b: b[:b.HeaderLength()], off: 2}
}

// Next advances to the next option that is not padding and reports whether
// there is one. It returns false at the end of the header and when an
// option runs past it; Err then says which.
func (it *IPv6OptionIter) Next() bool {
	for it.err == nil && it.off < len(it.b) {
		t := it.b[it.off]
		if t == IPv6OptionPad1 {
			it.off++
			continue
		}
		if it.off+2 > len(it.b) || it.off+2+int(it.b[it.off+1]) > len(it.b) {
			it.err = ErrIPv6ExtHeaderTruncated
			it.cur.Offset = it.off
			return false
		}
		l := int(it.b[it.off+1])
		at := it.off
		it.off += 2 + l
		if t == IPv6OptionPadN {
			continue
		}
		it.cur = IPv6Option{Type: t, Data: it.b[at+2 : at+2+l : at+2+l], Offset: at}
		return true
	}
	return false
}

// Option returns the current option; valid after Next returned true.
func (it *IPv6OptionIter) Option() IPv6Option { return it.cur }

// Err returns nil at the normal end of the options, or
// ErrIPv6ExtHeaderTruncated when an option ran past the header.
func (it *IPv6OptionIter) Err() error { return it.err }

// Offset returns the offset, from the start of the options header, of the
// current option, or of the option that ran past the header after an error.
func (it *IPv6OptionIter) Offset() int { return it.cur.Offset }

// IPv6 Routing types (IANA "Routing Types"). Type 0 is deprecated (RFC 5095):
// a node treats it as unrecognized.
const (
	IPv6RoutingType0       = 0
	IPv6RoutingTypeMIPv6   = 2
	IPv6RoutingTypeRPL     = 3
	IPv6RoutingTypeSegment = 4
)

// IPv6Routing is a view of a Routing header (RFC 8200 §4.4). Call Check
// before any accessor.
type IPv6Routing []byte

// Check returns ErrTooShort if b is shorter than 8 bytes and
// ErrExtHeaderTruncated if the length field runs past b.
func (b IPv6Routing) Check() error { return IPv6Options(b).Check() }

// NextHeader returns the type of the following header.
func (b IPv6Routing) NextHeader() uint8 { return b[0] }

// HeaderLength returns the header length in bytes, (length field + 1) * 8.
func (b IPv6Routing) HeaderLength() int { return (int(b[1]) + 1) * 8 }

// Type returns the routing type. A node that does not recognize it ignores
// the header if SegmentsLeft is 0 and otherwise sends a Parameter Problem,
// code erroneous header field, pointing at this byte (offset 2).
func (b IPv6Routing) Type() uint8 { return b[2] }

// SegmentsLeft returns the number of route segments still to visit.
func (b IPv6Routing) SegmentsLeft() uint8 { return b[3] }

// Data returns the type-specific data after the first 4 bytes.
func (b IPv6Routing) Data() []byte { return b[4:b.HeaderLength()] }

// SetSegmentsLeft sets the segments-left field.
func (b IPv6Routing) SetSegmentsLeft(v uint8) { b[3] = v }
