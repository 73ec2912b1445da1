package filter

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/classify"
)

// setSection is a filter section with one set and a forward chain that
// drops what the rule matches.
func setSection(set, rule string) string {
	return "sets:\n" + set + "filter:\n  forward:\n    rules:\n      - " + quoteYAML(rule) + "\n"
}

// TestSetMatch: each type matched by its flags, with "!".
func TestSetMatch(t *testing.T) {
	cases := []struct {
		set  string
		rule string
		p    pk
		want bool
	}{
		{"  s: {type: hash:net, elements: [10.0.0.0/8, 192.0.2.0/24]}\n", "-m set --match-set s src -j DROP", pk{proto: 17, src: "10.9.9.9", dst: "1.1.1.1"}, true},
		{"  s: {type: hash:net, elements: [10.0.0.0/8, 192.0.2.0/24]}\n", "-m set --match-set s src -j DROP", pk{proto: 17, src: "11.9.9.9", dst: "10.1.1.1"}, false},
		{"  s: {type: hash:net, elements: [10.0.0.0/8, 192.0.2.0/24]}\n", "-m set --match-set s dst -j DROP", pk{proto: 17, src: "11.9.9.9", dst: "10.1.1.1"}, true},
		{"  s: {type: hash:net, elements: [10.0.0.0/8]}\n", "-m set ! --match-set s dst -j DROP", pk{proto: 17, src: "11.9.9.9", dst: "10.1.1.1"}, false},
		{"  s: {type: hash:net, elements: [10.0.0.0/8]}\n", "-m set ! --match-set s dst -j DROP", pk{proto: 17, src: "11.9.9.9", dst: "11.1.1.1"}, true},
		{"  s: {type: hash:net, elements: [\"192.0.2.5-192.0.2.9\", \"2001:db8::/32\"]}\n", "-m set --match-set s dst -j DROP", pk{proto: 17, dst: "192.0.2.9", src: "1.1.1.1"}, true},
		{"  s: {type: hash:net, elements: [\"192.0.2.5-192.0.2.9\", \"2001:db8::/32\"]}\n", "-m set --match-set s dst -j DROP", pk{proto: 17, dst: "192.0.2.10", src: "1.1.1.1"}, false},
		{"  s: {type: hash:net, elements: [\"192.0.2.5-192.0.2.9\", \"2001:db8::/32\"]}\n", "-m set --match-set s dst -j DROP", pk{v6: true, proto: 17, dst: "2001:db8:5::1", src: "2001:db9::1"}, true},
		{"  s: {type: hash:ip, elements: [192.0.2.1, \"2001:db8::1\"]}\n", "-m set --match-set s src -j DROP", pk{proto: 6, src: "192.0.2.1", dst: "1.1.1.1"}, true},
		{"  s: {type: hash:ip, elements: [192.0.2.1, \"2001:db8::1\"]}\n", "-m set --match-set s src -j DROP", pk{proto: 6, src: "192.0.2.2", dst: "1.1.1.1"}, false},
		{"  s: {type: hash:ip, elements: [192.0.2.1, \"2001:db8::1\"]}\n", "-m set --match-set s src -j DROP", pk{v6: true, proto: 6, src: "2001:db8::1", dst: "2001:db8::2"}, true},
		{"  s: {type: bitmap:port, elements: [\"22\", \"udp:53\", \"8000-8100\"]}\n", "-m set --match-set s dst -j DROP", pk{proto: 6, dport: 22}, true},
		{"  s: {type: bitmap:port, elements: [\"22\", \"udp:53\", \"8000-8100\"]}\n", "-m set --match-set s dst -j DROP", pk{proto: 6, dport: 53}, false},
		{"  s: {type: bitmap:port, elements: [\"22\", \"udp:53\", \"8000-8100\"]}\n", "-m set --match-set s dst -j DROP", pk{proto: 17, dport: 53}, true},
		{"  s: {type: bitmap:port, elements: [\"22\", \"udp:53\", \"8000-8100\"]}\n", "-m set --match-set s dst -j DROP", pk{proto: 17, dport: 8050}, true},
		{"  s: {type: bitmap:port, elements: [\"22\", \"udp:53\", \"8000-8100\"]}\n", "-m set --match-set s src -j DROP", pk{proto: 17, dport: 8050, sport: 1}, false},
		{"  s: {type: bitmap:port, elements: [\"22\"]}\n", "-m set --match-set s dst -j DROP", pk{proto: 1, icmpType: 8}, false},
		{"  s: {type: \"addr . port\", elements: [\"10.0.2.2 . 80\", \"10.0.2.2 . udp:53\", \"2001:db8:2::2,tcp:443\"]}\n", "-m set --match-set s dst,dst -j DROP", pk{proto: 6, dport: 80}, true},
		{"  s: {type: \"addr . port\", elements: [\"10.0.2.2 . 80\", \"10.0.2.2 . udp:53\", \"2001:db8:2::2,tcp:443\"]}\n", "-m set --match-set s dst,dst -j DROP", pk{proto: 17, dport: 80}, true},
		{"  s: {type: \"addr . port\", elements: [\"10.0.2.2 . 80\", \"10.0.2.2 . udp:53\", \"2001:db8:2::2,tcp:443\"]}\n", "-m set --match-set s dst,dst -j DROP", pk{proto: 6, dport: 53}, false},
		{"  s: {type: \"addr . port\", elements: [\"10.0.2.2 . 80\", \"10.0.2.2 . udp:53\", \"2001:db8:2::2,tcp:443\"]}\n", "-m set --match-set s dst,dst -j DROP", pk{proto: 17, dport: 53}, true},
		{"  s: {type: \"addr . port\", elements: [\"10.0.2.2 . 80\", \"10.0.2.2 . udp:53\", \"2001:db8:2::2,tcp:443\"]}\n", "-m set --match-set s dst,dst -j DROP", pk{v6: true, proto: 6, dport: 443}, true},
		{"  s: {type: \"addr . port\", elements: [\"10.0.2.2 . 80\", \"10.0.2.2 . udp:53\", \"2001:db8:2::2,tcp:443\"]}\n", "-m set --match-set s dst,dst -j DROP", pk{v6: true, proto: 17, dport: 443}, false},
		{"  s: {type: \"addr . port\", elements: [\"10.0.1.2 . 80\"]}\n", "-m set --match-set s src,dst -j DROP", pk{proto: 6, dport: 80}, true},
		{"  s: {type: \"addr . port\", elements: [\"10.0.1.2 . 80\"]}\n", "-m set --match-set s src,src -j DROP", pk{proto: 6, dport: 80}, false},
		{"  s: {type: \"addr . port\", elements: [\"10.0.2.2 . 80\"]}\n", "-m set --match-set s dst,dst -j DROP", pk{proto: 6, dport: 80, fragOff: 8}, false},
		{"  s: {type: \"addr . port\", elements: [\"10.0.2.2 . 80\"]}\n", "-m set --match-set s dst,dst -j DROP", pk{proto: 6, dport: 80, l4len: 2}, false},
		{"  s: {type: \"prefix . port\", elements: [\"10.0.0.0/8 . 80\", \"10.0.2.0/24 . udp:1-100\"]}\n", "-m set --match-set s dst,dst -j DROP", pk{proto: 6, dport: 80}, true},
		{"  s: {type: \"prefix . port\", elements: [\"10.0.0.0/8 . 80\", \"10.0.2.0/24 . udp:1-100\"]}\n", "-m set --match-set s dst,dst -j DROP", pk{proto: 17, dport: 99}, true},
		{"  s: {type: \"prefix . port\", elements: [\"10.0.0.0/8 . 80\", \"10.0.2.0/24 . udp:1-100\"]}\n", "-m set --match-set s dst,dst -j DROP", pk{proto: 6, dport: 99}, false},
		{"  s: {type: \"prefix . port\", elements: [\"10.0.0.0/8 . 80\", \"2001:db8::/33 . 7\"]}\n", "-m set --match-set s dst,dst -j DROP", pk{v6: true, proto: 17, dport: 7}, true},
	}
	for i, c := range cases {
		m := mustLoad(t, setSection(c.set, c.rule))
		pc := c.p.ctx(t)
		pc.Hook = pipeline.Forward
		got := eval(m, pc) == pipeline.VerdictDrop
		if got != c.want {
			t.Errorf("case %d: %s %s on %+v: dropped %v, want %v", i, strings.TrimSpace(c.set), c.rule, c.p, got, c.want)
		}
	}
}

