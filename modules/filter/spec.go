package filter

import (
	"strings"

	"github.com/pipestack/pipestack/pipeline"
)

// Opt is an option of a matcher or target in iptables syntax and the YAML
// key it fills in the module's config.
type Opt struct {
	// Name is the long option without "--" ("dport").
	Name string
	// Aliases are other spellings iptables accepts ("destination-port").
	Aliases []string
	// Key is the YAML key (Name with '-' as '_' unless given).
	Key string
	// Args is how many arguments follow: 0 (a flag), 1 or 2.
	Args int
	// Invert: the option may be preceded by "!".
	Invert bool
}

func (o Opt) key() string {
	if o.Key != "" {
		return o.Key
	}
	return strings.ReplaceAll(o.Name, "-", "_")
}

func (o Opt) matches(name string) bool {
	if name == o.Name {
		return true
	}
	for _, a := range o.Aliases {
		if a == name {
			return true
		}
	}
	return false
}

// Match is a filter.match.<name> module: a pipeline.Matcher with a config
// decoded strictly from the rule, its iptables options and its canonical
// spelling.
type Match interface {
	pipeline.Module
	pipeline.Matcher
	pipeline.ConstraintDescriber
	// Options are the matcher's options in iptables syntax.
	Options() []Opt
	// Spec is the matcher's canonical iptables text once provisioned
	// ("-m tcp --dport 22").
	Spec() string
}

// Target is a filter.target.<name> module.
type Target interface {
	pipeline.Module
	pipeline.Target
	// Options are the target's options in iptables syntax.
	Options() []Opt
	// Spec is the canonical text ("-j REJECT --reject-with tcp-reset").
	Spec() string
	// Label is the target column of a listing ("REJECT", a chain name).
	Label() string
}

// Optional interfaces of matchers and targets.
type (
	// familyMatch: the module only makes sense for one family (4 or 6);
	// 0 for both. Called after Provision.
	familyMatch interface{ Family() int }
	// protoMatch: the matcher needs -p to be one of these protocols
	// (and not inverted).
	protoMatch interface{ Protocols() []uint8 }
	// shortKey: a scalar in the YAML form fills this key
	// (comment: "text" is comment: {comment: "text"}).
	shortKey interface{ ShortKey() string }
	// tableLimited: a target valid only in these tables.
	tableLimited interface{ Tables() []string }
	// hookLimited: a module valid only at these hooks (bits of
	// pipeline.Hook); why names them for the message.
	hookLimited interface{ Hooks() uint8 }
	// envUser: a module that needs the filter's shared state (the log
	// ring, counters).
	envUser interface{ setEnv(*provisionEnv) }
)

// provisionEnv is the filter's state a module may need.
type provisionEnv struct {
	logs     *logRing
	counters *pipeline.CounterSet
	sets     map[string]*Set // the section's sets (sets.go)
	// lenient: a rule alone (CanonicalRule), without its section: a
	// matcher or target that names a set or map takes the name on trust.
	lenient bool
	// setTargets are the sets SET targets change (their appliers run
	// while the generation does: Module.Start).
	setTargets []*Set
}

// matchNames are the matchers a rule may name (-m NAME or a YAML key).
var matchNames = map[string]bool{
	"tcp": true, "udp": true, "multiport": true, "icmp": true, "icmpv6": true, "icmp6": true, "mark": true,
	"iprange": true, "length": true, "ttl": true, "hl": true, "limit": true, "pkttype": true,
	"addrtype": true, "comment": true, "set": true,
}

// targetNames maps a target's name (lower case) to its module name.
var targetNames = map[string]string{
	"accept": "accept", "drop": "drop", "return": "return", "reject": "reject", "log": "log",
	"mark": "mark", "ttl": "ttl", "hl": "hl", "notrack": "notrack", "tcpmss": "tcpmss",
}

func hookMaskString(mask uint8) string {
	var parts []string
	for h := pipeline.Hook(0); h < pipeline.NumHooks; h++ {
		if mask&(1<<h) != 0 {
			parts = append(parts, strings.ToUpper(h.String()))
		}
	}
	return strings.Join(parts, "/")
}

const (
	hPre  = 1 << pipeline.Prerouting
	hIn   = 1 << pipeline.Input
	hFwd  = 1 << pipeline.Forward
	hOut  = 1 << pipeline.Output
	hPost = 1 << pipeline.Postrouting
)
