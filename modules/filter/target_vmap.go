package filter

import (
	"fmt"
	"strings"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(VMap)) }

// VMap is filter.target.vmap: -j VMAP --vmap NAME FLAGS, nftables' verdict
// map (`tcp dport vmap { 22 : jump ssh, 80 : accept }`): one lookup of the
// packet's fields (FLAGS as -m set's: src or dst per dimension of the map)
// in the map NAME of the section's maps:, and the verdict of the element
// found — accept, drop, return, continue, jump CHAIN or goto CHAIN (a user
// chain of the rule's table, resolved when the generation is built); no
// element: the next rule (continue).
type VMap struct {
	VMap string `yaml:"vmap"`

	m   SetMatch // the lookup: name, flags, the map
	env *provisionEnv
	// resolved[e] is element e's verdict and chain (its index in the
	// rule's table), in the map's snapshot (maps change only by reload).
	resolved []vmapVerdict
	chains   []string // the chains it may jump or go to (for resolve)
}

type vmapVerdict struct {
	v  pipeline.Verdict
	to int
}

// PipelineModule implements pipeline.Module.
func (*VMap) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.vmap", Summary: "a verdict map: the verdict (or chain) of the element the packet's fields find (-j VMAP --vmap ports dst)", New: func() pipeline.Module { return new(VMap) }}
}

// Options implements Target.
func (*VMap) Options() []Opt { return []Opt{{Name: "vmap", Args: 2}} }

// ShortKey implements shortKey.
func (*VMap) ShortKey() string { return "vmap" }

func (t *VMap) setEnv(e *provisionEnv) { t.env = e; t.m.env = e }

// Provision finds the map.
func (t *VMap) Provision(ctx *pipeline.Context) error {
	if strings.HasPrefix(strings.TrimSpace(t.VMap), "!") {
		return fmt.Errorf("vmap cannot be inverted")
	}
	t.m.MatchSet = t.VMap
	if err := t.m.Provision(ctx); err != nil {
		return fmt.Errorf("%s", strings.NewReplacer("match_set", "vmap", "--match-set", "--vmap", "set \"", "map \"", "Set ", "Map ").Replace(err.Error()))
	}
	if t.m.set == nil { // a rule alone (CanonicalRule)
		return nil
	}
	if !t.m.set.decl.isMap {
		return fmt.Errorf("%s is a set, not a verdict map (maps:)", t.m.name)
	}
	seen := map[string]bool{}
	for _, val := range t.m.set.snap.Load().vals {
		if c, ok := strings.CutPrefix(val, "jump "); ok && !seen[c] {
			seen[c] = true
			t.chains = append(t.chains, c)
		} else if c, ok := strings.CutPrefix(val, "goto "); ok && !seen[c] {
			seen[c] = true
			t.chains = append(t.chains, c)
		}
	}
	return nil
}

// resolveChains gives the map's verdicts their chain indexes in the rule's
// table (table.resolve): an unknown chain or a built-in one is an error.
func (t *VMap) resolveChains(byName map[string]int, builtin func(int) bool) ([]int, error) {
	sn := t.m.set.snap.Load()
	t.resolved = make([]vmapVerdict, len(sn.elems))
	var to []int
	for i, e := range sn.elems {
		val := sn.vals[i]
		w, c, _ := strings.Cut(val, " ")
		switch w {
		case "accept":
			t.resolved[i] = vmapVerdict{v: pipeline.VerdictAccept}
		case "drop":
			t.resolved[i] = vmapVerdict{v: pipeline.VerdictDrop}
		case "return":
			t.resolved[i] = vmapVerdict{v: pipeline.VerdictReturn}
		case "continue":
			t.resolved[i] = vmapVerdict{v: pipeline.VerdictContinue}
		case "jump", "goto":
			idx, ok := byName[c]
			if !ok {
				var known []string
				for n, i := range byName {
					if !builtin(i) {
						known = append(known, n)
					}
				}
				msg := fmt.Sprintf("map %s: %s : %s: chain %q does not exist in this table", t.m.name, e.key.format(sn.typ), val, c)
				if sg := pipeline.Suggest(c, known); len(sg) > 0 {
					msg += fmt.Sprintf(", did you mean %q?", sg[0])
				}
				return nil, fmt.Errorf("%s", msg)
			}
			if builtin(idx) {
				return nil, fmt.Errorf("map %s: %s : %s: cannot jump to built-in chain %s", t.m.name, e.key.format(sn.typ), val, c)
			}
			v := pipeline.VerdictJump
			if w == "goto" {
				v = pipeline.VerdictGoto
			}
			t.resolved[i] = vmapVerdict{v: v, to: idx}
			to = append(to, idx)
		}
	}
	return to, nil
}

// Action implements pipeline.Target: one lookup; no element, or a packet
// without the fields the map needs (ports), continues.
func (t *VMap) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	e := t.m.find(pc)
	if e < 0 || int(e) >= len(t.resolved) {
		return pipeline.VerdictContinue, 0
	}
	r := t.resolved[e]
	return r.v, r.to
}

// Spec implements Target.
func (t *VMap) Spec() string {
	s := t.m.Spec()
	return "-j VMAP --vmap" + s[strings.Index(s, "--match-set")+len("--match-set"):]
}

// Label implements Target.
func (*VMap) Label() string { return "VMAP" }

var (
	_ Target               = (*VMap)(nil)
	_ pipeline.Provisioner = (*VMap)(nil)
)
