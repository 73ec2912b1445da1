package pipelinetest

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// UDP4 builds an IPv4/UDP packet with valid checksums.
func UDP4(src, dst string, sport, dport uint16, ttl uint8, payload []byte) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	total := wire.IPv4MinimumSize + wire.UDPHeaderSize + len(payload)
	b := make([]byte, total)
	ip := wire.IPv4(b)
	ip.Encode(&wire.IPv4Fields{TotalLength: uint16(total), ID: 1, TTL: ttl, Protocol: wire.ProtocolUDP, Src: s, Dst: d})
	u := wire.UDP(b[wire.IPv4MinimumSize:])
	u.Encode(&wire.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(wire.UDPHeaderSize + len(payload))})
	copy(u.Payload(), payload)
	u.SetChecksum(u.CalculateChecksum(wire.IPv4PseudoChecksum(ip, uint16(len(u)))))
	return b
}

// Echo4 builds an IPv4 ICMP echo request.
func Echo4(src, dst string, ttl uint8, id, seq uint16, payload []byte) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	total := wire.IPv4MinimumSize + wire.ICMPv4MinimumSize + len(payload)
	b := make([]byte, total)
	wire.IPv4(b).Encode(&wire.IPv4Fields{TotalLength: uint16(total), ID: seq, TTL: ttl, Protocol: wire.ProtocolICMP, Src: s, Dst: d})
	m := wire.ICMPv4(b[wire.IPv4MinimumSize:])
	m.Encode(&wire.ICMPv4Fields{Type: wire.ICMPv4Echo, Rest: wire.ICMPv4EchoRest(id, seq)})
	copy(m.Payload(), payload)
	m.SetChecksum(m.CalculateChecksum())
	return b
}

// EthFrame wraps an IP packet in an Ethernet header.
func EthFrame(dst, src wire.MAC, etherType uint16, payload []byte) []byte {
	b := make([]byte, wire.EthernetHeaderSize+len(payload))
	wire.Ethernet(b).Encode(&wire.EthernetFields{Dst: dst, Src: src, Type: etherType})
	copy(b[wire.EthernetHeaderSize:], payload)
	return b
}

// IPv4Check is one check of CheckIPv4.
type IPv4Check func(ip wire.IPv4) error

// CheckIPv4 verifies that b is a valid IPv4 packet (header checksum
// included) and runs the checks, failing t with every mismatch.
func CheckIPv4(t testing.TB, b []byte, checks ...IPv4Check) {
	t.Helper()
	ip := wire.IPv4(b)
	if err := ip.Check(); err != nil {
		t.Fatalf("not an IPv4 packet: %v (% x)", err, b)
	}
	if !ip.IsChecksumValid() {
		t.Errorf("IPv4 header checksum invalid")
	}
	for _, c := range checks {
		if err := c(ip); err != nil {
			t.Error(err)
		}
	}
}

// SrcAddr checks the source address.
func SrcAddr(a string) IPv4Check {
	want := netip.MustParseAddr(a).As4()
	return func(ip wire.IPv4) error {
		if ip.Src() != want {
			return fmt.Errorf("src %v, want %s", netip.AddrFrom4(ip.Src()), a)
		}
		return nil
	}
}

// DstAddr checks the destination address.
func DstAddr(a string) IPv4Check {
	want := netip.MustParseAddr(a).As4()
	return func(ip wire.IPv4) error {
		if ip.Dst() != want {
			return fmt.Errorf("dst %v, want %s", netip.AddrFrom4(ip.Dst()), a)
		}
		return nil
	}
}

// TTL checks the TTL.
func TTL(ttl uint8) IPv4Check {
	return func(ip wire.IPv4) error {
		if ip.TTL() != ttl {
			return fmt.Errorf("ttl %d, want %d", ip.TTL(), ttl)
		}
		return nil
	}
}

// Payload checks the IP payload bytes.
func Payload(want []byte) IPv4Check {
	return func(ip wire.IPv4) error {
		if !bytes.Equal(ip.Payload(), want) {
			return fmt.Errorf("payload differs: got % x, want % x", ip.Payload(), want)
		}
		return nil
	}
}

// ICMP checks that the packet is a valid ICMPv4 message of this type and
// code, then runs more checks on it.
func ICMP(typ, code uint8, more ...func(m wire.ICMPv4) error) IPv4Check {
	return func(ip wire.IPv4) error {
		if ip.Protocol() != wire.ProtocolICMP {
			return fmt.Errorf("protocol %d, want ICMP", ip.Protocol())
		}
		m := wire.ICMPv4(ip.Payload())
		if m.Check() != nil {
			return fmt.Errorf("ICMP message too short")
		}
		if !m.IsChecksumValid() {
			return fmt.Errorf("ICMP checksum invalid")
		}
		if m.Type() != typ || m.Code() != code {
			return fmt.Errorf("ICMP type/code %d/%d, want %d/%d", m.Type(), m.Code(), typ, code)
		}
		for _, f := range more {
			if err := f(m); err != nil {
				return err
			}
		}
		return nil
	}
}

// Quotes checks that an ICMP error quotes the start of orig.
func Quotes(orig []byte) func(m wire.ICMPv4) error {
	return func(m wire.ICMPv4) error {
		q := m.Payload()
		n := len(orig)
		if n > len(q) {
			n = len(q)
		}
		if n < wire.IPv4MinimumSize+8 || !bytes.Equal(q[:n], orig[:n]) {
			return fmt.Errorf("ICMP error does not quote the original packet: % x", q)
		}
		return nil
	}
}

// NextHopMTU checks a fragmentation-needed message's MTU.
func NextHopMTU(mtu uint16) func(m wire.ICMPv4) error {
	return func(m wire.ICMPv4) error {
		if m.MTU() != mtu {
			return fmt.Errorf("next-hop MTU %d, want %d", m.MTU(), mtu)
		}
		return nil
	}
}
