package wire

import (
	"bytes"
	"testing"
)

var (
	macHost6   = MAC{0x02, 0x06, 0, 0, 0, 0x01}
	macRouter6 = MAC{0x02, 0x06, 0, 0, 0, 0x05}
	dns6a      = [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 15: 0x53}
	dns6b      = [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 15: 0x54}
	prefix6    = [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1}
)

var raFields = NDPRouterAdvertisementFields{
	CurHopLimit: 64, Flags: NDPRAOtherConfig, RouterLifetime: 1800,
	ReachableTime: 30000, RetransTimer: 1000,
}

var raPrefixFields = NDPPrefixInfoFields{
	PrefixLength: 64, Flags: NDPPrefixOnLink | NDPPrefixAutonomous,
	ValidLifetime: 86400, PreferredLifetime: 14400, Prefix: prefix6,
}

// ndpOf returns the ICMPv6 message of an NDP fixture, its IPv6 packet, and
// checks that it arrived as RFC 4861 asks (hop limit 255, code 0).
func ndpOf(t *testing.T, frame []byte, typ uint8) (IPv6, ICMPv6) {
	t.Helper()
	ip, m := icmp6Of(frame)
	if err := m.Check(); err != nil || m.Type() != typ || m.Code() != 0 || ip.HopLimit() != 255 || !m.IsChecksumValid(icmp6Pseudo(ip, m)) {
		t.Fatalf("type %d (want %d) code %d hop limit %d: %v", m.Type(), typ, m.Code(), ip.HopLimit(), err)
	}
	return ip, m
}

func optionsOf(t *testing.T, o NDPOptions) []NDPOption {
	t.Helper()
	if err := o.Check(); err != nil {
		t.Fatalf("options: %v", err)
	}
	var opts []NDPOption
	it := o.Iter()
	for it.Next() {
		opts = append(opts, it.Option())
	}
	if it.Err() != nil {
		t.Fatal(it.Err())
	}
	return opts
}

