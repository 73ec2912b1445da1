package wire

import "encoding/binary"

// EthernetHeaderSize is the size of an Ethernet II header without VLAN tags.
const EthernetHeaderSize = 14

// EtherType values.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeIPv6 = 0x86dd
	EtherTypeVLAN = 0x8100
)

// Ethernet is a view of an Ethernet II frame. Call Check before any accessor.
type Ethernet []byte

// EthernetFields holds the fields of an Ethernet II header.
type EthernetFields struct {
	Dst, Src MAC
	Type     uint16
}

// Check returns ErrTooShort if b is shorter than EthernetHeaderSize.
func (b Ethernet) Check() error {
	if len(b) < EthernetHeaderSize {
		return ErrTooShort
	}
	return nil
}

// Dst returns the destination MAC address.
func (b Ethernet) Dst() MAC { return MAC(b[0:6]) }

// Src returns the source MAC address.
func (b Ethernet) Src() MAC { return MAC(b[6:12]) }

// Type returns the EtherType.
func (b Ethernet) Type() uint16 { return binary.BigEndian.Uint16(b[12:14]) }

// Payload returns everything after the 14-byte header.
func (b Ethernet) Payload() []byte { return b[EthernetHeaderSize:] }

// SetDst sets the destination MAC address.
func (b Ethernet) SetDst(m MAC) { copy(b[0:6], m[:]) }

// SetSrc sets the source MAC address.
func (b Ethernet) SetSrc(m MAC) { copy(b[6:12], m[:]) }

// SetType sets the EtherType.
func (b Ethernet) SetType(t uint16) { binary.BigEndian.PutUint16(b[12:14], t) }

// Encode writes exactly EthernetHeaderSize bytes. b must be at least that long.
func (b Ethernet) Encode(f *EthernetFields) {
	_ = b[EthernetHeaderSize-1]
	copy(b[0:6], f.Dst[:])
	copy(b[6:12], f.Src[:])
	binary.BigEndian.PutUint16(b[12:14], f.Type)
}