// TestSetCanonical: the rule's text and the elements' canonical forms.
func TestSetCanonical(t *testing.T) {
	m := mustLoad(t, setSection("  s: {type: \"hash:ip,port\", elements: [\"192.0.2.1,tcp:80\", \"192.0.2.1 . 81\"]}\n", "-m set ! --match-set s src,dst -j DROP"))
	r := m.tables[0].chains[m.tables[0].byName["forward"]].rules[0]
	if want := "-m set ! --match-set s src,dst -j DROP"; r.text != want {
		t.Errorf("text %q, want %q", r.text, want)
	}
	in := m.sets["s"].Info(time.Now(), true)
	var got []string
	for _, e := range in.Members {
		got = append(got, e.Elem)
	}
	if strings.Join(got, "|") != "192.0.2.1 . tcp:80|192.0.2.1 . 81" {
		t.Errorf("members %q", got)
	}
	for _, c := range []struct{ t, in, want string }{
		{"hash:net", "10.1.2.3/8", "10.0.0.0/8"},
		{"hash:net", "10.0.0.0-10.0.0.255", "10.0.0.0/24"},
		{"hash:net", "10.0.0.1-10.0.0.2", "10.0.0.1-10.0.0.2"},
		{"hash:net", "::ffff:10.0.0.1", "10.0.0.1/32"},
		{"hash:net,port", "2001:db8::1/32 , udp:7-9", "2001:db8::/32 . udp:7-9"},
		{"bitmap:port", "https", "443"},
	} {
		typ, _ := parseSetType(c.t)
		_, text, _, err := parseElement(typ, c.in)
		if err != nil || text != c.want {
			t.Errorf("%s %q: %q, %v; want %q", c.t, c.in, text, err, c.want)
		}
	}
}

