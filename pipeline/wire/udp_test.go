package wire

import (
	"bytes"
	"testing"
)

var udpDNSFields = UDPFields{SrcPort: 42080, DstPort: 53, Length: 37, Checksum: 0xa53e}

func TestUDPDeconstruct(t *testing.T) {
	ip, seg := l4Of(frameDNSQuery)
	b := UDP(seg)
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
	if b.SrcPort() != 42080 || b.DstPort() != 53 || b.Length() != 37 || b.Checksum() != 0xa53e {
		t.Errorf("ports %d->%d length %d checksum %#04x", b.SrcPort(), b.DstPort(), b.Length(), b.Checksum())
	}
	wantPayload := mustHex("1a2b 0100 0001 0000 0000 0000 0765 7861 6d70 6c65 0363 6f6d 0000 0100 01")
	if !bytes.Equal(b.Payload(), wantPayload) {
		t.Errorf("payload % x", b.Payload())
	}
	pseudo := IPv4PseudoChecksum(ip, b.Length())
	if got := b.CalculateChecksum(pseudo); got != 0xa53e {
		t.Errorf("CalculateChecksum = %#04x", got)
	}
	if !b.IsChecksumValid(pseudo) {
		t.Error("checksum invalid")
	}
	if b.IsChecksumValid(pseudo + 1) {
		t.Error("checksum valid with a wrong pseudo-header")
	}

	ip, seg = l4Of(frameDNSResponse)
	r := UDP(seg)
	if err := r.Check(); err != nil || r.SrcPort() != 53 || r.DstPort() != 42080 || !r.IsChecksumValid(IPv4PseudoChecksum(ip, r.Length())) {
		t.Errorf("response: %v %d %d", err, r.SrcPort(), r.DstPort())
	}
}

func TestUDPChecksumZero(t *testing.T) {
	ip, seg := l4Of(frameDNSQuery)
	b := UDP(seg)
	pseudo := IPv4PseudoChecksum(ip, b.Length())
	// A zero checksum means "none" and is valid (IPv4).
	b.SetChecksum(0)
	if !b.IsChecksumValid(pseudo) {
		t.Error("zero checksum not accepted")
	}
	// Make the computed checksum 0: it must be sent as 0xffff. The DNS ID is
	// the first payload word; choose it so the sum becomes 0xffff.
	b.Payload()[0], b.Payload()[1] = 0, 0
	cs := b.CalculateChecksum(pseudo)
	b.Payload()[0], b.Payload()[1] = byte(cs>>8), byte(cs)
	if got := b.CalculateChecksum(pseudo); got != 0xffff {
		t.Fatalf("computed %#04x, want 0xffff", got)
	}
	b.SetChecksum(0xffff)
	if !b.IsChecksumValid(pseudo) {
		t.Error("0xffff checksum not valid")
	}
}

func TestUDPConstruct(t *testing.T) {
	_, seg := l4Of(frameDNSQuery)
	b := UDP(make([]byte, 8))
	b.Encode(&udpDNSFields)
	if !bytes.Equal(b, seg[:8]) {
		t.Errorf("got % x want % x", []byte(b), seg[:8])
	}
	c := UDP(make([]byte, 8))
	c.SetSrcPort(42080)
	c.SetDstPort(53)
	c.SetLength(37)
	c.SetChecksum(0xa53e)
	if !bytes.Equal(b, c) {
		t.Errorf("setters: % x", []byte(c))
	}
	// whole datagram: header with zero checksum, payload, checksum last
	ip, _ := l4Of(frameDNSQuery)
	d := UDP(make([]byte, 37))
	f := udpDNSFields
	f.Checksum = 0
	d.Encode(&f)
	copy(d.Payload(), seg[8:])
	d.SetChecksum(d.CalculateChecksum(IPv4PseudoChecksum(ip, 37)))
	if !bytes.Equal(d, seg) {
		t.Errorf("datagram % x", []byte(d))
	}
}

func TestUDPImpossibleLength(t *testing.T) {
	_, seg := l4Of(frameDNSQuery)
	for n := 0; n < len(seg); n++ {
		want := ErrBadLength
		if n < 8 {
			want = ErrTooShort
		}
		if err := UDP(seg[:n]).Check(); err != want {
			t.Errorf("len %d: %v, want %v", n, err, want)
		}
	}
	for _, l := range []uint16{0, 1, 7, 38, 0xffff} {
		b := UDP(append([]byte(nil), seg...))
		b.SetLength(l)
		if err := b.Check(); err != ErrBadLength {
			t.Errorf("Length %d: %v", l, err)
		}
	}
	for _, l := range []uint16{8, 20, 37} {
		b := UDP(append([]byte(nil), seg...))
		b.SetLength(l)
		if err := b.Check(); err != nil || len(b.Payload()) != int(l)-8 {
			t.Errorf("Length %d: %v", l, err)
		}
		callUDPAccessors(b)
	}
}

func TestUDPParse(t *testing.T) {
	for _, f := range [][]byte{frameDNSQuery, frameDNSResponse} {
		_, seg := l4Of(f)
		if err := UDP(seg).Check(); err != nil {
			t.Error(err)
		}
	}
	// bytes beyond Length (e.g. a short Length inside a longer IP payload)
	_, seg := l4Of(frameDNSQuery)
	b := UDP(append(append([]byte(nil), seg...), 1, 2, 3))
	if err := b.Check(); err != nil || len(b.Payload()) != 29 {
		t.Errorf("trailing: %v %d", err, len(b.Payload()))
	}
	// an empty datagram
	e := UDP(mustHex("a460 0035 0008 0000"))
	if err := e.Check(); err != nil || len(e.Payload()) != 0 {
		t.Errorf("empty: %v", err)
	}
}

func TestUDPEmit(t *testing.T) {
	_, seg := l4Of(frameDNSQuery)
	buf := filled(40)
	UDP(buf).Encode(&udpDNSFields)
	if !bytes.Equal(buf[:8], seg[:8]) {
		t.Errorf("header % x", buf[:8])
	}
	if i := firstWritten(buf, 8); i >= 0 {
		t.Errorf("byte %d written beyond the header", i)
	}
}

func callUDPAccessors(b UDP) {
	_ = b.SrcPort()
	_ = b.DstPort()
	_ = b.Length()
	_ = b.Checksum()
	_ = b.Payload()
	_ = b.CalculateChecksum(0)
	_ = b.IsChecksumValid(0)
}
