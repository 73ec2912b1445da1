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
)

// The randomized test: random rule sets and random packets, the engine (the
// modules' Match and Action inside pipeline.HookTable) against a naive
// evaluator written here from the rules' generated fields.

type nrange struct{ lo, hi uint16 }

type nrule struct {
	family             int // 0, 4, 6
	proto              int // -1: none
	protoInv           bool
	src, dst           netip.Prefix // invalid: none
	srcInv, dstInv     bool
	in                 string
	inInv              bool
	sport, dport       *nrange
	sportInv, dportInv bool
	mports             []nrange // dports
	mportInv           bool
	mark, mask         uint32
	hasMark, markInv   bool
	icmpType           int // -1 none
	icmpCode           int // -1 any
	icmpInv            bool
	flagsMask, flags   uint8 // --tcp-flags MASK COMP
	hasFlags, flagsInv bool
	target             string // accept, drop, return, jump, goto, mark, "" (count)
	to                 int    // chain index for jump/goto
	setMark            uint32
}

type npacket struct {
	v6           bool
	proto        uint8
	src, dst     netip.Addr
	sport, dport uint16
	icmpType     uint8
	icmpCode     uint8
	tcpFlags     uint8
	in           pipeline.NICID
	mark         uint32
}

var nicNames = map[pipeline.NICID]string{1: "lan", 2: "wan0", 3: "wan1"}

// naive holds the planted bugs the self-check switches on.
type naive struct {
	offByOne  bool // a port range's upper bound excluded
	ignoreNot bool // "!" on -s ignored
}

func (nv naive) inRange(r nrange, p uint16) bool {
	if nv.offByOne {
		return p >= r.lo && p < r.hi
	}
	return p >= r.lo && p <= r.hi
}

func (nv naive) matches(r *nrule, p *npacket) bool {
	if r.family == 4 && p.v6 || r.family == 6 && !p.v6 {
		return false
	}
	if r.proto >= 0 && (int(p.proto) == r.proto) == r.protoInv {
		return false
	}
	if r.src.IsValid() {
		inv := r.srcInv && !nv.ignoreNot
		if r.src.Contains(p.src) == inv {
			return false
		}
	}
	if r.dst.IsValid() && r.dst.Contains(p.dst) == r.dstInv {
		return false
	}
	if r.in != "" {
		name := nicNames[p.in]
		m := name == r.in
		if strings.HasSuffix(r.in, "+") {
			m = strings.HasPrefix(name, strings.TrimSuffix(r.in, "+"))
		}
		if m == r.inInv {
			return false
		}
	}
	if r.sport != nil && nv.inRange(*r.sport, p.sport) == r.sportInv {
		return false
	}
	if r.dport != nil && nv.inRange(*r.dport, p.dport) == r.dportInv {
		return false
	}
	if r.mports != nil {
		hit := false
		for _, m := range r.mports {
			if nv.inRange(m, p.dport) {
				hit = true
			}
		}
		if hit == r.mportInv {
			return false
		}
	}
	if r.hasMark && (p.mark&r.mask == r.mark) == r.markInv {
		return false
	}
	if r.hasFlags && (p.tcpFlags&r.flagsMask == r.flags) == r.flagsInv {
		return false
	}
	if r.icmpType >= 0 {
		m := int(p.icmpType) == r.icmpType && (r.icmpCode < 0 || int(p.icmpCode) == r.icmpCode)
		if m == r.icmpInv {
			return false
		}
	}
	return true
}

// run evaluates chain c: "accept", "drop" or "return" (end or RETURN),
// counting matched rules in counts[c][i].
func (nv naive) run(chains [][]*nrule, c int, p *npacket, counts [][]uint64) string {
	for i, r := range chains[c] {
		if !nv.matches(r, p) {
			continue
		}
		counts[c][i]++
		switch r.target {
		case "accept", "drop":
			return r.target
		case "return":
			return "return"
		case "jump":
			if v := nv.run(chains, r.to, p, counts); v != "return" {
				return v
			}
		case "goto":
			return nv.run(chains, r.to, p, counts)
		case "mark":
			p.mark = r.setMark
		}
	}
	return "return"
}

