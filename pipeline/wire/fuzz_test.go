package wire

import (
	"bytes"
	"errors"
	"testing"
)

// Fuzz targets are seeded with the captured fixtures (f.Add) and with the
// committed corpus in testdata/fuzz/FuzzParseX/. Each target runs Check and,
// when it passes, every accessor, asserting the invariants the package
// documents.

// checkParseError asserts err is a ParseError with a known reason.
func checkParseError(t *testing.T, err error) {
	t.Helper()
	var pe ParseError
	if !errors.As(err, &pe) || pe.Reason() == "unknown" {
		t.Fatalf("Check returned %v (%T)", err, err)
	}
}

func FuzzChecksum(f *testing.F) {
	for _, fr := range allFrames {
		f.Add(fr, uint16(0))
	}
	f.Add([]byte{0xff, 0xff, 0xff}, uint16(0xffff))
	f.Add([]byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, initial uint16) {
		for off := 0; off < 3 && off <= len(data); off++ {
			if got, want := Checksum(data[off:], initial), naiveChecksum(data[off:], initial); got != want {
				t.Fatalf("off %d: Checksum %#04x, naive %#04x", off, got, want)
			}
		}
	})
}

func FuzzParseEthernet(f *testing.F) {
	for _, fr := range allFrames {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b := Ethernet(data)
		if err := b.Check(); err != nil {
			checkParseError(t, err)
			if len(data) >= EthernetHeaderSize {
				t.Fatalf("refused %d bytes: %v", len(data), err)
			}
			return
		}
		f := EthernetFields{Dst: b.Dst(), Src: b.Src(), Type: b.Type()}
		if len(b.Payload()) != len(data)-EthernetHeaderSize {
			t.Fatal("payload length")
		}
		var hdr [EthernetHeaderSize]byte
		Ethernet(hdr[:]).Encode(&f)
		if !bytes.Equal(hdr[:], data[:EthernetHeaderSize]) {
			t.Fatalf("re-encoded % x, input % x", hdr, data[:EthernetHeaderSize])
		}
		_ = f.Dst.String()
		// Walk down the stack as a receive path would.
		if b.Type() == EtherTypeIPv4 {
			fuzzIPv4(t, b.Payload())
		}
	})
}

func FuzzParseIPv4(f *testing.F) {
	for _, fr := range allFrames {
		f.Add(fr[EthernetHeaderSize:])
	}
	f.Add([]byte(ipv4WithOptions()))
	f.Fuzz(fuzzIPv4)
}

