package wire

import "encoding/binary"

// Sizes of the fixed part of the NDP message bodies (RFC 4861 §4), counted
// from the end of the 4-byte ICMPv6 type, code and checksum: the views below
// are made from ICMPv6.Body().
const (
	NDPRouterSolicitationSize    = 4
	NDPRouterAdvertisementSize   = 12
	NDPNeighborSolicitationSize  = 20
	NDPNeighborAdvertisementSize = 20
	NDPRedirectSize              = 36
)

// Router Advertisement flags (RFC 4861 §4.2, RFC 4191, RFC 3775, RFC 4389).
const (
	NDPRAManaged     = 0x80
	NDPRAOtherConfig = 0x40
	NDPRAHomeAgent   = 0x20
	NDPRAPreference  = 0x18 // default router preference, 2 bits
	NDPRAProxy       = 0x04
)

// Neighbor Advertisement flags (RFC 4861 §4.4).
const (
	NDPNARouter    = 0x80
	NDPNASolicited = 0x40
	NDPNAOverride  = 0x20
)

// NDPRouterSolicitation is a view of a Router Solicitation body: 4 reserved
// bytes and options. Call Check before any accessor.
type NDPRouterSolicitation []byte

// Check returns ErrTooShort if b is shorter than NDPRouterSolicitationSize.
// The options are checked by NDPOptions.Check.
func (b NDPRouterSolicitation) Check() error {
	if len(b) < NDPRouterSolicitationSize {
		return ErrTooShort
	}
	return nil
}

// Options returns the options after the fixed part.
func (b NDPRouterSolicitation) Options() NDPOptions { return NDPOptions(b[NDPRouterSolicitationSize:]) }

// Encode writes exactly the 4 reserved (zero) bytes.
func (b NDPRouterSolicitation) Encode() {
	_ = b[NDPRouterSolicitationSize-1]
	clear(b[:NDPRouterSolicitationSize])
}

// NDPRouterAdvertisement is a view of a Router Advertisement body. Call
// Check before any accessor.
type NDPRouterAdvertisement []byte

// NDPRouterAdvertisementFields holds the fields of a Router Advertisement
// body for Encode.
type NDPRouterAdvertisementFields struct {
	CurHopLimit    uint8
	Flags          uint8  // NDPRAManaged, NDPRAOtherConfig, ...
	RouterLifetime uint16 // seconds; 0: not a default router
	ReachableTime  uint32 // milliseconds; 0: unspecified
	RetransTimer   uint32 // milliseconds; 0: unspecified
}

// Check returns ErrTooShort if b is shorter than NDPRouterAdvertisementSize.
func (b NDPRouterAdvertisement) Check() error {
	if len(b) < NDPRouterAdvertisementSize {
		return ErrTooShort
	}
	return nil
}

// CurHopLimit returns the hop limit hosts should use (0: unspecified).
func (b NDPRouterAdvertisement) CurHopLimit() uint8 { return b[0] }

// Flags returns the flags byte (NDPRAManaged, NDPRAOtherConfig, ...).
func (b NDPRouterAdvertisement) Flags() uint8 { return b[1] }

// Managed reports the M flag: addresses are available from DHCPv6.
func (b NDPRouterAdvertisement) Managed() bool { return b[1]&NDPRAManaged != 0 }

// OtherConfig reports the O flag: other configuration is available from
// DHCPv6.
func (b NDPRouterAdvertisement) OtherConfig() bool { return b[1]&NDPRAOtherConfig != 0 }

// RouterLifetime returns the default-router lifetime in seconds.
func (b NDPRouterAdvertisement) RouterLifetime() uint16 { return binary.BigEndian.Uint16(b[2:]) }

// ReachableTime returns the reachable time in milliseconds.
func (b NDPRouterAdvertisement) ReachableTime() uint32 { return binary.BigEndian.Uint32(b[4:]) }

