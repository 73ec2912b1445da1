package filter

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// checkDir4 builds the DIR table of starts/vals and compares it with the
// sorted-array search at every start, its neighbours, the region and
// block boundaries around it, and random addresses.
func checkDir4(t *testing.T, r *rand.Rand, what string, starts []uint32, vals []int32) {
	t.Helper()
	var d dir4
	d.build(starts, vals)
	check := func(x uint32) {
		if got, want := d.get(x), vals[search4(starts, x)]; got != want {
			t.Fatalf("%s (%d starts): get(%s) = %d, want %d", what, len(starts), netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)}), got, want)
		}
	}
	for _, s := range starts {
		for _, x := range []uint32{s, s - 1, s + 1, s | 0xff, s&^0xff - 1, s | 0xffff, s&^0xffff - 1, s&^0xffff + 0x100} {
			check(x)
		}
	}
	for _, x := range []uint32{0, 1, 1<<32 - 1, 1 << 31, 1<<31 - 1} {
		check(x)
	}
	for q := 0; q < 20000; q++ {
		check(r.Uint32())
	}
	// The table's memory is what it holds: the first level, one block per
	// 256 entries, a run entry per start at most and one more per run.
	if n := d.bytes(); n < 4<<16 || n > 4*(1<<16+len(d.blk)+4*len(starts)) || len(d.blk)%256 != 0 {
		t.Fatalf("%s: bytes %d, %d block entries", what, n, len(d.blk))
	}
}

// TestDir4Random: the DIR table against the sorted-array search over
// random interval sets: sparse over the whole space, dense /16s and /24s
// (a block list's /32s side by side, every address its own interval),
// runs of exactly dirRunMax and one more, near the top of the space, and
// values carried from one region to the next.
func TestDir4Random(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 11))
	for round := 0; round < 60; round++ {
		set := map[uint32]bool{}
		add := func(x uint32) { set[x] = true }
		for k := 0; k < 1+r.IntN(6); k++ {
			base := r.Uint32()
			if r.IntN(4) == 0 {
				base |= 0xffff0000 // the last /16s
			}
			switch r.IntN(7) {
			case 0: // sparse
				for i := 0; i < 1+r.IntN(2000); i++ {
					add(r.Uint32())
				}
			case 1: // a dense /16: /32s side by side, some gaps
				h := base &^ 0xffff
				for i := 0; i < 1+r.IntN(20000); i++ {
					add(h | uint32(r.IntN(1<<16)))
				}
			case 2: // a full /24: every address an interval
				h := base &^ 0xff
				for i := uint32(0); i < 256; i++ {
					add(h | i)
				}
			case 3: // exactly dirRunMax-1 or dirRunMax starts in a /16, or in a /24
				n := dirRunMax - 1 + r.IntN(3)
				mask := uint32(0xffff)
				if r.IntN(2) == 0 {
					mask = 0xff
				}
				for try := 0; n > 0 && try < 10000; try++ {
					x := base&^mask | r.Uint32()&mask
					if !set[x] {
						add(x)
						n--
					}
				}
			case 4: // starts on region and block boundaries
				for i := 0; i < 1+r.IntN(300); i++ {
					add(r.Uint32() &^ 0xff)
					add(r.Uint32() &^ 0xffff)
				}
			case 5: // a dense /16 of /24s with a few /32s inside some
				h := base &^ 0xffff
				for i := uint32(0); i < 256; i += uint32(1 + r.IntN(3)) {
					add(h | i<<8)
					for j := 0; j < r.IntN(20); j++ {
						add(h | i<<8 | uint32(r.IntN(256)))
					}
				}
			default: // a few wide ones
				for i := 0; i < 1+r.IntN(8); i++ {
					add(r.Uint32() &^ (1<<(8+r.IntN(20)) - 1))
				}
			}
		}
		delete(set, 0)
		starts := []uint32{0}
		for x := range set {
			starts = append(starts, x)
		}
		slices.Sort(starts)
		vals := make([]int32, len(starts))
		for i := range vals {
			switch r.IntN(4) {
			case 0:
				vals[i] = -1
			case 1:
				if i > 0 {
					vals[i] = vals[i-1] // the same value again: buildNet merges these, the table need not
					continue
				}
				vals[i] = -1
			default:
				vals[i] = int32(r.IntN(1 << 20))
			}
		}
		checkDir4(t, r, fmt.Sprintf("seed %d round %d", seed, round), starts, vals)
	}
}

