package ipv6_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

func a16(s string) [16]byte { return netip.MustParseAddr(s).As16() }

// ip6 builds an IPv6 packet from src to dst with the given next header,
// hop limit and payload (extension headers included in payload).
func ip6(src, dst string, nh, hop uint8, payload []byte) []byte {
	p := make([]byte, wire.IPv6HeaderSize+len(payload))
	wire.IPv6(p).Encode(&wire.IPv6Fields{PayloadLength: uint16(len(payload)), NextHeader: nh, HopLimit: hop, Src: a16(src), Dst: a16(dst)})
	copy(p[wire.IPv6HeaderSize:], payload)
	return p
}

// icmp6 builds an ICMPv6 message (checksum for src → dst).
func icmp6(src, dst string, typ, code uint8, rest uint32, body []byte) []byte {
	m := make([]byte, wire.ICMPv6HeaderSize+len(body))
	wire.ICMPv6(m).Encode(&wire.ICMPv6Fields{Type: typ, Code: code, Rest: rest})
	copy(m[wire.ICMPv6HeaderSize:], body)
	s, d := a16(src), a16(dst)
	wire.ICMPv6(m).SetChecksum(wire.ICMPv6(m).CalculateChecksum(wire.PseudoHeaderChecksum(wire.ProtocolICMPv6, s[:], d[:], uint16(len(m)))))
	return m
}

// echo6 is an echo request packet.
func echo6(src, dst string, hop uint8, id, seq uint16, payload []byte) []byte {
	return ip6(src, dst, wire.ProtocolICMPv6, hop, icmp6(src, dst, wire.ICMPv6EchoRequest, 0, wire.ICMPv6EchoRest(id, seq), payload))
}

// echoMessage is an echo request message without IP header (checksum filled
// by ipv6.Send).
func echoMessage(id, seq uint16, payload []byte) []byte {
	m := make([]byte, wire.ICMPv6HeaderSize+len(payload))
	wire.ICMPv6(m).Encode(&wire.ICMPv6Fields{Type: wire.ICMPv6EchoRequest, Rest: wire.ICMPv6EchoRest(id, seq)})
	copy(m[8:], payload)
	return m
}

// udp6 is a UDP datagram in an IPv6 packet with a valid checksum.
func udp6(src, dst string, sport, dport uint16, hop uint8, payload []byte) []byte {
	u := make([]byte, wire.UDPHeaderSize+len(payload))
	wire.UDP(u).Encode(&wire.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(len(u))})
	copy(u[8:], payload)
	s, d := a16(src), a16(dst)
	wire.UDP(u).SetChecksum(wire.UDP(u).CalculateChecksum(wire.PseudoHeaderChecksum(wire.ProtocolUDP, s[:], d[:], uint16(len(u)))))
	return ip6(src, dst, wire.ProtocolUDP, hop, u)
}

// checkICMP6 checks an IPv6 packet carrying an ICMPv6 message.
func checkICMP6(t *testing.T, p []byte, src, dst string, typ, code uint8) wire.ICMPv6 {
	t.Helper()
	h := wire.IPv6(p)
	if err := h.Check(); err != nil {
		t.Fatalf("bad IPv6 packet: %v (% x)", err, p)
	}
	if src != "" && netip.AddrFrom16(h.Src()) != netip.MustParseAddr(src) {
		t.Errorf("src %s, want %s", netip.AddrFrom16(h.Src()), src)
	}
	if dst != "" && netip.AddrFrom16(h.Dst()) != netip.MustParseAddr(dst) {
		t.Errorf("dst %s, want %s", netip.AddrFrom16(h.Dst()), dst)
	}
	if h.NextHeader() != wire.ProtocolICMPv6 {
		t.Fatalf("next header %d, want ICMPv6", h.NextHeader())
	}
	m := wire.ICMPv6(h.Payload())
	if m.Check() != nil {
		t.Fatal("short ICMPv6 message")
	}
	if !m.IsChecksumValid(wire.IPv6PseudoChecksum(h, wire.ProtocolICMPv6, uint32(len(m)))) {
		t.Error("bad ICMPv6 checksum")
	}
	if m.Type() != typ || m.Code() != code {
		t.Fatalf("ICMPv6 type %d code %d, want %d %d", m.Type(), m.Code(), typ, code)
	}
	return m
}

// onlyICMP6 keeps the IPv6 packets (Ethernet frames unwrapped when eth)
// carrying ICMPv6 messages of type typ.
func onlyICMP6(frames [][]byte, eth bool, typ uint8) [][]byte {
	var out [][]byte
	for _, f := range frames {
		if eth {
			if len(f) < wire.EthernetHeaderSize || wire.Ethernet(f).Type() != wire.EtherTypeIPv6 {
				continue
			}
			f = f[wire.EthernetHeaderSize:]
		}
		h := wire.IPv6(f)
		if h.Check() != nil || h.NextHeader() != wire.ProtocolICMPv6 || len(h.Payload()) < 1 || h.Payload()[0] != typ {
			continue
		}
		out = append(out, f)
	}
	return out
}

func sendEcho(t *testing.T, n *pt.Node, dst string, id, seq uint16, payload []byte) {
	t.Helper()
	if err := ipv6.Send(n.Stack, netip.MustParseAddr(dst), pipeline.ICMPv6ProtocolNumber, echoMessage(id, seq, payload)); err != nil {
		t.Fatalf("node %s: %v", n.Name, err)
	}
}

func checkEchoReply(t *testing.T, p []byte, src, dst string, hop uint8, id, seq uint16, payload []byte) {
	t.Helper()
	m := checkICMP6(t, p, src, dst, wire.ICMPv6EchoReply, 0)
	if hop != 0 && wire.IPv6(p).HopLimit() != hop {
		t.Errorf("hop limit %d, want %d", wire.IPv6(p).HopLimit(), hop)
	}
	if m.Ident() != id || m.Seq() != seq || !bytes.Equal(m[8:], payload) {
		t.Errorf("echo reply id %d seq %d payload %q", m.Ident(), m.Seq(), m[8:])
	}
}

// settle runs the timers of a topology for d on its manual clock, in steps,
// letting packets cross the cables between steps.
func settle(clock *pt.ManualClock, d time.Duration) {
	const step = 100 * time.Millisecond
	clock.Advance(0)
	time.Sleep(2 * time.Millisecond)
	for d > 0 {
		s := min(step, d)
		clock.Advance(s)
		d -= s
		time.Sleep(time.Millisecond)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// noNDP drops the NDP messages (router solicitations a host sends on its
// own, neighbor discovery) from IPv6 packets read off an IP link.
func noNDP(frames [][]byte) [][]byte {
	var out [][]byte
	for _, f := range frames {
		h := wire.IPv6(f)
		if h.Check() == nil && h.NextHeader() == wire.ProtocolICMPv6 && len(h.Payload()) > 0 {
			if t := h.Payload()[0]; t >= wire.ICMPv6RouterSolicitation && t <= wire.ICMPv6Redirect {
				continue
			}
		}
		out = append(out, f)
	}
	return out
}