// TestSetLookupRandom: hash:net lookups of random nested and overlapping
// prefixes and ranges, some expired, against a brute force: an address is
// in the set when an unexpired element holds it, and the element found
// holds it and is unexpired.
func TestSetLookupRandom(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 7))
	now := time.Unix(1000, 0)
	for round := 0; round < 200; round++ {
		v6 := round%3 == 2
		randAddr := func() netip.Addr {
			if v6 {
				var b [16]byte
				b[0], b[1] = 0x20, 0x01
				b[2] = byte(r.IntN(4))
				for i := 3; i < 16; i++ {
					b[i] = byte(r.IntN(256))
				}
				if r.IntN(2) == 0 {
					for i := 4; i < 16; i++ {
						b[i] = 0
					}
					b[15] = byte(r.IntN(8))
				}
				return netip.AddrFrom16(b)
			}
			return netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(4)), byte(r.IntN(256))})
		}
		decl := setDecl{name: "r", typ: setNet, timeout: time.Hour, maxElem: defaultMaxElem}
		var lines []string
		stateless := round%2 == 1 // nothing expires: the intervals name the elements
		if stateless {
			decl.timeout = 0
		}
		n := 1 + r.IntN(40)
		if round%10 == 0 {
			n = 400 // past 64 interval starts per /16: the guides
		}
		for i := 0; i < n; i++ {
			a := randAddr()
			var e string
			switch r.IntN(3) {
			case 0:
				bits := 8 + r.IntN(25)
				if v6 {
					bits = 16 + r.IntN(113)
				}
				e = netip.PrefixFrom(a, bits).Masked().String()
			case 1:
				b := randAddr()
				if b.Less(a) {
					a, b = b, a
				}
				e = a.String() + "-" + b.String()
			default:
				e = a.String()
			}
			if !stateless {
				e += fmt.Sprintf(" timeout %d", 1+r.IntN(3))
			}
			lines = append(lines, e)
		}
		s, err := newSetLines(decl, lines, now)
		if err != nil {
			t.Fatal(err)
		}
		if round%7 == 0 { // a run-time add and del rebuild it
			if _, err := s.Add(randAddr().String(), -1, now); err != nil {
				t.Fatal(err)
			}
			if err := s.Del(elemText(s.snap.Load(), 0), now); err != nil {
				t.Fatal(err)
			}
		}
		at := now.Add(time.Duration(r.IntN(4)) * time.Second).UnixNano()
		sn := s.snap.Load()
		for q := 0; q < 300; q++ {
			a := randAddr()
			want := false
			for i := range sn.elems {
				k := &sn.elems[i].key
				if k.v4 == a.Is4() && !a.Less(k.loAddr()) && !k.hiAddr().Less(a) && !sn.elems[i].expired(at) {
					want = true
				}
			}
			e := sn.lookup(a, 0, 0, at)
			if (e >= 0) != want {
				t.Fatalf("seed %d round %d: %s: found %d, want %v; elements %v", seed, round, a, e, want, elemTexts(sn))
			}
			if e >= 0 {
				k := &sn.elems[e].key
				if a.Less(k.loAddr()) || k.hiAddr().Less(a) || sn.elems[e].expired(at) {
					t.Fatalf("seed %d: %s found in %s (expired %v)", seed, a, elemText(sn, e), sn.elems[e].expired(at))
				}
			}
		}
	}
}

