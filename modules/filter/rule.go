package filter

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pipestack/pipestack/pipeline"
)

// rule is one rule as decoded and provisioned.
type rule struct {
	id           string
	line, col    int
	where        string
	num          int
	table, chain string

	family  int // 0 both, 4, 6 (given or implied)
	explFam int // given with -4/-6 or family:
	base    *Base
	ms      []Match
	tgt     Target // nil: no target (a counting rule)
	jumpTo  string // jump/goto: the chain's name
	isGoto  bool
	jumpIdx int
	mapTo   []int // a verdict map's chains (-j VMAP: jump/goto verdicts)

	hooks   uint8  // the chain's hooks (set by validate)
	text    string // canonical
	key     string
	counter *ruleCounter
}

// ruleSrc is a rule from either form before its modules are made: YAML
// mappings for the base, each matcher and the target.
type ruleSrc struct {
	at      *yaml.Node
	id      string
	family  int
	base    *yaml.Node
	matches []matchSrc
	target  string // target module name, "jump" or "goto"
	tnode   *yaml.Node
}

type matchSrc struct {
	name string
	node *yaml.Node
}

func (r *rule) errf(format string, args ...any) error {
	return &pipeline.PosError{Line: r.line, Col: r.col, Where: r.where, Msg: fmt.Sprintf(format, args...)}
}

func mapping(at *yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: at.Line, Column: at.Column}
}

func addKV(m *yaml.Node, at *yaml.Node, key, value string) {
	m.Content = append(m.Content,
		&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key, Line: at.Line, Column: at.Column},
		// No tag: the value resolves as written (a number fills an int).
		&yaml.Node{Kind: yaml.ScalarNode, Value: value, Line: at.Line, Column: at.Column})
}

func hasKey(m *yaml.Node, key string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return true
		}
	}
	return false
}

// decodeRule decodes a rule written either way.
func decodeRule(n *yaml.Node, where string) (*rule, error) {
	var src *ruleSrc
	var err error
	switch n.Kind {
	case yaml.ScalarNode:
		src, err = parseRule(n.Value)
		if err != nil {
			return nil, posErr(n, where, "%v", err)
		}
		relocate(src, n)
	case yaml.MappingNode:
		if r := ruleKey(n); r != nil {
			// {id: NAME, rule: "iptables text"}: the string form with an id.
			var id string
			for i := 0; i+1 < len(n.Content); i += 2 {
				switch k, v := n.Content[i], n.Content[i+1]; k.Value {
				case "rule":
				case "id":
					id = v.Value
				default:
					e := pipeline.UnknownKey(k, []string{"id", "rule"}, "")
					e.Where = where
					return nil, e
				}
			}
			if r.Kind != yaml.ScalarNode {
				return nil, posErr(r, where, "rule: is an iptables string")
			}
			src, err = parseRule(r.Value)
			if err != nil {
				return nil, posErr(r, where, "%v", err)
			}
			relocate(src, r)
			src.id = id
			break
		}
		src, err = decodeStructured(n, where)
		if err != nil {
			return nil, err
		}
	default:
		return nil, posErr(n, where, "a rule is an iptables string (\"-p tcp --dport 22 -j ACCEPT\") or a mapping ({proto: tcp, dport: 22, target: accept})")
	}
	return buildRule(src, n, where)
}

// ruleKey is the value of a mapping's rule: key, or nil.
func ruleKey(n *yaml.Node) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "rule" {
			return n.Content[i+1]
		}
	}
	return nil
}

// relocate gives every node made from a string rule the string's position.
func relocate(src *ruleSrc, at *yaml.Node) {
	set := func(m *yaml.Node) {
		if m == nil {
			return
		}
		m.Line, m.Column = at.Line, at.Column
		for _, c := range m.Content {
			c.Line, c.Column = at.Line, at.Column
		}
	}
	src.at = at
	set(src.base)
	set(src.tnode)
	for _, m := range src.matches {
		set(m.node)
	}
}

// baseKeys are the base matcher's keys in the YAML form.
var baseKeys = []string{"proto", "src", "dst", "in", "out", "fragment"}

// shorthand keys: options of the matcher implied by proto.
var shorthand = map[string][]string{
	"sport": {"tcp", "udp"}, "dport": {"tcp", "udp"}, "tcp_flags": {"tcp"}, "syn": {"tcp"},
	"tcp_option": {"tcp"}, "icmp_type": {"icmp"}, "icmpv6_type": {"icmpv6"},
}

