// Package filter is the filter module: iptables-style tables (raw, mangle,
// filter) with their built-in chains, user chains, policies, jumps, gotos
// and returns, configured by the top-level filter: section of the pipeline
// file, and the matchers (filter.match.<name>) and targets
// (filter.target.<name>) its rules are made of. Every rule can be written as
// a YAML mapping or as an iptables command-line string; both give the same
// rule. See README.md for the file form, every matcher and target, the
// counters and what is not there yet.
//
// The module compiles each table into one pipeline.HookTable per hook its
// built-in chains sit at (the table's chains, the built-in chain as entry,
// its policy) and hands them to the stack with netfilter's priorities (raw
// -300, mangle -150, filter 0) through pipeline.HookModule.
//
// Rule counters (packets, bytes) outlive a generation: they live in the
// stack's shared state, keyed by the rule's identity (its id:, or table,
// chain, canonical text and occurrence), so that a reload keeps the counts
// of unchanged rules; a counter goes when no generation has its rule any
// more.
package filter

import (
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(Module)) }

// Module is the filter: section. It decodes itself (UnmarshalYAML) so that
// every error carries the line of the table, chain or rule it is about.
type Module struct {
	tables []*table

	store    *counterStore
	acquired []string // counter keys held (released in Cleanup)
	logs     *logRing
	counters *pipeline.CounterSet
	built    []pipeline.HookEntry

	setSrcs []*setSrc       // the sets: section (sets_config.go)
	sets    map[string]*Set // by name (Provision)
	notes   []string        // what a reload should say (ReloadNotes)
	env     *provisionEnv
	started []*Set // sets whose appliers this generation started (Start)
}

// table is one table of the section.
type table struct {
	name      string
	line, col int
	chains    []*chain
	byName    map[string]int
	compiled  []ChainStats     // what the classifier made of each chain (classify.go)
	pchains   []pipeline.Chain // the chains compiled, for Lint
	// links is the generation's link names by NIC ID (Context.LinkIDs,
	// at Provision): the classifier checks -i/-o against the same names
	// the matchers resolved.
	links map[pipeline.NICID]string
	// gates are the nat table's gates by hook (Provision).
	gates [pipeline.NumHooks]pipeline.Matcher
}

// chain is a built-in or user chain.
type chain struct {
	name      string
	builtin   bool
	policy    pipeline.Verdict // built-in chains: accept (default) or drop
	line, col int
	rules     []*rule
	hooks     uint8 // hooks it is reachable from (bit per pipeline.Hook)
	refs      int   // rules that jump or go to it
	// polCounter counts the packets the policy decided (built-in chains).
	polCounter *ruleCounter
}

// builtinChains lists each table's built-in chains with their hooks, as in
// iptables.
var builtinChains = map[string][]struct {
	name string
	hook pipeline.Hook
}{
	"raw":    {{"prerouting", pipeline.Prerouting}, {"output", pipeline.Output}},
	"mangle": {{"prerouting", pipeline.Prerouting}, {"input", pipeline.Input}, {"forward", pipeline.Forward}, {"output", pipeline.Output}, {"postrouting", pipeline.Postrouting}},
	"nat":    {{"prerouting", pipeline.Prerouting}, {"input", pipeline.Input}, {"output", pipeline.Output}, {"postrouting", pipeline.Postrouting}},
	"filter": {{"input", pipeline.Input}, {"forward", pipeline.Forward}, {"output", pipeline.Output}},
}

var tableOrder = []string{"raw", "mangle", "nat", "filter"}

var tablePriority = map[string]int{"raw": pipeline.PriorityRaw, "mangle": pipeline.PriorityMangle, "nat": pipeline.PriorityNATDst, "filter": pipeline.PriorityFilter}

// hookPriority is a table's priority at a hook: the nat table's chains
// run as destination NAT (−100) at Prerouting and Output, as source NAT
// (100) at Postrouting and Input, as netfilter's.
func hookPriority(table string, h pipeline.Hook) int {
	if table == "nat" && (h == pipeline.Postrouting || h == pipeline.Input) {
		return pipeline.PriorityNATSrc
	}
	return tablePriority[table]
}