// TestDir4Prefixes: the DIR table of buildNet's intervals of random prefix
// sets (nested, wide, /32s side by side, ranges) against the sorted-array
// search of the same intervals, and buildSnap's lookups against a brute
// force over the elements.
func TestDir4Prefixes(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 13))
	a4 := func(x uint32) netip.Addr {
		return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
	}
	for round := 0; round < 30; round++ {
		var elems []string
		seen := map[string]bool{}
		add := func(e string) {
			if !seen[e] {
				seen[e] = true
				elems = append(elems, e)
			}
		}
		for k := 0; k < 1+r.IntN(5); k++ {
			base := r.Uint32()
			switch r.IntN(5) {
			case 0: // /32s side by side in a /16
				h := base &^ 0xffff
				for i := 0; i < 1+r.IntN(3000); i++ {
					add(a4(h | uint32(r.IntN(1<<16))).String())
				}
			case 1: // nesting: a /8, /16s in it, /24s in those, /32s
				p8 := base &^ 0xffffff
				add(netip.PrefixFrom(a4(p8), 8).String())
				for i := 0; i < 1+r.IntN(10); i++ {
					p16 := p8 | uint32(r.IntN(256))<<16
					add(netip.PrefixFrom(a4(p16), 16).String())
					for j := 0; j < r.IntN(30); j++ {
						p24 := p16 | uint32(r.IntN(256))<<8
						add(netip.PrefixFrom(a4(p24), 24).String())
						for k := 0; k < r.IntN(20); k++ {
							add(a4(p24 | uint32(r.IntN(256))).String())
						}
					}
				}
			case 2: // wide prefixes
				for i := 0; i < 1+r.IntN(5); i++ {
					bits := 1 + r.IntN(12)
					add(netip.PrefixFrom(a4(r.Uint32()), bits).Masked().String())
				}
			case 3: // ranges
				for i := 0; i < 1+r.IntN(50); i++ {
					lo := r.Uint32()
					hi := lo + uint32(r.IntN(1<<(4+r.IntN(20))))
					if hi < lo {
						hi = 1<<32 - 1
					}
					add(a4(lo).String() + "-" + a4(hi).String())
				}
			default: // random prefixes /16../32 in a /12
				h := base &^ 0xfffff
				for i := 0; i < 1+r.IntN(2000); i++ {
					add(netip.PrefixFrom(a4(h|uint32(r.IntN(1<<20))), 16+r.IntN(17)).Masked().String())
				}
			}
		}
		decl := setDecl{name: "d", typ: setNet, maxElem: defaultMaxElem}
		s, err := newSetLines(decl, elems, time.Unix(1000, 0))
		if err != nil {
			t.Fatal(err)
		}
		sn := s.snap.Load()
		// The intervals themselves, from buildNet again.
		raw := &setSnap{typ: setNet, elems: sn.elems}
		raw.buildNet()
		what := fmt.Sprintf("seed %d round %d", seed, round)
		checkDir4(t, r, what, raw.v4starts, raw.v4piece)
		if (sn.v4dir.top != nil) != (len(raw.v4starts) >= dirMinStarts) {
			t.Fatalf("%s: %d starts, table %v", what, len(raw.v4starts), sn.v4dir.top != nil)
		}
		for q := 0; q < 3000; q++ {
			x := r.Uint32()
			if q%2 == 0 && len(raw.v4starts) > 1 {
				x = raw.v4starts[1+r.IntN(len(raw.v4starts)-1)] + uint32(r.IntN(3)) - 1
			}
			a := a4(x)
			want := false
			for i := range sn.elems {
				k := &sn.elems[i].key
				if !a.Less(k.loAddr()) && !k.hiAddr().Less(a) {
					want = true
					break
				}
			}
			e := sn.lookup(a, 0, 0, 0)
			if (e >= 0) != want {
				t.Fatalf("%s: %s: found %d, want %v", what, a, e, want)
			}
			if e >= 0 {
				if k := &sn.elems[e].key; a.Less(k.loAddr()) || k.hiAddr().Less(a) {
					t.Fatalf("%s: %s found in %s", what, a, elemText(sn, e))
				}
			}
		}
	}
}