// RetransTimer returns the retransmission timer in milliseconds.
func (b NDPRouterAdvertisement) RetransTimer() uint32 { return binary.BigEndian.Uint32(b[8:]) }

// Options returns the options after the fixed part.
func (b NDPRouterAdvertisement) Options() NDPOptions {
	return NDPOptions(b[NDPRouterAdvertisementSize:])
}

// Encode writes exactly the 12-byte fixed part.
func (b NDPRouterAdvertisement) Encode(f *NDPRouterAdvertisementFields) {
	_ = b[NDPRouterAdvertisementSize-1]
	b[0] = f.CurHopLimit
	b[1] = f.Flags
	binary.BigEndian.PutUint16(b[2:], f.RouterLifetime)
	binary.BigEndian.PutUint32(b[4:], f.ReachableTime)
	binary.BigEndian.PutUint32(b[8:], f.RetransTimer)
}

// NDPNeighborSolicitation is a view of a Neighbor Solicitation body: 4
// reserved bytes, the target address and options. Call Check before any
// accessor.
type NDPNeighborSolicitation []byte

// Check returns ErrTooShort if b is shorter than NDPNeighborSolicitationSize.
func (b NDPNeighborSolicitation) Check() error {
	if len(b) < NDPNeighborSolicitationSize {
		return ErrTooShort
	}
	return nil
}

// Target returns the target address.
func (b NDPNeighborSolicitation) Target() [16]byte { return [16]byte(b[4:20]) }

// TargetSlice returns the target address in place (capacity 16).
func (b NDPNeighborSolicitation) TargetSlice() []byte { return b[4:20:20] }

// Options returns the options after the fixed part.
func (b NDPNeighborSolicitation) Options() NDPOptions {
	return NDPOptions(b[NDPNeighborSolicitationSize:])
}

// Encode writes exactly the 20-byte fixed part: reserved zeros and target.
func (b NDPNeighborSolicitation) Encode(target [16]byte) {
	_ = b[NDPNeighborSolicitationSize-1]
	clear(b[:4])
	copy(b[4:20], target[:])
}

// NDPNeighborAdvertisement is a view of a Neighbor Advertisement body:
// flags, reserved bytes, the target address and options. Call Check before
// any accessor.
type NDPNeighborAdvertisement []byte

// NDPNeighborAdvertisementFields holds the fields of a Neighbor
// Advertisement body for Encode.
type NDPNeighborAdvertisementFields struct {
	Flags  uint8 // NDPNARouter, NDPNASolicited, NDPNAOverride
	Target [16]byte
}

// Check returns ErrTooShort if b is shorter than
// NDPNeighborAdvertisementSize.
func (b NDPNeighborAdvertisement) Check() error {
	if len(b) < NDPNeighborAdvertisementSize {
		return ErrTooShort
	}
	return nil
}

// Flags returns the flags byte (NDPNARouter, NDPNASolicited, NDPNAOverride).
func (b NDPNeighborAdvertisement) Flags() uint8 { return b[0] }

// Router reports the R flag: the sender is a router.
func (b NDPNeighborAdvertisement) Router() bool { return b[0]&NDPNARouter != 0 }

// Solicited reports the S flag: the advertisement answers a solicitation.
func (b NDPNeighborAdvertisement) Solicited() bool { return b[0]&NDPNASolicited != 0 }

// Override reports the O flag: the advertisement overrides a cached
// link-layer address.
func (b NDPNeighborAdvertisement) Override() bool { return b[0]&NDPNAOverride != 0 }

// Target returns the target address.
func (b NDPNeighborAdvertisement) Target() [16]byte { return [16]byte(b[4:20]) }

// TargetSlice returns the target address in place (capacity 16).
func (b NDPNeighborAdvertisement) TargetSlice() []byte { return b[4:20:20] }

// Options returns the options after the fixed part.
func (b NDPNeighborAdvertisement) Options() NDPOptions {
	return NDPOptions(b[NDPNeighborAdvertisementSize:])
}

