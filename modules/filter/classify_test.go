package filter

import (
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/classify"
)

// The classifier's equivalence test: random rule sets with long chains,
// compiled (pipeline/classify, every chain indexed), against random_test.go's
// naive evaluator extended with what the classifier must get right beyond
// it: -o links, a custom matcher that declares FieldOther (it may hotdrop)
// at a random place among a rule's matchers, non-first fragments and
// truncated transport headers (the transport matchers hotdrop or refuse
// them), and prefixes and ports spread so that rules overlap.

func init() {
	pipeline.RegisterModule(new(ttlOdd))
	pipeline.RegisterModule(new(ctSt))
}

// ctSt (filter.match.ctst, test only): the packet's CTInfo.State() is one
// of the states in mask (bit s for state s), "!" inverts — the shape of
// modules/conntrack's state matcher, which this package cannot import.
// It declares FieldCTState alone (Pure) and describes it as a constraint.
type ctSt struct {
	States string `yaml:"states"`
	mask   uint16
	inv    bool
}

func (*ctSt) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.ctst", Summary: "test only", New: func() pipeline.Module { return new(ctSt) }}
}
func (*ctSt) Options() []Opt { return []Opt{{Name: "states", Args: 1, Invert: true}} }
func (m *ctSt) Provision(*pipeline.Context) error {
	v, inv := strings.CutPrefix(m.States, "!")
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 16)
	m.mask, m.inv = uint16(n), inv
	return err
}
func (*ctSt) Fields() pipeline.FieldSet { return pipeline.FieldCTState }
func (m *ctSt) Constraint() []pipeline.FieldConstraint {
	c := pipeline.FieldConstraint{Field: pipeline.FieldCTState, Invert: m.inv}
	for s := uint32(0); s < 16; s++ {
		if m.mask&(1<<s) != 0 {
			c.Ranges = append(c.Ranges, pipeline.ValueRange{Lo: s, Hi: s})
		}
	}
	return []pipeline.FieldConstraint{c}
}
func (m *ctSt) Spec() string {
	return fmt.Sprintf("-m ctst %s--states %d", not(m.inv), m.mask)
}
func (m *ctSt) Match(pc *pipeline.PacketContext) (bool, bool) {
	return (m.mask&(1<<pc.Pkt.CTInfo.State()) != 0) != m.inv, false
}

// ttlOdd (filter.match.ttlodd, test only): matches a packet whose TTL (hop
// limit) is odd; with hot, a TTL of 7 is dropped at once (hotdrop). It
// describes no constraint and declares FieldOther: the classifier must
// call it wherever it stands.
type ttlOdd struct {
	Hot string `yaml:"hot"`
	hot bool
}

func (*ttlOdd) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.ttlodd", Summary: "test only", New: func() pipeline.Module { return new(ttlOdd) }}
}
func (*ttlOdd) Options() []Opt { return []Opt{{Name: "hot", Args: 0}} }
func (m *ttlOdd) Provision(*pipeline.Context) error {
	m.hot = m.Hot == "true"
	return nil
}
func (*ttlOdd) Fields() pipeline.FieldSet              { return pipeline.FieldOther }
func (*ttlOdd) Constraint() []pipeline.FieldConstraint { return nil }
func (m *ttlOdd) Spec() string {
	if m.hot {
		return "-m ttlodd --hot"
	}
	return "-m ttlodd"
}
func (m *ttlOdd) Match(pc *pipeline.PacketContext) (bool, bool) {
	nh := pc.Pkt.NetworkHeader()
	ttl := nh[8]
	if pc.Pkt.NetProto == pipeline.IPv6ProtocolNumber {
		ttl = nh[7]
	}
	if m.hot && ttl == 7 {
		return false, true
	}
	return ttl%2 == 1, false
}

// crule is a random rule with the extensions.
type crule struct {
	*nrule
	out      string
	outInv   bool
	other    int // where the custom matcher stands: 0 before the transport matcher, 1 before multiport, 2 before mark, 3 last; -1 none
	otherHot bool
	ctMask   uint16 // ctst right after the base matcher (before a custom matcher); 0: none
	ctInv    bool
	// set: a set matcher after the others (-m set, last before the
	// target): -1 none, 0 sn src, 1 sn dst, 2 sp dst,dst; setInv "!".
	set      int
	setInv   bool
	setFirst bool // before every other matcher (but the base and -o)
	cs       *cset
}

