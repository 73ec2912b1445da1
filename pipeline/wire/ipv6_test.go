package wire

import (
	"bytes"
	"testing"
)

var (
	addrHost6   = [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 6, 0, 0xff, 0xfe, 0, 0, 1}
	addrRouter6 = [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 15: 1}
)

var ipv6EchoFields = IPv6Fields{
	TrafficClass:  0,
	FlowLabel:     0xf3b8e,
	PayloadLength: 64,
	NextHeader:    ProtocolICMPv6,
	HopLimit:      64,
	Src:           addrHost6,
	Dst:           addrRouter6,
}

func TestIPv6Deconstruct(t *testing.T) {
	b := ip6Of(frame6EchoRequest)
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
	check := func(name string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("TrafficClass", b.TrafficClass(), uint8(0))
	check("FlowLabel", b.FlowLabel(), uint32(0xf3b8e))
	check("PayloadLength", b.PayloadLength(), uint16(64))
	check("NextHeader", b.NextHeader(), uint8(ProtocolICMPv6))
	check("HopLimit", b.HopLimit(), uint8(64))
	check("Src", b.Src(), addrHost6)
	check("Dst", b.Dst(), addrRouter6)
	check("SrcSlice", [16]byte(b.SrcSlice()), addrHost6)
	check("DstSlice", [16]byte(b.DstSlice()), addrRouter6)
	check("cap(SrcSlice)", cap(b.SrcSlice()), 16)
	check("cap(DstSlice)", cap(b.DstSlice()), 16)
	if !bytes.Equal(b.Payload(), frame6EchoRequest[54:]) {
		t.Error("payload")
	}

	// the router advertisement: link-local source, all-nodes, hop limit 255
	ra := ip6Of(frame6RA)
	if err := ra.Check(); err != nil {
		t.Fatal(err)
	}
	check("RA FlowLabel", ra.FlowLabel(), uint32(0x1206e))
	check("RA HopLimit", ra.HopLimit(), uint8(255))
	check("RA Src", ra.Src(), [16]byte{0xfe, 0x80, 9: 6, 11: 0xff, 12: 0xfe, 15: 5})
	check("RA Dst", ra.Dst(), [16]byte{0xff, 0x02, 15: 1})
	check("RA PayloadLength", ra.PayloadLength(), uint16(104))

	// the MLD report: next header is Hop-by-Hop
	m := ip6Of(frame6MLDv2Report)
	check("MLD NextHeader", m.NextHeader(), uint8(ProtocolHopByHop))
	check("MLD HopLimit", m.HopLimit(), uint8(1))
	// the DAD probe has the unspecified source
	check("DAD Src", ip6Of(frame6DADNS).Src(), [16]byte{})
	// the time-exceeded message quotes a packet sent with hop limit 1
	_, te := icmp6Of(frame6TimeExceeded)
	q := IPv6(te.Payload())
	check("quoted Check", q.Check(), error(nil))
	check("quoted HopLimit", q.HopLimit(), uint8(1))
	check("quoted Dst", q.Dst(), [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 3, 15: 2})
}

func TestIPv6Construct(t *testing.T) {
	b := IPv6(make([]byte, IPv6HeaderSize))
	b.Encode(&ipv6EchoFields)
	if !bytes.Equal(b, frame6EchoRequest[14:54]) {
		t.Errorf("got  % x\nwant % x", []byte(b), frame6EchoRequest[14:54])
	}
	// the RA header
	f := IPv6Fields{
		FlowLabel: 0x1206e, PayloadLength: 104, NextHeader: ProtocolICMPv6, HopLimit: 255,
		Src: ip6Of(frame6RA).Src(), Dst: [16]byte{0xff, 0x02, 15: 1},
	}
	b.Encode(&f)
	if !bytes.Equal(b, frame6RA[14:54]) {
		t.Errorf("RA got  % x\nwant % x", []byte(b), frame6RA[14:54])
	}
	// setters from a zeroed header reach the same bytes
	c := IPv6(make([]byte, IPv6HeaderSize))
	c[0] = 0x60
	c.SetFlowLabel(0x1206e)
	c.SetTrafficClass(0)
	c.SetPayloadLength(104)
	c.SetNextHeader(ProtocolICMPv6)
	c.SetHopLimit(255)
	c.SetSrc(f.Src)
	c.SetDst(f.Dst)
	if !bytes.Equal(b, c) {
		t.Errorf("setters: % x", []byte(c))
	}
	// traffic class and flow label do not bleed into each other or the version
	c.SetTrafficClass(0xff)
	if c.TrafficClass() != 0xff || c.FlowLabel() != 0x1206e || c[0]>>4 != 6 {
		t.Errorf("tc %#x fl %#x % x", c.TrafficClass(), c.FlowLabel(), []byte(c[:4]))
	}
	c.SetFlowLabel(0xffffffff)
	if c.TrafficClass() != 0xff || c.FlowLabel() != 0xfffff || c[0]>>4 != 6 {
		t.Errorf("tc %#x fl %#x % x", c.TrafficClass(), c.FlowLabel(), []byte(c[:4]))
	}
	c.Encode(&IPv6Fields{TrafficClass: 0xb8, FlowLabel: 0xfff12345})
	if !bytes.Equal(c[:4], []byte{0x6b, 0x81, 0x23, 0x45}) || c.TrafficClass() != 0xb8 || c.FlowLabel() != 0x12345 {
		t.Errorf("encode tc/fl % x", []byte(c[:4]))
	}
}

func TestIPv6ImpossibleLength(t *testing.T) {
	full := ip6Of(frame6EchoRequest)
	for n := 0; n < len(full); n++ {
		err := full[:n].Check()
		want := error(ErrBadPayloadLength)
		if n < IPv6HeaderSize {
			want = ErrTooShort
		}
		if err != want {
			t.Errorf("len %d: %v, want %v", n, err, want)
		}
	}
	tests := []struct {
		name string
		edit func(IPv6) IPv6
		want error
	}{
		{"version 4", func(b IPv6) IPv6 { b[0] = 0x40; return b }, ErrBadVersion},
		{"version 0", func(b IPv6) IPv6 { b[0] = 0x00; return b }, ErrBadVersion},
		{"version 15", func(b IPv6) IPv6 { b[0] = 0xf0; return b }, ErrBadVersion},
		{"payload length 65", func(b IPv6) IPv6 { b.SetPayloadLength(65); return b }, ErrBadPayloadLength},
		{"payload length 0xffff", func(b IPv6) IPv6 { b.SetPayloadLength(0xffff); return b }, ErrBadPayloadLength},
		{"header only", func(b IPv6) IPv6 { return b[:40] }, ErrBadPayloadLength},
		{"payload length 0", func(b IPv6) IPv6 { b.SetPayloadLength(0); return b }, nil},
		{"payload length 0, header only", func(b IPv6) IPv6 { b.SetPayloadLength(0); return b[:40] }, nil},
		{"link padding", func(b IPv6) IPv6 { return append(b, 0, 0, 0, 0) }, nil},
	}
	for _, tt := range tests {
		b := tt.edit(ip6Of(frame6EchoRequest))
		if err := b.Check(); err != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
			continue
		}
		if tt.want == nil {
			callIPv6Accessors(b)
		}
	}
}

