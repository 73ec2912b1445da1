package wire

import "encoding/binary"

// More IP protocol numbers whose headers start with 16-bit source and
// destination ports.
const (
	ProtocolDCCP    = 33
	ProtocolSCTP    = 132
	ProtocolUDPLite = 136
)

// Ports reads the source and destination ports of a transport header of
// protocol proto (b starts at it): the first four bytes for TCP, UDP,
// UDP-Lite, SCTP and DCCP, as netfilter's port matches read them. ok is
// false for another protocol or a header shorter than four bytes; it never
// panics and does not allocate.
func Ports(proto uint8, b []byte) (src, dst uint16, ok bool) {
	switch proto {
	case ProtocolTCP, ProtocolUDP, ProtocolUDPLite, ProtocolSCTP, ProtocolDCCP:
		if len(b) >= 4 {
			return binary.BigEndian.Uint16(b[0:]), binary.BigEndian.Uint16(b[2:]), true
		}
	}
	return 0, 0, false
}