// natGate makes the gate of the nat table at a hook (a matcher true for a
// connection's first packet, whose binding for that hook's kind of NAT is
// not made yet). netfilter.conntrack registers it (RegisterNATGate): the
// nat table needs connection tracking.
var natGate func(ctx *pipeline.Context, h pipeline.Hook) (pipeline.Matcher, error)

// RegisterNATGate is how the connection tracker (modules/conntrack, in
// its init) gives the nat table its gate; f fails when the pipeline
// tracks no connections (netfilter.conntrack not under modules:).
func RegisterNATGate(f func(ctx *pipeline.Context, h pipeline.Hook) (pipeline.Matcher, error)) {
	natGate = f
}

// PipelineModule implements pipeline.Module.
func (*Module) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "filter",
		Summary: "iptables-style filter: raw, mangle and filter tables, user chains, rules in YAML or iptables syntax, per-rule counters",
		New:     func() pipeline.Module { return new(Module) },
	}
}

// UnmarshalYAML decodes the section: a mapping of tables, each a mapping
// of chains, each {policy:, rules:}.
func (m *Module) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return posErr(n, "", "the filter section is a mapping of tables (raw, mangle, nat, filter)")
	}
	if err := dupKeys(n); err != nil {
		return err
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "sets", "maps":
			ss, err := decodeSets(v, k.Value == "maps")
			if err != nil {
				return err
			}
			m.setSrcs = append(m.setSrcs, ss...)
			continue
		case "nat":
			if natGate == nil {
				return posErr(k, "", "the nat table needs connection tracking (the netfilter.conntrack module is not built in)")
			}
		case "raw", "mangle", "filter":
		default:
			return pipeline.UnknownKey(k, append(tableOrder[:len(tableOrder):len(tableOrder)], "sets", "maps"), "")
		}
		t, err := decodeTable(k, v)
		if err != nil {
			return err
		}
		m.tables = append(m.tables, t)
	}
	sort.SliceStable(m.tables, func(i, j int) bool { return tablePriority[m.tables[i].name] < tablePriority[m.tables[j].name] })
	return nil
}

func decodeTable(k, v *yaml.Node) (*table, error) {
	t := &table{name: k.Value, line: k.Line, col: k.Column, byName: map[string]int{}}
	for _, b := range builtinChains[t.name] {
		t.byName[b.name] = len(t.chains)
		t.chains = append(t.chains, &chain{name: b.name, builtin: true, policy: pipeline.VerdictAccept, line: k.Line, col: k.Column, hooks: 1 << b.hook})
	}
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return t, nil
	}
	if v.Kind != yaml.MappingNode {
		return nil, posErr(v, "table "+t.name, "a table is a mapping of chains (e.g. input: {policy: drop, rules: [...]})")
	}
	if err := dupKeys(v); err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		ck, cv := v.Content[i], v.Content[i+1]
		name := ck.Value
		where := "table " + t.name + ", chain " + name
		idx, isBuiltin := t.byName[name]
		if !isBuiltin {
			if err := checkChainName(t.name, name); err != nil {
				return nil, posErr(ck, where, "%v", err)
			}
			idx = len(t.chains)
			t.byName[name] = idx
			t.chains = append(t.chains, &chain{name: name})
		}
		c := t.chains[idx]
		c.line, c.col = ck.Line, ck.Column
		if err := decodeChain(t, c, cv, where); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// checkChainName refuses user chain names that read as something else.
func checkChainName(table, name string) error {
	lower := strings.ToLower(name)
	var in []string
	for _, tn := range tableOrder {
		for _, b := range builtinChains[tn] {
			if lower == b.name {
				in = append(in, tn)
			}
		}
	}
	if len(in) > 0 {
		return fmt.Errorf("%s is a built-in chain of %s %s, not of table %s", lower, map[bool]string{true: "table", false: "tables"}[len(in) == 1], strings.Join(in, ", "), table)
	}
	if isTarget(lower) {
		return fmt.Errorf("chain name %q is a target's name", name)
	}
	if name == "" || len(name) > 28 || strings.ContainsAny(name, " \t!'\"") || name[0] == '-' {
		return fmt.Errorf("chain name %q: up to 28 characters, no blanks, quotes or '!', not starting with '-'", name)
	}
	return nil
}

