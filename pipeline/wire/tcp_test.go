package wire

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

var tcpSynOptions = mustHex("0204 0550 0402 080a 97d9 585a 0000 0000 0103 030a")

var tcpSynFields = TCPFields{
	SrcPort: 48328, DstPort: 443,
	Seq: 0x0020eff1, Ack: 0,
	Flags:    TCPFlagSyn,
	Window:   0xff00,
	Checksum: 0xac43,
	Options:  tcpSynOptions,
}

func TestTCPDeconstruct(t *testing.T) {
	ip, seg := l4Of(frameTCPSyn)
	b := TCP(seg)
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
	if b.SrcPort() != 48328 || b.DstPort() != 443 {
		t.Errorf("ports %d->%d", b.SrcPort(), b.DstPort())
	}
	if b.Seq() != 0x0020eff1 || b.Ack() != 0 {
		t.Errorf("seq %#x ack %#x", b.Seq(), b.Ack())
	}
	if b.DataOffset() != 40 || b.Flags() != TCPFlagSyn || b.Window() != 65280 {
		t.Errorf("offset %d flags %#x window %d", b.DataOffset(), b.Flags(), b.Window())
	}
	if b.Checksum() != 0xac43 || b.UrgentPointer() != 0 {
		t.Errorf("checksum %#04x urg %d", b.Checksum(), b.UrgentPointer())
	}
	if !bytes.Equal(b.Options(), tcpSynOptions) || len(b.Payload()) != 0 {
		t.Errorf("options % x payload %d", b.Options(), len(b.Payload()))
	}
	pseudo := IPv4PseudoChecksum(ip, uint16(len(b)))
	if b.CalculateChecksum(pseudo) != 0xac43 || !b.IsChecksumValid(pseudo) {
		t.Errorf("checksum %#04x", b.CalculateChecksum(pseudo))
	}

	ip, seg = l4Of(frameTCPSynAck)
	a := TCP(seg)
	if err := a.Check(); err != nil {
		t.Fatal(err)
	}
	if a.Flags() != TCPFlagSyn|TCPFlagAck || a.Ack() != b.Seq()+1 || a.Seq() != 0xfaf1bbc1 || a.Window() != 65160 {
		t.Errorf("synack flags %#x seq %#x ack %#x window %d", a.Flags(), a.Seq(), a.Ack(), a.Window())
	}
	if !a.IsChecksumValid(IPv4PseudoChecksum(ip, uint16(len(a)))) {
		t.Error("synack checksum")
	}
	a.SetWindow(1)
	if a.IsChecksumValid(IPv4PseudoChecksum(ip, uint16(len(a)))) {
		t.Error("modified segment still valid")
	}
}

func TestTCPFlags(t *testing.T) {
	want := []uint8{0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80}
	got := []uint8{TCPFlagFin, TCPFlagSyn, TCPFlagRst, TCPFlagPsh, TCPFlagAck, TCPFlagUrg, TCPFlagEce, TCPFlagCwr}
	if !bytes.Equal(got, want) {
		t.Errorf("flags % x", got)
	}
}

func TestTCPConstruct(t *testing.T) {
	_, seg := l4Of(frameTCPSyn)
	b := TCP(make([]byte, 40))
	b.Encode(&tcpSynFields)
	if !bytes.Equal(b, seg) {
		t.Errorf("got  % x\nwant % x", []byte(b), seg)
	}
	// zero checksum, then computed
	ip, _ := l4Of(frameTCPSyn)
	f := tcpSynFields
	f.Checksum = 0
	c := TCP(make([]byte, 40))
	c.Encode(&f)
	c.SetChecksum(c.CalculateChecksum(IPv4PseudoChecksum(ip, 40)))
	if !bytes.Equal(c, seg) {
		t.Errorf("computed % x", []byte(c))
	}
	// setters
	d := TCP(make([]byte, 40))
	d.Encode(&TCPFields{Options: tcpSynOptions})
	d.SetSrcPort(48328)
	d.SetDstPort(443)
	d.SetSeq(0x0020eff1)
	d.SetAck(0)
	d.SetFlags(TCPFlagSyn)
	d.SetWindow(0xff00)
	d.SetChecksum(0xac43)
	if !bytes.Equal(d, seg) {
		t.Errorf("setters % x", []byte(d))
	}
}