func decodeStructured(n *yaml.Node, where string) (*ruleSrc, error) {
	if err := dupKeys(n); err != nil {
		return nil, err
	}
	src := &ruleSrc{at: n, base: mapping(n)}
	var implied *matchSrc
	impliedIdx := -1
	protoVal := ""
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "proto" {
			protoVal = strings.TrimPrefix(strings.TrimSpace(n.Content[i+1].Value), "!")
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		switch {
		case key == "id":
			src.id = v.Value
			if src.id == "" {
				return nil, posErr(v, where, "id is empty")
			}
		case key == "family":
			switch v.Value {
			case "ipv4":
				src.family = 4
			case "ipv6":
				src.family = 6
			default:
				return nil, posErr(v, where, "family %q is not ipv4 or ipv6", v.Value)
			}
		case slices.Contains(baseKeys, key):
			if v.Kind != yaml.ScalarNode {
				return nil, posErr(v, where, "%s is a single value", key)
			}
			src.base.Content = append(src.base.Content, k, v)
		case shorthand[key] != nil:
			owner := protoMatcher(protoVal)
			if owner == "" || !slices.Contains(shorthand[key], owner) {
				return nil, posErr(k, where, "%s needs proto: %s (iptables: unknown option \"--%s\")", key, strings.Join(shorthand[key], " or "), strings.ReplaceAll(key, "_", "-"))
			}
			if implied == nil {
				implied = &matchSrc{name: owner, node: mapping(k)}
				impliedIdx = len(src.matches)
				src.matches = append(src.matches, *implied)
			}
			m := src.matches[impliedIdx].node
			m.Content = append(m.Content, k, v)
		case isMatch(key):
			name := key
			if name == "icmp6" {
				name = "icmpv6"
			}
			for _, m := range src.matches {
				if m.name == name {
					return nil, posErr(k, where, "matcher %s given twice (as %s: and through proto: options)", name, key)
				}
			}
			// A list is several instances ("-m comment … -m comment …").
			items := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				if len(v.Content) == 0 {
					return nil, posErr(v, where, "%s: an empty list", key)
				}
				items = v.Content
			}
			for _, it := range items {
				mn, err := matchNode(k, it, key, name, where)
				if err != nil {
					return nil, err
				}
				src.matches = append(src.matches, matchSrc{name: name, node: mn})
			}
		case key == "target" || key == "jump" || key == "goto":
			if src.target != "" {
				return nil, posErr(k, where, "a rule has one of target:, jump:, goto:")
			}
			switch key {
			case "jump", "goto":
				if v.Kind != yaml.ScalarNode || v.Value == "" {
					return nil, posErr(v, where, "%s: names a user chain", key)
				}
				src.target = key
				src.tnode = mapping(v)
				addKV(src.tnode, v, "chain", v.Value)
			default:
				switch v.Kind {
				case yaml.ScalarNode:
					src.target = strings.ToLower(v.Value)
					src.tnode = mapping(v)
				case yaml.MappingNode:
					if len(v.Content) != 2 {
						return nil, posErr(v, where, "target: is a name or {name: {options}} with one name")
					}
					src.target = strings.ToLower(v.Content[0].Value)
					src.tnode = v.Content[1]
					if src.tnode.Kind == yaml.ScalarNode && src.tnode.Tag == "!!null" {
						src.tnode = mapping(v)
					}
				default:
					return nil, posErr(v, where, "target: is a name or {name: {options}}")
				}
				if !isTarget(src.target) {
					names := knownTargets()
					slices.Sort(names)
					msg := fmt.Sprintf("unknown target %q", src.target)
					if s := pipeline.Suggest(src.target, names); len(s) > 0 {
						msg += fmt.Sprintf(", did you mean %q?", s[0])
					}
					return nil, posErr(v, where, "%s (known: %s; jump: or goto: for a user chain)", msg, strings.Join(names, ", "))
				}
			}
		default:
			known := append([]string{"id", "family", "target", "jump", "goto"}, baseKeys...)
			for k := range shorthand {
				known = append(known, k)
			}
			known = append(known, knownMatches()...)
			e := pipeline.UnknownKey(k, known, "")
			e.Where = where
			return nil, e
		}
	}
	return src, nil
}

