package plugin

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pipestack/pipestack/modules/filter"
	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"
	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
	"github.com/pipestack/pipestack/pipeline"
)

// This file is the filter glue: the rules' modules and the sink that ends
// the packets the plugin judged — the one part tied to how the core steals
// and resumes packets. A rule's matcher (MatchStolen) or target
// (pc.Steal) steals the packet at its rule with a resume token; the batch's
// flush sends the stolen packets (pending.go); the plugin's answers resume
// each packet at its rule (Stack.Resume): a matcher's match / no match /
// hotdrop, a target's continue / accept / drop. The failure policy resumes
// there too: accept is a target's ACCEPT and a matcher's no match (the
// traversal goes on, fail open), drop drops.

func init() {
	pipeline.RegisterModule(new(Target))
	pipeline.RegisterModule(new(Matcher))
}

// use is what the matcher and target share: the plugin's name and tag.
type use struct {
	Name, Tag string // as written (the modules' yaml fields)

	d   *decl
	tag uint32
}

func (u *use) provision(ctx *pipeline.Context, what string) error {
	if u.Name == "" {
		return fmt.Errorf("--name (name:) of a plugin declared under plugins: is required (the %s of a rule)", what)
	}
	if u.Tag != "" {
		v, err := strconv.ParseUint(u.Tag, 0, 32)
		if err != nil {
			return fmt.Errorf("--tag %q is not a 32-bit number", u.Tag)
		}
		u.tag = uint32(v)
	}
	reg, _ := ctx.Shared("filter.plugin/registry", func() any { return &registry{plugins: map[string]*Plugin{}} }).(*registry)
	d, names := reg.declared(u.Name)
	if d == nil {
		if len(names) == 0 {
			return fmt.Errorf("no plugin %q: the pipeline file has no plugins: section", u.Name)
		}
		return fmt.Errorf("no plugin %q under plugins: (declared: %s)", u.Name, strings.Join(names, ", "))
	}
	u.d = d
	return nil
}

func (u *use) options() []filter.Opt {
	return []filter.Opt{{Name: "name", Args: 1}, {Name: "tag", Args: 1}}
}

func (u *use) spec(prefix string) string {
	s := prefix + " --name " + u.Name
	if u.Tag != "" {
		s += " --tag " + strconv.FormatUint(uint64(u.tag), 10)
	}
	return s
}

// policyDrop: the plugin's failure policy is drop.
func (u *use) policyDrop() bool {
	p := u.d.plugin
	return p != nil && p.settings().OnFailure == "drop"
}

// Target is filter.target.plugin: -j PLUGIN --name X [--tag N]; YAML
// {target: {plugin: {name: X, tag: N}}}.
type Target struct {
	Name string `yaml:"name"`
	Tag  string `yaml:"tag"`
	use  use
}

// PipelineModule implements pipeline.Module.
func (*Target) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "filter.target.plugin",
		Summary: "the verdict of an out-of-process plugin declared under plugins: (-j PLUGIN --name X [--tag N])",
		New:     func() pipeline.Module { return new(Target) },
	}
}

// Options implements filter.Target.
func (t *Target) Options() []filter.Opt { return t.use.options() }

// Provision finds the declaration (plugins: is provisioned before filter:).
func (t *Target) Provision(ctx *pipeline.Context) error {
	t.use.Name, t.use.Tag = t.Name, t.Tag
	return t.use.provision(ctx, "target")
}

// Spec implements filter.Target.
func (t *Target) Spec() string { return t.use.spec("-j PLUGIN") }

// Label implements filter.Target.
func (*Target) Label() string { return "PLUGIN" }

// Action implements pipeline.Target: the packet is stolen at its rule; the
// plugin's verdict resumes it there. With no running version the policy
// applies at once.
func (t *Target) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	p := t.use.d.plugin
	if p == nil {
		return pipeline.VerdictAccept, 0 // not started (pipectl validate)
	}
	switch r, a := p.steal(pc, sdk.KindTarget, t.use.tag); r {
	case stealNone:
		if t.use.policyDrop() {
			return pipeline.VerdictDrop, 0
		}
		return pipeline.VerdictAccept, 0
	case stealJudged:
		return verdictOf(a), 0
	}
	return pc.Steal()
}

// verdictOf is a target's verdict for a plugin's answer.
func verdictOf(a sdk.Answer) pipeline.Verdict {
	switch a {
	case sdk.Accept:
		return pipeline.VerdictAccept
	case sdk.Drop:
		return pipeline.VerdictDrop
	}
	return pipeline.VerdictContinue
}

// matchOf is a matcher's result for a plugin's answer.
func matchOf(a sdk.Answer) (match, hotdrop bool) {
	switch a {
	case sdk.Match:
		return true, false
	case sdk.Hotdrop:
		return false, true
	}
	return false, false
}

// Matcher is filter.match.plugin: -m plugin --name X [--tag N]; YAML
// {plugin: {name: X, tag: N}}.
type Matcher struct {
	Name string `yaml:"name"`
	Tag  string `yaml:"tag"`
	use  use
}

// PipelineModule implements pipeline.Module.
func (*Matcher) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "filter.match.plugin",
		Summary: "an out-of-process plugin's match declared under plugins: (-m plugin --name X [--tag N])",
		New:     func() pipeline.Module { return new(Matcher) },
	}
}

// Options implements filter.Match.
func (m *Matcher) Options() []filter.Opt { return m.use.options() }

// Provision finds the declaration.
func (m *Matcher) Provision(ctx *pipeline.Context) error {
	m.use.Name, m.use.Tag = m.Name, m.Tag
	return m.use.provision(ctx, "match")
}

// Spec implements filter.Match.
func (m *Matcher) Spec() string { return m.use.spec("-m plugin") }

