package classify

import (
	"sort"
	"time"
	"unsafe"

	"github.com/pipestack/pipestack/pipeline"
)

// Index is a compiled chain: a pipeline.RuleIndex.
//
// Per family (an IPv4 packet never meets an IPv6 prefix), each rule that
// can match that family is filed under one primary field: the one of its
// constraints that lets the fewest elementary intervals of that field
// through. A field's partition is the sorted bounds of its elementary
// intervals and, per interval, the rules filed there (ascending); a rule
// whose every constraint is wide, and a rule without any, is on the
// always list. A packet looks its value up in each partition (a binary
// search), and the candidates are the merge of those lists and the
// always list from the position asked for; each is checked against all
// its constraints before it is returned.
type Index struct {
	n         int
	irregular []bool // rule r has a matcher of kind Irregular
	v4, v6    famIndex
	opt       Options
	stats     Stats
}

// Stats describe a compiled chain (pipectl validate --stats).
type Stats struct {
	Rules   int           // rules in the chain
	Parts   int           // partitions over both families
	Entries int           // rule positions filed (with the always lists)
	Always  int           // rules on the always lists (both families)
	Bytes   int           // memory of the index, about
	Compile time.Duration // time to compile
}

type famIndex struct {
	v6     bool
	never  []bool // rule r cannot match this family
	exact  []bool // rule r matches when its tests hold
	tests  []test
	toff   []int32 // rule r's tests are tests[toff[r]:toff[r+1]]
	recs   []rec   // what the packet path checks, rule by rule
	parts  []part
	always []uint64 // entries

	inlineLinks map[int]uint32 // while nicTables runs
}

// An entry names a rule in a list: (r+1)<<32 | the index of its first
// rec, so that lists sort by rule and a candidate's check starts at its
// recs without another load.
func entry(r, rec int) uint64 { return uint64(r+1)<<32 | uint64(rec) }

// rec is one test as the packet path reads it: 20 bytes, inline for a
// single interval of a field that fits 32 bits (all but IPv6 addresses)
// under mask (the mark's, all ones for the others), and for a link test
// when the NICs are known and their IDs below 32 (the allowed IDs' bits as
// mask, the interval [1, max]); else wide, the test at tests[ext]. A rule's recs are consecutive, the
// last one flagged; a rule without tests has one rec of field fNone.
type rec struct {
	f      field
	flags  uint8
	mask   uint32
	lo, hi uint32
	ext    int32
}

const (
	recInv   = 1 << iota // negated
	recWide              // the test at tests[ext]
	recLast              // the rule's last rec
	recExact             // the rule matches when its recs hold (every rec has it)
)

// fNone: a rec that always holds.
const fNone = numFields

type part struct {
	f      field
	starts []u128 // elementary intervals: [starts[j], starts[j+1]); starts[0] is 0
	// enc[j]: 0 no rule, the entry of the one rule filed there, or
	// multi|o: the count and the entries at rules[o:].
	enc   []uint64
	rules []uint64
	// The lookup: s32 holds starts as uint32 for the fields that fit
	// (all but IPv6 addresses: 4 bytes a bound keeps the binary search
	// in cache), and a port field of more than directMin intervals has
	// direct, its interval per port (one load instead of a search).
	s32    []uint32
	direct []uint16
	// dir, for an IPv4 address partition of Options.DirMin intervals or more
	// whose starts fall in few /24s: the interval of a value in at most
	// three loads instead of a binary search (DIR-16-8-8, as LPM tables
	// do it): dir[v>>16] is the interval, or dirNext|b for block b of
	// 256 entries at dir[dirL1+256b:] over the next 8 bits, and so once
	// more for the last 8.
	dir []uint32
}

const (
	dirMin    = 256     // fewer intervals: the binary search is short
	dirL1     = 1 << 16 // first level: the top 16 bits
	dirNext   = 1 << 31 // an entry naming a block
	dirBlocks = 4096    // at most (4 MB): more, keep the binary search
)

const directMin = 32

// multi marks an enc of several rules.
const multi = 1 << 63

