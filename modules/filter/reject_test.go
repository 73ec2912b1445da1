package filter

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// TestUnreachOK: REJECT's ICMP errors are sent only where Linux's
// nf_send_unreach and reject6_csum_ok send them: not about a non-first
// fragment, not about a packet whose transport checksum is wrong (so not
// about a first fragment either, whose checksum covers more than it
// holds), unless the link verified it, the UDP datagram has none or the
// protocol checks itself otherwise. Found by e2e TestDifferentialFilter
// (rule set edges): pipestack answered a fragmented UDP datagram's
// fragments, IPv6 every one of them, where Linux sends nothing.
func TestUnreachOK(t *testing.T) {
	const (
		valid = iota
		bad
		zero
	)
	cases := []struct {
		name     string
		p        pk
		sum      int
		verified bool
		want     bool
	}{
		{"v4 udp", pk{proto: 17, sport: 1, dport: 2, payload: 11}, valid, false, true},
		{"v4 udp bad sum", pk{proto: 17, sport: 1, dport: 2, payload: 11}, bad, false, false},
		{"v4 udp bad sum, link verified", pk{proto: 17, sport: 1, dport: 2, payload: 11}, bad, true, true},
		{"v4 udp no sum", pk{proto: 17, sport: 1, dport: 2, payload: 11}, zero, false, true},
		{"v4 tcp", pk{proto: 6, sport: 1, dport: 2, flags: wire.TCPFlagSyn, payload: 3}, valid, false, true},
		{"v4 tcp bad sum", pk{proto: 6, sport: 1, dport: 2, flags: wire.TCPFlagSyn, payload: 3}, bad, false, false},
		{"v4 icmp", pk{proto: 1, icmpType: 8, payload: 5}, valid, false, true},
		{"v4 icmp bad sum", pk{proto: 1, icmpType: 8, payload: 5}, bad, false, false},
		{"v4 non-first fragment", pk{proto: 17, fragOff: 64, payload: 16}, valid, true, false},
		{"v4 gre, any sum", pk{proto: 47, payload: 4}, bad, false, true},
		{"v6 udp", pk{v6: true, proto: 17, sport: 1, dport: 2, payload: 7}, valid, false, true},
		{"v6 udp bad sum", pk{v6: true, proto: 17, sport: 1, dport: 2, payload: 7}, bad, false, false},
		{"v6 icmpv6", pk{v6: true, proto: 58, icmpType: 128, payload: 4}, valid, false, true},
		{"v6 icmpv6 summed without the pseudo-header", pk{v6: true, proto: 58, icmpType: 128, payload: 4}, zero, false, false},
		{"v6 tcp", pk{v6: true, proto: 6, sport: 1, dport: 2, flags: wire.TCPFlagSyn}, valid, false, true},
		{"v6 tcp bad sum", pk{v6: true, proto: 6, sport: 1, dport: 2, flags: wire.TCPFlagSyn}, bad, false, false},
	}
	for _, c := range cases {
		pc := c.p.ctx(t)
		setL4Sum(t, pc, c.sum)
		pc.Pkt.CsumVerified = c.verified
		if got := unreachOK(pc); got != c.want {
			t.Errorf("%s: unreachOK = %v, want %v", c.name, got, c.want)
		}
	}

	// IPv6 fragments of a UDP datagram whose checksum is right for the
	// whole datagram: the first one (the sum of what it holds is wrong)
	// and a later one.
	for _, off := range []uint16{0, 16} {
		pc := frag6(t, off)
		if unreachOK(pc) {
			t.Errorf("v6 fragment at offset %d: unreachOK = true, want false", off)
		}
	}
	// The same datagram unfragmented is answered.
	if pc := (pk{v6: true, proto: 17, sport: 1, dport: 2, payload: 8}).ctx(t); !func() bool { setL4Sum(t, pc, valid); return unreachOK(pc) }() {
		t.Error("v6 udp unfragmented: unreachOK = false, want true")
	}
}

// setL4Sum writes the transport checksum of pc's packet: valid, wrong by
// one (bad) or zero (for ICMPv6: the sum without the pseudo-header).
func setL4Sum(t *testing.T, pc *pipeline.PacketContext, kind int) {
	t.Helper()
	seg, _, ok := l4(pc)
	if !ok {
		t.Fatal("no transport header")
	}
	proto := uint8(pc.Tuple.Proto)
	off := map[uint8]int{1: 2, 6: 16, 17: 6, 58: 2}[proto]
	if proto == 47 {
		return
	}
	binary.BigEndian.PutUint16(seg[off:], 0)
	if kind == 2 && proto == 17 {
		return
	}
	var initial uint16
	v6 := pc.Pkt.NetProto == pipeline.IPv6ProtocolNumber
	if (v6 || proto == 6 || proto == 17) && !(kind == 2 && proto == 58) {
		nh := pc.Pkt.NetworkHeader()
		var s, d []byte
		if v6 {
			h := wire.IPv6(nh)
			a, b := h.Src(), h.Dst()
			s, d = a[:], b[:]
		} else {
			h := wire.IPv4(nh)
			a, b := h.Src(), h.Dst()
			s, d = a[:], b[:]
		}
		initial = wire.PseudoHeaderChecksum(proto, s, d, uint16(len(seg)))
	}
	sum := ^wire.Checksum(seg, initial)
	if sum == 0 && proto == 17 {
		sum = 0xffff
	}
	if kind == 1 {
		sum++
	}
	binary.BigEndian.PutUint16(seg[off:], sum)
}

// frag6 is an IPv6 UDP fragment at byte offset off (more to follow)
// holding 16 bytes of a 24-byte datagram, its checksum the datagram's.
func frag6(t *testing.T, off uint16) *pipeline.PacketContext {
	t.Helper()
	b := make([]byte, 40+8+16)
	src, dst := netip.MustParseAddr("2001:db8:1::2").As16(), netip.MustParseAddr("2001:db8:2::2").As16()
	wire.IPv6(b).Encode(&wire.IPv6Fields{PayloadLength: 24, NextHeader: 44, HopLimit: 64, Src: src, Dst: dst})
	b[40] = 17                                   // next header: UDP
	binary.BigEndian.PutUint16(b[42:], off&^7|1) // offset, M
	binary.BigEndian.PutUint32(b[44:], 0x1234)   // identification
	seg := b[48:]
	binary.BigEndian.PutUint16(seg[0:], 1)
	binary.BigEndian.PutUint16(seg[2:], 2)
	binary.BigEndian.PutUint16(seg[4:], 24) // the datagram's length, not the fragment's
	whole := append(append([]byte{}, seg...), 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55)
	binary.BigEndian.PutUint16(seg[6:], ^wire.Checksum(whole, wire.PseudoHeaderChecksum(17, src[:], dst[:], uint16(len(whole)))))
	pkt := pipeline.DefaultPool.Get(len(b))
	pkt.SetData(b)
	pkt.SetNetworkHeader()
	pkt.NetProto = pipeline.IPv6ProtocolNumber
	t.Cleanup(pkt.Release)
	pc := &pipeline.PacketContext{Hook: pipeline.Forward, Pkt: pkt}
	if !pipeline.ParseTuple(nil, pkt, pc) {
		t.Fatal("fragment does not parse")
	}
	return pc
}
