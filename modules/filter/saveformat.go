package filter

import (
	"errors"

	"gopkg.in/yaml.v3"

	"github.com/pipestack/pipestack/pipeline"
)

// This file is the filter's side of `pipectl import` and `pipectl export`
// (iptables-save files): the rule parser, its canonical text and the
// names it knows, for a program that translates rules without a pipeline.

// CanonicalRule parses one rule in iptables syntax (what follows
// `iptables -A CHAIN`) as a rule of the filter: section does, provisions
// its modules and returns its canonical text (what `pipectl rules -json`
// shows) and its family: 0 (both), 4 or 6, given (-4/-6) or implied. A
// jump or goto is not resolved (the chain need not exist here); table and
// hook checks are the section's (they need the chain).
func CanonicalRule(s string) (text string, family int, err error) {
	src, err := parseRule(s)
	if err != nil {
		return "", 0, err
	}
	r, err := buildRule(src, &yaml.Node{Line: 1, Column: 1}, "")
	if err != nil {
		return "", 0, unposition(err)
	}
	if err := r.provision(&pipeline.Context{}, &provisionEnv{lenient: true}); err != nil {
		return "", 0, unposition(err)
	}
	return r.text, r.family, nil
}

// unposition drops the line:col of a rule built from a lone string.
func unposition(err error) error {
	var pe *pipeline.PosError
	if errors.As(err, &pe) {
		return errors.New(pe.Msg)
	}
	return err
}

// SplitRule splits a rule in iptables syntax into words as the rule
// parser does (blanks separate, single and double quotes group, a
// backslash outside single quotes escapes the next byte).
func SplitRule(s string) ([]string, error) { return tokenize(s) }

// QuoteRuleWord quotes a word so that SplitRule reads it back as one
// word ("two words" → "\"two words\"").
func QuoteRuleWord(s string) string { return quoteArg(s) }

// IsMatchName reports whether the filter has the matcher -m name
// (lower case; icmp6 is icmpv6).
func IsMatchName(name string) bool { return matchNames[name] }

// IsTargetName reports whether -j NAME (any case) is one of the filter's
// built-in targets rather than a user chain.
func IsTargetName(name string) bool {
	_, ok := targetNames[toLower(name)]
	return ok
}

// BuiltinChains are table's built-in chains (lower case) in iptables'
// order; nil for a table the filter does not have.
func BuiltinChains(table string) []string {
	var out []string
	for _, b := range builtinChains[table] {
		out = append(out, b.name)
	}
	return out
}

// CheckChainName reports why name cannot be a user chain of table, or
// nil.
func CheckChainName(table, name string) error { return checkChainName(table, name) }

func toLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