func fuzzIPv4(t *testing.T, data []byte) {
	in := IPv4(data)
	if err := in.Check(); err != nil {
		checkParseError(t, err)
		return
	}
	b := IPv4(bytes.Clone(data)) // the fuzz input must not be modified
	hl := b.HeaderLength()
	if hl < IPv4MinimumSize || hl > IPv4MaximumHeaderSize || hl > len(b) || hl%4 != 0 {
		t.Fatalf("header length %d of %d", hl, len(b))
	}
	if len(b.Options()) != hl-IPv4MinimumSize {
		t.Fatalf("options %d, header %d", len(b.Options()), hl)
	}
	if len(b.Payload()) != int(b.TotalLength())-hl {
		t.Fatalf("payload %d, total %d, header %d", len(b.Payload()), b.TotalLength(), hl)
	}
	if b.Src() != [4]byte(b.SrcSlice()) || b.Dst() != [4]byte(b.DstSlice()) {
		t.Fatal("address views disagree")
	}
	if b.FragmentOffset()%8 != 0 || b.Flags() > 7 {
		t.Fatalf("flags %d offset %d", b.Flags(), b.FragmentOffset())
	}
	if b.MoreFragments() != (b.Flags()&IPv4FlagMoreFragments != 0) || b.DontFragment() != (b.Flags()&IPv4FlagDontFragment != 0) {
		t.Fatal("flag accessors disagree")
	}
	callIPv4Accessors(b)
	valid := b.IsChecksumValid()
	if valid != (b.Checksum() == b.CalculateChecksum() || ChecksumCombine(b.Checksum(), ^b.CalculateChecksum()) == 0xffff) {
		t.Fatalf("IsChecksumValid %v, stored %#04x, computed %#04x", valid, b.Checksum(), b.CalculateChecksum())
	}

	// Encode round trip: the fields re-encode to the same header, except
	// that a stored 0xffff may come back as the equivalent 0x0000.
	f := IPv4Fields{
		TOS: b.TOS(), TotalLength: b.TotalLength(), ID: b.ID(), Flags: b.Flags(),
		FragmentOffset: b.FragmentOffset(), TTL: b.TTL(), Protocol: b.Protocol(),
		Src: b.Src(), Dst: b.Dst(), Options: b.Options(),
	}
	enc := IPv4(make([]byte, hl))
	enc.Encode(&f)
	if !bytes.Equal(enc[:10], b[:10]) || !bytes.Equal(enc[12:], b[12:hl]) {
		t.Fatalf("re-encoded % x\ninput        % x", []byte(enc), b[:hl])
	}
	if valid && enc.Checksum() != b.Checksum() && !(b.Checksum() == 0xffff && enc.Checksum() == 0) {
		t.Fatalf("re-encoded checksum %#04x, valid input %#04x", enc.Checksum(), b.Checksum())
	}

	// DecTTL keeps a valid checksum valid and touches only TTL and checksum.
	before := bytes.Clone(b)
	ttl := b.TTL()
	b.DecTTL()
	if b.TTL() != ttl-1 {
		t.Fatalf("TTL %d -> %d", ttl, b.TTL())
	}
	if valid && !b.IsChecksumValid() {
		t.Fatalf("checksum invalid after DecTTL: % x", b[:hl])
	}
	if !valid && b.IsChecksumValid() {
		t.Fatal("DecTTL turned an invalid checksum valid")
	}
	for i := range before {
		if i != 8 && i != 10 && i != 11 && before[i] != b[i] {
			t.Fatalf("DecTTL changed byte %d", i)
		}
	}
	if err := b.Check(); err != nil {
		t.Fatalf("Check after DecTTL: %v", err)
	}

	switch b.Protocol() {
	case ProtocolUDP:
		fuzzUDP(t, b.Payload(), IPv4PseudoChecksum(b, uint16(len(b.Payload()))))
	case ProtocolTCP:
		fuzzTCP(t, b.Payload(), IPv4PseudoChecksum(b, uint16(len(b.Payload()))))
	case ProtocolICMP:
		fuzzICMPv4(t, b.Payload())
	}
}

func FuzzParseUDP(f *testing.F) {
	for _, fr := range [][]byte{frameDNSQuery, frameDNSResponse} {
		_, seg := l4Of(fr)
		f.Add(seg)
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzUDP(t, data, 0x1234) })
}

func fuzzUDP(t *testing.T, data []byte, pseudo uint16) {
	if err := UDP(data).Check(); err != nil {
		checkParseError(t, err)
		return
	}
	b := UDP(bytes.Clone(data))
	if len(b.Payload()) != int(b.Length())-UDPHeaderSize || int(b.Length()) > len(b) {
		t.Fatalf("payload %d, length %d, buffer %d", len(b.Payload()), b.Length(), len(b))
	}
	callUDPAccessors(b)
	var hdr [UDPHeaderSize]byte
	UDP(hdr[:]).Encode(&UDPFields{SrcPort: b.SrcPort(), DstPort: b.DstPort(), Length: b.Length(), Checksum: b.Checksum()})
	if !bytes.Equal(hdr[:], b[:UDPHeaderSize]) {
		t.Fatal("re-encoded header differs")
	}
	cs := b.CalculateChecksum(pseudo)
	if cs == 0 {
		t.Fatal("computed UDP checksum 0")
	}
	b.SetChecksum(cs)
	if !b.IsChecksumValid(pseudo) {
		t.Fatalf("checksum %#04x not valid", cs)
	}
}