func decodeChain(t *table, c *chain, n *yaml.Node, where string) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return posErr(n, where, "a chain is a mapping {policy: accept|drop, rules: [...]}")
	}
	if err := dupKeys(n); err != nil {
		return err
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "policy":
			if !c.builtin {
				return posErr(k, where, "a user chain has no policy (iptables: \"Bad built-in chain name\"); it returns to its caller")
			}
			switch strings.ToLower(v.Value) {
			case "accept":
				c.policy = pipeline.VerdictAccept
			case "drop":
				c.policy = pipeline.VerdictDrop
			default:
				return posErr(v, where, "policy %q is not accept or drop", v.Value)
			}
		case "rules":
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				continue
			}
			if v.Kind != yaml.SequenceNode {
				return posErr(v, where, "rules is a list of rules")
			}
			for j, rn := range v.Content {
				rw := fmt.Sprintf("%s, rule %d", where, j+1)
				r, err := decodeRule(rn, rw)
				if err != nil {
					return err
				}
				r.num = j + 1
				r.table, r.chain = t.name, c.name
				c.rules = append(c.rules, r)
			}
		default:
			return pipeline.UnknownKey(k, []string{"policy", "rules"}, "")
		}
	}
	return nil
}

// Provision provisions every matcher and target, works out each rule's
// family and canonical text and takes its counter from the stack's store.
func (m *Module) Provision(ctx *pipeline.Context) error {
	m.counters = ctx.Counters("filter")
	m.store = ctx.Shared(sharedCounters, func() any { return newCounterStore() }).(*counterStore)
	logger := ctx.Logger
	m.logs = ctx.Shared(sharedLog, func() any { return newLogRing(logger, defaultRingSize, ctx.Counters("filter")) }).(*logRing)
	if err := m.provisionSets(ctx); err != nil {
		return err
	}
	env := &provisionEnv{logs: m.logs, counters: m.counters, sets: m.sets}
	m.env = env
	occurrence := map[string]int{}
	ids := map[string]*rule{}
	links := make(map[pipeline.NICID]string, len(ctx.LinkIDs))
	for name, id := range ctx.LinkIDs {
		links[id] = name
	}
	for _, t := range m.tables {
		t.links = links
		if t.name == "nat" {
			for _, b := range builtinChains["nat"] {
				g, err := natGate(ctx, b.hook)
				if err != nil {
					return &pipeline.PosError{Line: t.line, Col: t.col, Where: "table nat", Msg: err.Error()}
				}
				t.gates[b.hook] = g
			}
		}
		for _, c := range t.chains {
			if c.builtin {
				key := t.name + "/" + c.name + "/policy"
				c.polCounter = m.store.acquire(key)
				m.acquired = append(m.acquired, key)
			}
			for _, r := range c.rules {
				if err := r.provision(ctx, env); err != nil {
					return err
				}
				key := r.id
				if key == "" {
					base := t.name + "/" + c.name + "/" + r.text
					occurrence[base]++
					key = fmt.Sprintf("%s#%d", base, occurrence[base])
				} else {
					if prev, dup := ids[key]; dup {
						return r.errf("id %q is already the id of table %s, chain %s, rule %d", key, prev.table, prev.chain, prev.num)
					}
					ids[key] = r
					key = "id/" + key
				}
				r.key = key
				r.counter = m.store.acquire(key)
				m.acquired = append(m.acquired, key)
			}
		}
	}
	return nil
}

// Validate checks each rule as iptables would (targets in tables and
// hooks that allow them, options that need a protocol, jumps to existing
// chains, no loops) and builds the hook tables.
func (m *Module) Validate() error {
	for _, t := range m.tables {
		if err := t.resolve(); err != nil {
			return err
		}
	}
	for _, t := range m.tables {
		for _, c := range t.chains {
			for _, r := range c.rules {
				if err := r.validate(t, c); err != nil {
					return err
				}
			}
		}
	}
	m.built = m.built[:0]
	for _, t := range m.tables {
		m.built = append(m.built, t.compile()...)
	}
	return nil
}

// HookTables implements pipeline.HookModule.
func (m *Module) HookTables() []pipeline.HookEntry { return m.built }

// Start starts the appliers of the sets SET targets change (not under
// pipectl validate: a generation built to run).
func (m *Module) Start() error {
	seen := map[*Set]bool{}
	for _, s := range m.env.setTargets {
		if !seen[s] {
			seen[s] = true
			s.startApplier()
			m.started = append(m.started, s)
		}
	}
	return nil
}