// Encode writes exactly the 20-byte fixed part, reserved bits zero.
func (b NDPNeighborAdvertisement) Encode(f *NDPNeighborAdvertisementFields) {
	_ = b[NDPNeighborAdvertisementSize-1]
	b[0] = f.Flags & (NDPNARouter | NDPNASolicited | NDPNAOverride)
	b[1], b[2], b[3] = 0, 0, 0
	copy(b[4:20], f.Target[:])
}

// NDPRedirect is a view of a Redirect body: 4 reserved bytes, the target
// (the better first hop) and destination addresses, and options. Call Check
// before any accessor.
type NDPRedirect []byte

// Check returns ErrTooShort if b is shorter than NDPRedirectSize.
func (b NDPRedirect) Check() error {
	if len(b) < NDPRedirectSize {
		return ErrTooShort
	}
	return nil
}

// Target returns the better first-hop address.
func (b NDPRedirect) Target() [16]byte { return [16]byte(b[4:20]) }

// Destination returns the address whose traffic is redirected.
func (b NDPRedirect) Destination() [16]byte { return [16]byte(b[20:36]) }

// Options returns the options after the fixed part.
func (b NDPRedirect) Options() NDPOptions { return NDPOptions(b[NDPRedirectSize:]) }

// Encode writes exactly the 36-byte fixed part.
func (b NDPRedirect) Encode(target, destination [16]byte) {
	_ = b[NDPRedirectSize-1]
	clear(b[:4])
	copy(b[4:20], target[:])
	copy(b[20:36], destination[:])
}

// NDP option types (RFC 4861 §4.6, RFC 8106).
const (
	NDPOptionSourceLinkLayerAddress = 1
	NDPOptionTargetLinkLayerAddress = 2
	NDPOptionPrefixInformation      = 3
	NDPOptionRedirectedHeader       = 4
	NDPOptionMTU                    = 5
	NDPOptionRDNSS                  = 25
	NDPOptionDNSSL                  = 31
)

// Sizes of the NDP options this package builds.
const (
	NDPLinkLayerAddressSize = 8 // for a 6-byte (Ethernet) address
	NDPPrefixInfoSize       = 32
	NDPMTUSize              = 8
)

// NDPRDNSSSize returns the size of an RDNSS option carrying n addresses.
func NDPRDNSSSize(n int) int { return 8 + 16*n }

// Prefix Information flags (RFC 4861 §4.6.2).
const (
	NDPPrefixOnLink     = 0x80
	NDPPrefixAutonomous = 0x40
)

// NDPOptions is a view of the options of an NDP message: a sequence of
// type, length (in units of 8 bytes) and data. Check walks them all; the
// iterator can be used without it and stops with an error at the first
// malformed option.
type NDPOptions []byte

// Check returns nil if every option has a nonzero length and ends within b,
// ErrNDPOptionZeroLength or ErrNDPOptionTruncated otherwise (RFC 4861
// requires the whole message to be dropped then). Unknown options are
// accepted.
func (b NDPOptions) Check() error {
	it := b.Iter()
	for it.Next() {
	}
	return it.Err()
}

// Iter returns an iterator over the options of b.
func (b NDPOptions) Iter() NDPOptionIter { return NDPOptionIter{b: b} }

// Find returns the first option of type t, or nil if there is none or the
// options are malformed before it.
func (b NDPOptions) Find(t uint8) NDPOption {
	it := b.Iter()
	for it.Next() {
		if o := it.Option(); o.Type() == t {
			return o
		}
	}
	return nil
}

// NDPOptionIter iterates over NDP options. Use it as
//
//	it := opts.Iter()
//	for it.Next() {
//		o := it.Option()
//		...
//	}
//	if err := it.Err(); err != nil { // drop the message
//	}
type NDPOptionIter struct {
	b   []byte
	off int // of the next option
	cur NDPOption
	at  int // of the current or offending option
	err error
}

