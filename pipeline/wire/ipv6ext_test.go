package wire

import (
	"bytes"
	"errors"
	"testing"
)

func TestIPv6ExtDeconstruct(t *testing.T) {
	walk := func(frame []byte) (IPv6, IPv6ExtInfo) {
		t.Helper()
		b := ip6Of(frame)
		if err := b.Check(); err != nil {
			t.Fatal(err)
		}
		x, err := b.WalkExtensions(8)
		if err != nil {
			t.Fatalf("walk: %v at %d", err, x.ErrorOffset)
		}
		return b, x
	}
	tests := []struct {
		name  string
		frame []byte
		want  IPv6ExtInfo
	}{
		{"echo", frame6EchoRequest, IPv6ExtInfo{Protocol: ProtocolICMPv6, ProtocolOffset: 40, NextHeaderOffset: 6, UnfragmentableLength: 40}},
		{"MLD hop-by-hop", frame6MLDv2Report, IPv6ExtInfo{Protocol: ProtocolICMPv6, ProtocolOffset: 48, NextHeaderOffset: 40, Count: 1, HopByHop: true, UnfragmentableLength: 48}},
		// destination options without a routing header are fragmentable
		{"UDP dstopts", frame6UDPDstOpts, IPv6ExtInfo{Protocol: ProtocolUDP, ProtocolOffset: 48, NextHeaderOffset: 40, Count: 1, UnfragmentableLength: 40}},
		{"first fragment", frame6FragEcho1, IPv6ExtInfo{Protocol: ProtocolICMPv6, ProtocolOffset: 48, NextHeaderOffset: 40, Count: 1,
			Fragment: true, FragmentHeaderOffset: 40, MoreFragments: true, FragmentID: 0x09635332, UnfragmentableLength: 40}},
		{"last fragment", frame6FragEcho2, IPv6ExtInfo{Protocol: ProtocolICMPv6, ProtocolOffset: 48, NextHeaderOffset: 40, Count: 1,
			Fragment: true, FragmentHeaderOffset: 40, FragmentOffset: 1232, FragmentID: 0x09635332, UnfragmentableLength: 40}},
		{"HBH, dstopts, first fragment", frame6FragUDP1, IPv6ExtInfo{Protocol: ProtocolUDP, ProtocolOffset: 64, NextHeaderOffset: 56, Count: 3,
			HopByHop: true, Fragment: true, FragmentHeaderOffset: 56, MoreFragments: true, FragmentID: 0x567ddd1f, UnfragmentableLength: 56}},
		{"HBH, dstopts, last fragment", frame6FragUDP2, IPv6ExtInfo{Protocol: ProtocolUDP, ProtocolOffset: 64, NextHeaderOffset: 56, Count: 3,
			HopByHop: true, Fragment: true, FragmentHeaderOffset: 56, FragmentOffset: 1216, FragmentID: 0x567ddd1f, UnfragmentableLength: 56}},
	}
	for _, tt := range tests {
		_, x := walk(tt.frame)
		if x != tt.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, x, tt.want)
		}
		if x.IsFragment() != tt.want.Fragment {
			t.Errorf("%s: IsFragment %v", tt.name, x.IsFragment())
		}
	}

	// the Router Alert of the MLD report; the PadN after it is skipped
	b, _ := walk(frame6MLDv2Report)
	h := IPv6Options(b[40:])
	if err := h.Check(); err != nil || h.NextHeader() != ProtocolICMPv6 || h.HeaderLength() != 8 || len(h.Options()) != 6 {
		t.Fatalf("hop-by-hop: %v", err)
	}
	opts := collectOptions(t, h)
	if len(opts) != 1 || opts[0].Type != IPv6OptionRouterAlert || opts[0].Offset != 2 || opts[0].Action() != IPv6OptionActionSkip || opts[0].MayChange() {
		t.Fatalf("options %+v", opts)
	}
	if v, ok := opts[0].RouterAlert(); !ok || v != IPv6RouterAlertMLD {
		t.Errorf("router alert %d %v", v, ok)
	}

	// the experimental option of the destination options; Pad1s skipped
	b, x := walk(frame6UDPDstOpts)
	d := IPv6Options(b[x.NextHeaderOffset:])
	opts = collectOptions(t, d)
	if len(opts) != 1 || opts[0].Type != 0x1e || string(opts[0].Data) != "pp" || cap(opts[0].Data) != 2 || opts[0].Action() != IPv6OptionActionSkip {
		t.Fatalf("options %+v", opts)
	}
	if _, ok := opts[0].RouterAlert(); ok {
		t.Error("0x1e taken for a router alert")
	}

	// the chain of the UDP fragment: PadN only, then 0x1e, then Fragment
	b, x = walk(frame6FragUDP1)
	if opts := collectOptions(t, IPv6Options(b[40:])); len(opts) != 0 {
		t.Errorf("hop-by-hop padding yielded %+v", opts)
	}
	if opts := collectOptions(t, IPv6Options(b[48:])); len(opts) != 1 || opts[0].Type != 0x1e {
		t.Errorf("dstopts %+v", opts)
	}
	f := IPv6Fragment(b[x.FragmentHeaderOffset:])
	if err := f.Check(); err != nil || f.NextHeader() != ProtocolUDP || f.FragmentOffset() != 0 || !f.More() || f.ID() != 0x567ddd1f {
		t.Errorf("fragment %v: nh %d off %d M %v id %#x", err, f.NextHeader(), f.FragmentOffset(), f.More(), f.ID())
	}
}

