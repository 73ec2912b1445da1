package wire

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

var ipv4EchoFields = IPv4Fields{
	TOS:         0,
	TotalLength: 84,
	ID:          0x936a,
	Flags:       IPv4FlagDontFragment,
	TTL:         64,
	Protocol:    ProtocolICMP,
	Src:         [4]byte{192, 0, 2, 2},
	Dst:         [4]byte{192, 0, 2, 1},
}

// ipv4WithOptions is the echo request header with a Router Alert option
// (RFC 2113) and a 3-byte Record Route stub padded with EOL, checksum fixed.
func ipv4WithOptions() IPv4 {
	f := ipv4EchoFields
	f.Options = []byte{0x94, 0x04, 0x00, 0x00, 0x07, 0x03, 0x04}
	payload := frameICMPEcho[14+20:]
	hl := IPv4HeaderSize(len(f.Options))
	f.TotalLength = uint16(hl + len(payload))
	b := IPv4(make([]byte, int(f.TotalLength)))
	b.Encode(&f)
	copy(b[hl:], payload)
	return b
}

func TestIPv4Deconstruct(t *testing.T) {
	b := ipOf(frameICMPEcho)
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
	check := func(name string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("HeaderLength", b.HeaderLength(), 20)
	check("TOS", b.TOS(), uint8(0))
	check("TotalLength", b.TotalLength(), uint16(84))
	check("ID", b.ID(), uint16(0x936a))
	check("Flags", b.Flags(), uint8(IPv4FlagDontFragment))
	check("FragmentOffset", b.FragmentOffset(), uint16(0))
	check("MoreFragments", b.MoreFragments(), false)
	check("DontFragment", b.DontFragment(), true)
	check("TTL", b.TTL(), uint8(64))
	check("Protocol", b.Protocol(), uint8(ProtocolICMP))
	check("Checksum", b.Checksum(), uint16(0x233b))
	check("Src", b.Src(), [4]byte{192, 0, 2, 2})
	check("Dst", b.Dst(), [4]byte{192, 0, 2, 1})
	check("SrcSlice", [4]byte(b.SrcSlice()), [4]byte{192, 0, 2, 2})
	check("DstSlice", [4]byte(b.DstSlice()), [4]byte{192, 0, 2, 1})
	check("cap(SrcSlice)", cap(b.SrcSlice()), 4)
	check("len(Options)", len(b.Options()), 0)
	check("CalculateChecksum", b.CalculateChecksum(), uint16(0x233b))
	check("IsChecksumValid", b.IsChecksumValid(), true)
	if !bytes.Equal(b.Payload(), frameICMPEcho[34:]) {
		t.Error("payload")
	}

	u := ipOf(frameICMPUnreach)
	if err := u.Check(); err != nil {
		t.Fatal(err)
	}
	check("unreach TOS", u.TOS(), uint8(0xc0))
	check("unreach Flags", u.Flags(), uint8(0))
	check("unreach TTL", u.TTL(), uint8(63))
	check("unreach Src", u.Src(), [4]byte{21, 4, 0, 29})
	check("unreach valid", u.IsChecksumValid(), true)

	s := ipOf(frameTCPSynAck)
	check("synack ID", s.ID(), uint16(0))
	check("synack Protocol", s.Protocol(), uint8(ProtocolTCP))
	check("synack valid", s.IsChecksumValid(), true)

	bad := ipOf(frameICMPEcho)
	bad.SetChecksum(0x233c)
	check("corrupted valid", bad.IsChecksumValid(), false)
}

func TestIPv4Fragments(t *testing.T) {
	b := ipOf(frameICMPEcho)
	b.SetFlagsFragmentOffset(IPv4FlagMoreFragments, 1480)
	if !b.MoreFragments() || b.DontFragment() || b.FragmentOffset() != 1480 || b.Flags() != IPv4FlagMoreFragments {
		t.Errorf("MF %v DF %v off %d flags %d", b.MoreFragments(), b.DontFragment(), b.FragmentOffset(), b.Flags())
	}
	b.SetFlagsFragmentOffset(IPv4FlagDontFragment|IPv4FlagMoreFragments, 0xfff8)
	if !b.MoreFragments() || !b.DontFragment() || b.FragmentOffset() != 0xfff8 {
		t.Errorf("max offset: %d", b.FragmentOffset())
	}
	if b.TTL() != 64 || b.ID() != 0x936a {
		t.Error("neighbouring fields clobbered")
	}
}

func TestIPv4Construct(t *testing.T) {
	b := IPv4(make([]byte, 20))
	b.Encode(&ipv4EchoFields)
	if !bytes.Equal(b, frameICMPEcho[14:34]) {
		t.Errorf("got  % x\nwant % x", []byte(b), frameICMPEcho[14:34])
	}
	f := IPv4Fields{
		TOS: 0xc0, TotalLength: 0x70, ID: 0xec24, TTL: 63, Protocol: ProtocolICMP,
		Src: [4]byte{21, 4, 0, 29}, Dst: [4]byte{192, 0, 2, 2},
	}
	b.Encode(&f)
	if !bytes.Equal(b, frameICMPUnreach[14:34]) {
		t.Errorf("got  % x\nwant % x", []byte(b), frameICMPUnreach[14:34])
	}
	// setters from a zeroed header reach the same bytes
	c := IPv4(make([]byte, 20))
	c[0] = 0x45
	c[1] = 0xc0
	c.SetTotalLength(0x70)
	c.SetID(0xec24)
	c.SetFlagsFragmentOffset(0, 0)
	c.SetTTL(63)
	c[9] = ProtocolICMP
	c.SetSrc(f.Src)
	c.SetDst(f.Dst)
	c.SetChecksum(c.CalculateChecksum())
	if !bytes.Equal(b, c) {
		t.Errorf("setters: % x", []byte(c))
	}
}

func TestIPv4ImpossibleLength(t *testing.T) {
	full := ipOf(frameICMPEcho)
	for n := 0; n < len(full); n++ {
		err := full[:n].Check()
		var want error
		switch {
		case n < 20:
			want = ErrTooShort
		default:
			want = ErrBadTotalLength
		}
		if err != want {
			t.Errorf("len %d: %v, want %v", n, err, want)
		}
	}
	tests := []struct {
		name string
		edit func(IPv4) IPv4
		want error
	}{
		{"version 6", func(b IPv4) IPv4 { b[0] = 0x65; return b }, ErrBadVersion},
		{"version 0", func(b IPv4) IPv4 { b[0] = 0x05; return b }, ErrBadVersion},
		{"IHL 0", func(b IPv4) IPv4 { b[0] = 0x40; return b }, ErrBadHeaderLength},
		{"IHL 4", func(b IPv4) IPv4 { b[0] = 0x44; return b }, ErrBadHeaderLength},
		{"IHL 15 beyond buffer", func(b IPv4) IPv4 { b[0] = 0x4f; return b[:40] }, ErrBadHeaderLength},
		{"IHL 6 of 20 bytes", func(b IPv4) IPv4 { b[0] = 0x46; return b[:20] }, ErrBadHeaderLength},
		{"total length 0", func(b IPv4) IPv4 { b.SetTotalLength(0); return b }, ErrBadTotalLength},
		{"total length 19", func(b IPv4) IPv4 { b.SetTotalLength(19); return b }, ErrBadTotalLength},
		{"total length below IHL", func(b IPv4) IPv4 { b[0] = 0x46; b.SetTotalLength(23); return b }, ErrBadTotalLength},
		{"total length beyond buffer", func(b IPv4) IPv4 { b.SetTotalLength(85); return b }, ErrBadTotalLength},
		{"total length 0xffff", func(b IPv4) IPv4 { b.SetTotalLength(0xffff); return b }, ErrBadTotalLength},
		{"header only", func(b IPv4) IPv4 { b.SetTotalLength(20); return b }, nil},
		{"IHL 15 in buffer", func(b IPv4) IPv4 { b[0] = 0x4f; return b }, nil},
		{"link padding", func(b IPv4) IPv4 { return append(b, 0, 0, 0, 0) }, nil},
	}
	for _, tt := range tests {
		b := tt.edit(ipOf(frameICMPEcho))
		if err := b.Check(); err != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
			continue
		}
		if tt.want == nil {
			callIPv4Accessors(b)
		}
	}
}

