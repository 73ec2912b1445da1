package filter

import (
	"crypto/sha256"
	hexenc "encoding/hex"
	"fmt"
	"hash"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pipestack/pipestack/pipeline"
)

// setSrc is a set as written in the sets: section, before Provision
// reads its file.
type setSrc struct {
	decl    setDecl
	line    int
	col     int
	inline  []string
	inPos   [][2]int // line, column of each inline element
	file    string
	filePos [2]int
}

var setKeys = []string{"type", "elements", "file", "timeout", "counters", "maxelem", "constant"}

// decodeSets decodes the sets: section: a mapping of set names, each
// {type:, elements: [...], file:, timeout:, counters:, maxelem:}.
func decodeSets(n *yaml.Node, isMap bool) ([]*setSrc, error) {
	section := "sets"
	if isMap {
		section = "maps"
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, posErr(n, section, "%s is a mapping of names ({blocked: {type: hash:net, elements: [...]}})", section)
	}
	if err := dupKeys(n); err != nil {
		return nil, err
	}
	var out []*setSrc
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		where := "set " + k.Value
		if isMap {
			where = "map " + k.Value
		}
		if err := checkSetName(k.Value); err != nil {
			return nil, posErr(k, where, "%v", err)
		}
		s := &setSrc{line: k.Line, col: k.Column, decl: setDecl{name: k.Value, line: k.Line, maxElem: defaultMaxElem, isMap: isMap}}
		if v.Kind != yaml.MappingNode {
			return nil, posErr(v, where, "a set is a mapping {type: hash:net, elements: [...]}")
		}
		if err := dupKeys(v); err != nil {
			return nil, err
		}
		for j := 0; j+1 < len(v.Content); j += 2 {
			sk, sv := v.Content[j], v.Content[j+1]
			scalar := func() error {
				if sv.Kind != yaml.ScalarNode {
					return posErr(sv, where, "%s is a single value", sk.Value)
				}
				return nil
			}
			switch sk.Value {
			case "type":
				if err := scalar(); err != nil {
					return nil, err
				}
				t, ok := parseSetType(sv.Value)
				if !ok {
					return nil, posErr(sv, where, "unknown set type %q (hash:net, hash:ip, bitmap:port, hash:ip,port, hash:net,port; or prefix, addr, port, addr . port, prefix . port)", sv.Value)
				}
				s.decl.typ = t
			case "elements":
				if sv.Kind == yaml.ScalarNode && sv.Tag == "!!null" {
					continue
				}
				if isMap && sv.Kind == yaml.MappingNode {
					// {KEY: VERDICT, …}
					if err := dupKeys(sv); err != nil {
						return nil, err
					}
					for e := 0; e+1 < len(sv.Content); e += 2 {
						ek, ev := sv.Content[e], sv.Content[e+1]
						if ev.Kind != yaml.ScalarNode {
							return nil, posErr(ev, where, "a verdict is accept, drop, return, continue, jump CHAIN or goto CHAIN")
						}
						s.inline = append(s.inline, ek.Value+" : "+ev.Value)
						s.inPos = append(s.inPos, [2]int{ek.Line, ek.Column})
					}
					continue
				}
				if sv.Kind != yaml.SequenceNode {
					if isMap {
						return nil, posErr(sv, where, "elements is a mapping {KEY: VERDICT} (or a list of \"KEY : VERDICT\")")
					}
					return nil, posErr(sv, where, "elements is a list of elements")
				}
				for _, e := range sv.Content {
					if e.Kind != yaml.ScalarNode {
						return nil, posErr(e, where, "an element is a string (\"10.0.0.0/8\", \"192.0.2.1 . tcp:80\", \"192.0.2.7 timeout 60\")")
					}
					s.inline = append(s.inline, e.Value)
					s.inPos = append(s.inPos, [2]int{e.Line, e.Column})
				}
			case "file":
				if err := scalar(); err != nil {
					return nil, err
				}
				s.file, s.filePos = sv.Value, [2]int{sv.Line, sv.Column}
			case "timeout":
				if err := scalar(); err != nil {
					return nil, err
				}
				t, err := parseSeconds(sv.Value)
				if err != nil {
					return nil, posErr(sv, where, "timeout: %v", err)
				}
				s.decl.timeout = t
			case "counters":
				var b bool
				if err := sv.Decode(&b); err != nil || sv.Kind != yaml.ScalarNode {
					return nil, posErr(sv, where, "counters is true or false")
				}
				s.decl.counters = b
			case "constant":
				var b bool
				if err := sv.Decode(&b); err != nil || sv.Kind != yaml.ScalarNode {
					return nil, posErr(sv, where, "constant is true or false")
				}
				s.decl.constant = b
			case "maxelem":
				m, err := strconv.Atoi(sv.Value)
				if err != nil || m < 1 || m > 1<<24 {
					return nil, posErr(sv, where, "maxelem %q: a number 1..16777216", sv.Value)
				}
				s.decl.maxElem = m
			default:
				e := pipeline.UnknownKey(sk, setKeys, "")
				e.Where = where
				return nil, e
			}
		}
		if s.decl.typ == 0 {
			return nil, posErr(k, where, "a set needs a type: (hash:net, hash:ip, bitmap:port, hash:ip,port, hash:net,port)")
		}
		if s.decl.constant && (s.decl.timeout > 0 || s.decl.counters) {
			return nil, posErr(k, where, "a constant set has no timeout and no counters (its elements never change)")
		}
		out = append(out, s)
	}
	return out, nil
}