// Next advances to the next option and reports whether there is one. It
// returns false at the end and at a malformed option; Err then says which.
func (it *NDPOptionIter) Next() bool {
	if it.err != nil || it.off >= len(it.b) {
		return false
	}
	it.at = it.off
	if it.off+2 > len(it.b) {
		it.err = ErrNDPOptionTruncated
		return false
	}
	l := int(it.b[it.off+1]) * 8
	if l == 0 {
		it.err = ErrNDPOptionZeroLength
		return false
	}
	if it.off+l > len(it.b) {
		it.err = ErrNDPOptionTruncated
		return false
	}
	it.cur = NDPOption(it.b[it.off : it.off+l : it.off+l])
	it.off += l
	return true
}

// Option returns the current option; valid after Next returned true. It is
// at least 8 bytes long and a multiple of 8.
func (it *NDPOptionIter) Option() NDPOption { return it.cur }

// Err returns nil at the normal end of the options, or the error that
// stopped the iteration.
func (it *NDPOptionIter) Err() error { return it.err }

// Offset returns the offset, from the start of the options, of the current
// option or of the malformed one after an error.
func (it *NDPOptionIter) Offset() int { return it.at }

// NDPOption is one whole NDP option: type, length and data, as returned by
// NDPOptionIter (at least 8 bytes, a multiple of 8).
type NDPOption []byte

// Type returns the option type.
func (o NDPOption) Type() uint8 { return o[0] }

// Data returns the bytes after the type and length.
func (o NDPOption) Data() []byte { return o[2:] }

// LinkLayerAddress returns the address of a Source or Target Link-Layer
// Address option for Ethernet (8 bytes) and true, or false if o is another
// option or of another size.
func (o NDPOption) LinkLayerAddress() (MAC, bool) {
	if (o[0] != NDPOptionSourceLinkLayerAddress && o[0] != NDPOptionTargetLinkLayerAddress) || len(o) != NDPLinkLayerAddressSize {
		return MAC{}, false
	}
	return MAC(o[2:8]), true
}

// MTU returns the MTU of an MTU option and true, or false if o is not one.
func (o NDPOption) MTU() (uint32, bool) {
	if o[0] != NDPOptionMTU || len(o) != NDPMTUSize {
		return 0, false
	}
	return binary.BigEndian.Uint32(o[4:8]), true
}

// PrefixInfo returns o as a Prefix Information view and true, or false if o
// is not one or not 32 bytes long (RFC 4861 §4.6.2).
func (o NDPOption) PrefixInfo() (NDPPrefixInfo, bool) {
	if o[0] != NDPOptionPrefixInformation || len(o) != NDPPrefixInfoSize {
		return nil, false
	}
	return NDPPrefixInfo(o), true
}

// RDNSS returns o as a Recursive DNS Server view and true, or false if o is
// not one or carries no address (RFC 8106 §5.1: length at least 3, odd).
func (o NDPOption) RDNSS() (NDPRDNSS, bool) {
	if o[0] != NDPOptionRDNSS || len(o) < NDPRDNSSSize(1) || (len(o)-8)%16 != 0 {
		return nil, false
	}
	return NDPRDNSS(o), true
}

// RedirectedHeader returns the quoted packet of a Redirected Header option
// and true, or false if o is not one.
func (o NDPOption) RedirectedHeader() ([]byte, bool) {
	if o[0] != NDPOptionRedirectedHeader {
		return nil, false
	}
	return o[8:], true
}

// NDPPrefixInfo is a view of a 32-byte Prefix Information option, as
// returned by NDPOption.PrefixInfo.
type NDPPrefixInfo []byte

// NDPPrefixInfoFields holds the fields of a Prefix Information option.
type NDPPrefixInfoFields struct {
	PrefixLength      uint8
	Flags             uint8  // NDPPrefixOnLink, NDPPrefixAutonomous
	ValidLifetime     uint32 // seconds; 0xffffffff: infinite
	PreferredLifetime uint32 // seconds; 0xffffffff: infinite
	Prefix            [16]byte
}