func TestIPv6Parse(t *testing.T) {
	for i, f := range allFrames6 {
		b := ip6Of(f)
		if err := b.Check(); err != nil {
			t.Errorf("frame %d: %v", i, err)
			continue
		}
		if len(b.Payload()) != len(b)-IPv6HeaderSize {
			t.Errorf("frame %d: payload %d of %d", i, len(b.Payload()), len(b))
		}
		callIPv6Accessors(b)
	}
	// the error messages quote the offending packet: whole, or cut to fit
	// in 1280 bytes (packet too big), so that its length does not check
	for _, tt := range []struct {
		frame []byte
		want  error
	}{
		{frame6NoRoute, nil}, {frame6TimeExceeded, nil}, {frame6PortUnreach, nil},
		{frame6PacketTooBig, ErrBadPayloadLength},
	} {
		_, m := icmp6Of(tt.frame)
		if err := IPv6(m.Payload()).Check(); err != tt.want {
			t.Errorf("quoted in type %d: %v, want %v", m.Type(), err, tt.want)
		}
	}
	// link-layer padding beyond PayloadLength is excluded from the payload
	p := append(ip6Of(frame6NS), make([]byte, 6)...)
	if err := p.Check(); err != nil || len(p.Payload()) != 32 {
		t.Errorf("padded: %v %d", err, len(p.Payload()))
	}
}