func (nv naive) evaluate(chains [][]*nrule, policy string, p *npacket, counts [][]uint64) string {
	v := nv.run(chains, 0, p, counts)
	if v == "return" {
		return policy
	}
	return v
}

var (
	addrs4 = []string{"10.0.0.1", "10.0.0.200", "10.1.2.3", "192.0.2.9", "198.51.100.1"}
	addrs6 = []string{"2001:db8::1", "2001:db8::ff", "2001:db8:1::5", "fe80::1"}
	pfx4   = []string{"10.0.0.0/8", "10.0.0.0/24", "10.0.0.128/25", "192.0.2.9/32", "0.0.0.0/0"}
	pfx6   = []string{"2001:db8::/32", "2001:db8::/64", "2001:db8::ff/128", "fe80::/10"}
	ports  = []uint16{0, 1, 21, 22, 23, 53, 80, 443, 1023, 1024, 8080, 65535}
	ins    = []string{"lan", "wan0", "wan+", "wan1", "+"}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.Intn(len(s))] }

func randRange(r *rand.Rand) nrange {
	a, b := pick(r, ports), pick(r, ports)
	if r.Intn(3) == 0 {
		return nrange{a, a}
	}
	if a > b {
		a, b = b, a
	}
	return nrange{a, b}
}

func randRule(r *rand.Rand, chain, nchains int) *nrule {
	x := &nrule{proto: -1, icmpType: -1, icmpCode: -1}
	if r.Intn(4) == 0 {
		x.family = 4 + 2*r.Intn(2)
	}
	fam := x.family
	if r.Intn(3) == 0 {
		if fam == 0 {
			fam = 4 + 2*r.Intn(2)
		}
		x.family = fam
		if fam == 4 {
			x.src = netip.MustParsePrefix(pick(r, pfx4))
		} else {
			x.src = netip.MustParsePrefix(pick(r, pfx6))
		}
		x.srcInv = r.Intn(3) == 0
	}
	if r.Intn(4) == 0 {
		if fam == 0 {
			fam = 4 + 2*r.Intn(2)
		}
		x.family = fam
		if fam == 4 {
			x.dst = netip.MustParsePrefix(pick(r, pfx4))
		} else {
			x.dst = netip.MustParsePrefix(pick(r, pfx6))
		}
		x.dstInv = r.Intn(3) == 0
	}
	if r.Intn(4) == 0 {
		x.in, x.inInv = pick(r, ins), r.Intn(3) == 0
	}
	switch r.Intn(6) {
	case 0, 1:
		x.proto = 6
	case 2:
		x.proto = 17
	case 3:
		if fam != 6 {
			x.proto, x.family = 1, 4
			fam = 4
		}
	case 4:
		x.proto, x.protoInv = []int{6, 17, 47}[r.Intn(3)], r.Intn(2) == 0
	}
	if (x.proto == 6 || x.proto == 17) && !x.protoInv {
		if r.Intn(2) == 0 {
			rg := randRange(r)
			x.dport, x.dportInv = &rg, r.Intn(3) == 0
		}
		if r.Intn(3) == 0 {
			rg := randRange(r)
			x.sport, x.sportInv = &rg, r.Intn(3) == 0
		}
		if r.Intn(4) == 0 {
			for n := 1 + r.Intn(3); n > 0; n-- {
				x.mports = append(x.mports, randRange(r))
			}
			x.mportInv = r.Intn(3) == 0
		}
	}
	if x.proto == 6 && !x.protoInv && r.Intn(3) == 0 {
		// Masks as firewalls write them; COMP mostly within MASK (else
		// the rule never matches, as in Linux).
		x.hasFlags, x.flagsInv = true, r.Intn(3) == 0
		x.flagsMask = []uint8{0x12, 0x17, 0x3f, 0x02, 0xff}[r.Intn(5)]
		x.flags = uint8(r.Intn(256)) & x.flagsMask
		if r.Intn(10) == 0 {
			x.flags = uint8(r.Intn(256))
		}
	}
	if x.proto == 1 && !x.protoInv && r.Intn(2) == 0 {
		x.icmpType = []int{0, 3, 8, 11}[r.Intn(4)]
		if x.icmpType == 3 && r.Intn(2) == 0 {
			x.icmpCode = r.Intn(4)
		}
		x.icmpInv = r.Intn(3) == 0
	}
	if r.Intn(5) == 0 {
		x.hasMark, x.mark, x.mask, x.markInv = true, uint32(r.Intn(4)), []uint32{0xffffffff, 0x3, 0x1}[r.Intn(3)], r.Intn(3) == 0
		x.mark &= x.mask
	}
	targets := []string{"accept", "drop", "return", "", "mark"}
	if chain+1 < nchains {
		targets = append(targets, "jump", "jump", "goto")
	}
	x.target = pick(r, targets)
	if x.target == "jump" || x.target == "goto" {
		x.to = chain + 1 + r.Intn(nchains-chain-1)
	}
	x.setMark = uint32(r.Intn(4))
	return x
}