// PrefixLength returns the number of leading bits of Prefix that are valid.
func (p NDPPrefixInfo) PrefixLength() uint8 { return p[2] }

// Flags returns the flags byte (NDPPrefixOnLink, NDPPrefixAutonomous).
func (p NDPPrefixInfo) Flags() uint8 { return p[3] }

// OnLink reports the L flag: the prefix is on-link.
func (p NDPPrefixInfo) OnLink() bool { return p[3]&NDPPrefixOnLink != 0 }

// Autonomous reports the A flag: the prefix may be used for SLAAC.
func (p NDPPrefixInfo) Autonomous() bool { return p[3]&NDPPrefixAutonomous != 0 }

// ValidLifetime returns the valid lifetime in seconds.
func (p NDPPrefixInfo) ValidLifetime() uint32 { return binary.BigEndian.Uint32(p[4:]) }

// PreferredLifetime returns the preferred lifetime in seconds.
func (p NDPPrefixInfo) PreferredLifetime() uint32 { return binary.BigEndian.Uint32(p[8:]) }

// Prefix returns the prefix.
func (p NDPPrefixInfo) Prefix() [16]byte { return [16]byte(p[16:32]) }

// NDPRDNSS is a view of a Recursive DNS Server option (RFC 8106), as
// returned by NDPOption.RDNSS.
type NDPRDNSS []byte

// Lifetime returns the lifetime in seconds (0: stop using the servers).
func (r NDPRDNSS) Lifetime() uint32 { return binary.BigEndian.Uint32(r[4:]) }

// Count returns the number of addresses.
func (r NDPRDNSS) Count() int { return (len(r) - 8) / 16 }

// Address returns address i, 0 <= i < Count().
func (r NDPRDNSS) Address(i int) [16]byte { return [16]byte(r[8+16*i : 8+16*i+16]) }

// AppendNDPLinkLayerAddress appends a Source (t = 1) or Target (t = 2)
// Link-Layer Address option for an Ethernet address.
func AppendNDPLinkLayerAddress(b []byte, t uint8, m MAC) []byte {
	return append(b, t, 1, m[0], m[1], m[2], m[3], m[4], m[5])
}

// AppendNDPMTU appends an MTU option.
func AppendNDPMTU(b []byte, mtu uint32) []byte {
	b = append(b, NDPOptionMTU, 1, 0, 0)
	return binary.BigEndian.AppendUint32(b, mtu)
}

// AppendNDPPrefixInfo appends a Prefix Information option. The bits of the
// prefix beyond PrefixLength are written as given; RFC 4861 asks senders to
// zero them.
func AppendNDPPrefixInfo(b []byte, f *NDPPrefixInfoFields) []byte {
	b = append(b, NDPOptionPrefixInformation, 4, f.PrefixLength, f.Flags)
	b = binary.BigEndian.AppendUint32(b, f.ValidLifetime)
	b = binary.BigEndian.AppendUint32(b, f.PreferredLifetime)
	b = append(b, 0, 0, 0, 0)
	return append(b, f.Prefix[:]...)
}

// AppendNDPRDNSS appends a Recursive DNS Server option (RFC 8106) with the
// given lifetime in seconds and addresses. It panics if addrs is empty or
// holds more than 127 addresses.
func AppendNDPRDNSS(b []byte, lifetime uint32, addrs [][16]byte) []byte {
	if len(addrs) == 0 || len(addrs) > 127 {
		panic("wire: RDNSS option needs 1 to 127 addresses")
	}
	b = append(b, NDPOptionRDNSS, uint8(1+2*len(addrs)), 0, 0)
	b = binary.BigEndian.AppendUint32(b, lifetime)
	for i := range addrs {
		b = append(b, addrs[i][:]...)
	}
	return b
}
