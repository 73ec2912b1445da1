package filter

import (
	"fmt"
	"strings"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(SetMatch)) }

// SetMatch is filter.match.set: -m set [!] --match-set NAME FLAGS, FLAGS
// being src or dst per dimension of the set (src,dst: a hash:ip,port set's
// address from the source, its port from the destination), as iptables'
// xt_set. One lookup in the set's current contents, whatever its size;
// a matched element counts the packet (sets with counters).
type SetMatch struct {
	MatchSet string `yaml:"match_set"`

	name string
	dirs []bool // per dimension: true = source
	inv  bool
	set  *Set
	env  *provisionEnv
}

// PipelineModule implements pipeline.Module.
func (*SetMatch) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.set", Summary: "membership of a named set (-m set --match-set blocked src); sets: in the filter section, pipectl set at run time", New: func() pipeline.Module { return new(SetMatch) }}
}

// Options implements Match.
func (*SetMatch) Options() []Opt { return []Opt{{Name: "match-set", Args: 2, Invert: true}} }

// ShortKey implements shortKey (set: "blocked src").
func (*SetMatch) ShortKey() string { return "match_set" }

func (m *SetMatch) setEnv(e *provisionEnv) { m.env = e }

// Provision finds the set and checks the flags against its dimensions.
func (m *SetMatch) Provision(*pipeline.Context) error {
	v, inv := cutBang(m.MatchSet)
	fs := strings.Fields(v)
	if len(fs) != 2 {
		return fmt.Errorf("match_set is \"NAME src|dst[,src|dst]\", not %q", m.MatchSet)
	}
	m.name, m.inv = fs[0], inv
	for _, d := range strings.Split(fs[1], ",") {
		switch d {
		case "src":
			m.dirs = append(m.dirs, true)
		case "dst":
			m.dirs = append(m.dirs, false)
		default:
			return fmt.Errorf("match_set flag %q is not src or dst", d)
		}
	}
	if m.env != nil && m.env.lenient {
		return nil
	}
	if m.env == nil || len(m.env.sets) == 0 {
		return fmt.Errorf("set %q does not exist (no sets: in the filter section)", m.name)
	}
	s, ok := m.env.sets[m.name]
	if !ok {
		var known []string
		for n := range m.env.sets {
			known = append(known, n)
		}
		msg := fmt.Sprintf("set %q does not exist (ipset: \"Set %s doesn't exist\")", m.name, m.name)
		if sg := pipeline.Suggest(m.name, known); len(sg) > 0 {
			msg += fmt.Sprintf(", did you mean %q?", sg[0])
		}
		return fmt.Errorf("%s", msg)
	}
	if d := s.decl.typ.dims(); len(m.dirs) != d {
		return fmt.Errorf("set %s (%s) has %d dimension(s), --match-set gives %d flag(s)", m.name, s.decl.typ, d, len(m.dirs))
	}
	m.set = s
	return nil
}

// Fields implements pipeline.Matcher. FieldOther: the contents change at
// run time (and a matched element counts), so a classifier must call it
// wherever its rule is a candidate.
func (m *SetMatch) Fields() pipeline.FieldSet {
	if m.exact() {
		if m.dirs[0] {
			return pipeline.FieldSrcAddr
		}
		return pipeline.FieldDstAddr
	}
	f := pipeline.FieldOther
	t := m.set.decl.typ
	for i, src := range m.dirs {
		addr := i == 0 && t != setPort
		switch {
		case addr && src:
			f |= pipeline.FieldSrcAddr
		case addr:
			f |= pipeline.FieldDstAddr
		case src:
			f |= pipeline.FieldSrcPort | pipeline.FieldProto
		default:
			f |= pipeline.FieldDstPort | pipeline.FieldProto
		}
	}
	return f
}

// Constraint implements pipeline.ConstraintDescriber: a constant address
// set of at most maxConstraintPrefixes prefixes is its prefixes (with the
// rule's "!"), exactly; any other set none (its contents change at run
// time, the index is built once per generation).
func (m *SetMatch) Constraint() []pipeline.FieldConstraint {
	if m.set == nil {
		return nil
	}
	ps := m.set.prefixes()
	if ps == nil {
		return nil
	}
	f := pipeline.FieldDstAddr
	if m.dirs[0] {
		f = pipeline.FieldSrcAddr
	}
	return []pipeline.FieldConstraint{{Field: f, Prefixes: ps, Invert: m.inv}}
}

// exact: the constraint says all Match tests.
func (m *SetMatch) exact() bool { return m.set != nil && m.set.prefixes() != nil }

// Match implements pipeline.Matcher: one lookup, no allocation. A set with
// ports does not match a packet without them (a non-first fragment, a
// protocol without ports, a transport header shorter than its ports).
func (m *SetMatch) Match(pc *pipeline.PacketContext) (bool, bool) {
	if m.find(pc) < 0 {
		return m.inv, false
	}
	return !m.inv, false
}

// find is the element pc's fields find in the set (-1: none), counted
// when the set has counters.
func (m *SetMatch) find(pc *pipeline.PacketContext) int32 {
	sn := m.set.snap.Load()
	var a = pc.Tuple.Dst
	var port uint16
	proto := uint8(pc.Tuple.Proto)
	t := sn.typ
	if t != setPort {
		if m.dirs[0] {
			a = pc.Tuple.Src
		}
	}
	if t == setPort || t.dims() == 2 {
		if pc.Fragment || pc.L4Unknown || !hasPorts(proto) || pc.L4End-pc.L4Off < 4 {
			return -1
		}
		if m.dirs[len(m.dirs)-1] {
			port = pc.Tuple.SrcPort
		} else {
			port = pc.Tuple.DstPort
		}
	}
	var t0 int64
	if sn.state {
		t0 = now(pc)
	}
	e := sn.lookup(a, port, proto, t0)
	if e < 0 {
		return -1
	}
	// The declaration first: a set without counters never loads the
	// element (an element array of 100,000 is a cache miss per packet).
	if m.set.decl.counters {
		if st := sn.elems[e].st; st != nil {
			st.packets.Add(1)
			st.bytes.Add(uint64(pc.Pkt.Len()))
		}
	}
	return e
}

// Spec implements Match.
func (m *SetMatch) Spec() string {
	var ds []string
	for _, src := range m.dirs {
		if src {
			ds = append(ds, "src")
		} else {
			ds = append(ds, "dst")
		}
	}
	return "-m set " + not(m.inv) + map[bool]string{true: " ", false: ""}[m.inv] + "--match-set " + m.name + " " + strings.Join(ds, ",")
}

var (
	_ Match                        = (*SetMatch)(nil)
	_ pipeline.Provisioner         = (*SetMatch)(nil)
	_ pipeline.ConstraintDescriber = (*SetMatch)(nil)
)