func FuzzParseTCP(f *testing.F) {
	for _, fr := range [][]byte{frameTCPSyn, frameTCPSynAck} {
		_, seg := l4Of(fr)
		f.Add(seg)
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzTCP(t, data, 0x1234) })
}

func fuzzTCP(t *testing.T, data []byte, pseudo uint16) {
	if err := TCP(data).Check(); err != nil {
		checkParseError(t, err)
		return
	}
	b := TCP(bytes.Clone(data))
	off := b.DataOffset()
	if off < TCPMinimumSize || off > 60 || off > len(b) || len(b.Options()) != off-TCPMinimumSize || len(b.Payload()) != len(b)-off {
		t.Fatalf("offset %d, options %d, payload %d, buffer %d", off, len(b.Options()), len(b.Payload()), len(b))
	}
	callTCPAccessors(b)
	enc := TCP(make([]byte, off))
	enc.Encode(&TCPFields{
		SrcPort: b.SrcPort(), DstPort: b.DstPort(), Seq: b.Seq(), Ack: b.Ack(),
		Flags: b.Flags(), Window: b.Window(), Checksum: b.Checksum(),
		UrgentPointer: b.UrgentPointer(), Options: b.Options(),
	})
	if !bytes.Equal(enc[:12], b[:12]) || !bytes.Equal(enc[13:], b[13:off]) || enc[12] != b[12]&0xf0 {
		t.Fatalf("re-encoded % x\ninput        % x", []byte(enc), b[:off])
	}
	b.SetChecksum(b.CalculateChecksum(pseudo))
	if !b.IsChecksumValid(pseudo) {
		t.Fatal("computed checksum not valid")
	}
}

func FuzzParseICMPv4(f *testing.F) {
	for _, fr := range [][]byte{frameICMPEcho, frameICMPUnreach} {
		_, msg := l4Of(fr)
		f.Add(msg)
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzICMPv4(t, data) })
}

func fuzzICMPv4(t *testing.T, data []byte) {
	if err := ICMPv4(data).Check(); err != nil {
		checkParseError(t, err)
		return
	}
	b := ICMPv4(bytes.Clone(data))
	if len(b.Payload()) != len(b)-ICMPv4MinimumSize {
		t.Fatal("payload length")
	}
	callICMPv4Accessors(b)
	if b.Rest() != uint32(b.Ident())<<16|uint32(b.Seq()) || b.MTU() != b.Seq() || b.Pointer() != uint8(b.Ident()>>8) {
		t.Fatal("views of the rest word disagree")
	}
	var hdr [ICMPv4MinimumSize]byte
	ICMPv4(hdr[:]).Encode(&ICMPv4Fields{Type: b.Type(), Code: b.Code(), Rest: b.Rest()})
	if !bytes.Equal(hdr[:2], b[:2]) || !bytes.Equal(hdr[4:], b[4:8]) || hdr[2] != 0 || hdr[3] != 0 {
		t.Fatal("re-encoded header differs")
	}
	valid := b.IsChecksumValid()
	// Echo request -> reply, updated incrementally.
	old := uint16(b.Type())<<8 | uint16(b.Code())
	b.SetType(ICMPv4EchoReply)
	b.SetChecksum(ChecksumUpdate16(b.Checksum(), old, uint16(ICMPv4EchoReply)<<8|uint16(b.Code())))
	// RFC 1624 eqn. 3 cannot tell all-zero data (checksum 0xffff) from data
	// summing to 0xffff (checksum 0x0000); skip that degenerate message.
	allZero := b.Type() == 0 && b.Code() == 0 && isZero(b[4:])
	if valid && !allZero && !b.IsChecksumValid() {
		t.Fatal("incremental type change broke a valid checksum")
	}
	b.SetChecksum(b.CalculateChecksum())
	if !b.IsChecksumValid() {
		t.Fatal("computed checksum not valid")
	}
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
