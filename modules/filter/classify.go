package filter

import (
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/classify"
)

// classifyOptions compile the module's chains (pipeline/classify): what the
// module knows of its own matchers, and its view of NIC names.
var classifyOptions = classify.Options{Kind: matcherKind, NICName: nicName}

// indexChains gives each long enough chain of a table its classifier, when
// the generation is built (Validate), never on the packet path.
func indexChains(chains []pipeline.Chain) {
	for i := range chains {
		if x := classify.Compile(chains[i].Rules, classifyOptions); x != nil {
			chains[i].Index = x
		}
	}
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