func TestIPv4Parse(t *testing.T) {
	for i, f := range allFrames {
		b := ipOf(f)
		if err := b.Check(); err != nil {
			t.Errorf("frame %d: %v", i, err)
		}
		if !b.IsChecksumValid() {
			t.Errorf("frame %d: checksum", i)
		}
	}
	// the datagram quoted in the ICMP error parses too
	u, _ := l4Of(frameICMPUnreach)
	quoted := IPv4(ICMPv4(u.Payload()).Payload())
	if err := quoted.Check(); err != nil || !quoted.IsChecksumValid() || quoted.Dst() != [4]byte{10, 255, 255, 53} {
		t.Errorf("quoted: %v %v", err, quoted.Dst())
	}
	// options
	b := ipv4WithOptions()
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
	if b.HeaderLength() != 28 || !bytes.Equal(b.Options(), []byte{0x94, 4, 0, 0, 7, 3, 4, 0}) {
		t.Errorf("hl %d options % x", b.HeaderLength(), b.Options())
	}
	if !b.IsChecksumValid() || !bytes.Equal(b.Payload(), frameICMPEcho[34:]) {
		t.Error("checksum or payload with options")
	}
	// garbage options (lengths pointing anywhere) are not interpreted
	for i := 20; i < 28; i++ {
		b[i] = 0xff
	}
	if err := b.Check(); err != nil {
		t.Error(err)
	}
	callIPv4Accessors(b)
	// link-layer padding beyond total length is excluded from the payload
	p := append(ipOf(frameTCPSyn), make([]byte, 6)...)
	if err := p.Check(); err != nil || len(p.Payload()) != 40 {
		t.Errorf("padded: %v %d", err, len(p.Payload()))
	}
}

