package classify

import (
	"math/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// cm is a matcher made of constraints (the package's own tests; the
// equivalence test against a naive evaluator is modules/filter's
// TestClassifierEquivalence).
type cm struct {
	cs     []pipeline.FieldConstraint
	fields pipeline.FieldSet
}

func (m cm) Fields() pipeline.FieldSet                  { return m.fields }
func (m cm) Constraint() []pipeline.FieldConstraint     { return m.cs }
func (m cm) Match(*pipeline.PacketContext) (bool, bool) { return true, false }

type nop struct{}

func (nop) Action(*pipeline.PacketContext) (pipeline.Verdict, int) {
	return pipeline.VerdictContinue, 0
}

func u(lo uint64) u128 { return u128{0, lo} }

func TestComplementNormalise(t *testing.T) {
	iv := normalise([]ival{{u(5), u(9)}, {u(0), u(2)}, {u(3), u(4)}, {u(20), u(30)}, {u(25), u(40)}})
	want := []ival{{u(0), u(9)}, {u(20), u(40)}}
	if len(iv) != len(want) || iv[0] != want[0] || iv[1] != want[1] {
		t.Fatalf("normalise: %v, want %v", iv, want)
	}
	c := complement(iv, u(65535))
	wantC := []ival{{u(10), u(19)}, {u(41), u(65535)}}
	if len(c) != 2 || c[0] != wantC[0] || c[1] != wantC[1] {
		t.Fatalf("complement: %v, want %v", c, wantC)
	}
	if c := complement([]ival{{u(0), u(65535)}}, u(65535)); len(c) != 0 {
		t.Fatalf("complement of all: %v", c)
	}
	all := u128{^uint64(0), ^uint64(0)}
	if c := complement([]ival{{u(1), all}}, all); len(c) != 1 || c[0] != (ival{u(0), u(0)}) {
		t.Fatalf("complement at the top of IPv6: %v", c)
	}
}

func TestPrefixIval(t *testing.T) {
	for _, c := range []struct {
		p      string
		lo, hi u128
	}{
		{"10.0.0.0/8", u(0x0a000000), u(0x0affffff)},
		{"0.0.0.0/0", u(0), u(0xffffffff)},
		{"192.0.2.9/32", u(0xc0000209), u(0xc0000209)},
		{"2001:db8::/32", u128{0x20010db800000000, 0}, u128{0x20010db8ffffffff, ^uint64(0)}},
		{"2001:db8::1/128", u128{0x20010db800000000, 1}, u128{0x20010db800000000, 1}},
		{"2001:db8::/64", u128{0x20010db800000000, 0}, u128{0x20010db800000000, ^uint64(0)}},
		{"2001:db8::/96", u128{0x20010db800000000, 0}, u128{0x20010db800000000, 0xffffffff}},
		{"::/0", u128{}, u128{^uint64(0), ^uint64(0)}},
	} {
		x := prefixIval(netip.MustParsePrefix(c.p))
		if x.lo != c.lo || x.hi != c.hi {
			t.Errorf("%s: %x-%x, want %x-%x", c.p, x.lo, x.hi, c.lo, c.hi)
		}
	}
}

// TestSpecialise: a constraint of the other family, or over the whole
// domain, is a constant; a field the compiler does not know prunes
// nothing.
func TestSpecialise(t *testing.T) {
	v4 := pipeline.FieldConstraint{Field: pipeline.FieldSrcAddr, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	if _, k, _ := specialise(v4, true, NoBug); k != alwaysFalse {
		t.Errorf("an IPv4 prefix on IPv6 packets: %d, want always false", k)
	}
	v4.Invert = true
	if _, k, _ := specialise(v4, true, NoBug); k != alwaysTrue {
		t.Errorf("! an IPv4 prefix on IPv6 packets: %d, want always true", k)
	}
	all := pipeline.FieldConstraint{Field: pipeline.FieldDstPort, Ranges: []pipeline.ValueRange{{Lo: 0, Hi: 65535}}}
	if _, k, _ := specialise(all, false, NoBug); k != alwaysTrue {
		t.Errorf("every port: %d, want always true", k)
	}
	if _, _, ok := specialise(pipeline.FieldConstraint{Field: pipeline.FieldOther}, false, NoBug); ok {
		t.Error("FieldOther understood")
	}
}

// TestUsable: a matcher that may hotdrop stops the constraints after it.
func TestUsable(t *testing.T) {
	port := cm{cs: []pipeline.FieldConstraint{{Field: pipeline.FieldDstPort, Ranges: []pipeline.ValueRange{{Lo: 80, Hi: 80}}}}, fields: pipeline.FieldDstPort}
	opaque := cm{fields: pipeline.FieldOther}
	if cs, exact := usable([]pipeline.Matcher{port, opaque, port}, DefaultKind, nil); len(cs) != 1 || exact {
		t.Errorf("port, opaque, port: %d constraints (want 1), exact %v", len(cs), exact)
	}
	if cs, exact := usable([]pipeline.Matcher{port, port}, DefaultKind, nil); len(cs) != 2 || exact {
		t.Errorf("port, port: %d constraints (want 2), exact %v (DefaultKind never says Exact)", len(cs), exact)
	}
	if _, exact := usable([]pipeline.Matcher{port, port}, exactKind, nil); !exact {
		t.Error("port, port of kind Exact: not exact")
	}
}

func exactKind(pipeline.Matcher) Kind { return Pure | Exact }

// TestNextSkips: on a chain of port rules, Next goes straight to the rule
// of the packet's port, sure of it, and past the end when none matches.
func TestNextSkips(t *testing.T) {
	var rules []pipeline.Rule
	for p := uint32(0); p < 100; p++ {
		rules = append(rules, pipeline.Rule{Target: nop{}, Matchers: []pipeline.Matcher{
			cm{cs: []pipeline.FieldConstraint{{Field: pipeline.FieldDstPort, Ranges: []pipeline.ValueRange{{Lo: 1000 + p, Hi: 1000 + p}}}}, fields: pipeline.FieldDstPort}}})
	}
	x := Compile(rules, Options{Kind: exactKind})
	pkt := pipeline.DefaultPool.Get(64)
	defer pkt.Release()
	pkt.NetProto = pipeline.IPv4ProtocolNumber
	pc := &pipeline.PacketContext{Pkt: pkt, L4Off: 20, L4End: 28}
	pc.Tuple.Proto, pc.Tuple.DstPort = 17, 1042
	pc.Tuple.Src, pc.Tuple.Dst = netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	if n, sure := x.Next(pc, 0); n != 42 || !sure {
		t.Errorf("Next from 0: %d %v, want 42 sure", n, sure)
	}
	if n, _ := x.Next(pc, 43); n != 100 {
		t.Errorf("Next from 43: %d, want 100 (none)", n)
	}
	pc.L4End = 22 // a truncated UDP header: no skipping
	if n, sure := x.Next(pc, 5); n != 5 || sure {
		t.Errorf("truncated: %d %v, want 5, not sure", n, sure)
	}
}

// TestCompile100k: 100,000 rules of mixed constraints compile in seconds
// (under the race detector, ten times slower, 20,000).
func TestCompile100k(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	n := 100000
	if raceEnabled {
		n = 20000
	}
	r := rand.New(rand.NewSource(1))
	var rules []pipeline.Rule
	for k := 0; k < n; k++ {
		var cs []pipeline.FieldConstraint
		a := netip.AddrFrom4([4]byte{10, byte(r.Intn(256)), byte(r.Intn(256)), byte(r.Intn(256))})
		switch k % 4 {
		case 0:
			cs = append(cs, pipeline.FieldConstraint{Field: pipeline.FieldDstAddr, Prefixes: []netip.Prefix{netip.PrefixFrom(a, 32)}})
		case 1:
			cs = append(cs, pipeline.FieldConstraint{Field: pipeline.FieldSrcAddr, Prefixes: []netip.Prefix{netip.PrefixFrom(a, 24).Masked()}},
				pipeline.FieldConstraint{Field: pipeline.FieldProto, Ranges: []pipeline.ValueRange{{Lo: 17, Hi: 17}}})
		case 2:
			p := uint32(r.Intn(60000))
			cs = append(cs, pipeline.FieldConstraint{Field: pipeline.FieldProto, Ranges: []pipeline.ValueRange{{Lo: 6, Hi: 6}}},
				pipeline.FieldConstraint{Field: pipeline.FieldDstPort, Ranges: []pipeline.ValueRange{{Lo: p, Hi: p + uint32(r.Intn(100))}}})
		case 3:
			cs = append(cs, pipeline.FieldConstraint{Field: pipeline.FieldSrcAddr, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/16")}, Invert: true},
				pipeline.FieldConstraint{Field: pipeline.FieldInNIC, Names: []string{"lan+"}},
				pipeline.FieldConstraint{Field: pipeline.FieldDstAddr, Prefixes: []netip.Prefix{netip.PrefixFrom(a, 28).Masked()}})
		}
		rules = append(rules, pipeline.Rule{Target: nop{}, Matchers: []pipeline.Matcher{cm{cs: cs}}})
	}
	start := time.Now()
	x := Compile(rules, Options{})
	d := time.Since(start)
	st := x.Stats()
	t.Logf("%d rules: compiled in %v, %d partitions, %d entries, %d on the always lists, %.1f MB", n, d, st.Parts, st.Entries, st.Always, float64(st.Bytes)/1e6)
	if d > 20*time.Second {
		t.Fatalf("compiling %d rules took %v", n, d)
	}
}

// TestNICTables: with Options.NICs, -i/-o decided per NIC ID (inline
// bitmask for IDs below 32, a table for larger ones) answer as the name
// path does, for every ID, unknown ones and 0 included, inverted or not.
func TestNICTables(t *testing.T) {
	namesets := [][]string{{"lan"}, {"lan+"}, {"wan0"}, {"wan+", "lan1"}, {"x"}}
	for _, nics := range []map[pipeline.NICID]string{
		{1: "lan", 2: "wan0", 3: "lan1", 5: "wan1"},
		{1: "lan", 2: "wan0", 40: "lan1", 77: "wan1"},
	} {
		var rules []pipeline.Rule
		for i, ns := range namesets {
			for _, inv := range []bool{false, true} {
				f := pipeline.FieldInNIC
				if i%2 == 1 {
					f = pipeline.FieldOutNIC
				}
				cs := []pipeline.FieldConstraint{{Field: f, Names: ns, Invert: inv}}
				rules = append(rules, pipeline.Rule{Target: nop{}, Matchers: []pipeline.Matcher{cm{cs: cs}}})
			}
		}
		byName := func(_ *pipeline.PacketContext, id pipeline.NICID) (string, bool) {
			s, ok := nics[id]
			return s, ok && id != 0
		}
		a := Compile(rules, Options{MinRules: 1, NICName: byName})
		b := Compile(rules, Options{MinRules: 1, NICName: byName, NICs: nics})
		for in := pipeline.NICID(0); in < 80; in++ {
			for _, out := range []pipeline.NICID{0, 1, 2, 3, 5, 31, 32, 40, 77, 79} {
				pkt := &pipeline.Packet{NetProto: pipeline.IPv4ProtocolNumber}
				pc := &pipeline.PacketContext{Pkt: pkt, InNIC: in, OutNIC: out, L4End: 8}
				pc.Tuple.Src, pc.Tuple.Dst = netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
				pc.Tuple.Proto = 250 // no transport header to check
				for from := 0; from < len(rules); from++ {
					ra, sa := a.Next(pc, from)
					rb, sb := b.Next(pc, from)
					if ra != rb || sa != sb {
						t.Fatalf("nics %v in %d out %d from %d: by ID (%d, %v), by name (%d, %v)", nics, in, out, from, rb, sb, ra, sa)
					}
				}
			}
		}
	}
}

// TestDirAgreesWithSearch: the DIR-16-8-8 table finds the interval the
// binary search finds, for random starts (clustered, so that blocks of
// both levels exist, and at the ends of the space) and values at, beside
// and between them; and is not built when it would need too many blocks.
func TestDirAgreesWithSearch(t *testing.T) {
	rnd := rand.New(rand.NewSource(time.Now().UnixNano()))
	for round := 0; round < 200; round++ {
		var b []u128
		base := rnd.Uint32()
		for i := rnd.Intn(2000); i >= 0; i-- {
			var v uint32
			switch rnd.Intn(4) {
			case 0:
				v = rnd.Uint32()
			case 1:
				v = base + uint32(rnd.Intn(1<<12))
			case 2:
				v = base&^0xffff + uint32(rnd.Intn(1<<16))&^0xff
			default:
				v = ^uint32(0) - uint32(rnd.Intn(300))
			}
			b = append(b, u(uint64(v)))
		}
		starts := uniqueStarts(b)
		s := make([]uint32, len(starts))
		for j, st := range starts {
			s[j] = uint32(st.lo)
		}
		dir := buildDir(s)
		if dir == nil { // at most 2 blocks a start: under dirBlocks
			t.Fatalf("round %d: no table for %d starts", round, len(s))
		}
		p := part{f: fDst, s32: s, dir: dir, enc: make([]uint64, len(s))}
		for j := range p.enc {
			p.enc[j] = uint64(j)
		}
		check := func(v uint32) {
			var pv pktVals
			pv.v32[fDst] = v
			if got, want := p.lookup(&pv), uint64(search32(s, v)); got != want {
				t.Fatalf("round %d: %#x: dir says interval %d, the search %d", round, v, got, want)
			}
		}
		for _, st := range s {
			check(st)
			check(st - 1)
			check(st + 1)
		}
		for i := 0; i < 2000; i++ {
			check(rnd.Uint32())
			check(base + uint32(rnd.Intn(1<<16)))
		}
		check(0)
		check(^uint32(0))
	}
	// Random /32s all over the space: a block each; past dirBlocks, none.
	var b []u128
	for i := 0; i < 3*dirBlocks; i++ {
		b = append(b, u(uint64(rand.Uint32())|1))
	}
	st := uniqueStarts(b)
	s := make([]uint32, len(st))
	for j := range st {
		s[j] = uint32(st[j].lo)
	}
	if buildDir(s) != nil {
		t.Fatalf("a table for %d scattered starts, want none (at most %d blocks)", len(s), dirBlocks)
	}
}
