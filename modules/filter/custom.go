package filter

import (
	"strings"

	"github.com/pipestack/pipestack/pipeline"
)

// The optional interfaces a matcher or target module may implement, for
// modules written outside this package (README "Writing your own matcher or
// target"). The filter looks for these methods on every module, built-in or
// not; the interfaces only name them.
type (
	// FamilyLimited: the module only makes sense for one family; Family
	// returns 4 or 6 (0: both). Called after Provision. A rule that uses
	// it is of that family; mixing families is an error.
	FamilyLimited interface{ Family() int }
	// ProtocolLimited: a matcher that needs -p (proto:) to be one of these
	// protocol numbers, not inverted ("tcp match: only valid with -p tcp").
	ProtocolLimited interface{ Protocols() []uint8 }
	// ShortKeyer: in the YAML form a scalar fills this key
	// (comment: "text" is comment: {comment: "text"}).
	ShortKeyer interface{ ShortKey() string }
	// TableLimited: a target valid only in these tables ("mangle").
	TableLimited interface{ Tables() []string }
	// HookLimited: a module valid only at these hooks, a mask with bit
	// 1<<pipeline.Hook set for each; a rule reachable from another hook
	// (also through user chains) is refused.
	HookLimited interface{ Hooks() uint8 }
)

// isMatch reports whether a rule may name the matcher (-m NAME or a YAML
// key): a built-in one, or any registered filter.match.NAME module that
// implements Match (a custom matcher linked into the binary).
func isMatch(name string) bool {
	if matchNames[name] {
		return true
	}
	if name == "base" || name == "" || strings.ContainsAny(name, ". ") {
		return false
	}
	mi, ok := pipeline.LookupModule("filter.match." + name)
	if !ok {
		return false
	}
	_, ok = mi.New().(Match)
	return ok
}

// isTarget reports whether -j NAME (lower case) or target: NAME is a
// target module: a built-in one, or any registered filter.target.NAME
// that implements Target. jump and goto are not targets by name (-j CHAIN).
func isTarget(name string) bool {
	if _, ok := targetNames[name]; ok {
		return true
	}
	if name == "jump" || name == "goto" || name == "" || strings.ContainsAny(name, ". ") {
		return false
	}
	mi, ok := pipeline.LookupModule("filter.target." + name)
	if !ok {
		return false
	}
	_, ok = mi.New().(Target)
	return ok
}

// knownTargets lists the target names rules may use, built-in and
// registered, for messages.
func knownTargets() []string {
	seen := map[string]bool{}
	var out []string
	for t := range targetNames {
		seen[t] = true
		out = append(out, t)
	}
	for _, mi := range pipeline.Modules("filter.target") {
		n := strings.TrimPrefix(mi.ID, "filter.target.")
		if !seen[n] && isTarget(n) {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// knownMatches lists the matcher names, built-in and registered.
func knownMatches() []string {
	seen := map[string]bool{"icmp6": true}
	var out []string
	for m := range matchNames {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	for _, mi := range pipeline.Modules("filter.match") {
		n := strings.TrimPrefix(mi.ID, "filter.match.")
		if !seen[n] && isMatch(n) {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

var (
	_ FamilyLimited = (*IPRange)(nil)
	_ TableLimited  = (*HopTarget)(nil)
	_ familyMatch   = FamilyLimited(nil)
	_ protoMatch    = ProtocolLimited(nil)
	_ shortKey      = ShortKeyer(nil)
	_ tableLimited  = TableLimited(nil)
	_ hookLimited   = HookLimited(nil)
)