// cpacket is a random packet with the extensions.
type cpacket struct {
	npacket
	out   pipeline.NICID
	ttl   uint8
	ct    pipeline.CTInfo
	frag  bool // a non-first IPv4 fragment (offset 16)
	short bool // 2 bytes of transport header
}

// ordered is the rule's verdict on p, its matchers in their order: match,
// or hotdrop.
func (nv naive) ordered(r *crule, p *cpacket) (bool, bool) {
	b := *r.nrule
	b.sport, b.dport, b.mports, b.hasMark, b.icmpType, b.hasFlags = nil, nil, nil, false, -1, false
	if !nv.matches(&b, &p.npacket) {
		return false, false
	}
	if r.out != "" {
		name := nicNames[p.out]
		m := name == r.out
		if strings.HasSuffix(r.out, "+") {
			m = p.out != 0 && strings.HasPrefix(name, strings.TrimSuffix(r.out, "+"))
		}
		if p.out == 0 {
			m = false
		}
		if m == r.outInv {
			return false, false
		}
	}
	if r.set >= 0 && r.setFirst && r.cs.inSet(r.set, p) == r.setInv {
		return false, false
	}
	transport := func(x *nrule) (bool, bool) {
		switch {
		case p.frag:
			return false, false
		case p.short:
			return false, true
		}
		return nv.matches(x, &p.npacket), false
	}
	if r.ctMask != 0 && (r.ctMask&(1<<p.ct.State()) != 0) == r.ctInv {
		return false, false // ctst stands after the base matcher
	}
	for i := 0; i < 4; i++ {
		if r.other == i {
			if r.otherHot && p.ttl == 7 {
				return false, true
			}
			if p.ttl%2 == 0 {
				return false, false
			}
		}
		x := b
		switch i {
		case 0:
			if r.sport == nil && r.dport == nil && r.icmpType < 0 && !r.hasFlags {
				continue
			}
			x.sport, x.dport, x.icmpType, x.hasFlags = r.sport, r.dport, r.icmpType, r.hasFlags
		case 1:
			if r.mports == nil {
				continue
			}
			x.mports = r.mports
		case 2:
			if !r.hasMark {
				continue
			}
			x.hasMark = true
			if !nv.matches(&x, &p.npacket) {
				return false, false
			}
			continue
		default:
			continue
		}
		if ok, hot := transport(&x); hot || !ok {
			return ok, hot
		}
	}
	if r.set >= 0 && !r.setFirst {
		return r.cs.inSet(r.set, p) != r.setInv, false
	}
	return true, false
}

// inSet is the brute-force membership of p in set k (crule.set).
func (cs *cset) inSet(k int, p *cpacket) bool {
	switch k {
	case 0, 1:
		a := p.src
		if k == 1 {
			a = p.dst
		}
		for _, pf := range cs.setNet {
			if pf.Contains(a) {
				return true
			}
		}
		return false
	}
	if p.frag || p.short || p.proto != 6 && p.proto != 17 {
		return false
	}
	for _, e := range cs.setAP {
		if e.addr == p.dst && e.port == p.dport && (e.proto == 0 || e.proto == p.proto) {
			return true
		}
	}
	return false
}

func (nv naive) crun(chains [][]*crule, c int, p *cpacket, counts [][]uint64) string {
	for i, r := range chains[c] {
		ok, hot := nv.ordered(r, p)
		if hot {
			return "hotdrop"
		}
		if !ok {
			continue
		}
		counts[c][i]++
		switch r.target {
		case "accept", "drop":
			return r.target
		case "return":
			return "return"
		case "jump":
			if v := nv.crun(chains, r.to, p, counts); v != "return" {
				return v
			}
		case "goto":
			return nv.crun(chains, r.to, p, counts)
		case "mark":
			p.mark = r.setMark
		}
	}
	return "return"
}