// lookup is the enc of the elementary interval holding the packet's
// value.
func (p *part) lookup(pv *pktVals) uint64 {
	switch {
	case p.dir != nil:
		v := pv.v32[p.f]
		e := p.dir[v>>16]
		if e&dirNext != 0 {
			e = p.dir[dirL1+int(e&^dirNext)<<8|int(v>>8&0xff)]
			if e&dirNext != 0 {
				e = p.dir[dirL1+int(e&^dirNext)<<8|int(v&0xff)]
			}
		}
		return p.enc[e]
	case p.direct != nil:
		return p.enc[p.direct[uint16(pv.v32[p.f])]]
	case p.s32 != nil:
		return p.enc[search32(p.s32, pv.v32[p.f])]
	}
	return p.enc[find(p.starts, pv.val(p.f))]
}

// search32 is the last i with s[i] <= x (s ascending, s[0] == 0).
func search32(s []uint32, x uint32) int {
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if x < s[m] {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo - 1
}

// maxCover: a rule whose narrowest constraint lets more elementary
// intervals through than this goes on the always list instead of being
// filed under each of them (bounds the memory of wide and inverted rules).
const maxCover = 128

// Compile compiles a chain's rules; nil when the chain is shorter than
// Options.MinRules (it keeps the rule-by-rule walk).
func Compile(rules []pipeline.Rule, o Options) *Index {
	min := o.MinRules
	if min == 0 {
		min = DefaultMinRules
	}
	if len(rules) < min {
		return nil
	}
	start := time.Now()
	if o.Kind == nil {
		o.Kind = DefaultKind
	}
	if o.NICName == nil {
		o.NICName = genNICName
	}
	cons := make([][]pipeline.FieldConstraint, len(rules))
	exact := make([]bool, len(rules))
	for i := range rules {
		cons[i], exact[i] = usable(rules[i].Matchers, o.Kind, o.Describe)
	}
	x := &Index{n: len(rules), opt: o, irregular: make([]bool, len(rules))}
	for i := range rules {
		for _, m := range rules[i].Matchers {
			if o.Kind(m)&^Exact == Irregular {
				x.irregular[i] = true
			}
		}
	}
	if o.DirMin == 0 {
		o.DirMin = DefaultDirMin
	}
	x.v4 = buildFam(cons, exact, false, o)
	x.v6 = buildFam(cons, exact, true, o)
	if o.NICs != nil {
		x.v4.nicTables(o.NICs)
		x.v6.nicTables(o.NICs)
	}
	x.stats = Stats{Rules: len(rules)}
	for _, f := range []*famIndex{&x.v4, &x.v6} {
		x.stats.Parts += len(f.parts)
		x.stats.Always += len(f.always)
		x.stats.Entries += len(f.always)
		x.stats.Bytes += 4*len(f.toff) + 8*len(f.always) + int(unsafe.Sizeof(test{}))*len(f.tests) + int(unsafe.Sizeof(rec{}))*len(f.recs)
		for _, t := range f.tests {
			x.stats.Bytes += 32*len(t.iv) + 16*len(t.names) + len(t.ids)
		}
		for _, p := range f.parts {
			for _, e := range p.enc {
				switch {
				case e >= multi:
					x.stats.Entries += int(p.rules[e&^multi])
				case e > 0:
					x.stats.Entries++
				}
			}
			x.stats.Bytes += 16*len(p.starts) + 8*len(p.enc) + 8*len(p.rules) + 4*len(p.s32) + 2*len(p.direct) + 4*len(p.dir)
		}
	}
	x.stats.Compile = time.Since(start)
	return x
}

// CompileTable gives every chain of t that is long enough an index. Call
// it before t is installed (a HookTable is immutable from then on).
func CompileTable(t *pipeline.HookTable, o Options) {
	for i := range t.Chains {
		if x := Compile(t.Chains[i].Rules, o); x != nil {
			t.Chains[i].Index = x
		}
	}
}

// Stats reports what the compiled chain holds.
func (x *Index) Stats() Stats { return x.stats }

// usable is what may prune a rule: the constraints of its matchers up to
// the first one that may hotdrop or change state (Kind); exact: every
// matcher is Exact.
func usable(ms []pipeline.Matcher, kind func(pipeline.Matcher) Kind, describe func(pipeline.Matcher) ([]pipeline.FieldConstraint, bool)) (out []pipeline.FieldConstraint, exact bool) {
	if describe == nil {
		describe = func(m pipeline.Matcher) ([]pipeline.FieldConstraint, bool) {
			if cd, ok := m.(pipeline.ConstraintDescriber); ok {
				return cd.Constraint(), true
			}
			return nil, false
		}
	}
	exact = true
	for _, m := range ms {
		k := kind(m)
		if k&Exact == 0 {
			exact = false
		}
		k &^= Exact
		if k == Opaque {
			return out, false
		}
		if cs, ok := describe(m); ok {
			out = append(out, cs...)
		} else {
			exact = false // says nothing of what it tests
		}
		if k == Inside {
			return out, false
		}
	}
	return out, exact
}

func buildFam(cons [][]pipeline.FieldConstraint, exact []bool, v6 bool, o Options) famIndex {
	bug := o.PlantedBug
	n := len(cons)
	fi := famIndex{v6: v6, toff: make([]int32, n+1), exact: make([]bool, n)}
	never := make([]bool, n)
	fi.never = never
	for r, cs := range cons {
		fi.toff[r] = int32(len(fi.tests))
		fi.exact[r] = exact[r]
		for _, c := range cs {
			t, k, ok := specialise(c, v6, bug)
			if !ok {
				fi.exact[r] = false
				continue
			}
			if k == alwaysTrue {
				continue
			}
			if k == alwaysFalse {
				never[r] = true
				fi.tests = fi.tests[:fi.toff[r]]
				break
			}
			fi.tests = append(fi.tests, t)
		}
	}
	fi.toff[n] = int32(len(fi.tests))
	rstart := make([]int, n)
	for r := 0; r < n; r++ {
		rstart[r] = len(fi.recs)
		var fl uint8
		if fi.exact[r] {
			fl = recExact
		}
		for i := fi.toff[r]; i < fi.toff[r+1]; i++ {
			t := &fi.tests[i]
			x := rec{f: t.f, flags: fl, mask: ^uint32(0), ext: i}
			if masked(t.f) {
				x.mask = t.mask
			}
			if t.inv {
				x.flags |= recInv
			}
			if t.single && (t.f != fSrc && t.f != fDst || !v6) {
				x.lo, x.hi = uint32(t.one.lo.lo), uint32(t.one.hi.lo)
			} else {
				x.flags |= recWide
			}
			fi.recs = append(fi.recs, x)
		}
		if len(fi.recs) == rstart[r] {
			fi.recs = append(fi.recs, rec{f: fNone, flags: fl})
		}
		fi.recs[len(fi.recs)-1].flags |= recLast
	}

	// Pass 1: every indexable test's bounds, per field, to measure how
	// many elementary intervals each test lets through.
	var bounds [numFields][]u128
	addBounds := func(f field, iv []ival) {
		for _, x := range iv {
			bounds[f] = append(bounds[f], x.lo)
			// No bound past the field's largest value (it would wrap
			// to 0 in the uint32 lookups).
			if h, ok := x.hi.inc(); ok && x.hi.less(fieldMax(f, v6)) {
				bounds[f] = append(bounds[f], h)
			}
		}
	}
	for r := 0; r < n; r++ {
		for i := fi.toff[r]; i < fi.toff[r+1]; i++ {
			if t := &fi.tests[i]; t.indexable() {
				addBounds(t.f, t.cover(v6))
			}
		}
	}
	var starts [numFields][]u128
	for f := range bounds {
		starts[f] = uniqueStarts(bounds[f])
	}
	// spans[i]: test i's cover as elementary interval ranges of pass 1
	// (nil when it is not indexable or lets more than maxCover through:
	// it is never a primary field).
	type span struct{ a, b int }
	spans := make([][]span, len(fi.tests))
	shares := make([]float64, len(fi.tests))
	for i := range fi.tests {
		t := &fi.tests[i]
		if !t.indexable() {
			continue
		}
		c, width := 0, 0.0
		var sp []span
		for _, x := range t.cover(v6) {
			a, b := find(starts[t.f], x.lo), find(starts[t.f], x.hi)
			c += b - a + 1
			width += x.width()
			sp = append(sp, span{a, b})
		}
		if c <= maxCover {
			spans[i] = sp
			shares[i] = width / fieldMax(t.f, v6).width1()
		}
	}
	// density[f][j]: how many rules' lists would hold elementary interval
	// j of field f, counting the tests in (all candidate tests first,
	// then those chosen in the round before).
	var density [numFields][]int32
	countDensity := func(in func(r int, i int32) bool) {
		for f := range starts {
			density[f] = make([]int32, len(starts[f])+1)
		}
		for r := 0; r < n; r++ {
			for i := fi.toff[r]; i < fi.toff[r+1]; i++ {
				if spans[i] == nil || !in(r, i) {
					continue
				}
				f := fi.tests[i].f
				for _, x := range spans[i] {
					density[f][x.a]++
					density[f][x.b+1]--
				}
			}
		}
		for f := range density {
			for j := 1; j < len(density[f]); j++ {
				density[f][j] += density[f][j-1]
			}
		}
	}
	primary := make([]int8, n) // field+1; 0: always; -1: never
	chosen := make([]int32, n) // the test that chose it
	// Greedy, in rule order: a rule goes where the fewest rules filed
	// so far share its intervals (the list it would lengthen); ties go
	// to the field whose intervals the fewest of all tests share, then
	// to the smaller share of the field's values. (Choosing by all the
	// tests alone and refining in rounds oscillated: a group of rules
	// left a field together and came back the next round.)
	countDensity(func(int, int32) bool { return true })
	var filed [numFields][]int32
	for f := range filed {
		filed[f] = make([]int32, len(starts[f])+1)
	}
	for r := 0; r < n; r++ {
		if never[r] {
			primary[r] = -1
			continue
		}
		best, bestTest, bestFiled, bestDense, bestShare := -1, int32(-1), int32(1<<31-1), int32(1<<31-1), 2.0
		for i := fi.toff[r]; i < fi.toff[r+1]; i++ {
			if spans[i] == nil {
				continue
			}
			f := fi.tests[i].f
			fl, dense := int32(0), int32(0)
			for _, x := range spans[i] {
				for j := x.a; j <= x.b; j++ {
					fl = max(fl, filed[f][j])
					dense = max(dense, density[f][j])
				}
			}
			if fl < bestFiled || fl == bestFiled && (dense < bestDense || dense == bestDense && shares[i] < bestShare) {
				best, bestTest, bestFiled, bestDense, bestShare = int(f), i, fl, dense, shares[i]
			}
		}
		primary[r], chosen[r] = int8(best+1), bestTest
		if best >= 0 {
			for _, x := range spans[bestTest] {
				for j := x.a; j <= x.b; j++ {
					filed[best][j]++
				}
			}
		}
	}
	var count [numFields]int
	for r := 0; r < n; r++ {
		if primary[r] > 0 {
			count[primary[r]-1]++
		}
	}

	// Pass 2: each field's partition from the bounds of the rules filed
	// under it (tests on that field), and the lists.
	for f := field(0); f < numFields; f++ {
		if count[f] == 0 {
			continue
		}
		bounds[f] = bounds[f][:0]
		for r := 0; r < n; r++ {
			if primary[r] != int8(f+1) {
				continue
			}
			addBounds(f, fi.tests[chosen[r]].cover(v6))
		}
		p := part{f: f, starts: uniqueStarts(bounds[f])}
		if !v6 || f != fSrc && f != fDst {
			p.s32 = make([]uint32, len(p.starts))
			for j, st := range p.starts {
				p.s32[j] = uint32(st.lo)
			}
		}
		lists := make([][]int32, len(p.starts))
		for r := 0; r < n; r++ {
			if primary[r] != int8(f+1) {
				continue
			}
			// Filed by the test that chose the field (a rule may
			// constrain a field twice: one is enough, as the check
			// runs them all).
			cov := fi.tests[chosen[r]].cover(v6)
			for _, x := range cov {
				for j := find(p.starts, x.lo); j <= find(p.starts, x.hi); j++ {
					lists[j] = append(lists[j], int32(r))
				}
			}
		}
		p.enc = make([]uint64, len(p.starts))
		for j, l := range lists {
			switch len(l) {
			case 0:
			case 1:
				p.enc[j] = entry(int(l[0]), rstart[l[0]])
			default:
				p.enc[j] = multi | uint64(len(p.rules))
				p.rules = append(p.rules, uint64(len(l)))
				for _, r := range l {
					p.rules = append(p.rules, entry(int(r), rstart[r]))
				}
			}
		}
		if (f == fSport || f == fDport) && len(p.starts) > directMin {
			p.direct = make([]uint16, 65536)
			j := 0
			for v := range p.direct {
				for j+1 < len(p.s32) && p.s32[j+1] <= uint32(v) {
					j++
				}
				p.direct[v] = uint16(j)
			}
		}
		if !v6 && (f == fSrc || f == fDst) && len(p.s32) >= o.DirMin {
			p.dir = buildDir(p.s32)
		}
		fi.parts = append(fi.parts, p)
	}
	for r := 0; r < n; r++ {
		if primary[r] == 0 {
			fi.always = append(fi.always, entry(r, rstart[r]))
		}
	}
	return fi
}

// nicTables gives every link test its table over the NIC IDs of nics.
func (fi *famIndex) nicTables(nics map[pipeline.NICID]string) {
	top := pipeline.NICID(0)
	for id := range nics {
		top = max(top, id)
	}
	for i := range fi.tests {
		t := &fi.tests[i]
		if t.f != fIn && t.f != fOut {
			continue
		}
		if fi.inlineLinks == nil {
			fi.inlineLinks = map[int]uint32{}
		}
		t.ids = make([]bool, top+1)
		var bits uint32
		for id, name := range nics {
			t.ids[id] = id != 0 && nameIn(t.names, name)
			if t.ids[id] && id < 32 {
				bits |= 1 << id
			}
		}
		if top < 32 {
			fi.inlineLinks[i] = bits
		}
	}
	// A link test over NIC IDs below 32 is inline: its rec tests the
	// packet's bit (pktVals.v32[fIn] is 1<<InNIC) under the mask of the
	// IDs whose name it allows.
	for j := range fi.recs {
		r := &fi.recs[j]
		if bits, ok := fi.inlineLinks[int(r.ext)]; ok && r.flags&recWide != 0 && (r.f == fIn || r.f == fOut) {
			r.flags &^= recWide
			r.mask, r.lo, r.hi = bits, 1, ^uint32(0)
		}
	}
	fi.inlineLinks = nil
}

// buildDir is the DIR-16-8-8 table of the elementary intervals starting
// at s (ascending, s[0] == 0), or nil when it would need more than
// dirBlocks blocks.
func buildDir(s []uint32) []uint32 {
	// A block is needed where a start lies strictly inside a /16 (a
	// second-level block) or a /24 (a third-level one).
	blocks, last16, last24 := 0, -1, -1
	for _, st := range s[1:] {
		if st&0xffff != 0 && int(st>>16) != last16 {
			last16 = int(st >> 16)
			blocks++
		}
		if st&0xff != 0 && int(st>>8) != last24 {
			last24 = int(st >> 8)
			blocks++
		}
	}
	if blocks > dirBlocks {
		return nil
	}
	dir := make([]uint32, dirL1, dirL1+blocks<<8)
	// inside: whether a start lies in (base, base+size).
	inside := func(j int, base, size uint32) bool {
		return j+1 < len(s) && s[j+1] > base && uint64(s[j+1]) < uint64(base)+uint64(size)
	}
	// at: the interval holding base (j: the one holding the block's
	// previous value, or where the search may start).
	at := func(j int, base uint32) int {
		for j+1 < len(s) && s[j+1] <= base {
			j++
		}
		return j
	}
	j := 0
	for b := uint32(0); b < dirL1; b++ {
		base := b << 16
		j = at(j, base)
		if !inside(j, base, 1<<16) {
			dir[b] = uint32(j)
			continue
		}
		b2 := len(dir)>>8 - dirL1>>8
		dir[b] = dirNext | uint32(b2)
		dir = append(dir, make([]uint32, 256)...)
		for c := uint32(0); c < 256; c++ {
			base2 := base | c<<8
			j = at(j, base2)
			if !inside(j, base2, 1<<8) {
				dir[dirL1+b2<<8+int(c)] = uint32(j)
				continue
			}
			b3 := len(dir)>>8 - dirL1>>8
			dir[dirL1+b2<<8+int(c)] = dirNext | uint32(b3)
			dir = append(dir, make([]uint32, 256)...)
			for d := uint32(0); d < 256; d++ {
				j = at(j, base2|d)
				dir[dirL1+b3<<8+int(d)] = uint32(j)
			}
		}
	}
	return dir
}

func uniqueStarts(b []u128) []u128 {
	b = append(b, u128{})
	sort.Slice(b, func(i, j int) bool { return b[i].less(b[j]) })
	out := b[:1]
	for _, v := range b[1:] {
		if out[len(out)-1] != v {
			out = append(out, v)
		}
	}
	return append([]u128(nil), out...)
}

// find is the elementary interval holding v: the last start ≤ v.
func find(starts []u128, v u128) int {
	lo, hi := 0, len(starts)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if v.less(starts[m]) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo - 1
}

// fromEntry is the first entry in l of a rule at or after from.
func fromEntry(l []uint64, from int) []uint64 {
	lo, hi := 0, len(l)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if int(l[m]>>32)-1 < from {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return l[lo:]
}

func genNICName(pc *pipeline.PacketContext, id pipeline.NICID) (string, bool) {
	if id == 0 || pc.Batch == nil || pc.Batch.Gen == nil {
		return "", false
	}
	nic, ok := pc.Batch.Gen.NIC(id)
	if !ok {
		return "", false
	}
	return nic.Name(), true
}

// irregular: the ports of the packet are not all there (a matcher of kind
// Irregular may hotdrop it), or the hook did not parse it.
func irregular(pc *pipeline.PacketContext) bool {
	if pc.L4End == 0 || pc.Fragment {
		return true
	}
	l := pc.L4End - pc.L4Off
	switch pc.Tuple.Proto {
	case 6:
		return l < 20
	case 17, 136, 1, 58:
		return l < 8
	case 132, 33:
		return l < 12
	}
	return false
}

// maxHeads: one list per field and the always list.
const maxHeads = int(numFields) + 1

// pktVals is what Next reads of a packet, once per call: the fields as
// 32-bit values, and an IPv6 packet's addresses as 128.
type pktVals struct {
	v6              bool
	a6              [2]u128               // fSrc, fDst of an IPv6 packet
	v32             [numFields + 1]uint32 // the fields that fit, for inline recs
	in, out         string
	inOK, outOK     bool
	inDone, outDone bool
}

// val is field f's value.
func (pv *pktVals) val(f field) u128 {
	if f <= fDst && pv.v6 {
		return pv.a6[f]
	}
	return u128{0, uint64(pv.v32[f])}
}

// Next implements pipeline.RuleIndex.
func (x *Index) Next(pc *pipeline.PacketContext, from int) (int, bool) {
	if from >= x.n {
		return from, false
	}
	var fi *famIndex
	switch pc.Pkt.NetProto {
	case pipeline.IPv4ProtocolNumber:
		fi = &x.v4
	case pipeline.IPv6ProtocolNumber:
		fi = &x.v6
	default:
		return from, false
	}
	if irregular(pc) {
		return from, false
	}
	var pv pktVals
	if fi.v6 {
		pv.v6 = true
		pv.a6[fSrc], pv.a6[fDst] = addr128(pc.Tuple.Src), addr128(pc.Tuple.Dst)
	} else {
		s, d := pc.Tuple.Src.As4(), pc.Tuple.Dst.As4()
		pv.v32[fSrc] = uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3])
		pv.v32[fDst] = uint32(d[0])<<24 | uint32(d[1])<<16 | uint32(d[2])<<8 | uint32(d[3])
	}
	pv.v32[fProto] = uint32(pc.Tuple.Proto)
	pv.v32[fSport], pv.v32[fDport] = uint32(pc.Tuple.SrcPort), uint32(pc.Tuple.DstPort)
	pv.v32[fMark] = pc.Pkt.Mark
	pv.v32[fCT] = uint32(pc.Pkt.CTInfo.State())
	if p := pc.Tuple.Proto; p == 1 || p == 58 {
		// Not irregular: the header's 8 bytes are there. (Another
		// protocol's packets meet an ICMP test only beside a protocol
		// test that fails: FieldICMPType.)
		l4 := pc.Pkt.NetworkHeader()[pc.L4Off:pc.L4End]
		pv.v32[fICMP] = uint32(l4[0])<<8 | uint32(l4[1])
	} else if p == 6 { // 20 bytes there (not irregular)
		pv.v32[fFlags] = uint32(pc.Pkt.NetworkHeader()[pc.L4Off+13])
	}
	if pc.InNIC < 32 { // inline link recs (nicTables)
		pv.v32[fIn] = 1 << pc.InNIC
	}
	if pc.OutNIC < 32 {
		pv.v32[fOut] = 1 << pc.OutNIC
	}

	var heads [maxHeads][]uint64
	var one [maxHeads]uint64
	nh := 0
	for i := range fi.parts {
		p := &fi.parts[i]
		switch e := p.lookup(&pv); {
		case e == 0:
		case e < multi:
			if int(e>>32)-1 >= from {
				one[nh] = e
				heads[nh] = one[nh : nh+1]
				nh++
			}
		default:
			o := e &^ multi
			if l := fromEntry(p.rules[o+1:o+1+p.rules[o]], from); len(l) > 0 {
				heads[nh] = l
				nh++
			}
		}
	}
	if l := fromEntry(fi.always, from); len(l) > 0 {
		heads[nh] = l
		nh++
	}
	for {
		best, bi := uint64(0), -1
		for i := 0; i < nh; i++ {
			if h := heads[i]; len(h) > 0 && (bi < 0 || h[0] < best) {
				best, bi = h[0], i
			}
		}
		if bi < 0 {
			return x.n, false
		}
		if ok, exact := x.check(fi, int(uint32(best)), pc, &pv); ok {
			return int(best>>32) - 1, exact
		}
		heads[bi] = heads[bi][1:]
	}
}

