package filter

import (
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/classify"
)

// classifyOptions compile the module's chains (pipeline/classify): what the
// module knows of its own matchers, and its view of NIC names.
var classifyOptions = classify.Options{Kind: matcherKind, NICName: nicName}

// index gives each long enough chain of the table its classifier, when
// the generation is built (Validate), never on the packet path, and keeps
// what it made of each (ClassifierStats).
func (t *table) index(chains []pipeline.Chain) {
	t.compiled = t.compiled[:0]
	for i := range chains {
		cs := ChainStats{Table: t.name, Chain: chains[i].Name, Rules: len(chains[i].Rules)}
		if i < len(t.chains) {
			cs.Line = t.chains[i].line
		}
		if x := classify.Compile(chains[i].Rules, classifyOptions); x != nil {
			chains[i].Index = x
			cs.Indexed, cs.Stats = true, x.Stats()
		}
		t.compiled = append(t.compiled, cs)
	}
}

// ChainStats is what the classifier made of one chain (pipectl validate
// --stats). Rules counts the built-in chains' policy as a rule.
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
// ICMP types, lengths); the transport matchers hotdrop only packets whose
// transport header is not all there (Irregular), TCP's --tcp-option also
// a packet within its ports with a bad data offset (Inside); limit keeps
// a bucket (Opaque). Any other matcher (a custom one) by its Fields.
//
// Exact: the matchers whose constraints say all they test. Base, unless
// it checks -f or a family its addresses do not imply (-4 -p udp: the
// family is not a constraint); the port matchers without flags, options
// or --ports; mark; comment.
func matcherKind(m pipeline.Matcher) classify.Kind {
	switch x := m.(type) {
	case *Base:
		if !x.fragSet && (x.family == 0 || x.srcSet && !x.srcInv || x.dstSet && !x.dstInv) {
			return classify.Pure | classify.Exact
		}
		return classify.Pure
	case *Mark, *Comment:
		return classify.Pure | classify.Exact
	case *IPRange, *Length, *TTL, *HL, *PktType, *AddrType:
		return classify.Pure
	case *UDP:
		return classify.Irregular | classify.Exact
	case *Multiport:
		if x.which != 'e' {
			return classify.Irregular | classify.Exact
		}
		return classify.Irregular
	case *ICMP, *ICMPv6:
		return classify.Irregular
	case *TCP:
		if x.optSet {
			return classify.Inside
		}
		if !x.flagsSet {
			return classify.Irregular | classify.Exact
		}
		return classify.Irregular
	case *Limit:
		return classify.Opaque
	}
	return classify.DefaultKind(m)
}