// Stop stops them (a set another generation still changes keeps its
// applier).
func (m *Module) Stop() error {
	for _, s := range m.started {
		s.stopApplier()
	}
	m.started = nil
	return nil
}

// Cleanup gives the counters back: those no generation holds any more go.
func (m *Module) Cleanup() error {
	m.Stop() // a build that failed after Start
	if m.store != nil {
		m.store.release(m.acquired)
	}
	m.acquired = nil
	m.built = nil
	return nil
}

// resolve finds every jump's chain, rules out loops and works out which
// hooks each chain is reachable from.
func (t *table) resolve() error {
	for _, c := range t.chains {
		for _, r := range c.rules {
			if r.jumpTo == "" {
				continue
			}
			idx, ok := t.byName[r.jumpTo]
			if !ok {
				known := []string{}
				for _, c2 := range t.chains {
					if !c2.builtin {
						known = append(known, c2.name)
					}
				}
				msg := fmt.Sprintf("chain %q does not exist in table %s (iptables: \"Couldn't load target `%s'\")", r.jumpTo, t.name, r.jumpTo)
				if s := pipeline.Suggest(r.jumpTo, known); len(s) > 0 {
					msg += fmt.Sprintf(", did you mean %q?", s[0])
				}
				return r.errf("%s", msg)
			}
			if t.chains[idx].builtin {
				return r.errf("cannot jump to built-in chain %s", r.jumpTo)
			}
			r.jumpIdx = idx
			t.chains[idx].refs++
		}
		for _, r := range c.rules {
			if vm, ok := r.tgt.(*VMap); ok {
				to, err := vm.resolveChains(t.byName, func(i int) bool { return t.chains[i].builtin })
				if err != nil {
					return r.errf("%v", err)
				}
				r.mapTo = to
				for _, i := range to {
					t.chains[i].refs++
				}
			}
		}
	}
	// Loops: a depth-first walk over jumps and gotos from every chain.
	state := make([]uint8, len(t.chains))
	var visit func(i int, path []string) error
	visit = func(i int, path []string) error {
		switch state[i] {
		case 1:
			loop := path
			for j, n := range path {
				if n == t.chains[i].name {
					loop = path[j:]
				}
			}
			return fmt.Errorf("jumps loop: %s", strings.Join(append(loop, t.chains[i].name), " -> "))
		case 2:
			return nil
		}
		state[i] = 1
		path = append(path, t.chains[i].name)
		for _, r := range t.chains[i].rules {
			for _, to := range r.jumpTargets() {
				if err := visit(to, path); err != nil {
					if _, ok := err.(*pipeline.PosError); ok {
						return err
					}
					return r.errf("%v (iptables: \"Too many levels of symbolic links\")", err)
				}
			}
		}
		state[i] = 2
		return nil
	}
	for i := range t.chains {
		if err := visit(i, nil); err != nil {
			return err
		}
	}
	// Reachability: hooks flow from the built-in chains along jumps.
	for changed := true; changed; {
		changed = false
		for _, c := range t.chains {
			for _, r := range c.rules {
				for _, i := range r.jumpTargets() {
					to := t.chains[i]
					if to.hooks|c.hooks != to.hooks {
						to.hooks |= c.hooks
						changed = true
					}
				}
			}
		}
	}
	return nil
}