func collectOptions(t *testing.T, h IPv6Options) []IPv6Option {
	t.Helper()
	var opts []IPv6Option
	it := h.Iter()
	for it.Next() {
		if it.Offset() != it.Option().Offset {
			t.Errorf("Offset %d, option at %d", it.Offset(), it.Option().Offset)
		}
		opts = append(opts, it.Option())
	}
	if err := it.Err(); err != nil {
		t.Fatalf("options: %v at %d", err, it.Offset())
	}
	return opts
}

// TestIPv6ExtReassemble puts the captured fragments back together with the
// walker's offsets and checks the upper-layer checksum of the whole.
func TestIPv6ExtReassemble(t *testing.T) {
	for _, tt := range []struct {
		name        string
		first, last []byte
		proto       uint8
		length      int
	}{
		{"echo", frame6FragEcho1, frame6FragEcho2, ProtocolICMPv6, 1308},
		{"udp", frame6FragUDP1, frame6FragUDP2, ProtocolUDP, 1308},
	} {
		var data []byte
		var unfrag IPv6
		for _, fr := range [][]byte{tt.first, tt.last} {
			b := ip6Of(fr)
			x, err := b.WalkExtensions(8)
			if err != nil || !x.IsFragment() || x.Protocol != tt.proto {
				t.Fatalf("%s: %v %+v", tt.name, err, x)
			}
			if int(x.FragmentOffset) != len(data) {
				t.Fatalf("%s: fragment at %d, have %d", tt.name, x.FragmentOffset, len(data))
			}
			if x.MoreFragments && (len(b)-x.ProtocolOffset)%8 != 0 {
				t.Fatalf("%s: fragment of %d bytes", tt.name, len(b)-x.ProtocolOffset)
			}
			data = append(data, b[x.ProtocolOffset:]...)
			unfrag = IPv6(bytes.Clone(b[:x.UnfragmentableLength]))
		}
		if len(data) != tt.length {
			t.Fatalf("%s: reassembled %d bytes", tt.name, len(data))
		}
		pseudo := IPv6PseudoChecksum(unfrag, tt.proto, uint32(len(data)))
		switch tt.proto {
		case ProtocolICMPv6:
			m := ICMPv6(data)
			if m.Check() != nil || m.Type() != ICMPv6EchoRequest || !m.IsChecksumValid(pseudo) {
				t.Errorf("%s: reassembled echo: type %d valid %v", tt.name, m.Type(), m.IsChecksumValid(pseudo))
			}
		case ProtocolUDP:
			u := UDP(data)
			if u.Check() != nil || int(u.Length()) != tt.length || !u.IsChecksumValid(pseudo) {
				t.Errorf("%s: reassembled UDP: length %d valid %v", tt.name, u.Length(), u.IsChecksumValid(pseudo))
			}
		}
	}
}

