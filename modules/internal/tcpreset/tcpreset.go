// Package tcpreset forges the TCP reset a host sends for a segment that no
// connection accepts (RFC 9293 §3.10.7.1): network.ipv4 and network.ipv6
// send it for TCP to one of the stack's addresses when the pipeline has no
// transport.tcp; a filter's REJECT with tcp-reset and the TCP module (for a
// segment to a closed port) are meant to use it too, so that every reset
// the stack sends is built in one place.
//
// Build does the transport part, for both families: it reads the offending
// packet's addresses and TCP header and returns a pooled packet holding the
// reset segment, checksum filled in, with the addresses it must go between.
// The caller routes it and hands it to its network endpoint (WritePackets:
// the default TTL or hop limit, the Output hook, fragmentation — never
// needed for 20 bytes). Resets are not rate limited, as in Linux (which
// limits challenge ACKs, not resets for closed ports). What to answer at
// all is the caller's decision: never a reset, which Build refuses; never
// a packet to a broadcast or multicast address, or from an address that
// cannot be answered, which the caller knows how to tell.
package tcpreset

import (
	"net/netip"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Build returns the reset answering seg, the TCP segment (header, options
// and payload, bounded by the IP payload) carried by the IPv4 or IPv6
// packet network (from its IP header to its end, as Packet.NetworkHeader
// returns it; only its addresses are read): rst holds the reset segment (Data()
// at its TCP header, TransProto TCP, checksum computed for from → to),
// from is the offending packet's destination and to its source. The caller
// takes ownership of rst. ok is false, and rst nil, when network or seg is
// malformed or when seg is a reset.
func Build(pool *pipeline.Pool, network, seg []byte) (rst *pipeline.Packet, from, to netip.Addr, ok bool) {
	src, dst, ok := addresses(network)
	if !ok || wire.TCP(seg).Check() != nil {
		return nil, from, to, false
	}
	f, ok := wire.TCPResetFields(wire.TCP(seg))
	if !ok {
		return nil, from, to, false
	}
	rst = pool.Get(wire.TCPMinimumSize)
	b, _ := rst.Append(wire.TCPMinimumSize)
	t := wire.TCP(b)
	t.Encode(&f)
	t.SetChecksum(t.CalculateChecksum(pseudo(dst, src, wire.TCPMinimumSize)))
	rst.SetTransportHeader()
	rst.TransProto = pipeline.TCPProtocolNumber
	return rst, dst, src, true
}

// ChecksumValid reports whether seg, the TCP segment carried by the IPv4
// or IPv6 packet network (as for Build), has a valid checksum. Callers
// skip it for packets whose link verified it (Packet.CsumVerified): a reset
// must not answer a corrupted segment.
func ChecksumValid(network, seg []byte) bool {
	src, dst, ok := addresses(network)
	if !ok || len(seg) > 0xffff {
		return false
	}
	return wire.TCP(seg).IsChecksumValid(pseudo(src, dst, len(seg)))
}

// addresses reads the source and destination of an IPv4 or IPv6 header.
func addresses(network []byte) (src, dst netip.Addr, ok bool) {
	if len(network) < 1 {
		return src, dst, false
	}
	switch network[0] >> 4 {
	case 4:
		h := wire.IPv4(network)
		if h.Check() != nil {
			return src, dst, false
		}
		return netip.AddrFrom4(h.Src()), netip.AddrFrom4(h.Dst()), true
	case 6:
		h := wire.IPv6(network)
		if h.Check() != nil {
			return src, dst, false
		}
		return netip.AddrFrom16(h.Src()), netip.AddrFrom16(h.Dst()), true
	}
	return src, dst, false
}

// pseudo is the TCP pseudo-header sum for n bytes from src to dst.
func pseudo(src, dst netip.Addr, n int) uint16 {
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		return wire.PseudoHeaderChecksum(wire.ProtocolTCP, s[:], d[:], uint16(n))
	}
	s, d := src.As16(), dst.As16()
	return wire.PseudoHeaderChecksum(wire.ProtocolTCP, s[:], d[:], uint16(n))
}
