package wire

import "encoding/binary"

// ARPSize is the size of an ARP packet for IPv4 over Ethernet (RFC 826):
// the 8-byte fixed part and two 6+4-byte address pairs. Ethernet pads it to
// 46 bytes on the wire; the padding follows the ARP packet.
const ARPSize = 28

// ARP operation codes (RFC 826).
const (
	ARPRequest = 1
	ARPReply   = 2
)

// ARPHardwareEthernet is the ARP hardware type of Ethernet.
const ARPHardwareEthernet = 1

// ARP is a view of an ARP packet for IPv4 over Ethernet, the only kind
// pipestack speaks. Call Check before any accessor.
//
//	0      2      4    5    6      8          14         18         24         28
//	| htype | ptype |hlen|plen|  op  | sender MAC | sender IP | target MAC | target IP |
type ARP []byte

// ARPFields holds the fields of an ARP packet that vary; Encode writes the
// fixed ones (Ethernet, IPv4, lengths 6 and 4) itself.
type ARPFields struct {
	Op        uint16
	SenderMAC MAC
	SenderIP  [4]byte
	TargetMAC MAC
	TargetIP  [4]byte
}

// Check validates the packet: at least ARPSize bytes (ErrTooShort), and
// hardware type Ethernet, protocol IPv4, address lengths 6 and 4
// (ErrBadARPFormat). It does not check the operation: RFC 826 lets any value
// through the view, and the receiver decides what it answers.
func (b ARP) Check() error {
	if len(b) < ARPSize {
		return ErrTooShort
	}
	if binary.BigEndian.Uint16(b[0:]) != ARPHardwareEthernet || binary.BigEndian.Uint16(b[2:]) != EtherTypeIPv4 || b[4] != 6 || b[5] != 4 {
		return ErrBadARPFormat
	}
	return nil
}

// HardwareType returns the hardware type (1 after a successful Check).
func (b ARP) HardwareType() uint16 { return binary.BigEndian.Uint16(b[0:]) }

// ProtocolType returns the protocol type (0x0800 after a successful Check).
func (b ARP) ProtocolType() uint16 { return binary.BigEndian.Uint16(b[2:]) }

// HardwareAddressLength returns the hardware address length (6).
func (b ARP) HardwareAddressLength() uint8 { return b[4] }

// ProtocolAddressLength returns the protocol address length (4).
func (b ARP) ProtocolAddressLength() uint8 { return b[5] }

// Op returns the operation (ARPRequest, ARPReply, …).
func (b ARP) Op() uint16 { return binary.BigEndian.Uint16(b[6:]) }

// SenderMAC returns the sender hardware address.
func (b ARP) SenderMAC() MAC { return MAC(b[8:14]) }

// SenderIP returns the sender protocol address.
func (b ARP) SenderIP() [4]byte { return [4]byte(b[14:18]) }

// TargetMAC returns the target hardware address (zero in a request).
func (b ARP) TargetMAC() MAC { return MAC(b[18:24]) }

// TargetIP returns the target protocol address.
func (b ARP) TargetIP() [4]byte { return [4]byte(b[24:28]) }

// IsGratuitous reports whether the packet announces its sender's own
// address: sender and target IP are equal (an RFC 5227 announcement, or a
// gratuitous reply).
func (b ARP) IsGratuitous() bool { return b.SenderIP() == b.TargetIP() }

// SetOp sets the operation.
func (b ARP) SetOp(op uint16) { binary.BigEndian.PutUint16(b[6:], op) }

// SetSenderMAC sets the sender hardware address.
func (b ARP) SetSenderMAC(m MAC) { copy(b[8:14], m[:]) }

// SetSenderIP sets the sender protocol address.
func (b ARP) SetSenderIP(a [4]byte) { copy(b[14:18], a[:]) }

// SetTargetMAC sets the target hardware address.
func (b ARP) SetTargetMAC(m MAC) { copy(b[18:24], m[:]) }

// SetTargetIP sets the target protocol address.
func (b ARP) SetTargetIP(a [4]byte) { copy(b[24:28], a[:]) }

// Encode writes exactly ARPSize bytes: the fixed Ethernet/IPv4 part and f.
// b must be at least that long.
func (b ARP) Encode(f *ARPFields) {
	_ = b[ARPSize-1]
	binary.BigEndian.PutUint16(b[0:], ARPHardwareEthernet)
	binary.BigEndian.PutUint16(b[2:], EtherTypeIPv4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], f.Op)
	copy(b[8:14], f.SenderMAC[:])
	copy(b[14:18], f.SenderIP[:])
	copy(b[18:24], f.TargetMAC[:])
	copy(b[24:28], f.TargetIP[:])
}