// chain6 builds an IPv6 packet from a next header value and raw extension
// headers and payload.
func chain6(nh uint8, rest ...[]byte) IPv6 {
	payload := bytes.Join(rest, nil)
	b := IPv6(make([]byte, IPv6HeaderSize+len(payload)))
	b.Encode(&IPv6Fields{PayloadLength: uint16(len(payload)), NextHeader: nh, HopLimit: 64, Src: addrHost6, Dst: addrRouter6})
	copy(b[IPv6HeaderSize:], payload)
	return b
}

// ext6 returns an 8*(1+l)-byte generic extension header.
func ext6(nh uint8, l int) []byte {
	h := make([]byte, 8*(l+1))
	h[0], h[1] = nh, uint8(l)
	return h
}

func frag6(nh uint8, off uint16, more bool, id uint32) []byte {
	h := make([]byte, IPv6FragmentSize)
	IPv6Fragment(h).Encode(&IPv6FragmentFields{NextHeader: nh, FragmentOffset: off, More: more, ID: id})
	return h
}

func TestIPv6ExtConstruct(t *testing.T) {
	// the chain of frame6FragUDP1, from Fields
	got := make([]byte, 24)
	IPv6Options(got[0:]).Encode(&IPv6OptionsFields{NextHeader: ProtocolDestOptions, Options: []byte{IPv6OptionPadN, 4, 0, 0, 0, 0}})
	IPv6Options(got[8:]).Encode(&IPv6OptionsFields{NextHeader: ProtocolFragment, Options: []byte{0x1e, 2, 'p', 'p', IPv6OptionPad1, IPv6OptionPad1}})
	IPv6Fragment(got[16:]).Encode(&IPv6FragmentFields{NextHeader: ProtocolUDP, More: true, ID: 0x567ddd1f})
	if want := frame6FragUDP1[54:78]; !bytes.Equal(got, want) {
		t.Errorf("got  % x\nwant % x", got, want)
	}
	// the MLD hop-by-hop header: Router Alert padded with a PadN of 0
	ra := IPv6RouterAlertOption(IPv6RouterAlertMLD)
	IPv6Options(got).Encode(&IPv6OptionsFields{NextHeader: ProtocolICMPv6, Options: ra[:]})
	if want := frame6MLDv2Report[54:62]; !bytes.Equal(got[:8], want) {
		t.Errorf("got  % x\nwant % x", got[:8], want)
	}
	// the last echo fragment header
	IPv6Fragment(got).Encode(&IPv6FragmentFields{NextHeader: ProtocolICMPv6, FragmentOffset: 1232, ID: 0x09635332})
	if want := frame6FragEcho2[54:62]; !bytes.Equal(got[:8], want) {
		t.Errorf("got  % x\nwant % x", got[:8], want)
	}
	// setters
	f := IPv6Fragment(make([]byte, 8))
	f.SetNextHeader(ProtocolICMPv6)
	f.SetFragmentOffset(1232+7, false) // low bits dropped
	f.SetID(0x09635332)
	if !bytes.Equal(f, frame6FragEcho2[54:62]) {
		t.Errorf("setters % x", []byte(f))
	}
	f.SetFragmentOffset(0xfff8, true)
	if f.FragmentOffset() != 0xfff8 || !f.More() || f.ID() != 0x09635332 || f.NextHeader() != ProtocolICMPv6 {
		t.Errorf("max offset % x", []byte(f))
	}

	// a long chain: HBH, dstopts, routing, fragment (atomic), dstopts, AH, TCP
	rt := ext6(ProtocolFragment, 2)
	rt[2], rt[3] = IPv6RoutingTypeSegment, 1
	ah := make([]byte, 24) // (4+2)*4
	ah[0], ah[1] = ProtocolTCP, 4
	b := chain6(ProtocolHopByHop,
		ext6(ProtocolDestOptions, 0), ext6(ProtocolRouting, 1), rt,
		frag6(ProtocolDestOptions, 0, false, 7), ext6(ProtocolAH, 0), ah, make([]byte, 20))
	x, err := b.WalkExtensions(8)
	want := IPv6ExtInfo{Protocol: ProtocolTCP, ProtocolOffset: 40 + 8 + 16 + 24 + 8 + 8 + 24, NextHeaderOffset: 104, Count: 6,
		HopByHop: true, RoutingOffset: 64, Fragment: true, FragmentHeaderOffset: 88, FragmentID: 7, UnfragmentableLength: 88}
	if err != nil || x != want {
		t.Errorf("long chain %v:\n got %+v\nwant %+v", err, x, want)
	}
	if x.IsFragment() {
		t.Error("atomic fragment taken for a fragment")
	}
	r := IPv6Routing(b[x.RoutingOffset:])
	if r.Check() != nil || r.NextHeader() != ProtocolFragment || r.HeaderLength() != 24 || r.Type() != IPv6RoutingTypeSegment || r.SegmentsLeft() != 1 || len(r.Data()) != 20 {
		t.Errorf("routing % x", []byte(r[:8]))
	}
	r.SetSegmentsLeft(0)
	if r.SegmentsLeft() != 0 {
		t.Error("SetSegmentsLeft")
	}
	// without the fragment header the unfragmentable part ends after the
	// routing header (RFC 8200 §4.5)
	b = chain6(ProtocolHopByHop, ext6(ProtocolDestOptions, 0), ext6(ProtocolRouting, 1), ext6(ProtocolDestOptions, 0), ext6(ProtocolUDP, 0), make([]byte, 8))
	if x, err := b.WalkExtensions(8); err != nil || x.UnfragmentableLength != 72 || x.ProtocolOffset != 80 || x.RoutingOffset != 64 {
		t.Errorf("unfragmentable %v %+v", err, x)
	}
	b = chain6(ProtocolHopByHop, ext6(ProtocolDestOptions, 1), ext6(ProtocolUDP, 0), make([]byte, 8))
	if x, err := b.WalkExtensions(8); err != nil || x.UnfragmentableLength != 56 || x.ProtocolOffset != 64 {
		t.Errorf("unfragmentable after HBH %v %+v", err, x)
	}
}