func elemTexts(sn *setSnap) []string {
	var out []string
	for i := range sn.elems {
		out = append(out, elemText(sn, int32(i)))
	}
	return out
}

// elemText is element e's canonical text, as a listing shows it.
func elemText(sn *setSnap, e int32) string { return sn.elems[e].key.format(sn.typ) }

// newSetLines makes a set from element lines as a file gives them.
func newSetLines(d setDecl, lines []string, now time.Time) (*Set, error) {
	l := newSetLoader(d, now)
	for _, line := range lines {
		if err := l.add(line); err != nil {
			return nil, err
		}
	}
	return newSet(d, l.elems, l.vals)
}

// TestSetTimeouts: elements expire on the batch clock; the default
// timeout applies to run-time adds; an add again renews; a listing shows
// what is left; counters count matches.
func TestSetTimeouts(t *testing.T) {
	clock := time.Unix(5000, 0)
	testNow = func() time.Time { return clock }
	defer func() { testNow = nil }()
	m := mustLoad(t, setSection("  s: {type: hash:ip, timeout: 10, counters: true, elements: [\"10.0.2.2 timeout 0\", \"10.0.2.3\"]}\n", "-m set --match-set s dst -j DROP"))
	s := m.sets["s"]
	drop := func(dst string) bool {
		pc := pk{proto: 17, src: "10.0.1.2", dst: dst, hook: pipeline.Forward}.ctx(t)
		return eval(m, pc) == pipeline.VerdictDrop
	}
	if !drop("10.0.2.2") || !drop("10.0.2.3") || drop("10.0.2.4") {
		t.Fatal("declared elements")
	}
	if _, err := s.Add("10.0.2.4", -1, clock); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add("10.0.2.5", 3*time.Second, clock); err != nil {
		t.Fatal(err)
	}
	if !drop("10.0.2.4") || !drop("10.0.2.5") {
		t.Fatal("added elements")
	}
	clock = clock.Add(4 * time.Second)
	if drop("10.0.2.5") || !drop("10.0.2.4") {
		t.Fatal("10.0.2.5 should have expired after 3 s, 10.0.2.4 not")
	}
	if _, err := s.Add("10.0.2.4", 20*time.Second, clock); err != nil { // renews
		t.Fatal(err)
	}
	clock = clock.Add(7 * time.Second) // 11 s: the declared 10.0.2.3 (default 10 s? no: declared elements without timeout never expire)
	if !drop("10.0.2.4") || !drop("10.0.2.2") || !drop("10.0.2.3") {
		t.Fatal("renewed / declared elements")
	}
	in := s.Info(clock, true)
	got := map[string]SetElement{}
	for _, e := range in.Members {
		got[e.Elem] = e
	}
	if in.Entries != 3 || got["10.0.2.4"].Timeout != 13 || got["10.0.2.2"].Timeout != 0 || got["10.0.2.2"].Packets != 2 {
		t.Fatalf("listing %+v", in)
	}
	if err := s.Del("10.0.2.5", clock); err == nil {
		t.Error("deleting an expired element: no error")
	}
	if err := s.Del("10.0.2.4", clock); err != nil || drop("10.0.2.4") {
		t.Fatalf("del: %v", err)
	}
	if n, err := s.Flush(clock); err != nil || n != 2 || drop("10.0.2.2") {
		t.Fatalf("flush: %d", n)
	}
}