func chainName(i int) string {
	if i == 0 {
		return "input"
	}
	return "u" + strconv.Itoa(i)
}

func portStr(g nrange) string {
	if g.lo == g.hi {
		return strconv.Itoa(int(g.lo))
	}
	return fmt.Sprintf("%d:%d", g.lo, g.hi)
}

// iptables renders the rule as an iptables string.
func (x *nrule) iptables() string {
	var p []string
	b := func(inv bool) string {
		if inv {
			return "! "
		}
		return ""
	}
	if x.family == 4 {
		p = append(p, "-4")
	} else if x.family == 6 {
		p = append(p, "-6")
	}
	if x.proto >= 0 {
		p = append(p, b(x.protoInv)+"-p "+strconv.Itoa(x.proto))
	}
	if x.src.IsValid() {
		p = append(p, b(x.srcInv)+"-s "+x.src.String())
	}
	if x.dst.IsValid() {
		p = append(p, b(x.dstInv)+"-d "+x.dst.String())
	}
	if x.in != "" {
		p = append(p, b(x.inInv)+"-i "+x.in)
	}
	if x.sport != nil {
		p = append(p, b(x.sportInv)+"--sport "+portStr(*x.sport))
	}
	if x.dport != nil {
		p = append(p, b(x.dportInv)+"--dport "+portStr(*x.dport))
	}
	if x.hasFlags {
		p = append(p, b(x.flagsInv)+"--tcp-flags "+tcpFlagsString(x.flagsMask)+" "+tcpFlagsString(x.flags))
	}
	if x.icmpType >= 0 {
		t := strconv.Itoa(x.icmpType)
		if x.icmpCode >= 0 {
			t += "/" + strconv.Itoa(x.icmpCode)
		}
		p = append(p, b(x.icmpInv)+"--icmp-type "+t)
	}
	if x.mports != nil {
		var l []string
		for _, m := range x.mports {
			l = append(l, portStr(m))
		}
		p = append(p, "-m multiport "+b(x.mportInv)+"--dports "+strings.Join(l, ","))
	}
	if x.hasMark {
		p = append(p, fmt.Sprintf("-m mark %s--mark %d/%d", b(x.markInv), x.mark, x.mask))
	}
	switch x.target {
	case "accept", "drop", "return":
		p = append(p, "-j "+strings.ToUpper(x.target))
	case "jump":
		p = append(p, "-j "+chainName(x.to))
	case "goto":
		p = append(p, "-g "+chainName(x.to))
	case "mark":
		p = append(p, fmt.Sprintf("-j MARK --set-mark %d", x.setMark))
	}
	return strings.Join(p, " ")
}

