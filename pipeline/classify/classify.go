// Package classify compiles the rules of a chain into a classifier that
// tells pipeline.HookTable.Evaluate which rules may match a packet, so that
// a chain of thousands of rules costs a few lookups per packet instead of a
// call per rule. The rules keep exact first-match semantics: Evaluate still
// runs the matchers and the target of every rule the index returns, in
// order (counters, jumps, gotos, returns, marks as before); the index only
// skips rules that certainly do not match (pipeline.RuleIndex).
//
// What it knows of a rule is what its matchers describe as data
// (pipeline.ConstraintDescriber): source and destination prefixes, the
// protocol, port ranges, the mark under a mask, the in and out links, each
// with "!". A matcher it cannot see into (a custom matcher, or one that
// looks at payload or state: FieldOther) is called at its place whenever
// its rule is a candidate; the constraints of the matchers before it still
// prune the rule. See README.md for the structure and why (measured).
//
// The package lives beside the core, not in the filter module: it reads
// nothing but the core's contracts (Rule, Matcher, FieldConstraint), so a
// table built from Go (Config.Hooks) or by another HookModule can be
// compiled as the filter module's are.
package classify

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/pipestack/pipestack/pipeline"
)

// Kind says what the compiler may assume of a matcher.
type Kind uint8

const (
	// Opaque: it may hotdrop or change state (a rate limit's bucket) on
	// any packet, so neither its constraints nor those of the matchers
	// after it prune its rule. What DefaultKind says of a matcher that
	// declares FieldOther.
	Opaque Kind = iota
	// Pure: it never hotdrops and changes nothing; its constraints (if it
	// describes any) prune its rule, and so do those of the matchers after
	// it. What DefaultKind says of a matcher without FieldOther.
	Pure
	// Irregular: as Pure, except that it may hotdrop a packet whose ports
	// are not all there: a non-first fragment, or a transport header
	// shorter than its protocol's (TCP 20 bytes, UDP and UDP-Lite 8,
	// SCTP and DCCP 12, ICMP and ICMPv6 8). The index skips no rule for
	// such a packet (they are rare): the chain is walked rule by rule.
	Irregular
	// Inside: it may hotdrop, but only a packet that satisfies its own
	// constraints (TCP's --tcp-option on a malformed data offset): its
	// constraints prune its rule, those of the matchers after it do not.
	Inside

	// Exact, added to Pure or Irregular: the matcher's constraints say
	// all it tests (on a packet whose ports are all there, of a family
	// its rule's constraints allow), so that a rule of Exact matchers
	// whose constraints hold matches, and Evaluate runs its target
	// without calling them.
	Exact Kind = 1 << 4
)

// DefaultKind is the kind of a matcher by its Fields alone, which is all a
// compiler may assume of a matcher it does not know (the contract of
// pipeline.Matcher.Fields).
func DefaultKind(m pipeline.Matcher) Kind {
	if m.Fields()&pipeline.FieldOther == 0 {
		return Pure
	}
	return Opaque
}

// Options tune the compiler.
type Options struct {
	// Kind classifies each matcher (nil: DefaultKind). A module that
	// knows its own matchers says more than their Fields do.
	Kind func(pipeline.Matcher) Kind
	// Describe returns a matcher's constraints (nil: its Constraint(),
	// when it is a pipeline.ConstraintDescriber). A module that knows a
	// matcher can say more than its Constraint() does (the family a rule
	// is restricted to).
	Describe func(pipeline.Matcher) ([]pipeline.FieldConstraint, bool)
	// NICName is the name of a NIC, for -i/-o constraints (nil: from
	// pc.Batch's generation). It must agree with the matchers' own view.
	NICName func(pc *pipeline.PacketContext, id pipeline.NICID) (string, bool)
	// NICs, when set, is every NIC of the generation the index is made
	// for, by ID (as NICName would name them; ID 0 is no NIC): -i/-o are
	// then decided at compile time per ID (a table per constraint, one
	// load per packet instead of a name lookup and string compares), and
	// NICName is not called. An ID it does not hold matches no name.
	NICs map[pipeline.NICID]string
	// MinRules: a chain with fewer rules keeps the rule-by-rule walk
	// (0: DefaultMinRules; 1: every chain gets an index).
	MinRules int
	// DirMin: an IPv4 address partition of this many elementary
	// intervals or more is looked up through a DIR-16-8-8 table rather
	// than a binary search, when its starts need at most 4,096 blocks
	// (0: DefaultDirMin; the equivalence test sets 1 to cover the
	// table with small chains).
	DirMin int
	// PlantedBug, for the tests that prove the equivalence test notices
	// a wrong compiler, never set otherwise: BugRangeOffByOne compiles
	// every range without its upper bound, BugInvertIgnored drops every
	// "!".
	PlantedBug Bug
}

// Bug is a planted compiler bug (Options.PlantedBug).
type Bug uint8

