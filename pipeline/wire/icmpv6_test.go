package wire

import (
	"bytes"
	"testing"
)

var icmp6EchoFields = ICMPv6Fields{Type: ICMPv6EchoRequest, Code: 0, Rest: ICMPv6EchoRest(0x13ef, 1)}

func TestICMPv6Deconstruct(t *testing.T) {
	ip, b := icmp6Of(frame6EchoRequest)
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
	pseudo := icmp6Pseudo(ip, b)
	if b.Type() != ICMPv6EchoRequest || b.Code() != 0 || b.Checksum() != 0x6f02 || b.IsError() {
		t.Errorf("type %d code %d checksum %#04x", b.Type(), b.Code(), b.Checksum())
	}
	if b.Ident() != 0x13ef || b.Seq() != 1 || b.Rest() != 0x13ef0001 {
		t.Errorf("ident %#x seq %d", b.Ident(), b.Seq())
	}
	if len(b.Payload()) != 56 || len(b.Body()) != 60 || !bytes.Equal(b.Payload()[16:], mustHex("101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637")) {
		t.Errorf("payload % x", b.Payload())
	}
	if b.CalculateChecksum(pseudo) != 0x6f02 || !b.IsChecksumValid(pseudo) {
		t.Errorf("checksum %#04x", b.CalculateChecksum(pseudo))
	}
	// the pseudo-header is covered: without it (as in ICMPv4) it fails
	if b.IsChecksumValid(0) || ICMPv4(b).IsChecksumValid() {
		t.Error("valid without the pseudo-header")
	}
	// the reply: addresses swapped, same pseudo-header sum
	rip, r := icmp6Of(frame6EchoReply)
	if r.Type() != ICMPv6EchoReply || r.Ident() != 0x13ef || r.Seq() != 1 || icmp6Pseudo(rip, r) != pseudo || !r.IsChecksumValid(pseudo) {
		t.Errorf("reply type %d valid %v", r.Type(), r.IsChecksumValid(pseudo))
	}

	for _, tt := range []struct {
		name       string
		frame      []byte
		typ, code  uint8
		rest, size int
	}{
		{"no route", frame6NoRoute, ICMPv6DstUnreachable, ICMPv6NoRoute, 0, 112},
		{"time exceeded", frame6TimeExceeded, ICMPv6TimeExceeded, ICMPv6HopLimitExceeded, 0, 112},
		{"packet too big", frame6PacketTooBig, ICMPv6PacketTooBig, 0, 1280, 1240},
		{"port unreachable", frame6PortUnreach, ICMPv6DstUnreachable, ICMPv6PortUnreachable, 0, 80},
	} {
		ip, m := icmp6Of(tt.frame)
		if err := m.Check(); err != nil {
			t.Fatal(err)
		}
		if m.Type() != tt.typ || m.Code() != tt.code || int(m.Rest()) != tt.rest || len(m) != tt.size || !m.IsError() {
			t.Errorf("%s: type %d code %d rest %d len %d", tt.name, m.Type(), m.Code(), m.Rest(), len(m))
		}
		if !m.IsChecksumValid(icmp6Pseudo(ip, m)) {
			t.Errorf("%s: checksum", tt.name)
		}
		if len(ip)-len(m) != IPv6HeaderSize {
			t.Errorf("%s: not right after the header", tt.name)
		}
	}
	_, ptb := icmp6Of(frame6PacketTooBig)
	if ptb.MTU() != 1280 || len(ptb)+IPv6HeaderSize != IPv6MinimumMTU {
		t.Errorf("MTU %d, message %d", ptb.MTU(), len(ptb))
	}
}

func TestICMPv6Construct(t *testing.T) {
	ip, msg := icmp6Of(frame6EchoRequest)
	pseudo := icmp6Pseudo(ip, msg)
	b := ICMPv6(make([]byte, len(msg)))
	b.Encode(&icmp6EchoFields)
	copy(b.Payload(), msg[8:])
	b.SetChecksum(b.CalculateChecksum(pseudo))
	if !bytes.Equal(b, msg) {
		t.Errorf("got  % x\nwant % x", []byte(b), []byte(msg))
	}
	c := ICMPv6(make([]byte, len(msg)))
	c.SetType(ICMPv6EchoRequest)
	c.SetCode(0)
	c.SetIdent(0x13ef)
	c.SetSeq(1)
	copy(c.Payload(), msg[8:])
	c.SetChecksum(0x6f02)
	if !bytes.Equal(c, msg) {
		t.Errorf("setters % x", []byte(c))
	}
	// the reply Linux sent: type 129, checksum updated incrementally
	c.SetType(ICMPv6EchoReply)
	c.SetChecksum(ChecksumUpdate16(c.Checksum(), ICMPv6EchoRequest<<8, ICMPv6EchoReply<<8))
	_, reply := icmp6Of(frame6EchoReply)
	if !bytes.Equal(c, reply) {
		t.Errorf("reply % x", []byte(c[:8]))
	}
	// the packet-too-big message: the router quoted as much as fits
	pip, ptb := icmp6Of(frame6PacketTooBig)
	p := ICMPv6(make([]byte, len(ptb)))
	p.Encode(&ICMPv6Fields{Type: ICMPv6PacketTooBig, Rest: 1280})
	copy(p.Payload(), ptb.Payload())
	p.SetChecksum(p.CalculateChecksum(icmp6Pseudo(pip, ptb)))
	if !bytes.Equal(p, ptb) {
		t.Errorf("packet too big % x", []byte(p[:8]))
	}
	p.SetMTU(1400)
	p.SetPointer(0x01020304)
	if p.Pointer() != 0x01020304 || p.MTU() != 0x01020304 {
		t.Error("SetMTU/SetPointer")
	}
	p.SetRest(7)
	if p.Rest() != 7 {
		t.Error("SetRest")
	}
	// a parameter problem pointing at the hop-by-hop next header
	p.Encode(&ICMPv6Fields{Type: ICMPv6ParamProblem, Code: ICMPv6UnrecognizedNextHeader, Rest: 6})
	if !bytes.Equal(p[:8], []byte{4, 1, 0, 0, 0, 0, 0, 6}) || p.Pointer() != 6 {
		t.Errorf("param problem % x", []byte(p[:8]))
	}
}