// cset is a random rule set and the pools its packets are drawn from.
type cset struct {
	chains [][]*crule
	policy string
	text   string
	pfx4   []netip.Prefix
	ports  []uint16
	// The sets sn (hash:net) and sp (addr . port) the set matchers use.
	setNet []netip.Prefix
	setAP  []apElem
}

type apElem struct {
	addr  netip.Addr
	proto uint8
	port  uint16
}

func randPrefix4(r *rand.Rand) netip.Prefix {
	a := [4]byte{10, byte(r.Intn(4)), byte(r.Intn(256)), byte(r.Intn(256))}
	return netip.PrefixFrom(netip.AddrFrom4(a), []int{8, 14, 16, 24, 28, 31, 32, 32, 32}[r.Intn(9)]).Masked()
}

func randCSet(r *rand.Rand, maxRules int) cset {
	n := 1 + r.Intn(4)
	cs := cset{chains: make([][]*crule, n), policy: pick(r, []string{"accept", "drop"})}
	for i := 0; i < 12; i++ {
		cs.pfx4 = append(cs.pfx4, randPrefix4(r))
		cs.ports = append(cs.ports, uint16(r.Intn(65536)))
	}
	cs.ports = append(cs.ports, ports...)
	var sb strings.Builder
	sb.WriteString("sets:\n  sn: {type: hash:net, constant: " + strconv.FormatBool(r.Intn(2) == 0) + ", elements: [")
	for i := r.Intn(4); i > 0; i-- {
		pf := pick(r, cs.pfx4)
		if r.Intn(2) == 0 {
			pf = randPrefix4(r)
		}
		cs.setNet = append(cs.setNet, pf)
		fmt.Fprintf(&sb, "%q, ", pf.String())
	}
	sb.WriteString("]}\n  sp: {type: \"addr . port\", counters: " + strconv.FormatBool(r.Intn(2) == 0) + ", elements: [")
	for i := r.Intn(6); i > 0; i-- {
		a := pick(r, cs.pfx4).Addr().As4()
		a[3] += byte(r.Intn(4))
		e := apElem{addr: netip.AddrFrom4(a), proto: []uint8{0, 6, 17}[r.Intn(3)], port: pick(r, cs.ports)}
		cs.setAP = append(cs.setAP, e)
		proto := map[uint8]string{0: "", 6: "tcp:", 17: "udp:"}[e.proto]
		fmt.Fprintf(&sb, "\"%s . %s%d\", ", e.addr, proto, e.port)
	}
	sb.WriteString("]}\n")
	sb.WriteString("filter:\n")
	for c := 0; c < n; c++ {
		name := chainName(c)
		if c == 0 {
			name = "forward"
		}
		fmt.Fprintf(&sb, "  %s:\n", name)
		if c == 0 {
			fmt.Fprintf(&sb, "    policy: %s\n", cs.policy)
		}
		sb.WriteString("    rules:\n")
		k := r.Intn(maxRules + 1)
		if c > 0 {
			k = r.Intn(maxRules/3 + 2)
		}
		for ; k > 0; k-- {
			x := &crule{nrule: randRule(r, c, n), other: -1, set: -1, cs: &cs}
			if x.family != 6 && r.Intn(2) == 0 {
				x.family = 4
				if x.proto == 58 {
					x.proto = 6
				}
				if r.Intn(2) == 0 {
					x.src, x.srcInv = pick(r, cs.pfx4), r.Intn(5) == 0
				} else {
					x.dst, x.dstInv = pick(r, cs.pfx4), r.Intn(5) == 0
				}
			}
			if x.dport != nil && r.Intn(2) == 0 {
				a, b := pick(r, cs.ports), pick(r, cs.ports)
				if a > b {
					a, b = b, a
				}
				x.dport = &nrange{a, b}
			}
			if r.Intn(5) == 0 {
				x.out, x.outInv = pick(r, ins), r.Intn(3) == 0
			}
			if r.Intn(6) == 0 {
				x.other, x.otherHot = r.Intn(4), r.Intn(2) == 0
			}
			if r.Intn(5) == 0 {
				x.ctMask, x.ctInv = pick(r, []uint16{1 << 1, 1 << 2, 1<<2 | 1<<3, 1 << 4, 1<<0 | 1<<4, uint16(r.Intn(1 << 16))}), r.Intn(3) == 0
				if x.ctMask == 0 {
					x.ctMask = 1
				}
			}
			if r.Intn(4) == 0 {
				x.set, x.setInv, x.setFirst = r.Intn(3), r.Intn(3) == 0, r.Intn(2) == 0
			}
			cs.chains[c] = append(cs.chains[c], x)
			fmt.Fprintf(&sb, "      - %s\n", x.yaml())
		}
	}
	cs.text = sb.String()
	return cs
}

