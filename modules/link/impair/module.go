package impair

import (
	"errors"
	"fmt"
	"math"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(Module)) }

// Module is link.impair's configuration (see the package doc).
type Module struct {
	Inner        yaml.Node     `yaml:"inner"`
	Loss         float64       `yaml:"loss"`
	Duplicate    float64       `yaml:"duplicate"`
	Reorder      float64       `yaml:"reorder"`
	ReorderDelay time.Duration `yaml:"reorder_delay"`
	Delay        time.Duration `yaml:"delay"`
	Jitter       time.Duration `yaml:"jitter"`
	Direction    string        `yaml:"direction"`
	Seed         uint64        `yaml:"seed"`

	innerID string
	inner   pipeline.LinkModule
}

// PipelineModule implements pipeline.Module.
func (*Module) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "link.impair",
		Summary: "wraps any link and impairs it from a seeded random source: loss, duplication, reordering, delay and jitter",
		New:     func() pipeline.Module { return new(Module) },
	}
}

func (m *Module) innerContext(ctx *pipeline.Context) *pipeline.Context {
	c := *ctx
	c.ModuleID = m.innerID
	c.Logger = ctx.Logger.With().Str("inner", m.innerID).Logger()
	return &c
}

// Provision decodes inner strictly into the wrapped module and provisions
// it; the seed defaults to one drawn from the stack's random source.
func (m *Module) Provision(ctx *pipeline.Context) error {
	if m.Direction == "" {
		m.Direction = "out"
	}
	if m.ReorderDelay == 0 {
		m.ReorderDelay = time.Millisecond
	}
	if m.Seed == 0 {
		if s := ctx.Stack(); s != nil {
			m.Seed = s.Rand().Uint64()
		}
		if m.Seed == 0 {
			m.Seed = 1
		}
	}
	n := &m.Inner
	if n.Kind == 0 {
		return errors.New("inner is required: the wrapped link, e.g. inner: {module: link.tun, device: tun0}")
	}
	if n.Kind != yaml.MappingNode {
		return &pipeline.PosError{Line: n.Line, Col: n.Column, Msg: "inner: a mapping {module: link.…, …its keys}"}
	}
	rest := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	var idNode *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "module" {
			idNode = n.Content[i+1]
			continue
		}
		rest.Content = append(rest.Content, n.Content[i], n.Content[i+1])
	}
	if idNode == nil {
		return &pipeline.PosError{Line: n.Line, Col: n.Column, Msg: "inner has no module: key (e.g. module: link.tun)"}
	}
	m.innerID = idNode.Value
	mi, ok := pipeline.LookupModule(m.innerID)
	if !ok {
		return &pipeline.PosError{Line: idNode.Line, Col: idNode.Column, Msg: fmt.Sprintf("inner: unknown module %q", m.innerID)}
	}
	lm, ok := mi.New().(pipeline.LinkModule)
	if !ok {
		return &pipeline.PosError{Line: idNode.Line, Col: idNode.Column, Msg: fmt.Sprintf("inner: %s is not a link module", m.innerID)}
	}
	if err := pipeline.DecodeStrictWith(rest, lm, "module"); err != nil {
		var pe *pipeline.PosError
		if errors.As(err, &pe) {
			return &pipeline.PosError{Line: pe.Line, Col: pe.Col, Msg: "inner " + m.innerID + ": " + pe.Msg}
		}
		return fmt.Errorf("inner %s: %w", m.innerID, err)
	}
	m.inner = lm
	if p, ok := lm.(pipeline.Provisioner); ok {
		if err := p.Provision(m.innerContext(ctx)); err != nil {
			return fmt.Errorf("inner %s: %w", m.innerID, err)
		}
	}
	return nil
}

// Validate checks the impairment and the wrapped module.
func (m *Module) Validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"loss", m.Loss}, {"duplicate", m.Duplicate}, {"reorder", m.Reorder}} {
		if f.v < 0 || f.v > 1 || math.IsNaN(f.v) {
			return fmt.Errorf("%s %v out of range 0..1", f.name, f.v)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"delay", m.Delay}, {"jitter", m.Jitter}, {"reorder_delay", m.ReorderDelay}} {
		if d.v < 0 || d.v > time.Minute {
			return fmt.Errorf("%s %v out of range 0..1m", d.name, d.v)
		}
	}
	switch m.Direction {
	case "in", "out", "both":
	default:
		return fmt.Errorf("direction %q is not one of in, out, both", m.Direction)
	}
	if v, ok := m.inner.(pipeline.Validator); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("inner %s: %w", m.innerID, err)
		}
	}
	return nil
}

// LinkKey: the wrapped link's key and the impairment (a new impairment
// reopens the wrapped device, as any change of a link's own keys does).
func (m *Module) LinkKey() string {
	return fmt.Sprintf("impair|%v|%v|%v|%v|%v|%v|%s|%d|%s|%s", m.Loss, m.Duplicate, m.Reorder, m.ReorderDelay, m.Delay, m.Jitter,
		m.Direction, m.Seed, m.innerID, m.inner.LinkKey())
}

// OpenLink opens the wrapped link and wraps it.
func (m *Module) OpenLink(ctx *pipeline.Context) (pipeline.LinkEndpoint, error) {
	inner, err := m.inner.OpenLink(m.innerContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("inner %s: %w", m.innerID, err)
	}
	return New(inner, Options{
		Loss: m.Loss, Duplicate: m.Duplicate, Reorder: m.Reorder, ReorderDelay: m.ReorderDelay,
		Delay: m.Delay, Jitter: m.Jitter, In: m.Direction != "out", Out: m.Direction != "in",
		Seed: m.Seed, Clock: ctx.Clock,
	}), nil
}

// Stop passes the phase on to the wrapped module.
func (m *Module) Stop() error {
	if s, ok := m.inner.(pipeline.Stopper); ok {
		return s.Stop()
	}
	return nil
}

// Cleanup passes the phase on to the wrapped module.
func (m *Module) Cleanup() error {
	if c, ok := m.inner.(pipeline.CleanerUpper); ok {
		return c.Cleanup()
	}
	return nil
}

var (
	_ pipeline.LinkModule   = (*Module)(nil)
	_ pipeline.Provisioner  = (*Module)(nil)
	_ pipeline.Validator    = (*Module)(nil)
	_ pipeline.Stopper      = (*Module)(nil)
	_ pipeline.CleanerUpper = (*Module)(nil)
)