// yamlMap renders the rule in the structured form.
func (x *nrule) yamlMap() string {
	var p []string
	b := func(inv bool) string {
		if inv {
			return "!"
		}
		return ""
	}
	q := strconv.Quote
	switch x.family {
	case 4:
		p = append(p, "family: ipv4")
	case 6:
		p = append(p, "family: ipv6")
	}
	if x.proto >= 0 {
		p = append(p, "proto: "+q(b(x.protoInv)+strconv.Itoa(x.proto)))
	}
	if x.src.IsValid() {
		p = append(p, "src: "+q(b(x.srcInv)+x.src.String()))
	}
	if x.dst.IsValid() {
		p = append(p, "dst: "+q(b(x.dstInv)+x.dst.String()))
	}
	if x.in != "" {
		p = append(p, "in: "+q(b(x.inInv)+x.in))
	}
	if x.sport != nil {
		p = append(p, "sport: "+q(b(x.sportInv)+portStr(*x.sport)))
	}
	if x.dport != nil {
		p = append(p, "dport: "+q(b(x.dportInv)+portStr(*x.dport)))
	}
	if x.hasFlags {
		p = append(p, "tcp_flags: "+q(b(x.flagsInv)+tcpFlagsString(x.flagsMask)+" "+tcpFlagsString(x.flags)))
	}
	if x.icmpType >= 0 {
		t := strconv.Itoa(x.icmpType)
		if x.icmpCode >= 0 {
			t += "/" + strconv.Itoa(x.icmpCode)
		}
		p = append(p, "icmp_type: "+q(b(x.icmpInv)+t))
	}
	if x.mports != nil {
		var l []string
		for _, m := range x.mports {
			l = append(l, portStr(m))
		}
		p = append(p, "multiport: {dports: "+q(b(x.mportInv)+strings.Join(l, ","))+"}")
	}
	if x.hasMark {
		p = append(p, "mark: "+q(fmt.Sprintf("%s%d/%d", b(x.markInv), x.mark, x.mask)))
	}
	switch x.target {
	case "accept", "drop", "return":
		p = append(p, "target: "+x.target)
	case "jump":
		p = append(p, "jump: "+chainName(x.to))
	case "goto":
		p = append(p, "goto: "+chainName(x.to))
	case "mark":
		p = append(p, fmt.Sprintf("target: {mark: {set_mark: \"%d\"}}", x.setMark))
	}
	return "{" + strings.Join(p, ", ") + "}"
}

func randPacket(r *rand.Rand) npacket {
	p := npacket{v6: r.Intn(3) == 0, in: pipeline.NICID(1 + r.Intn(3)), mark: uint32(r.Intn(4))}
	if p.v6 {
		p.src, p.dst = netip.MustParseAddr(pick(r, addrs6)), netip.MustParseAddr(pick(r, addrs6))
		p.proto = []uint8{6, 17, 47}[r.Intn(3)]
	} else {
		p.src, p.dst = netip.MustParseAddr(pick(r, addrs4)), netip.MustParseAddr(pick(r, addrs4))
		p.proto = []uint8{6, 17, 1, 47}[r.Intn(4)]
	}
	p.sport, p.dport = pick(r, ports), pick(r, ports)
	if r.Intn(4) == 0 {
		p.sport, p.dport = uint16(r.Intn(65536)), uint16(r.Intn(65536))
	}
	if p.proto == 6 {
		p.tcpFlags = []uint8{0x02, 0x12, 0x10, 0x11, 0x04, 0x18}[r.Intn(6)]
		if r.Intn(3) == 0 {
			p.tcpFlags = uint8(r.Intn(256))
		}
	}
	if p.proto == 1 {
		p.icmpType, p.icmpCode = []uint8{0, 3, 8, 11, 5}[r.Intn(5)], uint8(r.Intn(4))
	}
	return p
}

func (p npacket) pk() pk {
	return pk{v6: p.v6, proto: p.proto, src: p.src.String(), dst: p.dst.String(), sport: p.sport, dport: p.dport,
		icmpType: p.icmpType, icmpCode: p.icmpCode, flags: p.tcpFlags, in: p.in, mark: p.mark, hook: pipeline.Input}
}

