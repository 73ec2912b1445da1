package wire

import (
	"bytes"
	"testing"
)

var icmpEchoFields = ICMPv4Fields{Type: ICMPv4Echo, Code: 0, Rest: ICMPv4EchoRest(0x0a5c, 1)}

func TestICMPv4Deconstruct(t *testing.T) {
	_, msg := l4Of(frameICMPEcho)
	b := ICMPv4(msg)
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
	if b.Type() != ICMPv4Echo || b.Code() != 0 || b.Checksum() != 0xa832 {
		t.Errorf("type %d code %d checksum %#04x", b.Type(), b.Code(), b.Checksum())
	}
	if b.Ident() != 0x0a5c || b.Seq() != 1 || b.Rest() != 0x0a5c0001 {
		t.Errorf("ident %#x seq %d", b.Ident(), b.Seq())
	}
	if len(b.Payload()) != 56 || !bytes.Equal(b.Payload()[16:], mustHex("101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637")) {
		t.Errorf("payload % x", b.Payload())
	}
	if b.CalculateChecksum() != 0xa832 || !b.IsChecksumValid() {
		t.Errorf("checksum %#04x", b.CalculateChecksum())
	}

	_, msg = l4Of(frameICMPUnreach)
	u := ICMPv4(msg)
	if err := u.Check(); err != nil {
		t.Fatal(err)
	}
	if u.Type() != ICMPv4DstUnreachable || u.Code() != ICMPv4PortUnreachable || u.Rest() != 0 || !u.IsChecksumValid() {
		t.Errorf("unreach type %d code %d rest %#x", u.Type(), u.Code(), u.Rest())
	}
	if len(u.Payload()) != 84 {
		t.Errorf("quoted %d bytes", len(u.Payload()))
	}
}

func TestICMPv4Construct(t *testing.T) {
	_, msg := l4Of(frameICMPEcho)
	b := ICMPv4(make([]byte, len(msg)))
	b.Encode(&icmpEchoFields)
	copy(b.Payload(), msg[8:])
	b.SetChecksum(b.CalculateChecksum())
	if !bytes.Equal(b, msg) {
		t.Errorf("got  % x\nwant % x", []byte(b), msg)
	}
	c := ICMPv4(make([]byte, len(msg)))
	c.SetType(ICMPv4Echo)
	c.SetCode(0)
	c.SetIdent(0x0a5c)
	c.SetSeq(1)
	copy(c.Payload(), msg[8:])
	c.SetChecksum(0xa832)
	if !bytes.Equal(c, msg) {
		t.Errorf("setters % x", []byte(c))
	}
	// the echo reply Linux would send: type 0, checksum +0x0800
	c.SetType(ICMPv4EchoReply)
	c.SetChecksum(ChecksumUpdate16(c.Checksum(), ICMPv4Echo<<8, ICMPv4EchoReply<<8))
	if !c.IsChecksumValid() || c.Checksum() != 0xb032 {
		t.Errorf("reply checksum %#04x", c.Checksum())
	}
	// the unreachable message
	_, umsg := l4Of(frameICMPUnreach)
	u := ICMPv4(make([]byte, len(umsg)))
	u.Encode(&ICMPv4Fields{Type: ICMPv4DstUnreachable, Code: ICMPv4PortUnreachable})
	copy(u.Payload(), umsg[8:])
	u.SetChecksum(u.CalculateChecksum())
	if !bytes.Equal(u, umsg) {
		t.Errorf("unreach % x", []byte(u))
	}
}

func TestICMPv4RestHelpers(t *testing.T) {
	b := ICMPv4(make([]byte, 8))
	b.Encode(&ICMPv4Fields{Type: ICMPv4DstUnreachable, Code: ICMPv4FragmentationNeeded, Rest: ICMPv4FragNeededRest(1400)})
	if b.MTU() != 1400 || !bytes.Equal(b[4:8], []byte{0, 0, 0x05, 0x78}) {
		t.Errorf("MTU % x", []byte(b))
	}
	b.SetMTU(1280)
	if b.MTU() != 1280 {
		t.Error("SetMTU")
	}
	b.Encode(&ICMPv4Fields{Type: ICMPv4ParamProblem, Rest: ICMPv4ParamProblemRest(20)})
	if b.Pointer() != 20 || !bytes.Equal(b[4:8], []byte{20, 0, 0, 0}) {
		t.Errorf("pointer % x", []byte(b))
	}
	b.Encode(&ICMPv4Fields{Type: ICMPv4TimeExceeded, Code: ICMPv4TTLExceeded})
	if b.Type() != 11 || b.Code() != 0 || b.Rest() != 0 {
		t.Error("time exceeded")
	}
}

func TestICMPv4ImpossibleLength(t *testing.T) {
	_, msg := l4Of(frameICMPEcho)
	for n := 0; n < len(msg); n++ {
		err := ICMPv4(msg[:n]).Check()
		if n < 8 && err != ErrTooShort {
			t.Errorf("len %d: %v", n, err)
		}
		if n >= 8 {
			if err != nil {
				t.Errorf("len %d: %v", n, err)
			}
			callICMPv4Accessors(ICMPv4(msg[:n]))
		}
	}
}

func TestICMPv4Parse(t *testing.T) {
	for _, f := range [][]byte{frameICMPEcho, frameICMPUnreach} {
		_, msg := l4Of(f)
		if err := ICMPv4(msg).Check(); err != nil {
			t.Error(err)
		}
	}
	// an empty echo (8 bytes, no data) and an odd-length one
	for _, n := range []int{8, 9} {
		b := ICMPv4(make([]byte, n))
		b.Encode(&icmpEchoFields)
		if n == 9 {
			b[8] = 0x7f
		}
		b.SetChecksum(b.CalculateChecksum())
		if err := b.Check(); err != nil || !b.IsChecksumValid() {
			t.Errorf("len %d: %v %v", n, err, b.IsChecksumValid())
		}
	}
}

func TestICMPv4Emit(t *testing.T) {
	buf := filled(64)
	ICMPv4(buf).Encode(&icmpEchoFields)
	if !bytes.Equal(buf[:8], mustHex("0800 0000 0a5c 0001")) {
		t.Errorf("header % x", buf[:8])
	}
	if i := firstWritten(buf, 8); i >= 0 {
		t.Errorf("byte %d written beyond the header", i)
	}
}

func callICMPv4Accessors(b ICMPv4) {
	_ = b.Type()
	_ = b.Code()
	_ = b.Checksum()
	_ = b.Rest()
	_ = b.Ident()
	_ = b.Seq()
	_ = b.MTU()
	_ = b.Pointer()
	_ = b.Payload()
	_ = b.CalculateChecksum()
	_ = b.IsChecksumValid()
}