func TestIPv6Emit(t *testing.T) {
	buf := filled(100)
	IPv6(buf).Encode(&ipv6EchoFields)
	if !bytes.Equal(buf[:40], frame6EchoRequest[14:54]) {
		t.Errorf("header % x", buf[:40])
	}
	if i := firstWritten(buf, IPv6HeaderSize); i >= 0 {
		t.Errorf("byte %d written beyond the header", i)
	}
	defer func() {
		if recover() == nil {
			t.Error("39-byte buffer: no panic")
		}
	}()
	IPv6(make([]byte, 39)).Encode(&ipv6EchoFields)
}

func TestIPv6DecHopLimit(t *testing.T) {
	b := ip6Of(frame6EchoRequest)
	before := bytes.Clone(b)
	b.DecHopLimit()
	if b.HopLimit() != 63 {
		t.Errorf("hop limit %d", b.HopLimit())
	}
	for i := range b {
		if i != 7 && b[i] != before[i] {
			t.Errorf("byte %d changed", i)
		}
	}
	// the ICMPv6 checksum does not cover the hop limit
	m := ICMPv6(b.Payload())
	if !m.IsChecksumValid(icmp6Pseudo(b, m)) {
		t.Error("checksum broken by DecHopLimit")
	}
	b.SetHopLimit(0)
	b.DecHopLimit()
	if b.HopLimit() != 255 {
		t.Errorf("0 -> %d", b.HopLimit())
	}
}

func TestIPv6PseudoChecksum(t *testing.T) {
	b := ip6Of(frame6UDPDstOpts)
	// with a 16-bit length the sum equals the generic pseudo-header sum
	for _, l := range []uint32{0, 1, 24, 0xffff} {
		got := IPv6PseudoChecksum(b, ProtocolUDP, l)
		want := PseudoHeaderChecksum(ProtocolUDP, b.SrcSlice(), b.DstSlice(), uint16(l))
		if got != want {
			t.Errorf("len %d: %#04x, want %#04x", l, got, want)
		}
	}
	// a jumbogram length: the upper 16 bits count too
	got := IPv6PseudoChecksum(b, ProtocolUDP, 0x12345)
	want := naiveChecksum(append(append(bytes.Clone(b.SrcSlice()), b.DstSlice()...), 0, 1, 0x23, 0x45, 0, 0, 0, ProtocolUDP), 0)
	if got != want {
		t.Errorf("32-bit length: %#04x, want %#04x", got, want)
	}
	// the protocol is an argument, not the next header (here DestOptions)
	u := UDP(b[48:])
	if err := u.Check(); err != nil || !u.IsChecksumValid(IPv6PseudoChecksum(b, ProtocolUDP, uint32(len(u)))) {
		t.Errorf("UDP after destination options: %v", err)
	}
	if u.IsChecksumValid(IPv6PseudoChecksum(b, b.NextHeader(), uint32(len(u)))) {
		t.Error("checksum valid with the wrong protocol")
	}
}

// callIPv6Accessors calls every accessor; used after Check passed.
func callIPv6Accessors(b IPv6) {
	_ = b.TrafficClass()
	_ = b.FlowLabel()
	_ = b.PayloadLength()
	_ = b.NextHeader()
	_ = b.HopLimit()
	_ = b.Src()
	_ = b.Dst()
	_ = b.SrcSlice()
	_ = b.DstSlice()
	_ = b.Payload()
	_ = IPv6PseudoChecksum(b, b.NextHeader(), uint32(len(b.Payload())))
	_, _ = b.WalkExtensions(16)
}