const (
	NoBug Bug = iota
	BugRangeOffByOne
	BugInvertIgnored
)

// DefaultMinRules is the shortest chain that gets an index: below it the
// rule-by-rule walk is as fast (measured: README.md, "Crossover").
const DefaultMinRules = 8

// DefaultDirMin is Options.DirMin's default: with fewer intervals the
// binary search is short and its table would cost 256 KB for nothing.
const DefaultDirMin = 256

// field is a field the index knows.
type field uint8

const (
	fSrc field = iota
	fDst
	fProto
	fSport
	fDport
	fMark
	fIn
	fOut
	fICMP  // type<<8 | code
	fFlags // TCP flags, tested under a mask as the mark
	fCT    // CTInfo.State()
	numFields
)

var fieldNames = [numFields]string{"src", "dst", "proto", "sport", "dport", "mark", "in", "out", "icmp", "tcpflags", "ctstate"}

// masked: a field tested under a mask (test.mask).
func masked(f field) bool { return f == fMark || f == fFlags }

// u128 is a field's value: addresses (IPv6 whole, IPv4 in lo), the rest in lo.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func (a u128) inc() (u128, bool) {
	if a.lo == ^uint64(0) {
		if a.hi == ^uint64(0) {
			return a, false
		}
		return u128{a.hi + 1, 0}, true
	}
	return u128{a.hi, a.lo + 1}, true
}

func (a u128) dec() u128 {
	if a.lo == 0 {
		return u128{a.hi - 1, ^uint64(0)}
	}
	return u128{a.hi, a.lo - 1}
}

// ival is an inclusive interval of a field's values.
type ival struct{ lo, hi u128 }

// width is how many values the interval holds (about, for IPv6).
func (x ival) width() float64 {
	return float64(x.hi.hi-x.lo.hi)*0x1p64 + float64(x.hi.lo) - float64(x.lo.lo) + 1
}

// width1 is the size of the domain [0, a].
func (a u128) width1() float64 { return ival{hi: a}.width() }

// test is one constraint specialised to a family: the field's value lies
// in iv (sorted, disjoint), or (links) the NIC's name is one of names,
// negated by inv.
type test struct {
	f      field
	inv    bool
	single bool   // one interval: one (no search, no load of iv)
	mask   uint32 // masked fields (fMark, fFlags): the value ANDed with mask
	one    ival
	iv     []ival
	names  []string // fIn, fOut: exact, or a prefix with a trailing "+"
	ids    []bool   // fIn, fOut with Options.NICs: whether NIC i's name is in names
}

func (t *test) contains(v u128) bool {
	if t.single {
		return !v.less(t.one.lo) && !t.one.hi.less(v)
	}
	iv := t.iv
	lo, hi := 0, len(iv)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if iv[m].hi.less(v) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(iv) && !v.less(iv[lo].lo)
}

func nameIn(names []string, name string) bool {
	for _, n := range names {
		if strings.HasSuffix(n, "+") {
			if strings.HasPrefix(name, n[:len(n)-1]) {
				return true
			}
		} else if name == n {
			return true
		}
	}
	return false
}

// fieldMax is the largest value of a field in a family.
func fieldMax(f field, v6 bool) u128 {
	switch f {
	case fSrc, fDst:
		if v6 {
			return u128{^uint64(0), ^uint64(0)}
		}
		return u128{0, 1<<32 - 1}
	case fProto, fFlags:
		return u128{0, 255}
	case fCT:
		return u128{0, uint64(pipeline.CTStateMask)}
	case fSport, fDport, fICMP:
		return u128{0, 65535}
	}
	return u128{0, 1<<32 - 1}
}

func prefixIval(p netip.Prefix) ival {
	p = p.Masked()
	if p.Addr().Is4() {
		b := p.Addr().As4()
		lo := uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
		return ival{u128{0, lo}, u128{0, lo | (1<<(32-p.Bits()) - 1)}}
	}
	lo := addr128(p.Addr())
	hi := lo
	host := 128 - p.Bits()
	switch {
	case host >= 64:
		hi.lo = ^uint64(0)
		if host == 128 {
			hi.hi = ^uint64(0)
		} else {
			hi.hi |= 1<<(host-64) - 1
		}
	case host > 0:
		hi.lo |= 1<<host - 1
	}
	return ival{lo, hi}
}

func addr128(a netip.Addr) u128 {
	b := a.As16()
	var v u128
	for i := 0; i < 8; i++ {
		v.hi = v.hi<<8 | uint64(b[i])
		v.lo = v.lo<<8 | uint64(b[8+i])
	}
	return v
}