// TestSetConfigErrors: what a broken set declaration or rule says.
func TestSetConfigErrors(t *testing.T) {
	for _, c := range []struct{ set, rule, want string }{
		{"  s: {type: hash:nett}\n", "-j DROP", `unknown set type "hash:nett"`},
		{"  s: {elements: [1.2.3.4]}\n", "-j DROP", "a set needs a type"},
		{"  s: {type: hash:ip, elemnts: [1.2.3.4]}\n", "-j DROP", `elemnts`},
		{"  s: {type: hash:ip, elements: [10.0.0.0/8]}\n", "-j DROP", `a hash:ip set holds addresses, not prefixes`},
		{"  s: {type: hash:ip, elements: [\"1.2.3.4 timeout 5\"]}\n", "-j DROP", `timeout on an element of a set without timeout`},
		{"  s: {type: \"hash:ip,port\", elements: [\"1.2.3.4\"]}\n", "-j DROP", `ADDR . [PROTO:]PORT`},
		{"  s: {type: \"hash:ip,port\", elements: [\"1.2.3.4 . icmp:3\"]}\n", "-j DROP", `the protocol is one of`},
		{"  s: {type: hash:ip, maxelem: 1, elements: [1.2.3.4, 1.2.3.5]}\n", "-j DROP", `more than maxelem 1`},
		{"  s: {type: hash:ip}\n", "-m set --match-set t src -j DROP", `set "t" does not exist`},
		{"  s: {type: hash:ip}\n", "-m set --match-set s src,dst -j DROP", `has 1 dimension(s), --match-set gives 2`},
		{"  s: {type: hash:ip}\n", "-m set --match-set s up -j DROP", `flag "up" is not src or dst`},
		{"  bad name: {type: hash:ip}\n", "-j DROP", `set name "bad name"`},
		{"  s: {type: hash:ip, constant: true, timeout: 5}\n", "-j DROP", `a constant set has no timeout and no counters`},
		{"  s: {type: hash:ip, constant: true}\n", "-j SET --add-set s src", `set s is constant`},
	} {
		_, err := load(t, setSection(c.set, c.rule))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s: %v, want …%s…", strings.TrimSpace(c.set), c.rule, err, c.want)
		}
		if err != nil && !strings.Contains(err.Error(), ":") {
			t.Errorf("no position: %v", err)
		}
	}
}

