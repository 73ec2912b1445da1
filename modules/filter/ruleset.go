package filter

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pipestack/pipestack/pipeline"
)

// Policy is a built-in chain's policy in a RuleSet.
type Policy int

const (
	// Accept is the default policy.
	Accept Policy = iota
	// Drop drops what no rule decided.
	Drop
)

// RuleSet builds a filter section from Go, for a program that embeds the
// stack without a pipeline file:
//
//	rs := filter.NewRuleSet()
//	rs.Table("filter").Chain("forward", filter.Drop).
//		Append("-p tcp --dport 22 -j ACCEPT", "-p udp --dport 53 -j ACCEPT")
//	if err := rs.Install(cfg); err != nil { … }
//	stack.Apply(cfg)
//
// The rules are iptables strings (or YAML mappings, AppendYAML), exactly as
// in the file; Install makes them the config's filter section, the same
// module the file's filter: section gives, so they go through the same
// decoding, provisioning and validation (errors name the table, chain and
// rule number), count in the same counters and list with pipectl rules. A
// new RuleSet installed into a new Config and applied with Stack.Apply
// replaces the running rules as a reload does (the counters of unchanged
// rules carry over). A RuleSet is not safe for concurrent use.
type RuleSet struct {
	tables []*RuleTable
}

// RuleTable is one table of a RuleSet.
type RuleTable struct {
	name   string
	chains []*RuleChain
}

// RuleChain is one chain of a RuleTable.
type RuleChain struct {
	name      string
	policy    Policy
	hasPolicy bool
	rules     []string // YAML flow text, one per rule
}

// NewRuleSet returns an empty rule set.
func NewRuleSet() *RuleSet { return &RuleSet{} }

// Table returns the table (raw, mangle or filter; an unknown name is an
// error at Module or Install), adding it the first time.
func (rs *RuleSet) Table(name string) *RuleTable {
	for _, t := range rs.tables {
		if t.name == name {
			return t
		}
	}
	t := &RuleTable{name: name}
	rs.tables = append(rs.tables, t)
	return t
}

// Chain returns the chain, adding it the first time: a built-in chain
// (input, forward, …) or a user chain. A policy (built-in chains only)
// sets the chain's policy.
func (t *RuleTable) Chain(name string, policy ...Policy) *RuleChain {
	var c *RuleChain
	for _, x := range t.chains {
		if x.name == name {
			c = x
		}
	}
	if c == nil {
		c = &RuleChain{name: name}
		t.chains = append(t.chains, c)
	}
	if len(policy) > 0 {
		c.policy, c.hasPolicy = policy[len(policy)-1], true
	}
	return c
}

// Append adds rules in iptables syntax (what follows iptables -A CHAIN).
func (c *RuleChain) Append(rules ...string) *RuleChain {
	for _, r := range rules {
		c.rules = append(c.rules, quoteYAMLScalar(r))
	}
	return c
}

// AppendID adds one rule in iptables syntax with an id (its counter's
// identity across changes, as {id: NAME, rule: "…"} in the file).
func (c *RuleChain) AppendID(id, rule string) *RuleChain {
	c.rules = append(c.rules, "{id: "+quoteYAMLScalar(id)+", rule: "+quoteYAMLScalar(rule)+"}")
	return c
}

// AppendYAML adds one rule in the YAML mapping form
// ("{proto: tcp, dport: 22, target: accept}").
func (c *RuleChain) AppendYAML(mapping string) *RuleChain {
	c.rules = append(c.rules, strings.TrimSpace(mapping))
	return c
}

func quoteYAMLScalar(s string) string {
	b, _ := yaml.Marshal(s)
	out := strings.TrimSuffix(string(b), "\n")
	if strings.Contains(out, "\n") {
		// A long or multi-line string: a double-quoted scalar.
		out = fmt.Sprintf("%q", s)
	}
	return out
}

// YAML is the rule set as the file's filter: section (its value) would be
// written.
func (rs *RuleSet) YAML() string {
	var b strings.Builder
	for _, t := range rs.tables {
		fmt.Fprintf(&b, "%s:\n", t.name)
		for _, c := range t.chains {
			fmt.Fprintf(&b, "  %s:\n", c.name)
			if c.hasPolicy {
				fmt.Fprintf(&b, "    policy: %s\n", map[Policy]string{Accept: "accept", Drop: "drop"}[c.policy])
			}
			b.WriteString("    rules:\n")
			for _, r := range c.rules {
				fmt.Fprintf(&b, "      - %s\n", r)
			}
		}
	}
	return b.String()
}

// Module decodes the rule set into a filter module, as the file's filter:
// section is decoded (not yet provisioned: the stack does that).
func (rs *RuleSet) Module() (*Module, error) {
	if len(rs.tables) == 0 {
		return nil, errors.New("filter: the rule set has no table")
	}
	for _, t := range rs.tables {
		for _, c := range t.chains {
			if c.hasPolicy && c.policy != Accept && c.policy != Drop {
				return nil, fmt.Errorf("filter (table %s, chain %s): policy %d is not Accept or Drop", t.name, c.name, c.policy)
			}
		}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(rs.YAML()), &doc); err != nil {
		return nil, fmt.Errorf("filter: %v", err)
	}
	m := new(Module)
	if err := pipeline.DecodeStrict(&doc, m); err != nil {
		return nil, &pipeline.ConfigError{File: "filter.RuleSet", Module: "filter", Err: err}
	}
	return m, nil
}

// Install makes the rule set cfg's filter section: it replaces a filter
// section the config already has (one read from its file) or adds one.
// The config's identity changes with the rules (Config.Extend), so that
// Stack.Apply of a parsed file with other rules is a change.
func (rs *RuleSet) Install(cfg *pipeline.Config) error {
	m, err := rs.Module()
	if err != nil {
		return err
	}
	mc := pipeline.ModuleConfig{ID: "filter", Module: m, Instance: "filter"}
	for i := range cfg.Modules {
		if cfg.Modules[i].ID == "filter" {
			cfg.Modules[i] = mc
			cfg.Extend([]byte("filter.RuleSet\x00" + rs.YAML()))
			return nil
		}
	}
	cfg.Modules = append(cfg.Modules, mc)
	cfg.Extend([]byte("filter.RuleSet\x00" + rs.YAML()))
	return nil
}