// matchNode is the config mapping of one matcher instance written as
// key: v (a mapping of options, or a scalar for its short key).
func matchNode(k, v *yaml.Node, key, name, where string) (*yaml.Node, error) {
	switch v.Kind {
	case yaml.MappingNode:
		return v, nil
	case yaml.ScalarNode:
		mi, _ := pipeline.LookupModule("filter.match." + name)
		sk, ok := mi.New().(shortKey)
		if !ok {
			return nil, posErr(v, where, "%s takes a mapping of its options (%s)", key, optKeys(mi.New()))
		}
		mn := mapping(v)
		mn.Content = append(mn.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: sk.ShortKey(), Line: k.Line, Column: k.Column}, v)
		return mn, nil
	}
	return nil, posErr(v, where, "%s takes a mapping of its options, or a list of them (one per instance)", key)
}

// protoMatcher is the matcher -p NAME implies for its options.
func protoMatcher(p string) string {
	switch strings.ToLower(p) {
	case "tcp", "6":
		return "tcp"
	case "udp", "17":
		return "udp"
	case "icmp", "1":
		return "icmp"
	case "icmpv6", "ipv6-icmp", "icmp6", "58":
		return "icmpv6"
	}
	return ""
}

func optKeys(m pipeline.Module) string {
	var ks []string
	switch x := m.(type) {
	case Match:
		for _, o := range x.Options() {
			ks = append(ks, o.key())
		}
	case Target:
		for _, o := range x.Options() {
			ks = append(ks, o.key())
		}
	}
	return strings.Join(ks, ", ")
}

// newMatch makes and decodes a matcher module.
func newMatch(name string, node *yaml.Node) (Match, error) {
	mi, ok := pipeline.LookupModule("filter.match." + name)
	if !ok {
		return nil, fmt.Errorf("unknown match %q (iptables: \"Couldn't load match `%s'\")", name, name)
	}
	m, ok := mi.New().(Match)
	if !ok {
		return nil, fmt.Errorf("module %s is not a matcher", mi.ID)
	}
	if err := pipeline.DecodeStrict(node, m); err != nil {
		return nil, err
	}
	return m, nil
}