func TestIPv6ExtImpossibleLength(t *testing.T) {
	// every truncation of the chain of frame6FragUDP1, with PayloadLength
	// saying so
	full := ip6Of(frame6FragUDP1)
	for n := IPv6HeaderSize; n <= 64; n++ {
		b := IPv6(bytes.Clone(full[:n]))
		b.SetPayloadLength(uint16(n - IPv6HeaderSize))
		if err := b.Check(); err != nil {
			t.Fatal(err)
		}
		x, err := b.WalkExtensions(8)
		var want error = ErrIPv6ExtHeaderTruncated
		at := n &^ 7
		if n == 64 {
			want, at = nil, 0
		}
		if err != want || x.ErrorOffset != at {
			t.Errorf("len %d: %v at %d, want %v at %d", n, err, x.ErrorOffset, want, at)
		}
		// link-layer bytes beyond PayloadLength do not count
		b = IPv6(bytes.Clone(full))
		b.SetPayloadLength(uint16(n - IPv6HeaderSize))
		if _, err2 := b.WalkExtensions(8); err2 != err {
			t.Errorf("len %d with padding: %v, want %v", n, err2, err)
		}
	}
	// a header whose length byte runs past the payload: points at it
	b := chain6(ProtocolDestOptions, ext6(ProtocolUDP, 1)[:15])
	if x, err := b.WalkExtensions(8); err != ErrIPv6ExtHeaderTruncated || x.ErrorOffset != 41 {
		t.Errorf("long length: %v at %d", err, x.ErrorOffset)
	}
	// the views
	for n := 0; n < 8; n++ {
		if IPv6Fragment(frame6FragEcho2[54:54+n]).Check() != ErrTooShort ||
			IPv6Options(frame6MLDv2Report[54:54+n]).Check() != ErrTooShort ||
			IPv6Routing(frame6MLDv2Report[54:54+n]).Check() != ErrTooShort {
			t.Errorf("view of %d bytes accepted", n)
		}
	}
	h := ext6(ProtocolUDP, 1)
	for n := 8; n < 16; n++ {
		if IPv6Options(h[:n]).Check() != ErrExtHeaderTruncated || IPv6Routing(h[:n]).Check() != ErrExtHeaderTruncated {
			t.Errorf("16-byte header in %d bytes accepted", n)
		}
	}
	if IPv6Options(h).Check() != nil || IPv6Routing(h).Check() != nil || IPv6Fragment(h[:8]).Check() != nil {
		t.Error("whole headers refused")
	}
	callIPv6ExtViews(h[:8])
}