func TestNDPDeconstruct(t *testing.T) {
	// router advertisement from radvd
	_, m := ndpOf(t, frame6RA, ICMPv6RouterAdvertisement)
	ra := NDPRouterAdvertisement(m.Body())
	if err := ra.Check(); err != nil {
		t.Fatal(err)
	}
	if ra.CurHopLimit() != 64 || ra.Flags() != NDPRAOtherConfig || ra.Managed() || !ra.OtherConfig() ||
		ra.RouterLifetime() != 1800 || ra.ReachableTime() != 30000 || ra.RetransTimer() != 1000 {
		t.Errorf("RA % x", []byte(ra[:12]))
	}
	opts := optionsOf(t, ra.Options())
	if len(opts) != 4 {
		t.Fatalf("%d options", len(opts))
	}
	pi, ok := opts[0].PrefixInfo()
	if !ok || pi.PrefixLength() != 64 || !pi.OnLink() || !pi.Autonomous() || pi.Flags() != 0xc0 ||
		pi.ValidLifetime() != 86400 || pi.PreferredLifetime() != 14400 || pi.Prefix() != prefix6 {
		t.Errorf("prefix % x", []byte(opts[0]))
	}
	rd, ok := opts[1].RDNSS()
	if !ok || rd.Lifetime() != 600 || rd.Count() != 2 || rd.Address(0) != dns6a || rd.Address(1) != dns6b {
		t.Errorf("RDNSS % x", []byte(opts[1]))
	}
	if mtu, ok := opts[2].MTU(); !ok || mtu != 1500 {
		t.Errorf("MTU %d %v", mtu, ok)
	}
	if mac, ok := opts[3].LinkLayerAddress(); !ok || mac != macRouter6 || opts[3].Type() != NDPOptionSourceLinkLayerAddress {
		t.Errorf("SLLA %v %v", mac, ok)
	}
	// each typed accessor refuses the other options
	for i, o := range opts {
		_, a := o.PrefixInfo()
		_, b := o.RDNSS()
		_, c := o.MTU()
		_, d := o.LinkLayerAddress()
		_, e := o.RedirectedHeader()
		if n := btoi(a) + btoi(b) + btoi(c) + btoi(d) + btoi(e); n != 1 {
			t.Errorf("option %d taken for %d kinds", i, n)
		}
	}
	if mac, ok := ra.Options().Find(NDPOptionSourceLinkLayerAddress).LinkLayerAddress(); !ok || mac != macRouter6 {
		t.Errorf("Find SLLA %v", mac)
	}
	if ra.Options().Find(NDPOptionTargetLinkLayerAddress) != nil {
		t.Error("Find TLLA")
	}

	// router solicitation with the host's address
	_, m = ndpOf(t, frame6RS, ICMPv6RouterSolicitation)
	rs := NDPRouterSolicitation(m.Body())
	if err := rs.Check(); err != nil {
		t.Fatal(err)
	}
	if opts := optionsOf(t, rs.Options()); len(opts) != 1 || opts[0].Type() != NDPOptionSourceLinkLayerAddress {
		t.Errorf("RS options %d", len(opts))
	} else if mac, _ := opts[0].LinkLayerAddress(); mac != macHost6 {
		t.Errorf("RS SLLA %v", mac)
	}

	// address resolution
	_, m = ndpOf(t, frame6NS, ICMPv6NeighborSolicitation)
	ns := NDPNeighborSolicitation(m.Body())
	if ns.Check() != nil || ns.Target() != addrRouter6 || [16]byte(ns.TargetSlice()) != addrRouter6 || cap(ns.TargetSlice()) != 16 {
		t.Errorf("NS target % x", ns.Target())
	}
	if mac, ok := ns.Options().Find(NDPOptionSourceLinkLayerAddress).LinkLayerAddress(); !ok || mac != macHost6 {
		t.Errorf("NS SLLA %v", mac)
	}
	_, m = ndpOf(t, frame6NA, ICMPv6NeighborAdvertisement)
	na := NDPNeighborAdvertisement(m.Body())
	if na.Check() != nil || na.Flags() != 0xe0 || !na.Router() || !na.Solicited() || !na.Override() || na.Target() != addrRouter6 {
		t.Errorf("NA flags %#x target % x", na.Flags(), na.Target())
	}
	if opts := optionsOf(t, na.Options()); len(opts) != 1 || opts[0].Type() != NDPOptionTargetLinkLayerAddress {
		t.Errorf("NA options %d", len(opts))
	} else if mac, _ := opts[0].LinkLayerAddress(); mac != macRouter6 {
		t.Errorf("NA TLLA %v", mac)
	}
	_, m = ndpOf(t, frame6NAProbeReply, ICMPv6NeighborAdvertisement)
	na = NDPNeighborAdvertisement(m.Body())
	if na.Router() || !na.Solicited() || na.Override() || na.Target() != addrHost6 || len(optionsOf(t, na.Options())) != 0 {
		t.Errorf("probe reply flags %#x", na.Flags())
	}

	// duplicate address detection: unspecified source, a nonce option
	ip, m := ndpOf(t, frame6DADNS, ICMPv6NeighborSolicitation)
	ns = NDPNeighborSolicitation(m.Body())
	if ip.Src() != [16]byte{} || ns.Target() != ip6Of(frame6RS).Src() {
		t.Errorf("DAD target % x", ns.Target())
	}
	if opts := optionsOf(t, ns.Options()); len(opts) != 1 || opts[0].Type() != 14 || len(opts[0].Data()) != 6 {
		t.Errorf("DAD options %v", opts)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestNDPConstruct(t *testing.T) {
	// the router advertisement radvd sent, message and checksum
	ip, want := icmp6Of(frame6RA)
	b := ICMPv6(make([]byte, ICMPv6MinimumSize+NDPRouterAdvertisementSize, 200))
	b.Encode(&ICMPv6Fields{Type: ICMPv6RouterAdvertisement})
	NDPRouterAdvertisement(b.Body()).Encode(&raFields)
	opts := []byte(b)
	opts = AppendNDPPrefixInfo(opts, &raPrefixFields)
	opts = AppendNDPRDNSS(opts, 600, [][16]byte{dns6a, dns6b})
	opts = AppendNDPMTU(opts, 1500)
	opts = AppendNDPLinkLayerAddress(opts, NDPOptionSourceLinkLayerAddress, macRouter6)
	b = ICMPv6(opts)
	b.SetChecksum(b.CalculateChecksum(icmp6Pseudo(ip, b)))
	if !bytes.Equal(b, want) {
		t.Errorf("RA\n got % x\nwant % x", []byte(b), []byte(want))
	}
	// router solicitation
	ip, want = icmp6Of(frame6RS)
	b = ICMPv6(make([]byte, 8, 16))
	b.Encode(&ICMPv6Fields{Type: ICMPv6RouterSolicitation})
	NDPRouterSolicitation(b.Body()).Encode()
	b = AppendNDPLinkLayerAddress(b, NDPOptionSourceLinkLayerAddress, macHost6)
	b.SetChecksum(b.CalculateChecksum(icmp6Pseudo(ip, b)))
	if !bytes.Equal(b, want) {
		t.Errorf("RS % x", []byte(b))
	}
	// neighbor solicitation and the advertisement answering it
	ip, want = icmp6Of(frame6NS)
	b = ICMPv6(make([]byte, 24, 32))
	b.Encode(&ICMPv6Fields{Type: ICMPv6NeighborSolicitation})
	NDPNeighborSolicitation(b.Body()).Encode(addrRouter6)
	b = AppendNDPLinkLayerAddress(b, NDPOptionSourceLinkLayerAddress, macHost6)
	b.SetChecksum(b.CalculateChecksum(icmp6Pseudo(ip, b)))
	if !bytes.Equal(b, want) {
		t.Errorf("NS % x", []byte(b))
	}
	ip, want = icmp6Of(frame6NA)
	b = ICMPv6(make([]byte, 24, 32))
	b.Encode(&ICMPv6Fields{Type: ICMPv6NeighborAdvertisement})
	NDPNeighborAdvertisement(b.Body()).Encode(&NDPNeighborAdvertisementFields{Flags: NDPNARouter | NDPNASolicited | NDPNAOverride, Target: addrRouter6})
	b = AppendNDPLinkLayerAddress(b, NDPOptionTargetLinkLayerAddress, macRouter6)
	b.SetChecksum(b.CalculateChecksum(icmp6Pseudo(ip, b)))
	if !bytes.Equal(b, want) {
		t.Errorf("NA % x", []byte(b))
	}
	// a redirect (not captured): fields round-trip
	r := NDPRedirect(make([]byte, NDPRedirectSize))
	r.Encode(addrRouter6, dns6a)
	if r.Check() != nil || r.Target() != addrRouter6 || r.Destination() != dns6a || len(r.Options()) != 0 {
		t.Error("redirect")
	}
	rh := append([]byte{NDPOptionRedirectedHeader, 6, 0, 0, 0, 0, 0, 0}, ip6Of(frame6EchoRequest)[:40]...)
	if q, ok := NDPOption(rh).RedirectedHeader(); !ok || IPv6(q).Dst() != addrRouter6 {
		t.Error("redirected header")
	}
}

func TestNDPImpossibleLength(t *testing.T) {
	_, m := icmp6Of(frame6RA)
	body := m.Body()
	for _, tt := range []struct {
		name  string
		check func([]byte) error
		min   int
	}{
		{"RS", func(b []byte) error { return NDPRouterSolicitation(b).Check() }, NDPRouterSolicitationSize},
		{"RA", func(b []byte) error { return NDPRouterAdvertisement(b).Check() }, NDPRouterAdvertisementSize},
		{"NS", func(b []byte) error { return NDPNeighborSolicitation(b).Check() }, NDPNeighborSolicitationSize},
		{"NA", func(b []byte) error { return NDPNeighborAdvertisement(b).Check() }, NDPNeighborAdvertisementSize},
		{"redirect", func(b []byte) error { return NDPRedirect(b).Check() }, NDPRedirectSize},
	} {
		for n := 0; n <= len(body); n++ {
			err := tt.check(body[:n])
			if (n < tt.min) != (err == ErrTooShort) || (n >= tt.min && err != nil) {
				t.Errorf("%s len %d: %v", tt.name, n, err)
			}
			if err == nil {
				callNDPAccessors(body[:n])
			}
		}
	}
	// every truncation of the RA options: only option boundaries pass
	opts := NDPRouterAdvertisement(body).Options()
	bounds := map[int]bool{0: true, 32: true, 72: true, 80: true, 88: true}
	for n := 0; n <= len(opts); n++ {
		err := opts[:n].Check()
		switch {
		case bounds[n] && err != nil:
			t.Errorf("len %d: %v", n, err)
		case !bounds[n] && err != ErrNDPOptionTruncated:
			t.Errorf("len %d: %v, want truncated", n, err)
		}
	}
	// a zero length stops the walk, at its offset
	bad := append(bytes.Clone(opts[:32]), 1, 0, 0, 0, 0, 0, 0, 0)
	bad = append(bad, opts[80:]...)
	badOpts := NDPOptions(bad)
	if badOpts.Check() != ErrNDPOptionZeroLength {
		t.Errorf("zero length: %v", badOpts.Check())
	}
	it := badOpts.Iter()
	n := 0
	for it.Next() {
		n++
	}
	if n != 1 || it.Err() != ErrNDPOptionZeroLength || it.Offset() != 32 || it.Next() {
		t.Errorf("zero length: %d options, %v at %d", n, it.Err(), it.Offset())
	}
	if badOpts.Find(NDPOptionSourceLinkLayerAddress) != nil {
		t.Error("Find past a malformed option")
	}
	// malformed typed options are refused by their accessors
	for _, o := range []NDPOption{
		{NDPOptionSourceLinkLayerAddress, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, // 14-byte address
		{NDPOptionMTU, 2, 0, 0, 0, 0, 5, 0xdc, 0, 0, 0, 0, 0, 0, 0, 0},
		{NDPOptionPrefixInformation, 1, 64, 0xc0, 0, 0, 0, 0},
		{NDPOptionRDNSS, 1, 0, 0, 0, 0, 0, 0},                                       // no address
		append(NDPOption{NDPOptionRDNSS, 4, 0, 0, 0, 0, 0, 0}, make([]byte, 24)...), // even length
	} {
		_, a := o.LinkLayerAddress()
		_, b := o.MTU()
		_, c := o.PrefixInfo()
		_, d := o.RDNSS()
		if a || b || c || d {
			t.Errorf("% x accepted", []byte(o))
		}
	}
}

func TestNDPParse(t *testing.T) {
	for i, f := range allFrames6 {
		ip := ip6Of(f)
		x, err := ip.WalkExtensions(8)
		if err != nil || x.Protocol != ProtocolICMPv6 {
			continue
		}
		m := ICMPv6(ip[x.ProtocolOffset:])
		var opts NDPOptions
		switch m.Type() {
		case ICMPv6RouterSolicitation:
			opts = NDPRouterSolicitation(m.Body()).Options()
		case ICMPv6RouterAdvertisement:
			opts = NDPRouterAdvertisement(m.Body()).Options()
		case ICMPv6NeighborSolicitation:
			opts = NDPNeighborSolicitation(m.Body()).Options()
		case ICMPv6NeighborAdvertisement:
			opts = NDPNeighborAdvertisement(m.Body()).Options()
		default:
			continue
		}
		if err := opts.Check(); err != nil {
			t.Errorf("frame %d: %v", i, err)
		}
		callNDPAccessors(m.Body())
	}
	// unknown options are skipped over; options can repeat
	o := NDPOptions(bytes.Join([][]byte{
		{200, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		AppendNDPMTU(nil, 9000), AppendNDPMTU(nil, 1280),
	}, nil))
	if opts := optionsOf(t, o); len(opts) != 3 {
		t.Errorf("%d options", len(opts))
	}
	if mtu, _ := o.Find(NDPOptionMTU).MTU(); mtu != 9000 {
		t.Errorf("first MTU %d", mtu)
	}
	if NDPOptions(nil).Check() != nil || NDPOptions(nil).Find(1) != nil {
		t.Error("no options")
	}
}

func TestNDPEmit(t *testing.T) {
	enc := []struct {
		name string
		size int
		enc  func([]byte)
	}{
		{"RS", NDPRouterSolicitationSize, func(b []byte) { NDPRouterSolicitation(b).Encode() }},
		{"RA", NDPRouterAdvertisementSize, func(b []byte) { NDPRouterAdvertisement(b).Encode(&raFields) }},
		{"NS", NDPNeighborSolicitationSize, func(b []byte) { NDPNeighborSolicitation(b).Encode(addrRouter6) }},
		{"NA", NDPNeighborAdvertisementSize, func(b []byte) {
			NDPNeighborAdvertisement(b).Encode(&NDPNeighborAdvertisementFields{Flags: 0xff, Target: addrHost6})
		}},
		{"redirect", NDPRedirectSize, func(b []byte) { NDPRedirect(b).Encode(addrRouter6, addrHost6) }},
		{"SLLA", NDPLinkLayerAddressSize, func(b []byte) { AppendNDPLinkLayerAddress(b[:0], 1, macHost6) }},
		{"MTU", NDPMTUSize, func(b []byte) { AppendNDPMTU(b[:0], 1500) }},
		{"prefix", NDPPrefixInfoSize, func(b []byte) { AppendNDPPrefixInfo(b[:0], &raPrefixFields) }},
		{"RDNSS", NDPRDNSSSize(2), func(b []byte) { AppendNDPRDNSS(b[:0], 600, [][16]byte{dns6a, dns6b}) }},
	}
	for _, tt := range enc {
		buf := filled(80)
		tt.enc(buf)
		if i := firstWritten(buf, tt.size); i >= 0 {
			t.Errorf("%s: byte %d written beyond %d", tt.name, i, tt.size)
		}
		if i := bytes.IndexByte(buf[:tt.size], 0xa5); i >= 0 && tt.name != "NA" {
			t.Errorf("%s: byte %d not written", tt.name, i)
		}
	}
	// NA reserved bits stay zero whatever the flags
	buf := filled(20)
	NDPNeighborAdvertisement(buf).Encode(&NDPNeighborAdvertisementFields{Flags: 0xff})
	if !bytes.Equal(buf[:4], []byte{0xe0, 0, 0, 0}) {
		t.Errorf("NA flags % x", buf[:4])
	}
	// the appended options parse back
	o := AppendNDPRDNSS(nil, 600, [][16]byte{dns6a})
	o = AppendNDPPrefixInfo(o, &raPrefixFields)
	opts := optionsOf(t, NDPOptions(o))
	if rd, ok := opts[0].RDNSS(); !ok || rd.Count() != 1 || rd.Address(0) != dns6a {
		t.Error("RDNSS round trip")
	}
	if p, ok := opts[1].PrefixInfo(); !ok || p.Prefix() != prefix6 || p.PrefixLength() != 64 {
		t.Error("prefix round trip")
	}
	for _, n := range []int{0, 128} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RDNSS with %d addresses: no panic", n)
				}
			}()
			AppendNDPRDNSS(nil, 1, make([][16]byte, n))
		}()
	}
	if o := AppendNDPRDNSS(nil, 1, make([][16]byte, 127)); len(o) != NDPRDNSSSize(127) || o[1] != 255 {
		t.Errorf("127 addresses: %d bytes, length %d", len(o), o[1])
	}
}