type ruleSet struct {
	chains [][]*nrule
	policy string
	text   string
}

func randRuleSet(r *rand.Rand) ruleSet {
	n := 1 + r.Intn(4)
	rs := ruleSet{chains: make([][]*nrule, n), policy: pick(r, []string{"accept", "drop"})}
	var sb strings.Builder
	sb.WriteString("filter:\n")
	for c := 0; c < n; c++ {
		fmt.Fprintf(&sb, "  %s:\n", chainName(c))
		if c == 0 {
			fmt.Fprintf(&sb, "    policy: %s\n", rs.policy)
		}
		sb.WriteString("    rules:\n")
		for k := r.Intn(7); k >= 0; k-- {
			x := randRule(r, c, n)
			rs.chains[c] = append(rs.chains[c], x)
			if s := x.iptables(); s != "" && r.Intn(2) == 0 {
				fmt.Fprintf(&sb, "      - %s\n", quoteYAML(s))
			} else {
				fmt.Fprintf(&sb, "      - %s\n", x.yamlMap())
			}
		}
	}
	rs.text = sb.String()
	return rs
}

// differential runs sets rule sets with packets each through the engine and
// nv; it returns the first difference.
func differential(t *testing.T, seed int64, sets, packets int, nv naive, deadline time.Time) error {
	r := rand.New(rand.NewSource(seed))
	testNICNames = nicNames
	defer func() { testNICNames = nil }()
	for s := 0; s < sets && time.Now().Before(deadline); s++ {
		rs := randRuleSet(r)
		m, err := load(t, rs.text)
		if err != nil {
			t.Fatalf("seed %d: rule set %d does not load: %v\n%s", seed, s, err, rs.text)
		}
		counts := make([][]uint64, len(rs.chains))
		for c := range counts {
			counts[c] = make([]uint64, len(rs.chains[c]))
		}
		tbl := m.tables[0]
		for i := 0; i < packets; i++ {
			np := randPacket(r)
			pc := np.pk().ctx(t)
			got := eval(m, pc)
			want := nv.evaluate(rs.chains, rs.policy, &np, counts)
			gotS := map[pipeline.Verdict]string{pipeline.VerdictAccept: "accept", pipeline.VerdictDrop: "drop"}[got]
			if gotS != want || pc.Pkt.Mark != np.mark {
				return fmt.Errorf("rule set %d, packet %+v: engine %s (mark %d), naive %s (mark %d)\n%s", s, np, gotS, pc.Pkt.Mark, want, np.mark, rs.text)
			}
		}
		for c, rules := range rs.chains {
			ch := tbl.chains[tbl.byName[chainName(c)]]
			for i := range rules {
				if p, _ := ch.rules[i].counter.load(); p != counts[c][i] {
					return fmt.Errorf("rule set %d, chain %s rule %d: engine counted %d, naive %d\n%s", s, chainName(c), i+1, p, counts[c][i], rs.text)
				}
			}
		}
		m.Cleanup()
	}
	return nil
}

func TestRandomized(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("FILTER_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d (rerun with FILTER_SEED=%d)", seed, seed)
	sets, budget := 400, 20*time.Second
	if testing.Short() {
		sets = 50
	}
	if err := differential(t, seed, sets, 200, naive{}, time.Now().Add(budget)); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
}

// TestRandomizedCatchesPlantedBugs: the differential test notices a port
// range off by one and an ignored "!" (planted in the naive evaluator,
// which then disagrees with the engine).
func TestRandomizedCatchesPlantedBugs(t *testing.T) {
	for _, nv := range []naive{{offByOne: true}, {ignoreNot: true}} {
		err := differential(t, 1, 400, 200, nv, time.Now().Add(20*time.Second))
		if err == nil {
			t.Errorf("planted bug %+v went unnoticed", nv)
		} else {
			t.Logf("planted bug %+v noticed: %.200s", nv, err)
		}
	}
}
