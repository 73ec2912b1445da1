package tcpreset

import (
	"net/netip"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// packet builds an IP packet (version 4 or 6) from src to dst carrying a
// TCP segment with flags and payload, its checksum valid.
func packet(src, dst string, flags uint8, payload []byte) (network, seg []byte) {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	t := make(wire.TCP, wire.TCPMinimumSize+len(payload))
	t.Encode(&wire.TCPFields{SrcPort: 51000, DstPort: 22, Seq: 1000, Ack: 77, Flags: flags, Window: 1024})
	copy(t.Payload(), payload)
	t.SetChecksum(t.CalculateChecksum(pseudo(s, d, len(t))))
	if s.Is4() {
		p := make([]byte, wire.IPv4MinimumSize+len(t))
		wire.IPv4(p).Encode(&wire.IPv4Fields{TotalLength: uint16(len(p)), TTL: 64, Protocol: wire.ProtocolTCP, Src: s.As4(), Dst: d.As4()})
		copy(p[wire.IPv4MinimumSize:], t)
		return p, p[wire.IPv4MinimumSize:]
	}
	p := make([]byte, wire.IPv6HeaderSize+len(t))
	wire.IPv6(p).Encode(&wire.IPv6Fields{PayloadLength: uint16(len(t)), NextHeader: wire.ProtocolTCP, HopLimit: 64, Src: s.As16(), Dst: d.As16()})
	copy(p[wire.IPv6HeaderSize:], t)
	return p, p[wire.IPv6HeaderSize:]
}

func TestBuild(t *testing.T) {
	pool := pipeline.NewPool(0)
	for _, c := range []struct {
		src, dst string
		flags    uint8
		payload  string
		seq, ack uint32
		out      uint8
	}{
		{"10.0.1.2", "10.0.1.1", wire.TCPFlagSyn, "", 0, 1001, wire.TCPFlagRst | wire.TCPFlagAck},
		{"10.0.1.2", "10.0.1.1", wire.TCPFlagAck | wire.TCPFlagPsh, "hello", 77, 0, wire.TCPFlagRst},
		{"10.0.1.2", "10.0.1.1", wire.TCPFlagFin, "hello", 0, 1006, wire.TCPFlagRst | wire.TCPFlagAck},
		{"2001:db8:1::2", "2001:db8:1::1", wire.TCPFlagSyn, "", 0, 1001, wire.TCPFlagRst | wire.TCPFlagAck},
		{"2001:db8:1::2", "2001:db8:1::1", 0, "abc", 0, 1003, wire.TCPFlagRst | wire.TCPFlagAck},
		{"fe80::2", "fe80::1", wire.TCPFlagAck, "", 77, 0, wire.TCPFlagRst},
	} {
		network, seg := packet(c.src, c.dst, c.flags, []byte(c.payload))
		if !ChecksumValid(network, seg) {
			t.Fatalf("%s: the test segment's checksum", c.src)
		}
		rst, from, to, ok := Build(pool, network, seg)
		if !ok {
			t.Fatalf("%s flags %#x: no reset", c.src, c.flags)
		}
		if from.String() != c.dst || to.String() != c.src {
			t.Errorf("reset from %s to %s, want %s to %s", from, to, c.dst, c.src)
		}
		r := wire.TCP(rst.Data())
		if len(r) != wire.TCPMinimumSize || r.Check() != nil || rst.TransProto != pipeline.TCPProtocolNumber ||
			len(rst.TransportHeader()) != wire.TCPMinimumSize {
			t.Fatalf("reset segment % x", rst.Data())
		}
		if r.SrcPort() != 22 || r.DstPort() != 51000 || r.Seq() != c.seq || r.Ack() != c.ack || r.Flags() != c.out || r.Window() != 0 {
			t.Errorf("%s flags %#x: ports %d→%d seq %d ack %d flags %#x", c.src, c.flags, r.SrcPort(), r.DstPort(), r.Seq(), r.Ack(), r.Flags())
		}
		// The checksum verifies over the reset's own pseudo-header.
		f, d := from.AsSlice(), to.AsSlice()
		if !r.IsChecksumValid(wire.PseudoHeaderChecksum(wire.ProtocolTCP, f, d, uint16(len(r)))) {
			t.Errorf("%s: bad checksum %#x", c.src, r.Checksum())
		}
		rst.Release()
	}
}

func TestBuildRefuses(t *testing.T) {
	pool := pipeline.NewPool(0)
	network, seg := packet("10.0.1.2", "10.0.1.1", wire.TCPFlagRst, nil)
	if _, _, _, ok := Build(pool, network, seg); ok {
		t.Error("a reset was answered")
	}
	network, seg = packet("10.0.1.2", "10.0.1.1", wire.TCPFlagRst|wire.TCPFlagAck, nil)
	if _, _, _, ok := Build(pool, network, seg); ok {
		t.Error("a RST|ACK was answered")
	}
	network, seg = packet("10.0.1.2", "10.0.1.1", wire.TCPFlagSyn, nil)
	for _, bad := range []struct {
		name         string
		network, seg []byte
	}{
		{"short segment", network, seg[:19]},
		{"bad data offset", network, append([]byte{}, seg[:12]...)},
		{"no network header", nil, seg},
		{"bad version", append([]byte{0x50}, network[1:]...), seg},
		{"truncated IPv4", network[:10], seg},
	} {
		if _, _, _, ok := Build(pool, bad.network, bad.seg); ok {
			t.Errorf("%s: answered", bad.name)
		}
	}
	seg[len(seg)-1] ^= 0xff // corrupt the checksum field's neighbour
	if ChecksumValid(network, seg) {
		t.Error("a corrupted segment passed ChecksumValid")
	}
}

// FuzzBuild: any bytes as the network header and segment never panic; a
// reset that comes out is 20 bytes, never answers a reset, and has a
// checksum valid for its addresses.
func FuzzBuild(f *testing.F) {
	for _, c := range []struct {
		src, dst string
		flags    uint8
	}{{"10.0.1.2", "10.0.1.1", wire.TCPFlagSyn}, {"2001:db8::2", "2001:db8::1", wire.TCPFlagAck}, {"10.0.1.2", "10.0.1.1", wire.TCPFlagRst}} {
		network, seg := packet(c.src, c.dst, c.flags, []byte("x"))
		f.Add(network, seg)
	}
	pool := pipeline.NewPool(0)
	f.Fuzz(func(t *testing.T, network, seg []byte) {
		ChecksumValid(network, seg)
		rst, from, to, ok := Build(pool, network, seg)
		if !ok {
			return
		}
		defer rst.Release()
		r := wire.TCP(rst.Data())
		if len(r) != wire.TCPMinimumSize || wire.TCP(seg).Flags()&wire.TCPFlagRst != 0 {
			t.Fatalf("reset % x for segment % x", r, seg)
		}
		if !r.IsChecksumValid(wire.PseudoHeaderChecksum(wire.ProtocolTCP, from.AsSlice(), to.AsSlice(), uint16(len(r)))) {
			t.Fatal("bad checksum")
		}
	})
}