func newTarget(name string, node *yaml.Node) (Target, error) {
	mi, ok := pipeline.LookupModule("filter.target." + name)
	if !ok {
		return nil, fmt.Errorf("unknown target %q", name)
	}
	t, ok := mi.New().(Target)
	if !ok {
		return nil, fmt.Errorf("module %s is not a target", mi.ID)
	}
	if node != nil {
		if err := pipeline.DecodeStrict(node, t); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// buildRule makes the rule's modules from its source.
func buildRule(src *ruleSrc, n *yaml.Node, where string) (*rule, error) {
	r := &rule{id: src.id, line: n.Line, col: n.Column, where: where, explFam: src.family}
	wrap := func(what string, err error) error {
		if pe, ok := err.(*pipeline.PosError); ok {
			return &pipeline.PosError{Line: pe.Line, Col: pe.Col, Where: where, Msg: what + ": " + pe.Msg}
		}
		return r.errf("%s: %v", what, err)
	}
	if src.base != nil && len(src.base.Content) > 0 {
		b := new(Base)
		if err := pipeline.DecodeStrict(src.base, b); err != nil {
			return nil, wrap("base", err)
		}
		r.base = b
	}
	for _, ms := range src.matches {
		m, err := newMatch(ms.name, ms.node)
		if err != nil {
			return nil, wrap(ms.name, err)
		}
		r.ms = append(r.ms, m)
	}
	if src.target != "" {
		t, err := newTarget(src.target, src.tnode)
		if err != nil {
			return nil, wrap(src.target, err)
		}
		r.tgt = t
		if j, ok := t.(*Jump); ok {
			r.jumpTo, r.isGoto = j.Chain, j.isGoto
		}
	}
	return r, nil
}

// jumpTargets are the chains the rule may jump or go to (resolved).
func (r *rule) jumpTargets() []int {
	if r.jumpTo != "" {
		return []int{r.jumpIdx}
	}
	return r.mapTo
}

// provision provisions the rule's modules, works out its family and
// canonical text.
func (r *rule) provision(ctx *pipeline.Context, env *provisionEnv) error {
	mods := []pipeline.Module{}
	names := []string{}
	if r.base != nil {
		mods, names = append(mods, r.base), append(names, "base")
	}
	for _, m := range r.ms {
		mods, names = append(mods, m), append(names, m.PipelineModule().ID[len("filter.match."):])
	}
	if r.tgt != nil {
		mods, names = append(mods, r.tgt), append(names, r.tgt.PipelineModule().ID[len("filter.target."):])
	}
	fam, famFrom := r.explFam, "family"
	for i, m := range mods {
		if e, ok := m.(envUser); ok {
			e.setEnv(env)
		}
		if p, ok := m.(pipeline.Provisioner); ok {
			if err := p.Provision(ctx); err != nil {
				return r.errf("%s: %v", names[i], err)
			}
		}
		if v, ok := m.(pipeline.Validator); ok {
			if err := v.Validate(); err != nil {
				return r.errf("%s: %v", names[i], err)
			}
		}
		if f, ok := m.(familyMatch); ok && f.Family() != 0 {
			if fam != 0 && fam != f.Family() {
				return r.errf("%s is IPv%d only but the rule is IPv%d (from %s)", names[i], f.Family(), fam, famFrom)
			}
			fam, famFrom = f.Family(), names[i]
		}
	}
	r.family = fam
	if fam != 0 {
		if r.base == nil {
			r.base = new(Base)
			r.base.provisionEmpty()
		}
		r.base.family = fam
	}
	r.text = r.canonical()
	return nil
}

// canonical is the rule's iptables text: family (when nothing implies
// it), base, matchers in order, target.
func (r *rule) canonical() string {
	var parts []string
	implied := false
	for _, m := range append([]pipeline.Module{r.tgt}, asModules(r.ms)...) {
		if f, ok := m.(familyMatch); ok && m != nil && f.Family() != 0 {
			implied = true
		}
	}
	if r.base != nil && r.base.impliedFamily() != 0 {
		implied = true
	}
	if r.explFam != 0 && !implied {
		parts = append(parts, "-"+strconv.Itoa(r.explFam))
	}
	if r.base != nil {
		if s := r.base.Spec(); s != "" {
			parts = append(parts, s)
		}
	}
	for _, m := range r.ms {
		parts = append(parts, m.Spec())
	}
	if r.tgt != nil {
		parts = append(parts, r.tgt.Spec())
	}
	return strings.Join(parts, " ")
}

func asModules(ms []Match) []pipeline.Module {
	out := make([]pipeline.Module, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

// validate checks the rule in its table and chain, as iptables does.
func (r *rule) validate(t *table, c *chain) error {
	r.hooks = c.hooks
	var proto uint8
	protoSet, protoInv := false, false
	if r.base != nil {
		proto, protoSet, protoInv = r.base.proto, r.base.protoSet, r.base.protoInv
		from := ""
		if !c.builtin {
			from = " (chain " + c.name + " is reached from it)"
		}
		if r.base.in.set && c.hooks&(hOut|hPost) != 0 {
			return r.errf("Can't use -i with %s%s", hookMaskString(c.hooks&(hOut|hPost)), from)
		}
		if r.base.out.set && c.hooks&(hPre|hIn) != 0 {
			return r.errf("Can't use -o with %s%s", hookMaskString(c.hooks&(hPre|hIn)), from)
		}
	}
	for _, m := range r.ms {
		name := m.PipelineModule().ID[len("filter.match."):]
		if pm, ok := m.(protoMatch); ok {
			ps := pm.Protocols()
			if !protoSet || protoInv || !slices.Contains(ps, proto) {
				var want []string
				for _, p := range ps {
					want = append(want, protoName(p))
				}
				return r.errf("%s match: only valid with -p %s (proto: %s), not inverted", name, strings.Join(want, "|"), strings.Join(want, "|"))
			}
		}
		if hl, ok := m.(hookLimited); ok && c.hooks&^hl.Hooks() != 0 {
			return r.errf("%s match: used from hooks %s, but only valid in %s", name, hookMaskString(c.hooks&^hl.Hooks()), hookMaskString(hl.Hooks()))
		}
	}
	if r.tgt == nil {
		return nil
	}
	label := r.tgt.Label()
	if tl, ok := r.tgt.(tableLimited); ok && !slices.Contains(tl.Tables(), t.name) {
		return r.errf("%s target: only valid in %s table, not %s", label, strings.Join(tl.Tables(), "/"), t.name)
	}
	if hl, ok := r.tgt.(hookLimited); ok && c.hooks&^hl.Hooks() != 0 {
		return r.errf("%s target: used from hooks %s, but only usable from %s", label, hookMaskString(c.hooks&^hl.Hooks()), hookMaskString(hl.Hooks()))
	}
	if v, ok := r.tgt.(interface{ validateRule(*rule) error }); ok {
		if err := v.validateRule(r); err != nil {
			return r.errf("%v", err)
		}
	}
	return nil
}

// matchers is the rule's matcher list for the hook table, with the
// specialised forms of the common shapes (fast.go).
func (r *rule) matchers() []pipeline.Matcher { return r.appendMatchers(nil, nil) }

// appendMatchers appends the rule's matchers to out, the specialised ones
// made in a (nil: one allocation each).
func (r *rule) appendMatchers(out []pipeline.Matcher, a *fastArena) []pipeline.Matcher {
	ms := r.ms
	if b := r.base; b != nil && !b.empty() {
		var f pipeline.Matcher
		if len(ms) > 0 {
			if f = a.l4(b, ms[0]); f != nil {
				ms = ms[1:]
			}
		}
		if f == nil {
			f = a.base(b)
		}
		if f == nil {
			f = b
		}
		out = append(out, f)
	}
	for _, m := range ms {
		if f := a.set(m); f != nil {
			out = append(out, f)
			continue
		}
		out = append(out, m)
	}
	return out
}

// compiledTarget wraps the target with the rule's counter, made in a
// (nil: allocated alone). (A RETURN in a built-in chain applies the
// policy: the engine counts it, PolicyCount.)
func (r *rule) compiledTarget(a *targetArena) pipeline.Target {
	var c ruleCounter
	if r.counter != nil {
		c = *r.counter
	}
	if r.jumpTo != "" {
		v := pipeline.VerdictJump
		if r.isGoto {
			v = pipeline.VerdictGoto
		}
		x := &countedJump{}
		if a != nil {
			x = take(&a.j)
		}
		*x = countedJump{c: c, to: r.jumpIdx, v: v}
		return x
	}
	x := &counted{}
	if a != nil {
		x = take(&a.c)
	}
	*x = counted{slab: c.slab, i: c.i, t: continueTarget{}}
	switch t := r.tgt.(type) {
	case nil:
		x.v, x.fixed = pipeline.VerdictContinue, true
	case *Verdict:
		x.v, x.fixed, x.t = t.v, true, t
	default:
		x.t = t
	}
	return x
}

// listing is the rule as iptables -L -v -n shows it.
func (r *rule) listing() pipeline.RuleListing {
	l := pipeline.RuleListing{Num: r.num, Prot: "all", In: "*", Out: "*", Rule: r.text, ID: r.id}
	l.Packets, l.Bytes = r.counter.load()
	any := "0.0.0.0/0"
	switch r.family {
	case 6:
		any = "::/0"
	case 0:
		any = "any"
	}
	l.Source, l.Dest = any, any
	if b := r.base; b != nil {
		if b.protoSet {
			l.Prot = not(b.protoInv) + protoName(b.proto)
		}
		if b.in.set {
			l.In = not(b.in.inv) + b.in.name
		}
		if b.out.set {
			l.Out = not(b.out.inv) + b.out.name
		}
		if b.srcSet {
			l.Source = not(b.srcInv) + b.src.String()
		}
		if b.dstSet {
			l.Dest = not(b.dstInv) + b.dst.String()
		}
	}
	var opts []string
	for _, m := range r.ms {
		opts = append(opts, strings.TrimPrefix(m.Spec(), "-m "))
	}
	switch {
	case r.jumpTo != "":
		l.Target = r.jumpTo
		if r.isGoto {
			opts = append(opts, "[goto]")
		}
	case r.tgt != nil:
		l.Target = r.tgt.Label()
		if s := r.tgt.Spec(); strings.HasPrefix(s, "-j "+l.Target+" ") {
			opts = append(opts, s[len("-j "+l.Target+" "):])
		}
	}
	l.Options = strings.Join(opts, " ")
	return l
}

func not(inv bool) string {
	if inv {
		return "!"
	}
	return ""
}
