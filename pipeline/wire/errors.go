package wire

// ParseError reports why a Check refused a header. It is a small integer so
// that returning it as an error never allocates.
type ParseError uint8

// Parse errors returned by the Check methods. The zero ParseError is not a
// valid error code.
const (
	// ErrTooShort: the buffer is shorter than the fixed part of the header.
	ErrTooShort ParseError = iota + 1
	// ErrBadVersion: the IP version field is wrong for the view.
	ErrBadVersion
	// ErrBadHeaderLength: the IPv4 IHL is below 5 or beyond the buffer.
	ErrBadHeaderLength
	// ErrBadTotalLength: the IPv4 total length is below the header length
	// or beyond the buffer.
	ErrBadTotalLength
	// ErrBadChecksum: a checksum did not verify (returned by callers that
	// verify checksums; Check itself never does).
	ErrBadChecksum
	// ErrBadLength: the UDP length field is below 8 or beyond the buffer.
	ErrBadLength
	// ErrBadDataOffset: the TCP data offset is below 5 or beyond the buffer.
	ErrBadDataOffset
	// ErrBadARPFormat: an ARP packet is not for Ethernet and IPv4
	// (hardware type 1, protocol 0x0800, address lengths 6 and 4).
	ErrBadARPFormat
	// ErrBadPayloadLength: the IPv6 payload length runs past the buffer
	// (40 + PayloadLength > len(b)).
	ErrBadPayloadLength
	// ErrExtHeaderTruncated: an IPv6 extension header view (Hop-by-Hop,
	// Destination Options, Routing) whose length field runs past the
	// buffer. (The extension-header walk reports the same condition as
	// ErrIPv6ExtHeaderTruncated, an IPv6Error carrying an offset.)
	ErrExtHeaderTruncated

	numParseErrors
)

var parseErrorText = [numParseErrors]string{
	"unknown parse error",
	"packet too short",
	"bad IP version",
	"bad IPv4 header length",
	"bad IPv4 total length",
	"bad checksum",
	"bad UDP length",
	"bad TCP data offset",
	"bad ARP hardware or protocol format",
	"bad IPv6 payload length",
	"IPv6 extension header truncated",
}

var parseErrorFull = [numParseErrors]string{
	"wire: unknown parse error",
	"wire: packet too short",
	"wire: bad IP version",
	"wire: bad IPv4 header length",
	"wire: bad IPv4 total length",
	"wire: bad checksum",
	"wire: bad UDP length",
	"wire: bad TCP data offset",
	"wire: bad ARP hardware or protocol format",
	"wire: bad IPv6 payload length",
	"wire: IPv6 extension header truncated",
}

var parseErrorReason = [numParseErrors]string{
	"unknown",
	"too_short",
	"bad_version",
	"bad_header_length",
	"bad_total_length",
	"bad_checksum",
	"bad_length",
	"bad_data_offset",
	"bad_arp_format",
	"bad_payload_length",
	"ext_header_truncated",
}

func (e ParseError) index() int {
	if e >= numParseErrors {
		return 0
	}
	return int(e)
}

// Error implements error. It returns a static string and does not allocate.
func (e ParseError) Error() string { return parseErrorFull[e.index()] }

// String returns a human-readable description without the package prefix.
func (e ParseError) String() string { return parseErrorText[e.index()] }

// Reason returns a snake_case name for the error, suitable as a drop-counter
// label: "too_short", "bad_version", "bad_header_length", "bad_total_length",
// "bad_checksum", "bad_length", "bad_data_offset", "bad_arp_format",
// "bad_payload_length", "ext_header_truncated", or "unknown" for a value that
// is not one of the constants.
func (e ParseError) Reason() string { return parseErrorReason[e.index()] }
