package filter

import (
	"fmt"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/classify"
)

// Finding is one thing pipectl validate --lint reports: a shadowed rule
// (can never match), a redundant rule (removing it changes no verdict) or
// a user chain nothing reaches.
type Finding struct {
	Kind         string // "shadowed", "redundant", "unreached", "unused" (a set or map)
	Table, Chain string
	Rule         int // from 1; 0 for a chain
	Line, Col    int
	Text         string // the rule's canonical text
	By, ByLine   int    // the rule that covers it (shadowed, redundant; 0: the chain's policy)
	Msg          string // what is wrong, as printed after file:line:col
}

// LintAll is every finding of the section, chain by chain: Lint's
// shadowed rules, redundant rules and user chains never reached.
//
// Redundant, as far as the compiled form proves it for packets whose
// headers are all there: a rule j whose target is ACCEPT or DROP, whose
// matchers never hotdrop but for missing ports and keep no state, such
// that either a later rule k with the same target matches every packet j
// could (classify.Index.Covers) and every rule between is disjoint from j
// (classify.Index.Disjoint), or j's target is its built-in chain's policy
// and every later rule is disjoint from j. A rule that accepts and may
// hotdrop a packet without all its ports needs a k that may too.
//
// Unreached: a user chain that no rule of a chain reached from a built-in
// chain jumps or goes to (directly or through a verdict map). Unused: a
// set or map no rule names.
func (m *Module) LintAll() []Finding {
	var out []Finding
	shadowed := map[*rule]bool{}
	for _, s := range m.Lint() {
		t := m.tableByName(s.Table)
		r := t.chains[t.byName[s.Chain]].rules[s.Rule-1]
		shadowed[r] = true
		out = append(out, Finding{Kind: "shadowed", Table: s.Table, Chain: s.Chain, Rule: s.Rule, Line: s.Line, Col: s.Col, Text: s.Text, By: s.By, ByLine: s.ByLine,
			Msg: fmt.Sprintf("%q can never match: rule %d (line %d) matches every packet it could and ends the chain", s.Text, s.By, s.ByLine)})
	}
	used := map[*Set]bool{}
	for _, t := range m.tables {
		for _, c := range t.chains {
			for _, r := range c.rules {
				for _, x := range r.ms {
					if sm, ok := x.(*SetMatch); ok {
						used[sm.set] = true
					}
				}
				switch x := r.tgt.(type) {
				case *VMap:
					used[x.m.set] = true
				case *SetTarget:
					used[x.m.set] = true
				}
			}
		}
	}
	for _, src := range m.setSrcs {
		if s := m.sets[src.decl.name]; s != nil && !used[s] {
			what := "set"
			if s.decl.isMap {
				what = "map"
			}
			out = append(out, Finding{Kind: "unused", Line: src.line, Col: src.col,
				Msg: fmt.Sprintf("%s %s is never used: no rule matches, maps or changes it", what, src.decl.name)})
		}
	}
	opts := classifyOptions
	opts.MinRules = 1
	for _, t := range m.tables {
		for ci, c := range t.chains {
			if !c.builtin && c.hooks == 0 {
				why := "no rule jumps or goes to it"
				if c.refs > 0 {
					why = "only chains that are never reached jump or go to it"
				}
				out = append(out, Finding{Kind: "unreached", Table: t.name, Chain: c.name, Line: c.line, Col: c.col,
					Msg: fmt.Sprintf("user chain %s is never reached: %s", c.name, why)})
			}
			if ci >= len(t.pchains) || len(c.rules) == 0 {
				continue
			}
			x := classify.Compile(t.pchains[ci].Rules, opts)
			for j, rj := range c.rules {
				if shadowed[rj] {
					continue
				}
				v, ok := plainVerdict(rj)
				if !ok || !plainMatchers(t.pchains[ci].Rules[j].Matchers) {
					continue
				}
				irregular := hasIrregular(t.pchains[ci].Rules[j].Matchers)
				for k := j + 1; k <= len(c.rules); k++ {
					if k == len(c.rules) {
						// The chain's end: a built-in chain's policy.
						if c.builtin && c.policy == v && (!irregular || v == pipeline.VerdictDrop) {
							out = append(out, Finding{Kind: "redundant", Table: t.name, Chain: c.name, Rule: rj.num, Line: rj.line, Col: rj.col, Text: rj.text,
								Msg: fmt.Sprintf("%q is redundant: no later rule can match what it matches, and the policy decides the same", rj.text)})
						}
						break
					}
					rk := c.rules[k]
					if vk, ok := plainVerdict(rk); ok && vk == v && x.Covers(k, j) &&
						(!irregular || v == pipeline.VerdictDrop || hasIrregular(t.pchains[ci].Rules[k].Matchers)) {
						out = append(out, Finding{Kind: "redundant", Table: t.name, Chain: c.name, Rule: rj.num, Line: rj.line, Col: rj.col, Text: rj.text, By: rk.num, ByLine: rk.line,
							Msg: fmt.Sprintf("%q is redundant: rule %d (line %d) matches every packet it could with the same verdict, and no rule between can match them", rj.text, rk.num, rk.line)})
						break
					}
					if !x.Disjoint(k, j) {
						break
					}
				}
			}
		}
	}
	return out
}

func (m *Module) tableByName(name string) *table {
	for _, t := range m.tables {
		if t.name == name {
			return t
		}
	}
	return nil
}

// plainVerdict: the rule's target is ACCEPT or DROP.
func plainVerdict(r *rule) (pipeline.Verdict, bool) {
	if v, ok := r.tgt.(*Verdict); ok && (v.v == pipeline.VerdictAccept || v.v == pipeline.VerdictDrop) {
		return v.v, true
	}
	return 0, false
}

// plainMatchers: none may hotdrop (but for missing ports) or keep state.
func plainMatchers(ms []pipeline.Matcher) bool {
	for _, x := range ms {
		switch matcherKind(x) &^ classify.Exact {
		case classify.Pure, classify.Irregular:
		default:
			return false
		}
	}
	return true
}

func hasIrregular(ms []pipeline.Matcher) bool {
	for _, x := range ms {
		if matcherKind(x)&^classify.Exact == classify.Irregular {
			return true
		}
	}
	return false
}