func TestIPv6ExtParse(t *testing.T) {
	tests := []struct {
		name  string
		b     IPv6
		max   int
		want  error
		at    int
		proto uint8
	}{
		{"hop-by-hop second", chain6(ProtocolDestOptions, ext6(ProtocolHopByHop, 0), ext6(ProtocolUDP, 0)), 8, ErrIPv6HopByHopNotFirst, 40, 0},
		{"hop-by-hop twice", chain6(ProtocolHopByHop, ext6(ProtocolHopByHop, 0), ext6(ProtocolUDP, 0)), 8, ErrIPv6HopByHopNotFirst, 40, 0},
		{"too many", chain6(ProtocolDestOptions, ext6(ProtocolDestOptions, 0), ext6(ProtocolDestOptions, 0), ext6(ProtocolUDP, 0)), 2, ErrIPv6TooManyExtHeaders, 48, 0},
		{"max 0", chain6(ProtocolHopByHop, ext6(ProtocolUDP, 0)), 0, ErrIPv6TooManyExtHeaders, 6, 0},
		{"max 0, none", chain6(ProtocolUDP, ext6(ProtocolUDP, 0)), 0, nil, 0, ProtocolUDP},
		{"exactly max", chain6(ProtocolDestOptions, ext6(ProtocolDestOptions, 0), ext6(ProtocolUDP, 0)), 2, nil, 0, ProtocolUDP},
		{"AH odd length", chain6(ProtocolAH, []byte{ProtocolTCP, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}), 8, ErrIPv6BadAHLength, 41, 0},
		{"AH beyond payload", chain6(ProtocolAH, []byte{ProtocolTCP, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}), 8, ErrIPv6ExtHeaderTruncated, 41, 0},
		{"duplicate fragment", chain6(ProtocolFragment, frag6(ProtocolFragment, 0, true, 1), frag6(ProtocolUDP, 0, false, 2)), 8, ErrIPv6DuplicateFragment, 40, 0},
		{"incomplete chain", chain6(ProtocolFragment, frag6(ProtocolDestOptions, 0, true, 1), ext6(ProtocolUDP, 1)[:8]), 8, ErrIPv6IncompleteHeaderChain, 0, 0},
		{"incomplete chain, short", chain6(ProtocolFragment, frag6(ProtocolRouting, 0, true, 1), make([]byte, 4)), 8, ErrIPv6IncompleteHeaderChain, 0, 0},
		{"atomic fragment, truncated", chain6(ProtocolFragment, frag6(ProtocolRouting, 0, false, 1), make([]byte, 4)), 8, ErrIPv6ExtHeaderTruncated, 48, 0},
		{"later fragment stops", chain6(ProtocolFragment, frag6(ProtocolHopByHop, 8, true, 1), make([]byte, 3)), 8, nil, 0, ProtocolHopByHop},
		{"ESP stops", chain6(ProtocolDestOptions, ext6(ProtocolESP, 0), make([]byte, 3)), 8, nil, 0, ProtocolESP},
		{"no next header", chain6(ProtocolNoNextHeader), 8, nil, 0, ProtocolNoNextHeader},
		{"unknown header is upper layer", chain6(135, make([]byte, 8)), 8, nil, 0, 135},
		{"upper layer at the end", chain6(ProtocolDestOptions, ext6(ProtocolTCP, 0)), 8, nil, 0, ProtocolTCP},
	}
	for _, tt := range tests {
		if err := tt.b.Check(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		x, err := tt.b.WalkExtensions(tt.max)
		if err != tt.want || (err != nil && x.ErrorOffset != tt.at) || (err == nil && x.Protocol != tt.proto) {
			t.Errorf("%s: %v at %d proto %d, want %v at %d proto %d", tt.name, err, x.ErrorOffset, x.Protocol, tt.want, tt.at, tt.proto)
		}
		if err == nil && (x.ProtocolOffset > len(tt.b) || tt.b[x.NextHeaderOffset] != x.Protocol) {
			t.Errorf("%s: protocol offset %d, next header at %d", tt.name, x.ProtocolOffset, x.NextHeaderOffset)
		}
	}
}

func TestIPv6ExtEmit(t *testing.T) {
	for n := 0; n <= 14; n++ {
		opts := bytes.Repeat([]byte{0x3e}, n) // content does not matter here
		hl := IPv6OptionsSize(n)
		if hl%8 != 0 || hl < 2+n || hl >= 2+n+8 {
			t.Fatalf("IPv6OptionsSize(%d) = %d", n, hl)
		}
		buf := filled(40)
		IPv6Options(buf).Encode(&IPv6OptionsFields{NextHeader: ProtocolUDP, Options: opts})
		if i := firstWritten(buf, hl); i >= 0 {
			t.Errorf("%d: byte %d written beyond the %d-byte header", n, i, hl)
		}
		h := IPv6Options(buf)
		if h.Check() != nil || h.HeaderLength() != hl || h.NextHeader() != ProtocolUDP || !bytes.Equal(h.Options()[:n], opts) {
			t.Errorf("%d: % x", n, buf[:hl])
		}
		switch pad := buf[2+n : hl]; len(pad) {
		case 0:
		case 1:
			if pad[0] != IPv6OptionPad1 {
				t.Errorf("%d: pad % x", n, pad)
			}
		default:
			if pad[0] != IPv6OptionPadN || int(pad[1]) != len(pad)-2 || !isZero(pad[2:]) {
				t.Errorf("%d: pad % x", n, pad)
			}
		}
	}
	// a router alert pads to exactly 8 bytes and iterates back
	ra := IPv6RouterAlertOption(IPv6RouterAlertRSVP)
	buf := filled(16)
	IPv6Options(buf).Encode(&IPv6OptionsFields{NextHeader: ProtocolICMPv6, Options: ra[:]})
	if i := firstWritten(buf, 8); i >= 0 {
		t.Errorf("byte %d written", i)
	}
	if opts := collectOptions(t, IPv6Options(buf)); len(opts) != 1 {
		t.Errorf("%+v", opts)
	} else if v, ok := opts[0].RouterAlert(); !ok || v != IPv6RouterAlertRSVP {
		t.Errorf("router alert %d %v", v, ok)
	}
	// fragment header
	buf = filled(16)
	IPv6Fragment(buf).Encode(&IPv6FragmentFields{NextHeader: ProtocolUDP, FragmentOffset: 1216 + 3, ID: 0x567ddd1f})
	if i := firstWritten(buf, 8); i >= 0 || !bytes.Equal(buf[:8], frame6FragUDP2[70:78]) {
		t.Errorf("fragment % x (%d)", buf[:8], i)
	}
	defer func() {
		if recover() == nil {
			t.Error("2047 bytes of options: no panic")
		}
	}()
	IPv6Options(make([]byte, 4096)).Encode(&IPv6OptionsFields{Options: make([]byte, 2047)})
}

func TestIPv6OptionIter(t *testing.T) {
	mk := func(opts ...byte) IPv6Options {
		h := append([]byte{ProtocolUDP, uint8((2+len(opts))/8 - 1)}, opts...)
		if len(h)%8 != 0 {
			panic("not a multiple of 8")
		}
		return IPv6Options(h)
	}
	// actions and the may-change bit of unknown types
	h := mk(0x1e, 0, 0x5e, 0, 0x9e, 0, 0xde, 0, 0x3e, 0, 0, 0, 0, 0)
	opts := collectOptions(t, h)
	if len(opts) != 5 {
		t.Fatalf("%+v", opts)
	}
	for i, want := range []uint8{IPv6OptionActionSkip, IPv6OptionActionDiscard, IPv6OptionActionDiscardICMP, IPv6OptionActionDiscardICMPUnicast, IPv6OptionActionSkip} {
		if opts[i].Action() != want || opts[i].Offset != 2+2*i || len(opts[i].Data) != 0 {
			t.Errorf("option %d: %+v action %d", i, opts[i], opts[i].Action())
		}
	}
	if opts[0].MayChange() || !opts[4].MayChange() {
		t.Error("MayChange")
	}
	// malformed: the length of the second option runs past the header
	for _, tt := range []struct {
		h  IPv6Options
		at int
	}{
		{mk(0x1e, 0, 0x1e, 5, 0, 0), 4},
		{mk(0, 0, 0, 0, 0, 0x1e), 7}, // no length byte
		{mk(1, 5, 0, 0, 0, 0), 2},    // PadN past the end
		{mk(5, 2, 0, 0, 0x1e, 1), 6},
	} {
		it := tt.h.Iter()
		for it.Next() {
		}
		if it.Err() != ErrIPv6ExtHeaderTruncated || it.Offset() != tt.at {
			t.Errorf("% x: %v at %d, want at %d", []byte(tt.h), it.Err(), it.Offset(), tt.at)
		}
		if it.Next() {
			t.Error("Next after an error")
		}
	}
	// a malformed router alert is not one
	if _, ok := (IPv6Option{Type: IPv6OptionRouterAlert, Data: []byte{0}}).RouterAlert(); ok {
		t.Error("1-byte router alert")
	}
	// the options stop at the header length, not at the end of the slice
	h = append(mk(0, 0, 0, 0, 0, 0), 0x1e, 200)
	if opts := collectOptions(t, h); len(opts) != 0 {
		t.Errorf("%+v", opts)
	}
}

func TestIPv6Error(t *testing.T) {
	seen := map[string]bool{}
	for e := IPv6Error(1); e < numIPv6Errors; e++ {
		if e.Reason() == "unknown" || seen[e.Reason()] || seen[e.Error()] {
			t.Errorf("%d: reason %q", e, e.Reason())
		}
		seen[e.Reason()], seen[e.Error()] = true, true
		if e.Error() != "wire: "+e.String() {
			t.Errorf("%d: Error %q String %q", e, e.Error(), e.String())
		}
	}
	for _, e := range []IPv6Error{0, numIPv6Errors, 255} {
		if e.Reason() != "unknown" {
			t.Errorf("%d: %q", e, e.Reason())
		}
		if _, ok := e.ParamProblemCode(); ok {
			t.Errorf("%d: param problem", e)
		}
	}
	for e, want := range map[IPv6Error]int{
		ErrIPv6HopByHopNotFirst:      ICMPv6UnrecognizedNextHeader,
		ErrIPv6IncompleteHeaderChain: ICMPv6IncompleteHeaderChain,
		ErrIPv6BadAHLength:           ICMPv6ErroneousHeader,
		ErrIPv6TooManyExtHeaders:     -1,
		ErrIPv6ExtHeaderTruncated:    -1,
		ErrIPv6DuplicateFragment:     -1,
		ErrNDPOptionZeroLength:       -1,
		ErrNDPOptionTruncated:        -1,
	} {
		c, ok := e.ParamProblemCode()
		if ok != (want >= 0) || (ok && int(c) != want) {
			t.Errorf("%v: code %d %v, want %d", e, c, ok, want)
		}
	}
	_, err := chain6(ProtocolDestOptions, ext6(ProtocolHopByHop, 0)).WalkExtensions(8)
	var ie IPv6Error
	if !errors.As(err, &ie) || ie != ErrIPv6HopByHopNotFirst || !errors.Is(err, ErrIPv6HopByHopNotFirst) {
		t.Errorf("errors.As/Is: %v", err)
	}
}

// callIPv6ExtViews calls every accessor of the extension header views on b,
// which passed each view's Check.
func callIPv6ExtViews(b []byte) {
	f := IPv6Fragment(b)
	_, _, _, _ = f.NextHeader(), f.FragmentOffset(), f.More(), f.ID()
	o := IPv6Options(b)
	_, _, _ = o.NextHeader(), o.HeaderLength(), o.Options()
	it := o.Iter()
	for it.Next() {
		opt := it.Option()
		_, _ = opt.RouterAlert()
		_, _ = opt.Action(), opt.MayChange()
	}
	_, _ = it.Err(), it.Offset()
	r := IPv6Routing(b)
	_, _, _, _, _ = r.NextHeader(), r.HeaderLength(), r.Type(), r.SegmentsLeft(), r.Data()
}
