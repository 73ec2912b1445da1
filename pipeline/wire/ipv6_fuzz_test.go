package wire

import (
	"bytes"
	"errors"
	"testing"
)

// checkIPv6Error asserts err is an IPv6Error with a known reason.
func checkIPv6Error(t *testing.T, err error) {
	t.Helper()
	var e IPv6Error
	if !errors.As(err, &e) || e.Reason() == "unknown" {
		t.Fatalf("returned %v (%T)", err, err)
	}
}

// fuzzChains6 are synthetic extension header chains for the seeds.
func fuzzChains6() []IPv6 {
	rt := ext6(ProtocolFragment, 2)
	rt[2], rt[3] = IPv6RoutingTypeSegment, 1
	ah := make([]byte, 16)
	ah[0], ah[1] = ProtocolUDP, 2
	return []IPv6{
		chain6(ProtocolHopByHop, ext6(ProtocolDestOptions, 0), ext6(ProtocolRouting, 1), rt,
			frag6(ProtocolAH, 0, false, 7), ah, make([]byte, 12)),
		chain6(ProtocolDestOptions, ext6(ProtocolHopByHop, 0), ext6(ProtocolUDP, 0)),
		chain6(ProtocolFragment, frag6(ProtocolDestOptions, 0, true, 1), ext6(ProtocolUDP, 1)[:8]),
		chain6(ProtocolFragment, frag6(ProtocolHopByHop, 8, true, 1), make([]byte, 3)),
	}
}

func FuzzParseIPv6(f *testing.F) {
	for _, fr := range allFrames6 {
		f.Add(fr[EthernetHeaderSize:])
	}
	for _, b := range fuzzChains6() {
		f.Add([]byte(b))
	}
	f.Fuzz(fuzzIPv6)
}