// normalise sorts and merges intervals (overlapping or adjacent).
func normalise(iv []ival) []ival {
	slices.SortFunc(iv, func(a, b ival) int {
		switch {
		case a.lo.less(b.lo):
			return -1
		case b.lo.less(a.lo):
			return 1
		}
		return 0
	})
	out := iv[:0]
	for _, x := range iv {
		if n := len(out); n > 0 {
			next, ok := out[n-1].hi.inc()
			if !ok || !next.less(x.lo) {
				if out[n-1].hi.less(x.hi) {
					out[n-1].hi = x.hi
				}
				continue
			}
		}
		out = append(out, x)
	}
	return out
}

// complement is the values of [0, max] outside iv (normalised).
func complement(iv []ival, max u128) []ival {
	var out []ival
	at := u128{}
	for _, x := range iv {
		if at.less(x.lo) {
			out = append(out, ival{at, x.lo.dec()})
		}
		n, ok := x.hi.inc()
		if !ok {
			return out
		}
		at = n
	}
	if !max.less(at) {
		out = append(out, ival{at, max})
	}
	return out
}

// constant results of specialising a constraint to a family.
const (
	notConst = iota
	alwaysTrue
	alwaysFalse
)

// specialise turns a constraint into a test for packets of one family. ok
// false: the compiler does not understand it (the constraint is left out:
// it prunes nothing, which is always safe).
func specialise(c pipeline.FieldConstraint, v6 bool, bug Bug) (t test, constant int, ok bool) {
	if bug == BugInvertIgnored {
		c.Invert = false
	}
	t.inv = c.Invert
	empty := func() (test, int, bool) {
		if c.Invert {
			return t, alwaysTrue, true
		}
		return t, alwaysFalse, true
	}
	switch c.Field {
	case pipeline.FieldSrcAddr, pipeline.FieldDstAddr:
		t.f = fSrc
		if c.Field == pipeline.FieldDstAddr {
			t.f = fDst
		}
		if len(c.Ranges) > 0 || len(c.Names) > 0 {
			return t, 0, false
		}
		for _, p := range c.Prefixes {
			if !p.IsValid() {
				return t, 0, false
			}
			if p.Addr().Is4() == v6 {
				continue // never contains an address of the other family
			}
			t.iv = append(t.iv, prefixIval(p))
		}
	case pipeline.FieldProto, pipeline.FieldSrcPort, pipeline.FieldDstPort, pipeline.FieldMark, pipeline.FieldICMPType, pipeline.FieldTCPFlags, pipeline.FieldCTState:
		switch c.Field {
		case pipeline.FieldProto:
			t.f = fProto
		case pipeline.FieldICMPType:
			t.f = fICMP
		case pipeline.FieldTCPFlags:
			t.f, t.mask = fFlags, c.Mask
		case pipeline.FieldCTState:
			t.f = fCT
		case pipeline.FieldSrcPort:
			t.f = fSport
		case pipeline.FieldDstPort:
			t.f = fDport
		default:
			t.f, t.mask = fMark, c.Mask
		}
		if len(c.Prefixes) > 0 || len(c.Names) > 0 {
			return t, 0, false
		}
		max := fieldMax(t.f, v6)
		for _, r := range c.Ranges {
			if r.Lo > r.Hi {
				continue
			}
			lo, hi := u128{0, uint64(r.Lo)}, u128{0, uint64(r.Hi)}
			if bug == BugRangeOffByOne && r.Lo < r.Hi {
				hi.lo--
			}
			if max.less(lo) {
				continue
			}
			if max.less(hi) {
				hi = max
			}
			t.iv = append(t.iv, ival{lo, hi})
		}
	case pipeline.FieldInNIC, pipeline.FieldOutNIC:
		t.f = fIn
		if c.Field == pipeline.FieldOutNIC {
			t.f = fOut
		}
		if len(c.Prefixes) > 0 || len(c.Ranges) > 0 {
			return t, 0, false
		}
		t.names = slices.Clone(c.Names)
		if len(t.names) == 0 {
			return empty()
		}
		return t, notConst, true
	default:
		return t, 0, false
	}
	if len(t.iv) == 0 {
		return empty()
	}
	t.iv = normalise(t.iv)
	if len(t.iv) == 1 {
		t.single, t.one = true, t.iv[0]
	}
	if !masked(t.f) || t.mask == ^uint32(0) {
		if len(t.iv) == 1 && t.iv[0].lo == (u128{}) && t.iv[0].hi == fieldMax(t.f, v6) {
			// The whole domain.
			if c.Invert {
				return t, alwaysFalse, true
			}
			return t, alwaysTrue, true
		}
	}
	return t, notConst, true
}

// indexable reports whether a test can be a rule's primary field: the
// numeric fields (a mark only under the full mask).
func (t *test) indexable() bool {
	switch t.f {
	case fSrc, fDst, fProto, fSport, fDport, fICMP, fCT:
		return true
	case fMark, fFlags:
		return t.mask == ^uint32(0)
	}
	return false
}

// cover is the values a test lets through, as intervals.
func (t *test) cover(v6 bool) []ival {
	if t.inv {
		return complement(t.iv, fieldMax(t.f, v6))
	}
	return t.iv
}