func TestIPv4Emit(t *testing.T) {
	for _, opts := range [][]byte{nil, {0x94, 0x04, 0x00, 0x00}, {0x01}, {0x07, 0x03, 0x04}, bytes.Repeat([]byte{1}, 40)} {
		f := ipv4EchoFields
		f.Options = opts
		hl := IPv4HeaderSize(len(opts))
		buf := filled(100)
		IPv4(buf).Encode(&f)
		if i := firstWritten(buf, hl); i >= 0 {
			t.Errorf("options %d: byte %d written beyond the %d-byte header", len(opts), i, hl)
		}
		for i := 20 + len(opts); i < hl; i++ {
			if buf[i] != 0 {
				t.Errorf("options %d: pad byte %d = %#x", len(opts), i, buf[i])
			}
		}
		b := IPv4(buf)
		if b.HeaderLength() != hl || !bytes.Equal(b.Options()[:len(opts)], opts) {
			t.Errorf("options %d: hl %d", len(opts), b.HeaderLength())
		}
		if b.Checksum() != b.CalculateChecksum() || !b.IsChecksumValid() {
			t.Errorf("options %d: checksum", len(opts))
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("41 bytes of options: no panic")
		}
	}()
	f := ipv4EchoFields
	f.Options = make([]byte, 41)
	IPv4(make([]byte, 100)).Encode(&f)
}

func TestIPv4HeaderSize(t *testing.T) {
	for opts, want := range map[int]int{0: 20, 1: 24, 3: 24, 4: 24, 5: 28, 40: 60} {
		if got := IPv4HeaderSize(opts); got != want {
			t.Errorf("IPv4HeaderSize(%d) = %d, want %d", opts, got, want)
		}
	}
}

func TestIPv4DecTTL(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for i := 0; i < 100000; i++ {
		b := randomIPv4(r)
		switch i % 8 {
		case 0:
			b.SetTTL(1)
		case 1:
			b.SetTTL(0) // wraps to 255; checksum still kept valid
		case 2:
			b.SetTTL(255)
		case 3:
			forceChecksum(b, 0) // 0x0000 before
		case 4: // 0x0000 after: choose the ID with TTL-1 in place
			b.SetTTL(b.TTL() - 1)
			forceChecksum(b, 0)
			b.SetTTL(b.TTL() + 1)
		}
		b.SetChecksum(b.CalculateChecksum())
		ttl := b.TTL()
		b.DecTTL()
		if b.TTL() != ttl-1 {
			t.Fatalf("TTL %d -> %d", ttl, b.TTL())
		}
		if got, want := b.Checksum(), b.CalculateChecksum(); got != want || !b.IsChecksumValid() {
			t.Fatalf("TTL %d: incremental %#04x, recomputed %#04x", ttl, got, want)
		}
		if i%8 == 4 && b.Checksum() != 0 {
			t.Fatalf("expected 0x0000 after DecTTL, got %#04x", b.Checksum())
		}
	}
	// the captured echo request, forwarded
	b := ipOf(frameICMPEcho)
	b.DecTTL()
	if b.TTL() != 63 || b.Checksum() != 0x243b || !b.IsChecksumValid() {
		t.Errorf("TTL %d checksum %#04x", b.TTL(), b.Checksum())
	}
}

func TestIPv4ChecksumUpdateNAT(t *testing.T) {
	// Rewriting the source address of the captured SYN (SNAT) with
	// ChecksumUpdate32 matches a full recompute.
	b := ipOf(frameTCPSyn)
	old := b.Src()
	nw := [4]byte{198, 51, 100, 7}
	b.SetSrc(nw)
	b.SetChecksum(ChecksumUpdate32(b.Checksum(), be32(old), be32(nw)))
	if b.Checksum() != b.CalculateChecksum() {
		t.Errorf("incremental %#04x, recomputed %#04x", b.Checksum(), b.CalculateChecksum())
	}
}

func be32(a [4]byte) uint32 {
	return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
}

// callIPv4Accessors calls every accessor; used after Check passed.
func callIPv4Accessors(b IPv4) {
	_ = b.HeaderLength()
	_ = b.TOS()
	_ = b.TotalLength()
	_ = b.ID()
	_ = b.Flags()
	_ = b.FragmentOffset()
	_ = b.MoreFragments()
	_ = b.DontFragment()
	_ = b.TTL()
	_ = b.Protocol()
	_ = b.Checksum()
	_ = b.Src()
	_ = b.Dst()
	_ = b.SrcSlice()
	_ = b.DstSlice()
	_ = b.Options()
	_ = b.Payload()
	_ = b.CalculateChecksum()
	_ = b.IsChecksumValid()
	_ = IPv4PseudoChecksum(b, uint16(len(b.Payload())))
}
