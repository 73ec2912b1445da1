package pipeline

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// naiveLookup is the route table's specification: the longest prefix that
// contains dst; among equal prefixes the lowest metric, then the first
// listed.
func naiveLookup(routes []Route, dst netip.Addr) (Route, bool) {
	best, found := Route{}, false
	for _, r := range routes {
		if !r.Dst.Contains(dst) {
			continue
		}
		if !found || r.Dst.Bits() > best.Dst.Bits() ||
			(r.Dst.Bits() == best.Dst.Bits() && r.Metric < best.Metric) {
			best, found = r, true
		}
	}
	return best, found
}

// TestRouteLookupRandom checks both lookup forms (the linear scan of small
// tables and the per-length hash probes of large ones) against naiveLookup
// over random tables of nested prefixes, equal prefixes with different
// metrics and default routes, for IPv4 and IPv6.
func TestRouteLookupRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randAddr := func(v6 bool, base netip.Addr, keep int) netip.Addr {
		// Random bits below the first keep bits of base, so that
		// prefixes nest and lookups hit.
		var b [16]byte
		n := 4
		if v6 {
			n = 16
		}
		bb := base.AsSlice()
		for i := range n {
			b[i] = byte(rng.Uint32())
			if keep >= (i+1)*8 {
				b[i] = bb[i]
			} else if keep > i*8 {
				m := byte(0xff << (8 - (keep - i*8)))
				b[i] = bb[i]&m | b[i]&^m
			}
		}
		if v6 {
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	for iter := range 400 {
		v6 := iter%2 == 1
		bits := 32
		base := netip.AddrFrom4([4]byte{10, 1, 2, 3})
		if v6 {
			bits = 128
			base = netip.MustParseAddr("2001:db8:1:2:3:4:5:6")
		}
		n := 1 + rng.IntN(2*linearRoutes+8) // both forms
		var routes []Route
		for i := range n {
			l := rng.IntN(bits + 1)
			a := randAddr(v6, base, rng.IntN(bits+1))
			if i > 0 && rng.IntN(4) == 0 {
				l = routes[rng.IntN(len(routes))].Dst.Bits() // equal lengths, maybe equal prefixes
				a = routes[rng.IntN(len(routes))].Dst.Addr()
			}
			p, _ := a.Prefix(l)
			routes = append(routes, Route{Dst: p, NIC: NICID(i + 1), Metric: uint32(rng.IntN(3))})
		}
		tab := NewRouteTable(routes)
		if (n <= linearRoutes) != (tab.trie4 == nil && tab.trie6 == nil) {
			t.Fatalf("table of %d routes: trie %v %v", n, tab.trie4 != nil, tab.trie6 != nil)
		}
		for range 200 {
			dst := randAddr(v6, base, rng.IntN(bits+1))
			want, ok := naiveLookup(routes, dst)
			got := tab.Lookup(dst)
			if (got != nil) != ok || ok && (got.NIC != want.NIC) {
				t.Fatalf("table %v: lookup %v = %v, want %v (found %v)", routes, dst, got, want, ok)
			}
		}
	}
}

// BenchmarkRouteLookup6 is the IPv6 forwarding path's lookup over 64
// destinations in a router's table (two connected /64s, link-local, one
// /48, a default route), in both forms.
func BenchmarkRouteLookup6(b *testing.B) {
	base := []Route{
		{Dst: netip.MustParsePrefix("2001:db8:1::/64"), NIC: 1},
		{Dst: netip.MustParsePrefix("2001:db8:2::/64"), NIC: 2},
		{Dst: netip.MustParsePrefix("fe80::/64"), NIC: 1},
		{Dst: netip.MustParsePrefix("2001:2::/48"), NIC: 2},
		{Dst: netip.MustParsePrefix("::/0"), NIC: 2},
	}
	var dsts [64][16]byte
	for i := range dsts {
		dsts[i] = netip.MustParseAddr("2001:2::1").As16()
		dsts[i][15] = byte(i)
		dsts[i][9] = byte(i * 7)
	}
	for _, tc := range []struct {
		name  string
		extra int
	}{{"small", 0}, {"large", 2 * linearRoutes}} {
		routes := append([]Route(nil), base...)
		for i := range tc.extra {
			a := netip.MustParseAddr("2001:100::").As16()
			a[3] = byte(i)
			routes = append(routes, Route{Dst: netip.PrefixFrom(netip.AddrFrom16(a), 32+i%24), NIC: 3})
		}
		tab := NewRouteTable(routes)
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if tab.Lookup6(dsts[i&63]) == nil {
					b.Fatal("no route")
				}
			}
		})
	}
}