func TestICMPv6ImpossibleLength(t *testing.T) {
	_, msg := icmp6Of(frame6EchoRequest)
	for n := 0; n < len(msg); n++ {
		err := ICMPv6(msg[:n]).Check()
		if n < 8 && err != ErrTooShort {
			t.Errorf("len %d: %v", n, err)
		}
		if n >= 8 {
			if err != nil {
				t.Errorf("len %d: %v", n, err)
			}
			callICMPv6Accessors(ICMPv6(msg[:n]))
		}
	}
	// every type: 4 bytes suffice only for the types without the rest word
	for typ := 0; typ < 256; typ++ {
		b := ICMPv6{uint8(typ), 0, 0, 0, 0, 0, 0, 0}
		has := typ < 128 || (typ >= 128 && typ <= 137) || typ == 143
		if ICMPv6HasRest(uint8(typ)) != has {
			t.Errorf("type %d: HasRest %v", typ, !has)
		}
		for n := 0; n <= 8; n++ {
			err := b[:n].Check()
			ok := n >= 8 || (n >= 4 && !has)
			if (err == nil) != ok || (err != nil && err != ErrTooShort) {
				t.Errorf("type %d len %d: %v", typ, n, err)
			}
			if err == nil {
				callICMPv6Accessors(b[:n])
			}
		}
	}
	s := ICMPv6{200, 0, 0, 0, 1, 2, 3}
	if s.Rest() != 0 || s.Ident() != 0 || s.Seq() != 0 || s.MTU() != 0 || s.Pointer() != 0 || len(s.Payload()) != 0 || len(s.Body()) != 3 {
		t.Error("short message accessors")
	}
}

func TestICMPv6Parse(t *testing.T) {
	n := 0
	for i, f := range allFrames6 {
		ip := ip6Of(f)
		x, err := ip.WalkExtensions(8)
		if err != nil || x.Protocol != ProtocolICMPv6 || x.IsFragment() {
			continue
		}
		n++
		m := ICMPv6(ip[x.ProtocolOffset:])
		if err := m.Check(); err != nil {
			t.Errorf("frame %d: %v", i, err)
		}
		if !m.IsChecksumValid(icmp6Pseudo(ip, m)) {
			t.Errorf("frame %d: checksum", i)
		}
		callICMPv6Accessors(m)
	}
	if n != 13 {
		t.Errorf("%d ICMPv6 fixtures", n)
	}
	// an empty echo and an odd-length one
	for _, l := range []int{8, 9} {
		b := ICMPv6(make([]byte, l))
		b.Encode(&icmp6EchoFields)
		if l == 9 {
			b[8] = 0x7f
		}
		b.SetChecksum(b.CalculateChecksum(0x1234))
		if err := b.Check(); err != nil || !b.IsChecksumValid(0x1234) || b.IsChecksumValid(0x1235) {
			t.Errorf("len %d: %v", l, err)
		}
	}
}

func TestICMPv6Emit(t *testing.T) {
	buf := filled(64)
	ICMPv6(buf).Encode(&icmp6EchoFields)
	if !bytes.Equal(buf[:8], mustHex("8000 0000 13ef 0001")) {
		t.Errorf("header % x", buf[:8])
	}
	if i := firstWritten(buf, 8); i >= 0 {
		t.Errorf("byte %d written beyond the header", i)
	}
}

func callICMPv6Accessors(b ICMPv6) {
	_ = b.Type()
	_ = b.Code()
	_ = b.Checksum()
	_ = b.IsError()
	_ = b.Rest()
	_ = b.Ident()
	_ = b.Seq()
	_ = b.MTU()
	_ = b.Pointer()
	_ = b.Body()
	_ = b.Payload()
	_ = b.CalculateChecksum(0x1234)
	_ = b.IsChecksumValid(0x1234)
}