// callNDPAccessors views b as every NDP body that passes its Check and calls
// every accessor, walking the options with every typed accessor.
func callNDPAccessors(b []byte) {
	walk := func(o NDPOptions) {
		_ = o.Check()
		_ = o.Find(NDPOptionSourceLinkLayerAddress)
		it := o.Iter()
		for it.Next() {
			opt := it.Option()
			_, _ = opt.Type(), opt.Data()
			_, _ = opt.LinkLayerAddress()
			_, _ = opt.MTU()
			if p, ok := opt.PrefixInfo(); ok {
				_, _, _, _ = p.PrefixLength(), p.Flags(), p.OnLink(), p.Autonomous()
				_, _, _ = p.ValidLifetime(), p.PreferredLifetime(), p.Prefix()
			}
			if r, ok := opt.RDNSS(); ok {
				_ = r.Lifetime()
				for i := 0; i < r.Count(); i++ {
					_ = r.Address(i)
				}
			}
			_, _ = opt.RedirectedHeader()
		}
		_, _ = it.Err(), it.Offset()
	}
	if rs := NDPRouterSolicitation(b); rs.Check() == nil {
		walk(rs.Options())
	}
	if ra := NDPRouterAdvertisement(b); ra.Check() == nil {
		_, _, _, _ = ra.CurHopLimit(), ra.Flags(), ra.Managed(), ra.OtherConfig()
		_, _, _ = ra.RouterLifetime(), ra.ReachableTime(), ra.RetransTimer()
		walk(ra.Options())
	}
	if ns := NDPNeighborSolicitation(b); ns.Check() == nil {
		_, _ = ns.Target(), ns.TargetSlice()
		walk(ns.Options())
	}
	if na := NDPNeighborAdvertisement(b); na.Check() == nil {
		_, _, _, _ = na.Flags(), na.Router(), na.Solicited(), na.Override()
		_, _ = na.Target(), na.TargetSlice()
		walk(na.Options())
	}
	if r := NDPRedirect(b); r.Check() == nil {
		_, _ = r.Target(), r.Destination()
		walk(r.Options())
	}
}