// yaml renders the rule as a mapping, the custom matcher at its place.
func (x *crule) yaml() string {
	m := x.yamlMap()
	parts := strings.Split(m[1:len(m)-1], ", ")
	if x.out != "" {
		parts = insertBefore(parts, []string{"sport:", "dport:", "tcp_flags:", "icmp_type:", "multiport:", "mark:", "target:", "jump:", "goto:"},
			"out: "+strconv.Quote(not(x.outInv)+x.out))
	}
	if x.ctMask != 0 { // after the base matcher's keys, before a custom matcher placed first
		parts = insertBefore(parts, []string{"sport:", "dport:", "tcp_flags:", "icmp_type:", "multiport:", "mark:", "target:", "jump:", "goto:"},
			fmt.Sprintf("ctst: {states: %q}", not(x.ctInv)+strconv.Itoa(int(x.ctMask))))
	}
	if x.other >= 0 {
		before := [][]string{
			{"sport:", "dport:", "tcp_flags:", "icmp_type:", "multiport:", "mark:", "target:", "jump:", "goto:"},
			{"multiport:", "mark:", "target:", "jump:", "goto:"},
			{"mark:", "target:", "jump:", "goto:"},
			{"target:", "jump:", "goto:"},
		}[x.other]
		o := "ttlodd: {}"
		if x.otherHot {
			o = `ttlodd: {hot: "true"}`
		}
		parts = insertBefore(parts, before, o)
	}
	if x.set >= 0 {
		keys := []string{"target:", "jump:", "goto:"}
		if x.setFirst {
			keys = append(keys, "ttlodd:", "sport:", "dport:", "tcp_flags:", "icmp_type:", "multiport:", "mark:")
		}
		parts = insertBefore(parts, keys, "set: "+strconv.Quote(not(x.setInv)+[]string{"sn src", "sn dst", "sp dst,dst"}[x.set]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func insertBefore(parts, keys []string, s string) []string {
	at := len(parts)
	for i, p := range parts {
		for _, k := range keys {
			if strings.HasPrefix(p, k) && i < at {
				at = i
			}
		}
	}
	if len(parts) == 1 && parts[0] == "" {
		return []string{s}
	}
	return append(parts[:at], append([]string{s}, parts[at:]...)...)
}

func (cs *cset) packet(r *rand.Rand) cpacket {
	p := cpacket{npacket: randPacket(r), out: pipeline.NICID(r.Intn(4)), ttl: pick(r, []uint8{7, 8, 64, 65})}
	if !p.v6 && r.Intn(2) == 0 {
		// Inside (or near) one of the set's prefixes.
		pf := pick(r, cs.pfx4)
		a := pf.Addr().As4()
		host := uint32(r.Int63()) & (1<<(32-pf.Bits()) - 1)
		if r.Intn(4) == 0 {
			host = uint32(r.Intn(4))
		}
		v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) + host
		if r.Intn(8) == 0 {
			v += 1 << (32 - pf.Bits()) // just past it
		}
		addr := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		if r.Intn(2) == 0 {
			p.src = addr
		} else {
			p.dst = addr
		}
	}
	if r.Intn(3) == 0 {
		p.dport = pick(r, cs.ports) + uint16(r.Intn(3)) - 1
	}
	p.ct = pipeline.CTInfo(r.Intn(6))
	switch r.Intn(6) {
	case 0:
		p.ct |= pipeline.CTReply
	case 1:
		p.ct = pipeline.CTInfo(r.Intn(256)) // states conntrack never sets too
	}
	if len(cs.setAP) > 0 && !p.v6 && r.Intn(4) == 0 {
		e := pick(r, cs.setAP)
		p.dst, p.dport = e.addr, e.port
	}
	switch r.Intn(40) {
	case 0:
		if !p.v6 {
			p.frag = true
		}
	case 1:
		p.short = true
	}
	return p
}

// classifyRun runs sets random rule sets of up to maxRules rules per chain,
// packets each, through the compiled engine and the naive evaluator; it
// returns what it ran and the first difference.
func classifyRun(t *testing.T, seed int64, sets, packets, maxRules int, bug classify.Bug, deadline time.Time) (nsets, npkts, indexed, skipped, sureN int, err error) {
	r := rand.New(rand.NewSource(seed))
	testNICNames = nicNames
	saved := classifyOptions
	classifyOptions.MinRules, classifyOptions.PlantedBug = 1, bug
	defer func() { testNICNames, classifyOptions = nil, saved }()
	pkt := pipeline.DefaultPool.Get(2048)
	defer pkt.Release()
	var nv naive
	disjointPairs = 0
	for s := 0; s < sets && time.Now().Before(deadline); s++ {
		cs := randCSet(r, maxRules)
		classifyOptions.DirMin = 0
		if s%4 == 0 {
			classifyOptions.DirMin = 1 // a DIR table for every IPv4 address partition
		}
		m, lerr := load(t, cs.text)
		if lerr != nil {
			t.Fatalf("seed %d: rule set %d does not load: %v\n%s", seed, s, lerr, cs.text)
		}
		tbl := m.tables[0]
		var fwd *pipeline.HookTable
		for _, e := range m.HookTables() {
			if e.Hook == pipeline.Forward {
				fwd = e.Table
			}
		}
		for _, ch := range fwd.Chains {
			if ch.Index != nil {
				indexed++
			}
		}
		counts := make([][]uint64, len(cs.chains))
		for c := range counts {
			counts[c] = make([]uint64, len(cs.chains[c]))
		}
		// Lint's Disjoint over the entry chain: the pairs it proves are
		// checked against every regular packet below.
		entry := fwd.Chains[fwd.Entry].Rules
		lintOpts := classifyOptions
		lintOpts.MinRules, lintOpts.PlantedBug = 1, 0
		var disjoint [][2]int
		if bug == 0 && len(entry) > 1 {
			lx := classify.Compile(entry, lintOpts)
			for a := range entry {
				for b := a + 1; b < len(entry); b++ {
					if lx.Disjoint(a, b) {
						disjoint = append(disjoint, [2]int{a, b})
					}
				}
			}
			disjointPairs += len(disjoint)
		}
		for i := 0; i < packets; i++ {
			np := cs.packet(r)
			if !np.frag && !np.short && len(disjoint) > 0 {
				fires := make([]bool, len(entry))
				for j, cr := range cs.chains[0] {
					ok, hot := nv.ordered(cr, &np)
					fires[j] = ok || hot
				}
				for _, d := range disjoint {
					if fires[d[0]] && fires[d[1]] {
						return nsets, npkts, indexed, skipped, sureN, fmt.Errorf("rule set %d: Disjoint(%d, %d) but packet %+v matches both\n%s", s, d[0]+1, d[1]+1, np, cs.text)
					}
				}
			}
			k := pk{v6: np.v6, proto: np.proto, src: np.src.String(), dst: np.dst.String(), sport: np.sport, dport: np.dport,
				icmpType: np.icmpType, icmpCode: np.icmpCode, flags: np.tcpFlags, ttl: np.ttl}
			if np.frag {
				k.fragOff = 16
			}
			if np.short {
				k.l4len = 2
			}
			pkt.SetData(k.bytes())
			pkt.SetNetworkHeader()
			pkt.NetProto = pipeline.IPv4ProtocolNumber
			if np.v6 {
				pkt.NetProto = pipeline.IPv6ProtocolNumber
			}
			pkt.Mark, pkt.InNIC, pkt.OutNIC, pkt.CTInfo = np.mark, np.in, np.out, np.ct
			pc := pipeline.PacketContext{Hook: pipeline.Forward, InNIC: np.in, OutNIC: np.out, Pkt: pkt}
			if !pipeline.ParseTuple(nil, pkt, &pc) {
				t.Fatalf("packet %+v does not parse", np)
			}
			if ix := fwd.Chains[fwd.Entry].Index; ix != nil && len(fwd.Chains[fwd.Entry].Rules) > 1 {
				next, sure := ix.Next(&pc, 0)
				skipped += next
				if sure {
					sureN++
				}
			}
			got := fwd.Evaluate(&pc)
			want := nv.crun(cs.chains, 0, &np, counts)
			switch want {
			case "return":
				want = cs.policy
			case "hotdrop":
				want = "drop"
			}
			gotS := map[pipeline.Verdict]string{pipeline.VerdictAccept: "accept", pipeline.VerdictDrop: "drop"}[got]
			npkts++
			if gotS != want || pkt.Mark != np.mark {
				return nsets, npkts, indexed, skipped, sureN, fmt.Errorf("rule set %d, packet %d %+v: classifier %s (mark %d), naive %s (mark %d)\n%s", s, i, np, gotS, pkt.Mark, want, np.mark, cs.text)
			}
		}
		for c, rules := range cs.chains {
			name := chainName(c)
			if c == 0 {
				name = "forward"
			}
			ch := tbl.chains[tbl.byName[name]]
			for i := range rules {
				if p, _ := ch.rules[i].counter.load(); p != counts[c][i] {
					return nsets, npkts, indexed, skipped, sureN, fmt.Errorf("rule set %d, chain %s rule %d: classifier counted %d, naive %d\n%s", s, name, i+1, p, counts[c][i], cs.text)
				}
			}
		}
		m.Cleanup()
		nsets++
	}
	return nsets, npkts, indexed, skipped, sureN, nil
}

// disjointPairs counts the pairs Disjoint proved in a run (checked on every
// regular packet of it).
var disjointPairs int

// TestClassifierEquivalence: the compiled chains decide and count exactly
// as the naive evaluator. CLASSIFY_SEED reruns a seed; CLASSIFY_LONG=1 runs
// up to 20,000 rule sets × 1,000 packets (20 million packets) instead of
// the default's 3,000 × 300 within 12 s; CLASSIFY_BUDGET bounds either.
func TestClassifierEquivalence(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("CLASSIFY_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d (rerun with CLASSIFY_SEED=%d)", seed, seed)
	sets, packets, budget := 3000, 300, 12*time.Second
	if os.Getenv("CLASSIFY_LONG") != "" {
		sets, packets, budget = 20000, 1000, time.Hour
	}
	if d, err := time.ParseDuration(os.Getenv("CLASSIFY_BUDGET")); err == nil {
		budget = d // e.g. CLASSIFY_LONG=1 CLASSIFY_BUDGET=5m
	}
	if testing.Short() {
		sets = 200
	}
	ns, np, idx, skip, sure, err := classifyRun(t, seed, sets, packets, 60, classify.NoBug, time.Now().Add(budget))
	t.Logf("%d rule sets, %d packets, %d indexed chains, %.1f rules skipped per packet at the entry chain's start, %d first candidates sure", ns, np, idx, float64(skip)/float64(max(np, 1)), sure)
	t.Logf("lint: %d rule pairs proved disjoint, none met by a packet", disjointPairs)
	if disjointPairs == 0 {
		t.Error("Disjoint proved no pair: the check proves nothing")
	}
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	if idx == 0 || ns < 50 || skip < np || sure < np/20 {
		t.Fatalf("only %d rule sets, %d indexed chains, %d rules skipped: the test proves nothing", ns, idx, skip)
	}
}

// TestClassifierCatchesPlantedBugs: a compiler that drops a range's upper
// bound, or every "!", is caught by the equivalence test.
func TestClassifierCatchesPlantedBugs(t *testing.T) {
	for _, bug := range []classify.Bug{classify.BugRangeOffByOne, classify.BugInvertIgnored} {
		_, np, _, _, _, err := classifyRun(t, 1, 2000, 300, 60, bug, time.Now().Add(15*time.Second))
		if err == nil {
			t.Errorf("planted bug %d went unnoticed over %d packets", bug, np)
		} else {
			t.Logf("planted bug %d noticed after %d packets: %.200s", bug, np, err)
		}
	}
}

// mixedChain is the bench module's FORWARD chain of n mixed rules
// (bench/filter_mixed_test.go, without the custom matcher) and its 4,096
// flows as packet contexts: the filter's own cost, without the stack.
func mixedChain(b testing.TB, n int) (*pipeline.HookTable, []*pipeline.PacketContext) {
	const flows, matching = 4096, 4096 * 9 / 10
	var sb strings.Builder
	sb.WriteString("filter:\n  forward:\n    rules:\n")
	for k := 0; k < n; k++ {
		lo, hi := k*matching/n, (k+1)*matching/n
		d := fmt.Sprintf("198.18.%d.%d", (1+lo)>>8, (1+lo)&255)
		p1, p2, s1, s2 := 2000+lo, 2000+hi-1, 1024+lo, 1024+hi-1
		if hi == lo {
			d = fmt.Sprintf("100.%d.%d.%d", 64+k>>16, (k>>8)&255, k&255)
			p1 = 30000 + k%30000
			p2, s1, s2 = p1, p1, p1
			hi = lo + 1
		}
		var r string
		switch k % 6 {
		case 0:
			r = fmt.Sprintf("-p udp --dport %d:%d", p1, p2)
			if hi-lo == 1 {
				r = "-d " + d + "/32"
			}
		case 1:
			r = fmt.Sprintf("-d 198.18.0.0/15 -p udp --sport %d:%d", s1, s2)
		case 2:
			r = fmt.Sprintf("! -s 10.99.0.0/16 -p udp --dport %d:%d", p1, p2)
		case 3:
			r = fmt.Sprintf("-i lan -o wan0 -p udp --dport %d:%d", p1, p2)
		case 4:
			r = fmt.Sprintf("-s 10.0.1.0/24 -p udp --dport %d:%d", p1, p2)
		case 5:
			r = fmt.Sprintf("-p udp ! --sport 0:1023 --dport %d:%d", p1, p2)
		}
		fmt.Fprintf(&sb, "      - %q\n", r+" -j ACCEPT")
	}
	m := mustLoad(b, sb.String())
	var fwd *pipeline.HookTable
	for _, e := range m.HookTables() {
		if e.Hook == pipeline.Forward {
			fwd = e.Table
		}
	}
	pcs := make([]*pipeline.PacketContext, flows)
	for i := range pcs {
		pcs[i] = pk{proto: 17, src: fmt.Sprintf("10.0.1.%d", 2+i%250), dst: fmt.Sprintf("198.18.%d.%d", (1+i)>>8, (1+i)&255),
			sport: uint16(1024 + i), dport: uint16(2000 + i), payload: 18, in: 1, out: 2, hook: pipeline.Forward}.ctx(b)
	}
	return fwd, pcs
}

// BenchmarkClassifiedChain: Evaluate alone over the mixed chain, the
// flows in turn (ns/op is per packet).
func BenchmarkClassifiedChain(b *testing.B) {
	testNICNames = nicNames
	defer func() { testNICNames = nil }()
	for _, n := range []int{0, 2, 4, 8, 10, 100, 1000, 10000} {
		for _, indexed := range []bool{true, false} {
			if !indexed && n > 1000 {
				continue
			}
			b.Run(fmt.Sprintf("rules=%d/index=%v", n, indexed), func(b *testing.B) {
				saved := classifyOptions
				classifyOptions.MinRules = 1 // every chain, even below the crossover
				if !indexed {
					classifyOptions.MinRules = 1 << 30
				}
				fwd, pcs := mixedChain(b, n)
				classifyOptions = saved
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					fwd.Evaluate(pcs[i%len(pcs)])
				}
			})
		}
	}
}