func fuzzIPv6(t *testing.T, data []byte) {
	if err := IPv6(data).Check(); err != nil {
		checkParseError(t, err)
		if len(data) >= IPv6HeaderSize && data[0]>>4 == 6 && IPv6HeaderSize+int(IPv6(data).PayloadLength()) <= len(data) {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	b := IPv6(bytes.Clone(data))
	end := IPv6HeaderSize + int(b.PayloadLength())
	if len(b.Payload()) != int(b.PayloadLength()) || end > len(b) {
		t.Fatalf("payload %d, length %d", len(b.Payload()), b.PayloadLength())
	}
	if b.Src() != [16]byte(b.SrcSlice()) || b.Dst() != [16]byte(b.DstSlice()) || b.FlowLabel() > 0xfffff {
		t.Fatal("address views or flow label")
	}
	callIPv6Accessors(b)
	var hdr [IPv6HeaderSize]byte
	IPv6(hdr[:]).Encode(&IPv6Fields{
		TrafficClass: b.TrafficClass(), FlowLabel: b.FlowLabel(), PayloadLength: b.PayloadLength(),
		NextHeader: b.NextHeader(), HopLimit: b.HopLimit(), Src: b.Src(), Dst: b.Dst(),
	})
	if !bytes.Equal(hdr[:], b[:IPv6HeaderSize]) {
		t.Fatalf("re-encoded % x\ninput        % x", hdr, b[:IPv6HeaderSize])
	}
	before := bytes.Clone(b)
	b.DecHopLimit()
	if b.HopLimit() != before[7]-1 || !bytes.Equal(b[:7], before[:7]) || !bytes.Equal(b[8:], before[8:]) {
		t.Fatal("DecHopLimit")
	}
	b.SetHopLimit(before[7])

	x, err := b.WalkExtensions(8)
	if err != nil {
		checkIPv6Error(t, err)
		if x.ErrorOffset < 0 || x.ErrorOffset > end {
			t.Fatalf("%v at %d of %d", err, x.ErrorOffset, end)
		}
		if x.Count > 8 {
			t.Fatalf("%d headers walked", x.Count)
		}
		return
	}
	if x.ProtocolOffset < IPv6HeaderSize || x.ProtocolOffset > end || b[x.NextHeaderOffset] != x.Protocol || x.NextHeaderOffset >= x.ProtocolOffset {
		t.Fatalf("info %+v of %d", x, end)
	}
	if x.Count > 8 || (x.Count == 0) != (x.ProtocolOffset == IPv6HeaderSize) || x.ErrorOffset != 0 {
		t.Fatalf("info %+v", x)
	}
	if x.UnfragmentableLength < IPv6HeaderSize || x.UnfragmentableLength > x.ProtocolOffset || x.UnfragmentableLength%8 != 0 {
		t.Fatalf("unfragmentable %d, protocol at %d", x.UnfragmentableLength, x.ProtocolOffset)
	}
	if x.HopByHop != (b.NextHeader() == ProtocolHopByHop) {
		t.Fatal("hop-by-hop")
	}
	if x.HopByHop {
		h := IPv6Options(b[IPv6HeaderSize:end])
		if err := h.Check(); err != nil {
			t.Fatalf("hop-by-hop walked but %v", err)
		}
		fuzzOptionsIter(t, h)
	}
	if x.RoutingOffset != 0 {
		r := IPv6Routing(b[x.RoutingOffset:end])
		if err := r.Check(); err != nil || x.RoutingOffset+r.HeaderLength() > x.ProtocolOffset {
			t.Fatalf("routing walked but %v", err)
		}
		callIPv6ExtViews(r[:8])
		_ = r.Data()
	}
	if x.Fragment {
		fr := IPv6Fragment(b[x.FragmentHeaderOffset:end])
		if fr.Check() != nil || fr.FragmentOffset() != x.FragmentOffset || fr.More() != x.MoreFragments || fr.ID() != x.FragmentID ||
			x.UnfragmentableLength != x.FragmentHeaderOffset {
			t.Fatalf("fragment %+v", x)
		}
		var enc [IPv6FragmentSize]byte
		IPv6Fragment(enc[:]).Encode(&IPv6FragmentFields{NextHeader: fr.NextHeader(), FragmentOffset: fr.FragmentOffset(), More: fr.More(), ID: fr.ID()})
		if enc[0] != fr[0] || enc[2] != fr[2] || enc[3] != fr[3]&^6 || !bytes.Equal(enc[4:], fr[4:8]) {
			t.Fatalf("fragment re-encoded % x, input % x", enc, fr[:8])
		}
	}
	if x.Count > 0 {
		// the last header walked, whatever it is, is safe to view
		h := IPv6Options(b[x.NextHeaderOffset:end])
		if h.Check() == nil {
			fuzzOptionsIter(t, h)
		}
	}
	// a tighter limit fails exactly when fewer headers are allowed
	for max := 0; max <= x.Count; max++ {
		y, err := b.WalkExtensions(max)
		if max < x.Count && err != ErrIPv6TooManyExtHeaders {
			t.Fatalf("max %d of %d: %v", max, x.Count, err)
		}
		if max == x.Count && (err != nil || y != x) {
			t.Fatalf("max %d: %v %+v", max, err, y)
		}
	}
	if x.IsFragment() {
		return
	}
	upper := b[x.ProtocolOffset:end]
	pseudo := IPv6PseudoChecksum(b, x.Protocol, uint32(len(upper)))
	switch x.Protocol {
	case ProtocolICMPv6:
		fuzzICMPv6(t, upper, pseudo)
	case ProtocolUDP:
		fuzzUDP(t, upper, pseudo)
	case ProtocolTCP:
		fuzzTCP(t, upper, pseudo)
	}
}

// fuzzOptionsIter walks the options of h, which passed Check.
func fuzzOptionsIter(t *testing.T, h IPv6Options) {
	t.Helper()
	hl := h.HeaderLength()
	if len(h.Options()) != hl-2 {
		t.Fatal("options length")
	}
	last := 1
	it := h.Iter()
	for it.Next() {
		o := it.Option()
		if o.Type == IPv6OptionPad1 || o.Type == IPv6OptionPadN {
			t.Fatal("padding yielded")
		}
		if o.Offset <= last || o.Offset+2+len(o.Data) > hl || it.Offset() != o.Offset || o.Action() > 3 {
			t.Fatalf("option at %d (after %d), %d bytes, header %d", o.Offset, last, len(o.Data), hl)
		}
		if !bytes.Equal(o.Data, h[o.Offset+2:o.Offset+2+len(o.Data)]) || h[o.Offset] != o.Type || int(h[o.Offset+1]) != len(o.Data) {
			t.Fatal("option data not in place")
		}
		if v, ok := o.RouterAlert(); ok && (o.Type != IPv6OptionRouterAlert || v != uint16(o.Data[0])<<8|uint16(o.Data[1])) {
			t.Fatal("router alert")
		}
		last = o.Offset
	}
	if err := it.Err(); err != nil {
		checkIPv6Error(t, err)
		if it.Offset() < 2 || it.Offset() >= hl {
			t.Fatalf("error at %d of %d", it.Offset(), hl)
		}
	}
	if it.Next() {
		t.Fatal("Next after the end")
	}
}

func FuzzParseICMPv6(f *testing.F) {
	for _, fr := range allFrames6 {
		ip := ip6Of(fr)
		if x, err := ip.WalkExtensions(8); err == nil && x.Protocol == ProtocolICMPv6 && !x.IsFragment() {
			// Long quotes are cut: the fuzzer minimizes every new input
			// and a 1240-byte one costs it tens of seconds.
			m := ip[x.ProtocolOffset:]
			f.Add([]byte(m[:min(len(m), 160)]))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzICMPv6(t, data, 0x1234) })
}

func fuzzICMPv6(t *testing.T, data []byte, pseudo uint16) {
	if err := ICMPv6(data).Check(); err != nil {
		checkParseError(t, err)
		if len(data) >= ICMPv6HeaderSize || (len(data) >= ICMPv6MinimumSize && !ICMPv6HasRest(data[0])) {
			t.Fatalf("refused %d bytes: %v", len(data), err)
		}
		return
	}
	b := ICMPv6(bytes.Clone(data))
	callICMPv6Accessors(b)
	if len(b.Body()) != len(b)-ICMPv6MinimumSize || len(b.Payload()) != max(0, len(b)-ICMPv6HeaderSize) {
		t.Fatal("body or payload length")
	}
	if b.Rest() != uint32(b.Ident())<<16|uint32(b.Seq()) || b.MTU() != b.Rest() || b.Pointer() != b.Rest() {
		t.Fatal("views of the rest word disagree")
	}
	if len(b) >= ICMPv6HeaderSize {
		var hdr [ICMPv6HeaderSize]byte
		ICMPv6(hdr[:]).Encode(&ICMPv6Fields{Type: b.Type(), Code: b.Code(), Rest: b.Rest()})
		if !bytes.Equal(hdr[:2], b[:2]) || !bytes.Equal(hdr[4:], b[4:8]) || hdr[2] != 0 || hdr[3] != 0 {
			t.Fatal("re-encoded header differs")
		}
	}
	valid := b.IsChecksumValid(pseudo)
	if valid != (Checksum(b, pseudo) == 0xffff) {
		t.Fatal("IsChecksumValid")
	}
	callNDPAccessors(b.Body())
	switch b.Type() {
	case ICMPv6RouterSolicitation:
		if v := NDPRouterSolicitation(b.Body()); v.Check() == nil {
			fuzzNDPOptions(t, v.Options())
		}
	case ICMPv6RouterAdvertisement:
		if v := NDPRouterAdvertisement(b.Body()); v.Check() == nil {
			fuzzNDPOptions(t, v.Options())
		}
	case ICMPv6NeighborSolicitation:
		if v := NDPNeighborSolicitation(b.Body()); v.Check() == nil {
			fuzzNDPOptions(t, v.Options())
		}
	case ICMPv6NeighborAdvertisement:
		if v := NDPNeighborAdvertisement(b.Body()); v.Check() == nil {
			fuzzNDPOptions(t, v.Options())
		}
	case ICMPv6Redirect:
		if v := NDPRedirect(b.Body()); v.Check() == nil {
			fuzzNDPOptions(t, v.Options())
		}
	}
	// echo request -> reply, updated incrementally; the pseudo-header sum
	// is never zero, so RFC 1624's one ambiguity cannot arise
	old := uint16(b.Type())<<8 | uint16(b.Code())
	b.SetType(ICMPv6EchoReply)
	b.SetChecksum(ChecksumUpdate16(b.Checksum(), old, uint16(ICMPv6EchoReply)<<8|uint16(b.Code())))
	if valid && !b.IsChecksumValid(pseudo) {
		t.Fatal("incremental type change broke a valid checksum")
	}
	b.SetChecksum(b.CalculateChecksum(pseudo))
	if !b.IsChecksumValid(pseudo) {
		t.Fatal("computed checksum not valid")
	}
}

func FuzzParseNDPOptions(f *testing.F) {
	for _, fr := range [][]byte{frame6RA, frame6RS, frame6NS, frame6NA, frame6DADNS} {
		_, m := icmp6Of(fr)
		off := NDPNeighborSolicitationSize
		switch m.Type() {
		case ICMPv6RouterSolicitation:
			off = NDPRouterSolicitationSize
		case ICMPv6RouterAdvertisement:
			off = NDPRouterAdvertisementSize
		}
		f.Add([]byte(m.Body()[off:]))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzNDPOptions(t, NDPOptions(data)) })
}

func fuzzNDPOptions(t *testing.T, o NDPOptions) {
	err := o.Check()
	if err != nil {
		checkIPv6Error(t, err)
	}
	n, total := 0, 0
	it := o.Iter()
	for it.Next() {
		opt := it.Option()
		if len(opt) < 8 || len(opt)%8 != 0 || len(opt) != int(opt[1])*8 || it.Offset() != total || !bytes.Equal(opt, o[total:total+len(opt)]) {
			t.Fatalf("option at %d: % x", total, []byte(opt))
		}
		total += len(opt)
		n++
		if len(opt.Data()) != len(opt)-2 || opt.Type() != opt[0] {
			t.Fatal("data")
		}
		var re []byte
		var mask []int // reserved bytes that re-encode as zero
		if mac, ok := opt.LinkLayerAddress(); ok {
			re = AppendNDPLinkLayerAddress(nil, opt.Type(), mac)
		} else if (opt[0] == 1 || opt[0] == 2) && len(opt) == 8 {
			t.Fatal("link-layer address refused")
		}
		if mtu, ok := opt.MTU(); ok {
			re, mask = AppendNDPMTU(nil, mtu), []int{2, 3}
		}
		if p, ok := opt.PrefixInfo(); ok {
			re = AppendNDPPrefixInfo(nil, &NDPPrefixInfoFields{
				PrefixLength: p.PrefixLength(), Flags: p.Flags(), ValidLifetime: p.ValidLifetime(),
				PreferredLifetime: p.PreferredLifetime(), Prefix: p.Prefix(),
			})
			mask = []int{12, 13, 14, 15}
			if p.OnLink() != (p.Flags()&0x80 != 0) || p.Autonomous() != (p.Flags()&0x40 != 0) {
				t.Fatal("prefix flags")
			}
		}
		if r, ok := opt.RDNSS(); ok {
			addrs := make([][16]byte, r.Count())
			for i := range addrs {
				addrs[i] = r.Address(i)
			}
			re, mask = AppendNDPRDNSS(nil, r.Lifetime(), addrs), []int{2, 3}
		}
		if q, ok := opt.RedirectedHeader(); ok && len(q) != len(opt)-8 {
			t.Fatal("redirected header")
		}
		if re != nil {
			want := bytes.Clone(opt)
			for _, i := range mask {
				want[i] = 0
			}
			if !bytes.Equal(re, want) {
				t.Fatalf("re-encoded % x\ninput        % x", re, []byte(opt))
			}
		}
	}
	if (it.Err() == nil) != (err == nil) || it.Err() != err {
		t.Fatalf("Check %v, iteration %v", err, it.Err())
	}
	if err == nil && total != len(o) {
		t.Fatalf("options cover %d of %d bytes", total, len(o))
	}
	if err != nil && (it.Offset() != total || total >= len(o)) {
		t.Fatalf("error at %d, options end at %d of %d", it.Offset(), total, len(o))
	}
	if n > 0 && o.Find(o[0]) == nil {
		t.Fatal("Find missed the first option")
	}
}