// FuzzParseElement: no input panics the element parser; what it accepts
// has a canonical text that parses to the same value.
func FuzzParseElement(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "192.0.2.1-192.0.2.9", "2001:db8::/32 timeout 5", "1.2.3.4 . tcp:80",
		"1.2.3.4,udp:1-9 packets 3 bytes 9", "::ffff:1.2.3.4", "80", "udp:53", "10.0.0.0/8 . 22", "- . -", "1.2.3.4 timeout"} {
		for t := setNet; t <= setNetPort; t++ {
			f.Add(uint8(t), s)
		}
	}
	f.Fuzz(func(t *testing.T, typ uint8, s string) {
		st := setType(typ%5 + 1)
		k, text, _, err := parseElement(st, s)
		if err != nil {
			return
		}
		k2, text2, _, err := parseElement(st, text)
		if err != nil || text2 != text || k2 != k {
			t.Fatalf("%s %q → %q → %q, %v", st, s, text, text2, err)
		}
		sn, err := buildSnap(st, []setElem{{key: k}})
		if err != nil {
			return
		}
		a := k.loAddr()
		if st == setPort {
			a = netip.MustParseAddr("1.2.3.4")
		}
		proto := k.proto
		if proto == 0 {
			proto = 6
		}
		if sn.lookup(a, k.plo, proto, 0) != 0 || sn.lookup(a, k.phi, proto, 0) != 0 {
			t.Fatalf("%s %q: its own element not found", st, text)
		}
	})
}

// TestSetConstant: a constant address set is its matcher's exact
// constraint (the classifier prunes on it and answers sure); it refuses
// run-time changes; a set that may change describes nothing.
func TestSetConstant(t *testing.T) {
	m := mustLoad(t, setSection("  c: {type: hash:net, constant: true, elements: [10.0.0.0/8, \"192.0.2.5-192.0.2.9\"]}\n  v: {type: hash:net, elements: [10.0.0.0/8]}\n", "-m set --match-set c src -j DROP"))
	r := m.tables[0].chains[m.tables[0].byName["forward"]].rules[0]
	sm := r.ms[0].(*SetMatch)
	cs := sm.Constraint()
	if len(cs) != 1 || cs[0].Field != pipeline.FieldSrcAddr || len(cs[0].Prefixes) != 4 || matcherKind(sm) != classify.Pure|classify.Exact {
		t.Fatalf("constraint %+v, kind %v", cs, matcherKind(sm))
	}
	if _, err := m.sets["c"].Add("10.9.9.9", -1, time.Now()); err == nil || !strings.Contains(err.Error(), "constant") {
		t.Errorf("add to a constant set: %v", err)
	}
	if _, err := m.sets["c"].Flush(time.Now()); err == nil {
		t.Error("flush of a constant set")
	}
	v := &SetMatch{set: m.sets["v"], dirs: []bool{true}}
	if v.Constraint() != nil || matcherKind(v) != classify.Pure {
		t.Errorf("a set that may change: %+v, %v", v.Constraint(), matcherKind(v))
	}
}

// TestSetCompactDuplicates: an element given twice is the later line —
// its options and, in a verdict map, its verdict (kept beside the compact
// records) — and the listing's text is made from the record.
func TestSetCompactDuplicates(t *testing.T) {
	now := time.Unix(1000, 0)
	m, err := newSetLines(setDecl{name: "m", typ: setPort, maxElem: 10, isMap: true},
		[]string{"tcp:80 : accept", "tcp:443 : jump web", "tcp:80 : drop"}, now)
	if err != nil {
		t.Fatal(err)
	}
	in := m.Info(now, true)
	if len(in.Members) != 2 || in.Members[0] != (SetElement{Elem: "tcp:80", Verdict: "drop"}) || in.Members[1] != (SetElement{Elem: "tcp:443", Verdict: "jump web"}) {
		t.Fatalf("members %+v", in.Members)
	}
	s, err := newSetLines(setDecl{name: "s", typ: setNet, timeout: time.Hour, maxElem: 10},
		[]string{"10.1.2.3/8 timeout 5", "192.0.2.1-192.0.2.6", "10.0.0.0/8 timeout 60", "::ffff:192.0.2.9"}, now)
	if err != nil {
		t.Fatal(err)
	}
	in = s.Info(now, true)
	want := []SetElement{{Elem: "10.0.0.0/8", Timeout: 60}, {Elem: "192.0.2.1-192.0.2.6"}, {Elem: "192.0.2.9/32"}}
	if len(in.Members) != len(want) {
		t.Fatalf("members %+v", in.Members)
	}
	for i := range want {
		if in.Members[i] != want[i] {
			t.Errorf("member %d: %+v, want %+v", i, in.Members[i], want[i])
		}
	}
}