// Fields implements pipeline.Matcher: anything (the plugin decides).
func (*Matcher) Fields() pipeline.FieldSet { return pipeline.FieldOther }

// Constraint implements pipeline.ConstraintDescriber: none a classifier
// could use.
func (*Matcher) Constraint() []pipeline.FieldConstraint { return nil }

// Match implements pipeline.Matcher: the packet is stolen at its rule; the
// plugin's answer resumes it there. With no running version the policy
// applies at once: accept is no match, drop a hotdrop.
func (m *Matcher) Match(pc *pipeline.PacketContext) (bool, bool) {
	p := m.use.d.plugin
	if p == nil {
		return false, false // not started (pipectl validate)
	}
	switch r, a := p.steal(pc, sdk.KindMatch, m.use.tag); r {
	case stealNone:
		if m.use.policyDrop() {
			return false, true
		}
		return false, false
	case stealJudged:
		return matchOf(a)
	}
	return pipeline.MatchStolen()
}

// policySink ends judged packets: answers are applied (mark, rewrite) and
// each packet resumes at its rule with the answer; failed flights get
// on_failure. Both resume with ResumeLate: the plugin's deadline bounds
// how long a packet is held (Validate fits it in the stack's resume
// bound), so an answer or a fail-open policy that comes late — a loaded
// machine, a flight that waited for a window slot or for a replaced
// version — is applied, not dropped as stack.resume_stale.
type policySink struct {
	p     *Plugin
	stack *pipeline.Stack
}

func (s *policySink) answered(f *flight, a *pb.Answers) {
	needs := f.inst.needs
	n := len(f.items)
	if needs.SetMark && len(a.SetMarkIdx) == len(a.Marks) {
		for i, idx := range a.SetMarkIdx {
			if int(idx) < n && f.items[idx].kind == sdk.KindTarget {
				f.items[idx].pkt.Mark = a.Marks[i]
				f.items[idx].setMk, f.items[idx].mark = true, a.Marks[i]
			}
		}
	}
	if needs.Rewrite && len(a.RewriteIdx) == len(a.RewriteLens) {
		off := 0
		for i, idx := range a.RewriteIdx {
			l := int(a.RewriteLens[i])
			if int(idx) >= n || l < 0 || off+l > len(a.RewriteData) {
				s.p.counters.Get("bad_rewrites").Inc()
				break
			}
			f.items[idx].noCache = true
			nh := f.items[idx].pkt.NetworkHeader()
			if l <= len(nh) && l == f.dataLen(int(idx)) && f.items[idx].kind == sdk.KindTarget && f.items[idx].pkt.Unshare() {
				// Unshare: a local TCP segment may share its bytes with
				// the sender's retransmission queue (Packet.Share).
				nh = f.items[idx].pkt.NetworkHeader()
				copy(nh, a.RewriteData[off:off+l])
			} else {
				s.p.counters.Get("bad_rewrites").Inc()
			}
			off += l
		}
	}
	drops := 0
	f.pkts, f.answers = f.pkts[:0], f.answers[:0]
	for i := range f.items {
		it := &f.items[i]
		var ans pipeline.Answer
		code := sdk.Answer(a.Answers[i])
		it.code = code
		if it.kind == sdk.KindMatch {
			m, hd := matchOf(code)
			ans = pipeline.MatchAnswer(m, hd)
			if hd {
				drops++
			}
		} else {
			v := verdictOf(code)
			ans = pipeline.VerdictAnswer(v, 0)
			if v == pipeline.VerdictDrop {
				drops++
			}
		}
		f.pkts = append(f.pkts, it.pkt)
		f.answers = append(f.answers, ans)
	}
	if drops > 0 {
		s.p.counters.Get("verdict_drop_packets").Add(uint64(drops))
	}
	s.stack.ResumeLate(f.pkts, f.answers)
	clear(f.pkts)
	cacheDone(f, true, s.p.clock)
}

// cacheDone ends the tracked packets of a flight in the verdict cache,
// once they were resumed: their flow is no longer in flight, and the
// plugin's answer (ok), unless it rewrote the packet, is kept.
func cacheDone(f *flight, ok bool, clock pipeline.Clock) {
	c := f.inst.cache
	if c == nil {
		return
	}
	var now int64
	for i := range f.items {
		it := &f.items[i]
		if !it.tracked {
			continue
		}
		if now == 0 {
			now = clock.Now().UnixNano()
		}
		c.done(it.ct, it.cmeta, ok && !it.noCache, it.code, it.setMk, it.mark, now)
	}
}

func (s *policySink) failed(f *flight, why failure) {
	defer cacheDone(f, false, s.p.clock)
	if f.inst.cfg.OnFailure == "drop" {
		for i := range f.items {
			s.stack.DropStolen(nil, f.items[i].pkt) // counted by Plugin.count
		}
		return
	}
	// accept: a target's packet is accepted at its rule, a matcher's rule
	// does not match (the traversal goes on), as with no running version.
	f.pkts, f.answers = f.pkts[:0], f.answers[:0]
	for i := range f.items {
		ans := pipeline.VerdictAnswer(pipeline.VerdictAccept, 0)
		if f.items[i].kind == sdk.KindMatch {
			ans = pipeline.MatchAnswer(false, false)
		}
		f.pkts = append(f.pkts, f.items[i].pkt)
		f.answers = append(f.answers, ans)
	}
	s.stack.ResumeLate(f.pkts, f.answers)
	clear(f.pkts)
}

var (
	_ filter.Target        = (*Target)(nil)
	_ filter.Match         = (*Matcher)(nil)
	_ pipeline.Provisioner = (*Target)(nil)
	_ pipeline.Provisioner = (*Matcher)(nil)
	_ sink                 = (*policySink)(nil)
)