// parseSeconds reads a timeout: seconds ("600") or a Go duration ("10m").
func parseSeconds(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		if n > 2147483 {
			return 0, fmt.Errorf("%q: at most 2147483 seconds", s)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d%time.Second != 0 || d > 2147483*time.Second {
		return 0, fmt.Errorf("%q is not a number of seconds (or a duration such as 10m)", s)
	}
	return d, nil
}

// checkSetName refuses names iptables' set match would not take.
func checkSetName(name string) error {
	if name == "" || len(name) > 31 || strings.ContainsAny(name, " \t,!'\"") || name[0] == '-' {
		return fmt.Errorf("set name %q: up to 31 characters, no blanks, commas, quotes or '!', not starting with '-'", name)
	}
	return nil
}

// provisionSets reads every set's file and makes its contents. A set the
// running generation has with the same declaration (type, options and
// elements, its file's included) is taken over as it is, run-time changes
// and counters with it; otherwise the file's contents make a new one and,
// if the running generation had that set, a note says that the file won.
func (m *Module) provisionSets(ctx *pipeline.Context) error {
	m.sets = map[string]*Set{}
	m.notes = nil
	prev := runningSets(ctx.Stack())
	now := time.Now()
	if ctx.Clock != nil {
		now = ctx.Clock.Now()
	}
	for _, src := range m.setSrcs {
		where := "set " + src.decl.name
		if src.decl.isMap {
			where = "map " + src.decl.name
		}
		d := src.decl
		l := newSetLoader(d, now)
		for i, e := range src.inline {
			if err := l.add(e); err != nil {
				return &pipeline.PosError{Line: src.inPos[i][0], Col: src.inPos[i][1], Where: where, Msg: "element " + strconv.Quote(e) + ": " + err.Error()}
			}
		}
		if src.file != "" {
			b, err := ctx.ReadFile(src.file)
			if err != nil {
				return &pipeline.PosError{Line: src.filePos[0], Col: src.filePos[1], Where: where, Msg: err.Error()}
			}
			// Line by line: nothing of the file's text outlives this loop.
			for ln, rest := 1, string(b); rest != ""; ln++ {
				var text string
				text, rest, _ = strings.Cut(rest, "\n")
				e, skip, err := fileElement(d.name, text)
				if err == nil && !skip {
					err = l.add(e)
				}
				if err != nil {
					return &pipeline.PosError{Line: src.filePos[0], Col: src.filePos[1], Where: where, Msg: fmt.Sprintf("%s line %d: %v", src.file, ln, err)}
				}
			}
		}
		d.digest = l.digest()
		if _, dup := m.sets[d.name]; dup {
			return &pipeline.PosError{Line: src.line, Col: src.col, Where: where, Msg: "a set or map of this name is declared already"}
		}
		if p, ok := prev[d.name]; ok && p.decl.digest == d.digest {
			m.sets[d.name] = p
			continue
		}
		lines := len(l.elems)
		s, err := newSet(d, l.elems, l.vals)
		if err != nil {
			return &pipeline.PosError{Line: src.line, Col: src.col, Where: where, Msg: err.Error()}
		}
		if p, ok := prev[d.name]; ok {
			what := "elements"
			switch {
			case p.decl.typ != d.typ:
				what = "type (" + p.decl.typ.String() + " → " + d.typ.String() + ")"
			case p.decl.timeout != d.timeout || p.decl.counters != d.counters || p.decl.maxElem != d.maxElem:
				what = "options"
			}
			note := fmt.Sprintf("set %s: the file changed its %s: the file's %d elements replace the running set's %d", d.name, what, lines, p.Info(now, false).Entries)
			if p.changed.Load() {
				note += " (its run-time changes are dropped)"
			}
			m.notes = append(m.notes, note)
		}
		m.sets[d.name] = s
	}
	return nil
}

// setLoader reads a declaration's element lines one by one into their
// compact form, and the digest of their canonical text as it goes: what a
// reload compares is the digest, not the lines.
type setLoader struct {
	tmp   Set
	now   time.Time
	elems []setElem
	vals  []string // a verdict map's
	h     hash.Hash
	line  []byte
}

func newSetLoader(d setDecl, now time.Time) *setLoader {
	l := &setLoader{now: now, h: sha256.New()}
	l.tmp.decl = d
	fmt.Fprintf(l.h, "%d\n", d.typ)
	return l
}

// add parses one element line (canonical form checked, options kept).
// The digest is over the canonical elements: the same set written
// otherwise (10.1.2.3/8 for 10.0.0.0/8, "a,80" for "a . 80") is the same
// set.
func (l *setLoader) add(line string) error {
	e, text, val, o, err := l.tmp.makeElem(line, l.now)
	if err != nil {
		return err
	}
	b := append(l.line[:0], text...)
	if val != "" {
		b = append(append(b, " : "...), val...)
	}
	if o.timeoutSet {
		b = append(append(b, " timeout "...), strconv.FormatInt(int64(o.timeout/time.Second), 10)...)
	}
	l.line = append(b, '\n')
	l.h.Write(l.line)
	l.elems = append(l.elems, e)
	if l.tmp.decl.isMap {
		l.vals = append(l.vals, val)
	}
	return nil
}

// digest identifies the declaration: type, elements, options.
func (l *setLoader) digest() string {
	d := &l.tmp.decl
	return hexenc.EncodeToString(l.h.Sum(nil)) + fmt.Sprintf("/%d/%t/%d/%t/%t", d.timeout, d.counters, d.maxElem, d.isMap, d.constant)
}

// fileElement is one line of a set's file: an element with its options,
// "#" comments and blank lines skipped; ipset save's lines are taken too
// ("create NAME …" skipped, "add NAME ELEMENT …" for this set).
func fileElement(set, line string) (string, bool, error) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	fs := strings.Fields(line)
	if len(fs) == 0 {
		return "", true, nil
	}
	switch fs[0] {
	case "create", "add", "-A", "-N":
		if len(fs) < 2 || fs[1] != set {
			return "", false, fmt.Errorf("an ipset line for set %q in the file of set %q", safeField(fs, 1), set)
		}
		if fs[0] == "create" || fs[0] == "-N" {
			return "", true, nil
		}
		if len(fs) < 3 {
			return "", false, fmt.Errorf("add without an element")
		}
		return strings.Join(fs[2:], " "), false, nil
	}
	return strings.Join(fs, " "), false, nil
}

func safeField(fs []string, i int) string {
	if i < len(fs) {
		return fs[i]
	}
	return ""
}

// runningSets are the sets of the running generation's filter (nil: none).
func runningSets(st *pipeline.Stack) map[string]*Set {
	if st == nil {
		return nil
	}
	g := st.Generation()
	if g == nil {
		return nil
	}
	for _, mc := range g.Config().Modules {
		if fm, ok := mc.Module.(*Module); ok {
			return fm.sets
		}
	}
	return nil
}

// StackSets are the sets of the stack's running generation, by name
// (pipectl set; empty without a filter section or sets).
func StackSets(st *pipeline.Stack) map[string]*Set { return runningSets(st) }

// SetNames are the names of sets, sorted.
func SetNames(sets map[string]*Set) []string {
	var out []string
	for n := range sets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ReloadNotes are what the last build of this section has to tell a
// reload: sets whose run-time contents the file replaced.
func (m *Module) ReloadNotes() []string { return m.notes }

// Sets are the section's sets and maps by name (after Provision).
func (m *Module) Sets() map[string]*Set { return m.sets }
