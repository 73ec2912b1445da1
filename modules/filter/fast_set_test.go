package filter

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// TestSetFastAgrees: the specialised set matcher (fast.go setFast) is
// what a table compiles "-m set" over a hash:net or an addr . port set
// without counters into, and it answers as SetMatch over random packets
// — IPv4 and IPv6, TCP, UDP, ICMP, non-first fragments, truncated
// transport headers, addresses in and out of the sets — for every
// src/dst combination, with and without "!", for a large hash:net set
// (its DIR table), a small one (a sorted array), addr . port sets with
// and without protocols, one with timeouts (some expired), and after
// run-time adds and deletes.
func TestSetFastAgrees(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 23))
	at := time.Now() // the file's timeouts start at the load's wall clock
	testNow = func() time.Time { return at }
	defer func() { testNow = nil }()
	addr := func(v6 bool) netip.Addr {
		if v6 {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(r.IntN(256))})
		}
		return netip.AddrFrom4([4]byte{10, byte(r.IntN(2)), byte(r.IntN(4)), byte(r.IntN(256))})
	}
	var big, small, ipp, ippAny, ippTO []string
	for i := 0; i < 600; i++ {
		a := addr(i%10 == 9)
		bits := 29 + r.IntN(4)
		if a.Is6() {
			bits = 127 + r.IntN(2)
		}
		big = append(big, netip.PrefixFrom(a, bits).Masked().String())
		proto := []string{"tcp", "udp"}[r.IntN(2)]
		ipp = append(ipp, fmt.Sprintf("%s . %s:%d", a, proto, 1+r.IntN(8)))
		ippAny = append(ippAny, fmt.Sprintf("%s . %d", a, 1+r.IntN(8)))
		ippAny = append(ippAny, fmt.Sprintf("%s . %s:%d", addr(false), proto, 1+r.IntN(8)))
		ippTO = append(ippTO, fmt.Sprintf("%s . %s:%d timeout %d", a, proto, 1+r.IntN(8), r.IntN(3)))
	}
	for i := 0; i < 5; i++ {
		small = append(small, netip.PrefixFrom(addr(false), 24+r.IntN(9)).Masked().String())
	}
	q := func(es []string) string { return `["` + strings.Join(es, `", "`) + `"]` }
	sets := fmt.Sprintf(`sets:
  big: {type: hash:net, elements: %s}
  small: {type: hash:net, elements: %s}
  ipp: {type: "addr . port", elements: %s}
  ippany: {type: "addr . port", elements: %s}
  ippto: {type: "addr . port", timeout: 3600, elements: %s}
filter:
  forward:
    rules:
`, q(big), q(small), q(ipp), q(ippAny), q(ippTO))
	var rules []string
	for _, s := range []string{"big", "small"} {
		for _, d := range []string{"src", "dst"} {
			rules = append(rules, "-m set --match-set "+s+" "+d, "-m set ! --match-set "+s+" "+d)
		}
	}
	for _, s := range []string{"ipp", "ippany", "ippto"} {
		for _, d := range []string{"src,src", "src,dst", "dst,src", "dst,dst"} {
			rules = append(rules, "-m set --match-set "+s+" "+d, "-m set ! --match-set "+s+" "+d)
		}
	}
	for _, rl := range rules {
		sets += "      - " + quoteYAML(rl+" -j ACCEPT") + "\n"
	}
	m := mustLoad(t, sets)
	var fwd *pipeline.HookTable
	for _, e := range m.HookTables() {
		if e.Hook == pipeline.Forward {
			fwd = e.Table
		}
	}
	chain := fwd.Chains[fwd.Entry].Rules
	if len(chain) != len(rules) {
		t.Fatalf("%d rules compiled, want %d", len(chain), len(rules))
	}
	var fs []*setFast
	for i, rl := range chain {
		f, ok := rl.Matchers[0].(*setFast)
		if !ok {
			t.Fatalf("rule %q compiled into %T, not the specialised matcher", rules[i], rl.Matchers[0])
		}
		fs = append(fs, f)
	}
	// Elements with timeouts 0 (none), 1 and 2 s: at+1.5 s some expired.
	at = at.Add(1500 * time.Millisecond)
	check := func(round int) {
		hits := make([]int, len(fs))
		const packets = 3000
		for n := 0; n < packets; n++ {
			p := pk{proto: []uint8{6, 17, 17, 6, 1}[r.IntN(5)], sport: uint16(1 + r.IntN(9)), dport: uint16(1 + r.IntN(9))}
			v6 := r.IntN(5) == 0
			p.v6 = v6
			p.src, p.dst = addr(v6).String(), addr(v6).String()
			switch r.IntN(8) {
			case 0:
				if !v6 {
					p.fragOff = 8
				}
			case 1:
				p.l4len = 1 + r.IntN(3)
			}
			pc := p.ctx(t)
			for i, f := range fs {
				got, gotHot := f.Match(pc)
				want, wantHot := f.m.Match(pc)
				if got != want || gotHot != wantHot {
					t.Fatalf("seed %d round %d: %q on %+v: specialised %v/%v, SetMatch %v/%v", seed, round, rules[i], p, got, gotHot, want, wantHot)
				}
				if got {
					hits[i]++
				}
			}
		}
		for i, h := range hits { // the packets found elements and missed them
			if h == 0 || h == packets {
				t.Errorf("seed %d round %d: %q matched %d of %d packets", seed, round, rules[i], h, packets)
			}
		}
	}
	check(0)
	// Run-time changes: a new snapshot each, which the matcher loads.
	for round := 1; round <= 3; round++ {
		for _, name := range []string{"big", "small", "ipp", "ippany"} {
			s := m.sets[name]
			var e string
			switch name {
			case "big", "small":
				e = addr(false).String()
			default:
				e = fmt.Sprintf("%s . udp:%d", addr(false), 1+r.IntN(8))
			}
			if _, err := s.Add(e, -1, at); err != nil {
				t.Fatal(err)
			}
			if err := s.Del(s.snap.Load().elems[r.IntN(len(s.snap.Load().elems))].key.format(s.decl.typ), at); err != nil {
				t.Fatal(err)
			}
		}
		check(round)
	}
	// A set with counters keeps SetMatch (its elements count).
	c := mustLoad(t, `sets:
  s: {type: hash:net, counters: true, elements: ["10.0.0.0/8"]}
filter:
  forward:
    rules: ["-m set --match-set s dst -j ACCEPT"]
`)
	for _, e := range c.HookTables() {
		if e.Hook != pipeline.Forward {
			continue
		}
		if x := e.Table.Chains[e.Table.Entry].Rules[0].Matchers[0]; x != nil {
			if _, ok := x.(*SetMatch); !ok {
				t.Errorf("a set with counters compiled into %T", x)
			}
		}
	}
}
