package filter

import (
	"net/netip"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/classify"
)

// classifyOptions compile the module's chains (pipeline/classify): what the
// module knows of its own matchers, and its view of NIC names.
// NICName is left to index: the table's link names (Context.LinkIDs), the
// same the matchers resolved -i/-o against, without a per-packet lookup
// in the generation.
var classifyOptions = classify.Options{Kind: matcherKind, Describe: describe}

// describe is a matcher's constraints; the base matcher's also say its
// family (-4/-6, or what its addresses imply) as every address of that
// family, which no packet of the other family has.
func describe(m pipeline.Matcher) ([]pipeline.FieldConstraint, bool) {
	cd, ok := m.(pipeline.ConstraintDescriber)
	if !ok {
		return nil, false
	}
	cs := cd.Constraint()
	family := 0
	switch x := m.(type) {
	case *Base:
		family = x.family
	case *l4Ports: // the specialised -p tcp|udp --dport (fast.go)
		family = int(x.fam)
	}
	if family != 0 {
		all := netip.MustParsePrefix("0.0.0.0/0")
		if family == 6 {
			all = netip.MustParsePrefix("::/0")
		}
		cs = append(cs, pipeline.FieldConstraint{Field: pipeline.FieldSrcAddr, Prefixes: []netip.Prefix{all}})
	}
	return cs, true
}

// index gives each long enough chain of the table its classifier, when
// the generation is built (Validate), never on the packet path, and keeps
// what it made of each (ClassifierStats).
func (t *table) index(chains []pipeline.Chain) {
	t.compiled, t.pchains = t.compiled[:0], chains
	opts := classifyOptions
	if opts.NICName == nil && t.links != nil {
		links := t.links
		opts.NICs = links
		opts.NICName = func(_ *pipeline.PacketContext, id pipeline.NICID) (string, bool) {
			s, ok := links[id]
			return s, ok && id != 0
		}
	}
	for i := range chains {
		cs := ChainStats{Table: t.name, Chain: chains[i].Name, Rules: len(chains[i].Rules)}
		if i < len(t.chains) {
			cs.Line = t.chains[i].line
		}
		if x := classify.Compile(chains[i].Rules, opts); x != nil {
			chains[i].Index = x
			cs.Indexed, cs.Stats = true, x.Stats()
		}
		t.compiled = append(t.compiled, cs)
	}
}

// ChainStats is what the classifier made of one chain (pipectl validate
// --stats).
type ChainStats struct {
	Table, Chain string
	Line         int // of the chain in the file (the table's for a built-in chain not written)
	Rules        int
	Indexed      bool // false: shorter than classify.DefaultMinRules, walked rule by rule
	Stats        classify.Stats
}

// ClassifierStats reports, per chain of every table, what the classifier
// made of it when the section was last validated.
func (m *Module) ClassifierStats() []ChainStats {
	var out []ChainStats
	for _, t := range m.tables {
		out = append(out, t.compiled...)
	}
	return out
}

// matcherKind is what the classifier may assume of a matcher of this
// module: most never hotdrop and keep no state (Pure) though they declare
// FieldOther for what their constraints leave out (the family, fragments,
// lengths); the transport matchers hotdrop only packets whose
// transport header is not all there (Irregular), TCP's --tcp-option also
// a packet within its ports with a bad data offset (Inside); limit keeps
// a bucket (Opaque). Any other matcher (a custom one) by its Fields.
//
// Exact: the matchers whose constraints say all they test. Base, unless
// it checks -f (its family is described as a constraint: describe); the
// port matchers without options or --ports; icmp and icmpv6; mark;
// comment.
func matcherKind(m pipeline.Matcher) classify.Kind {
	switch x := m.(type) {
	case *Base:
		if !x.fragSet { // the family is a constraint (describe)
			return classify.Pure | classify.Exact
		}
		return classify.Pure
	case *Mark, *Comment:
		return classify.Pure | classify.Exact
	case *dst4, *src4: // a lone IPv4 -d/-s (fast.go): its prefix implies the family
		return classify.Pure | classify.Exact
	case *l4Ports: // -p tcp|udp with ports (fast.go); its family is described
		return classify.Irregular | classify.Exact
	case *IPRange, *Length, *TTL, *HL, *PktType, *AddrType:
		return classify.Pure
	case *UDP:
		return classify.Irregular | classify.Exact
	case *Multiport:
		if x.which != 'e' {
			return classify.Irregular | classify.Exact
		}
		return classify.Irregular
	case *ICMP, *ICMPv6: // type and code are a constraint (FieldICMPType)
		return classify.Irregular | classify.Exact
	case *TCP:
		if x.optSet {
			return classify.Inside
		}
		return classify.Irregular | classify.Exact // flags: FieldTCPFlags
	case *Limit:
		return classify.Opaque
	case *setFast: // a set matcher's specialised form (fast.go)
		return matcherKind(x.m)
	case *SetMatch:
		// Never a hotdrop. A constant address set describes its
		// prefixes exactly; another set no constraint (its contents
		// change at run time); a set with counters changes them on a
		// match, so that a later constraint must not skip its rule.
		switch {
		case x.exact():
			return classify.Pure | classify.Exact
		case !x.set.decl.counters:
			return classify.Pure
		}
		return classify.Opaque
	}
	return classify.DefaultKind(m)
}

// Shadow is a rule that can never match: an earlier rule of its chain
// whose target ends the chain (ACCEPT, DROP, REJECT, RETURN, a goto)
// matches every packet it could (pipectl validate --lint).
type Shadow struct {
	Table, Chain string
	Rule         int // from 1
	Line, Col    int
	Text         string
	By, ByLine   int // the rule that covers it
}

// Lint finds the shadowed rules of every chain from its compiled form
// (classify.Index.Covers): a rule whose earlier cover the compiler cannot
// prove (a custom matcher, limit, TCP flags, ICMP types…) is not
// reported. Quadratic in a chain's rules; for a validate, not a reload.
func (m *Module) Lint() []Shadow {
	var out []Shadow
	opts := classifyOptions
	opts.MinRules = 1
	for _, t := range m.tables {
		for ci, c := range t.chains {
			if ci >= len(t.pchains) || len(c.rules) < 2 {
				continue
			}
			x := classify.Compile(t.pchains[ci].Rules, opts)
			for j, rj := range c.rules {
				for i, ri := range c.rules[:j] {
					if ri.endsChain() && x.Covers(i, j) {
						out = append(out, Shadow{Table: t.name, Chain: c.name, Rule: rj.num, Line: rj.line, Col: rj.col, Text: rj.text, By: ri.num, ByLine: ri.line})
						break
					}
				}
			}
		}
	}
	return out
}

// endsChain: a packet the rule matches goes no further in its chain.
func (r *rule) endsChain() bool {
	if r.jumpTo != "" {
		return r.isGoto
	}
	switch r.tgt.(type) {
	case *Verdict, *Reject:
		return true
	}
	return false
}
