package wire

import "errors"

// MAC is a 48-bit IEEE 802 MAC address.
type MAC [6]byte

// BroadcastMAC is ff:ff:ff:ff:ff:ff. Do not modify it.
var BroadcastMAC = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

var errBadMAC = errors.New("wire: invalid MAC address: want 6 groups of 2 hex digits separated by ':' or '-'")

const hexDigits = "0123456789abcdef"

// String returns m as six lower-case hex pairs separated by colons,
// e.g. "02:00:00:00:00:01".
func (m MAC) String() string {
	var buf [17]byte
	for i, x := range m {
		if i > 0 {
			buf[3*i-1] = ':'
		}
		buf[3*i] = hexDigits[x>>4]
		buf[3*i+1] = hexDigits[x&0xf]
	}
	return string(buf[:])
}

// ParseMAC parses six groups of exactly two hex digits (either case)
// separated by ':' or by '-' (one separator throughout), e.g.
// "02:00:00:00:00:01" or "02-00-00-00-00-01".
func ParseMAC(s string) (MAC, error) {
	var m MAC
	if len(s) != 17 {
		return m, errBadMAC
	}
	sep := s[2]
	if sep != ':' && sep != '-' {
		return m, errBadMAC
	}
	for i := range m {
		if i > 0 && s[3*i-1] != sep {
			return m, errBadMAC
		}
		hi, ok1 := unhex(s[3*i])
		lo, ok2 := unhex(s[3*i+1])
		if !ok1 || !ok2 {
			return MAC{}, errBadMAC
		}
		m[i] = hi<<4 | lo
	}
	return m, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// IsBroadcast reports whether m is ff:ff:ff:ff:ff:ff.
func (m MAC) IsBroadcast() bool { return m == BroadcastMAC }

// IsMulticast reports whether the group bit (least significant bit of the
// first octet) is set. The broadcast address is multicast too.
func (m MAC) IsMulticast() bool { return m[0]&1 != 0 }

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }
