// Package wire provides zero-copy views of packet headers (Ethernet, ARP,
// IPv4 and its options, IPv6 and its extension headers, UDP, TCP, ICMPv4,
// ICMPv6, and the NDP messages and options carried by ICMPv6) and the
// Internet checksum routines that go with them.
//
// # Views
//
// Each format is a named byte slice, for example
//
//	type IPv4 []byte
//
// whose methods read and write header fields in place, in network byte
// order. A view never copies and never allocates: converting a received
// buffer is free (IPv4(buf)), and the accessors return values or sub-slices
// of the same memory.
//
// # Check before accessors
//
// Every view has a Check method. Check validates the length and the length
// fields of the header (version, IHL and total length for IPv4, data offset
// for TCP, the length field for UDP, ...) and returns a ParseError when the
// bytes cannot be a well-formed header. Callers must call Check, and get nil,
// before calling any accessor. The guarantee is:
//
//	After Check returns nil, no accessor of that view panics, whatever the
//	remaining bytes hold (garbage options, bad checksums, reserved bits).
//
// Accessors do not repeat the checks; calling one on an unchecked slice may
// panic with an index out of range. The guarantee lasts while the bytes the
// check looked at are unchanged: writing a length field (SetTotalLength,
// SetLength, ...) with a value Check would refuse, or truncating the slice,
// voids it until Check is run again. Setters that do not touch length fields
// (addresses, ports, TTL, checksum, ...) keep it.
//
// Check does not verify checksums; IsChecksumValid does, because on the
// forwarding path the checksum is often verified by the NIC or not at all.
//
// # Building headers
//
// Each format has a Fields struct and an Encode method that writes exactly the
// header bytes (never the payload) into the view. The view must be at least
// as long as the header being encoded; Encode panics otherwise, as the
// construction path is under the caller's control.
//
// # Errors
//
// Parse failures are ParseError values, a uint8 type: returning one as an
// error does not allocate, and Reason gives a snake_case name suitable for a
// drop counter ("too_short", "bad_checksum", "bad_payload_length", ...).
//
// # IPv6
//
// IPv6.Check validates only the fixed header (ErrBadPayloadLength when the
// payload length runs past the buffer). Extension headers are walked by
// IPv6.WalkExtensions, bounded by a maximum count and by the payload, which
// returns where the upper-layer header starts, the Fragment header's fields
// and the unfragmentable length, or an IPv6Error with the offset of the
// offending byte — a Parameter Problem pointer as it stands
// (IPv6Error.ParamProblemCode says which code, or that the packet is dropped
// silently). The views of single headers (IPv6Options for Hop-by-Hop and
// Destination Options with an option iterator, IPv6Routing, IPv6Fragment)
// have their own Check (ErrExtHeaderTruncated when a length field runs past
// the buffer).
//
// ICMPv6 is the message view (type, code, checksum over the IPv6
// pseudo-header from IPv6PseudoChecksum); the NDP views (Router and Neighbor
// Solicitation and Advertisement, Redirect) are made from ICMPv6.Body(), and
// NDPOptions iterates and finds their options (link-layer address, prefix
// information, MTU, RDNSS, redirected header), with Append* builders.
//
// # Checksums
//
// Checksum computes the RFC 1071 one's-complement sum eight bytes at a time;
// ChecksumUpdate16 and ChecksumUpdate32 apply RFC 1624 incremental updates to
// a stored checksum field, and IPv4.DecTTL uses them on the forwarding path.
package wire