// compile makes the table's HookTable for each hook of its built-in
// chains: all the table's chains, entry at the built-in one.
func (t *table) compile() []pipeline.HookEntry {
	chains := make([]pipeline.Chain, len(t.chains))
	a := new(fastArena)
	ta := new(targetArena)
	for i, c := range t.chains {
		rules := make([]pipeline.Rule, 0, len(c.rules)+1)
		texts := make([]string, 0, len(c.rules)+1) // for a trace
		// One array holds the matchers of the chain's rules, and the
		// specialised ones sit side by side in a's chunks: a walk over
		// the chain reads memory in order.
		n := 0
		for _, r := range c.rules {
			n += len(r.ms) + 1
		}
		all := make([]pipeline.Matcher, 0, n)
		for _, r := range c.rules {
			start := len(all)
			all = r.appendMatchers(all, a)
			var ms []pipeline.Matcher
			if len(all) > start {
				ms = all[start:len(all):len(all)]
			}
			rules = append(rules, pipeline.Rule{Matchers: ms, Target: r.compiledTarget(ta)})
			texts = append(texts, r.text)
		}
		if c.builtin {
			// The policy's text, past the rules: the engine applies it
			// and counts it (HookTable.PolicyCount) at the chain's end,
			// at a RETURN, and at the end of a chain gone to from here.
			texts = append(texts, policyText(c))
		}
		chains[i] = pipeline.Chain{Name: c.name, Rules: rules, Texts: texts}
	}
	t.index(chains)
	var out []pipeline.HookEntry
	for _, b := range builtinChains[t.name] {
		idx := t.byName[b.name]
		ht := &pipeline.HookTable{Chains: chains, Entry: idx, Policy: t.chains[idx].policy, PolicyCount: t.chains[idx].polCounter}
		if t.name == "nat" {
			ht.Gate = t.gates[b.hook]
		}
		out = append(out, pipeline.HookEntry{Hook: b.hook, Priority: hookPriority(t.name, b.hook), Name: t.name, Table: ht,
			Prepare: tablePrefetch(t.prefetchSets(b.hook))})
	}
	return out
}

// prefetchSets are the sets the rules reachable from hook h look up
// (-m set, -j VMAP) with a hashed type (hash:ip, addr . port), at most maxPrefetchSets
// (sets_prefetch.go): whether one is large enough is decided per batch,
// by its contents then.
func (t *table) prefetchSets(h pipeline.Hook) []setPrefetch {
	var out []setPrefetch
	add := func(m *SetMatch) {
		if m.set == nil || len(m.dirs) == 0 || !prefetchable(m.set.decl.typ) || len(out) == maxPrefetchSets {
			return
		}
		sp := setPrefetch{set: m.set, srcA: m.dirs[0], srcP: m.dirs[len(m.dirs)-1]}
		for _, o := range out {
			if o == sp {
				return
			}
		}
		out = append(out, sp)
	}
	for _, c := range t.chains {
		if c.hooks&(1<<h) == 0 {
			continue
		}
		for _, r := range c.rules {
			for _, m := range r.ms {
				if sm, ok := m.(*SetMatch); ok {
					add(sm)
				}
			}
			if v, ok := r.tgt.(*VMap); ok {
				add(&v.m)
			}
		}
	}
	return out
}

// ListRules implements pipeline.RuleLister: the running rules with their
// counters, as iptables -L -v -n --line-numbers lists them.
func (m *Module) ListRules() []pipeline.ChainListing {
	var out []pipeline.ChainListing
	for _, t := range m.tables {
		for _, c := range t.chains {
			cl := pipeline.ChainListing{Table: t.name, Chain: c.name, References: c.refs}
			if c.builtin {
				cl.Chain = strings.ToUpper(c.name)
				cl.Policy = "ACCEPT"
				if c.policy == pipeline.VerdictDrop {
					cl.Policy = "DROP"
				}
				cl.PolicyPackets, cl.PolicyBytes = c.polCounter.load()
			}
			for _, r := range c.rules {
				cl.Rules = append(cl.Rules, r.listing())
			}
			out = append(out, cl)
		}
	}
	return out
}

// posErr is an error at node n about where (table, chain, rule).
func posErr(n *yaml.Node, where, format string, args ...any) error {
	return &pipeline.PosError{Line: n.Line, Col: n.Column, Where: where, Msg: fmt.Sprintf(format, args...)}
}

// dupKeys reports a key given twice in mapping n.
func dupKeys(n *yaml.Node) error {
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if p, ok := seen[k.Value]; ok {
			return posErr(k, "", "key %q given twice (first at line %d, column %d)", k.Value, p.Line, p.Column)
		}
		seen[k.Value] = k
	}
	return nil
}

var (
	_ pipeline.HookModule   = (*Module)(nil)
	_ pipeline.RuleLister   = (*Module)(nil)
	_ pipeline.Provisioner  = (*Module)(nil)
	_ pipeline.Validator    = (*Module)(nil)
	_ pipeline.CleanerUpper = (*Module)(nil)
	_ pipeline.Starter      = (*Module)(nil)
	_ pipeline.Stopper      = (*Module)(nil)
	_ yaml.Unmarshaler      = (*Module)(nil)
)