// check runs a rule's recs, from its first (at): whether they hold, and
// whether the rule then certainly matches.
func (x *Index) check(fi *famIndex, at int, pc *pipeline.PacketContext, pv *pktVals) (bool, bool) {
	for i := at; i < len(fi.recs); i++ {
		r := &fi.recs[i]
		var in bool
		switch {
		case r.flags&recWide == 0:
			v := pv.v32[r.f] & r.mask
			in = r.lo <= v && v <= r.hi || r.f == fNone
		default:
			in = x.wide(&fi.tests[r.ext], pc, pv)
		}
		if in == (r.flags&recInv != 0) {
			return false, false
		}
		if r.flags&recLast != 0 {
			return true, r.flags&recExact != 0
		}
	}
	return true, false
}

// wide is whether the packet's field lies in t (not negated).
func (x *Index) wide(t *test, pc *pipeline.PacketContext, pv *pktVals) bool {
	switch t.f {
	case fIn:
		if t.ids != nil {
			return int(pc.InNIC) < len(t.ids) && t.ids[pc.InNIC]
		}
		if !pv.inDone {
			pv.in, pv.inOK = x.opt.NICName(pc, pc.InNIC)
			pv.inDone = true
		}
		return pv.inOK && nameIn(t.names, pv.in)
	case fOut:
		if t.ids != nil {
			return int(pc.OutNIC) < len(t.ids) && t.ids[pc.OutNIC]
		}
		if !pv.outDone {
			pv.out, pv.outOK = x.opt.NICName(pc, pc.OutNIC)
			pv.outDone = true
		}
		return pv.outOK && nameIn(t.names, pv.out)
	case fMark, fFlags:
		return t.contains(u128{0, uint64(pv.v32[t.f] & t.mask)})
	}
	return t.contains(pv.val(t.f))
}

var _ pipeline.RuleIndex = (*Index)(nil)
