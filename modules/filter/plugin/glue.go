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
// the packets the plugin judged. It is the one part tied to how the core
// steals and resumes packets.
//
// Today (before resume tokens in the core) a target steals the packet with
// VerdictStolen and the answer resumes it after the hook
// (pipeline.ResumeAfter): ACCEPT and DROP are exact; CONTINUE (go on with
// the next rule) also resumes after the hook, i.e. acts as ACCEPT, and a
// matcher (filter.match.plugin) is not offered: both need the core's
// resume at the rule. Flights are flushed when full or after linger (no
// per-batch flush hook yet), on the stack clock.

func init() { pipeline.RegisterModule(new(Target)) }

// Target is filter.target.plugin: -j PLUGIN --name X [--tag N]; YAML
// {target: plugin, name: X, tag: N}.
type Target struct {
	Name string `yaml:"name"`
	Tag  string `yaml:"tag"`

	d   *decl
	tag uint32
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
func (*Target) Options() []filter.Opt {
	return []filter.Opt{{Name: "name", Args: 1}, {Name: "tag", Args: 1}}
}

// Provision finds the declaration (plugins: is decoded and provisioned
// before filter:).
func (t *Target) Provision(ctx *pipeline.Context) error {
	if t.Name == "" {
		return fmt.Errorf("plugin target: --name (name:) of a plugin declared under plugins: is required")
	}
	if t.Tag != "" {
		v, err := strconv.ParseUint(t.Tag, 0, 32)
		if err != nil {
			return fmt.Errorf("plugin target: --tag %q is not a 32-bit number", t.Tag)
		}
		t.tag = uint32(v)
	}
	reg, _ := ctx.Shared("filter.plugin/registry", func() any { return &registry{plugins: map[string]*Plugin{}} }).(*registry)
	d, names := reg.declared(t.Name)
	if d == nil {
		if len(names) == 0 {
			return fmt.Errorf("plugin target: no plugin %q: the pipeline file has no plugins: section", t.Name)
		}
		return fmt.Errorf("plugin target: no plugin %q under plugins: (declared: %s)", t.Name, strings.Join(names, ", "))
	}
	t.d = d
	return nil
}

// Spec implements filter.Target.
func (t *Target) Spec() string {
	s := "-j PLUGIN --name " + t.Name
	if t.Tag != "" {
		s += " --tag " + strconv.FormatUint(uint64(t.tag), 10)
	}
	return s
}

// Label implements filter.Target.
func (*Target) Label() string { return "PLUGIN" }

// Action implements pipeline.Target: the packet is stolen into the
// worker's lane of the plugin's running version; the answer resumes or
// drops it. A plugin with no running version applies on_failure now.
func (t *Target) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	p := t.d.plugin
	if p == nil {
		return pipeline.VerdictAccept, 0 // not started (Check)
	}
	in := p.cur.Load()
	if in == nil || in.dead.Load() || pc.Batch == nil {
		p.count(failUnavailable, 1)
		if p.settings().OnFailure == "drop" {
			return pipeline.VerdictDrop, 0
		}
		return pipeline.VerdictAccept, 0
	}
	l := in.lane(&pc.Tuple)
	if l.add(pc, sdk.KindTarget, t.tag, nil) {
		l.flush(p.sink)
	}
	return pipeline.VerdictStolen, 0
}

// policySink ends judged packets: answers are applied (mark, rewrite) and
// the packets resumed after their hook or dropped; failed flights get
// on_failure.
type policySink struct {
	p     *Plugin
	stack *pipeline.Stack
}

func (s *policySink) answered(f *flight, a *pb.Answers) {
	needs := f.inst.needs
	n := len(f.items)
	if needs.SetMark && len(a.SetMarkIdx) == len(a.Marks) {
		for i, idx := range a.SetMarkIdx {
			if int(idx) < n {
				f.items[idx].pkt.Mark = a.Marks[i]
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
			nh := f.items[idx].pkt.NetworkHeader()
			if l <= len(nh) && l == int(f.lens[idx]) {
				copy(nh, a.RewriteData[off:off+l])
			} else {
				s.p.counters.Get("bad_rewrites").Inc()
			}
			off += l
		}
	}
	drops := s.p.counters.Get("verdict_drop_packets")
	run := f.items[:0:0]
	var pkts []*pipeline.Packet
	flushRun := func() {
		if len(run) == 0 {
			return
		}
		pkts = pkts[:0]
		for _, it := range run {
			pkts = append(pkts, it.pkt)
		}
		s.stack.Reinject(pipeline.ResumeAfter(run[0].hook), pkts)
		run = run[:0]
	}
	for i := range f.items {
		it := &f.items[i]
		switch sdk.Answer(a.Answers[i]) {
		case sdk.Drop, sdk.Hotdrop:
			s.stack.DropStolen(drops, it.pkt)
			continue
		}
		if len(run) > 0 && run[0].hook != it.hook {
			flushRun()
		}
		run = append(run, *it)
	}
	flushRun()
}

func (s *policySink) failed(f *flight, why failure) {
	if f.inst.cfg.OnFailure == "drop" {
		for i := range f.items {
			s.stack.DropStolen(nil, f.items[i].pkt) // counted by Plugin.count
		}
		return
	}
	var pkts []*pipeline.Packet
	for i := 0; i < len(f.items); {
		h := f.items[i].hook
		pkts = pkts[:0]
		for ; i < len(f.items) && f.items[i].hook == h; i++ {
			pkts = append(pkts, f.items[i].pkt)
		}
		s.stack.Reinject(pipeline.ResumeAfter(h), pkts)
	}
}

var (
	_ filter.Target        = (*Target)(nil)
	_ pipeline.Provisioner = (*Target)(nil)
	_ sink                 = (*policySink)(nil)
)
