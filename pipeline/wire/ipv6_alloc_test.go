package wire

import (
	"testing"

	"github.com/pipestack/pipestack/internal/alloctest"
)

var (
	sinkExt6 IPv6ExtInfo
	sinkOpt6 IPv6Option
	sinkNDP  NDPOption
	sinkBool bool
)

func TestIPv6ZeroAllocs(t *testing.T) {
	if alloctest.Race {
		t.Skip("allocation counts are not exact under -race (run outside it: the zero-allocation step)")
	}
	echo := ip6Of(frame6EchoRequest)
	frag := ip6Of(frame6FragUDP1)
	mld := ip6Of(frame6MLDv2Report)
	bad := chain6(ProtocolDestOptions, ext6(ProtocolHopByHop, 0))
	_, ra := icmp6Of(frame6RA)
	raOpts := NDPRouterAdvertisement(ra.Body()).Options()
	_, m := icmp6Of(frame6EchoRequest)
	buf := make([]byte, 256)
	addrs := [][16]byte{dns6a, dns6b}
	cases := map[string]func(){
		"IPv6.Check":       func() { sinkErr = echo.Check() },
		"IPv6.Check error": func() { sinkErr = echo[:30].Check() },
		"DecHopLimit":      func() { echo.DecHopLimit() },
		"WalkExtensions":   func() { sinkExt6, sinkErr = frag.WalkExtensions(8) },
		"WalkExtensions error": func() {
			sinkExt6, sinkErr = bad.WalkExtensions(8)
		},
		"IPv6OptionIter": func() {
			it := IPv6Options(mld[40:]).Iter()
			for it.Next() {
				sinkOpt6 = it.Option()
			}
			sinkErr = it.Err()
		},
		"ICMPv6 checksum": func() {
			sinkBool = m.IsChecksumValid(IPv6PseudoChecksum(echo, ProtocolICMPv6, uint32(len(m))))
		},
		"ICMPv6.Check error": func() { sinkErr = ICMPv6(buf[:2]).Check() },
		"NDPOptions.Check":   func() { sinkErr = raOpts.Check() },
		"NDPOptions.Check error": func() {
			sinkErr = raOpts[:30].Check()
		},
		"NDPOptions.Find": func() { sinkNDP = raOpts.Find(NDPOptionSourceLinkLayerAddress) },
		"NDP build RA": func() {
			b := AppendNDPPrefixInfo(buf[:0], &raPrefixFields)
			b = AppendNDPRDNSS(b, 600, addrs)
			b = AppendNDPMTU(b, 1500)
			sinkNDP = AppendNDPLinkLayerAddress(b, NDPOptionSourceLinkLayerAddress, macRouter6)
		},
		"IPv6Error.Error": func() { sinkStr = ErrIPv6HopByHopNotFirst.Error() },
	}
	for name, fn := range cases {
		if n := countAllocs(fn); n != 0 {
			t.Errorf("%s: %d allocations over %d calls, want 0", name, n, allocRuns)
		}
	}
}

func BenchmarkIPv6Check(b *testing.B) {
	ip := ip6Of(frame6EchoRequest)
	b.ReportAllocs()
	for b.Loop() {
		sinkErr = ip.Check()
	}
}

func BenchmarkIPv6WalkNone(b *testing.B) {
	ip := ip6Of(frame6EchoRequest)
	b.ReportAllocs()
	for b.Loop() {
		sinkExt6, sinkErr = ip.WalkExtensions(8)
	}
}

func BenchmarkIPv6WalkHBHDstFrag(b *testing.B) {
	ip := ip6Of(frame6FragUDP1)
	b.ReportAllocs()
	for b.Loop() {
		sinkExt6, sinkErr = ip.WalkExtensions(8)
	}
}

func BenchmarkIPv6PseudoChecksum(b *testing.B) {
	ip := ip6Of(frame6EchoRequest)
	b.ReportAllocs()
	for b.Loop() {
		sinkU16 = IPv6PseudoChecksum(ip, ProtocolICMPv6, 64)
	}
}

func BenchmarkICMPv6EchoChecksum(b *testing.B) {
	ip, m := icmp6Of(frame6EchoRequest)
	b.SetBytes(int64(len(m)))
	b.ReportAllocs()
	for b.Loop() {
		sinkBool = m.IsChecksumValid(IPv6PseudoChecksum(ip, ProtocolICMPv6, uint32(len(m))))
	}
}

func BenchmarkNDPOptionsRA(b *testing.B) {
	_, ra := icmp6Of(frame6RA)
	opts := NDPRouterAdvertisement(ra.Body()).Options()
	b.ReportAllocs()
	for b.Loop() {
		it := opts.Iter()
		for it.Next() {
			sinkNDP = it.Option()
		}
		sinkErr = it.Err()
	}
}