func TestTCPImpossibleLength(t *testing.T) {
	_, seg := l4Of(frameTCPSyn)
	for n := 0; n < len(seg); n++ {
		want := ErrBadDataOffset
		if n < 20 {
			want = ErrTooShort
		}
		if err := TCP(seg[:n]).Check(); err != want {
			t.Errorf("len %d: %v, want %v", n, err, want)
		}
	}
	for off := 0; off < 16; off++ {
		b := TCP(append([]byte(nil), seg...))
		b[12] = byte(off<<4) | b[12]&0x0f
		err := b.Check()
		switch {
		case off < 5 || off*4 > len(b):
			if err != ErrBadDataOffset {
				t.Errorf("offset %d: %v", off, err)
			}
		default:
			if err != nil {
				t.Errorf("offset %d: %v", off, err)
			}
			callTCPAccessors(b)
		}
	}
}

func TestTCPParse(t *testing.T) {
	for _, f := range [][]byte{frameTCPSyn, frameTCPSynAck} {
		_, seg := l4Of(f)
		if err := TCP(seg).Check(); err != nil {
			t.Error(err)
		}
	}
	// no options, with payload
	b := TCP(make([]byte, 25))
	b.Encode(&TCPFields{SrcPort: 1, DstPort: 2, Flags: TCPFlagAck | TCPFlagPsh, Window: 512})
	copy(b[20:], "hello")
	if err := b.Check(); err != nil || string(b.Payload()) != "hello" || len(b.Options()) != 0 {
		t.Errorf("plain: %v %q", err, b.Payload())
	}
	// garbage options (an option length running past the header) are not interpreted
	_, seg := l4Of(frameTCPSyn)
	g := TCP(append([]byte(nil), seg...))
	g[20], g[21] = 0x02, 0xff
	if err := g.Check(); err != nil {
		t.Error(err)
	}
	callTCPAccessors(g)
}

func TestTCPEmit(t *testing.T) {
	for _, opts := range [][]byte{nil, tcpSynOptions, {0x03, 0x03, 0x07}, {0x02, 0x04, 0x05, 0xb4, 0x01}} {
		f := tcpSynFields
		f.Options = opts
		off := 20 + (len(opts)+3)&^3
		buf := filled(80)
		TCP(buf).Encode(&f)
		if i := firstWritten(buf, off); i >= 0 {
			t.Errorf("options %d: byte %d written beyond the %d-byte header", len(opts), i, off)
		}
		b := TCP(buf)
		if b.DataOffset() != off || !bytes.Equal(b.Options()[:len(opts)], opts) {
			t.Errorf("options %d: offset %d", len(opts), b.DataOffset())
		}
		for i := 20 + len(opts); i < off; i++ {
			if buf[i] != 0 {
				t.Errorf("options %d: pad byte %d = %#x", len(opts), i, buf[i])
			}
		}
		if b.Seq() != f.Seq || b.Flags() != f.Flags || b.Checksum() != f.Checksum {
			t.Errorf("options %d: fields", len(opts))
		}
	}
}

func callTCPAccessors(b TCP) {
	_ = b.SrcPort()
	_ = b.DstPort()
	_ = b.Seq()
	_ = b.Ack()
	_ = b.DataOffset()
	_ = b.Flags()
	_ = b.Window()
	_ = b.Checksum()
	_ = b.UrgentPointer()
	_ = b.Options()
	_ = b.Payload()
	_ = b.CalculateChecksum(0)
	_ = b.IsChecksumValid(0)
}

// TestTCPCalculateChecksumPayload: with the payload's sum given, the
// header-only sum equals CalculateChecksum over the whole segment, for
// random headers (0..40 bytes of options), payloads (odd lengths and
// all-0xff ones included) and pseudo-header sums.
func TestTCPCalculateChecksumPayload(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	buf := make([]byte, 60+3000)
	for i := 0; i < 20000; i++ {
		opts := make([]byte, 4*r.IntN(11))
		fillPattern(r, opts, 0)
		hl := TCPMinimumSize + len(opts)
		n := r.IntN(3000)
		if i%10 == 0 {
			n = r.IntN(8)
		}
		seg := TCP(buf[:hl+n])
		fillPattern(r, seg[hl:], i%3)
		seg.Encode(&TCPFields{SrcPort: uint16(r.Uint32()), DstPort: uint16(r.Uint32()), Seq: r.Uint32(), Ack: r.Uint32(),
			Flags: uint8(r.Uint32()), Window: uint16(r.Uint32()), Options: opts})
		pseudo := uint16(r.Uint32())
		if got, want := seg.CalculateChecksumPayload(pseudo, Checksum(seg[hl:], 0)), seg.CalculateChecksum(pseudo); got != want {
			t.Fatalf("hl %d payload %d pseudo %#04x: %#04x, CalculateChecksum %#04x", hl, n, pseudo, got, want)
		}
	}
}
