// Package sniffer is link.sniffer: it wraps any link and writes what crosses
// it, both directions, to a classic pcap file that tcpdump, tshark and
// Wireshark read. Ethernet links (those that need link-address resolution)
// are captured as LINKTYPE_ETHERNET; IP-only links (link.tun, link.channel
// with framing ip, link.wintun) as LINKTYPE_RAW.
//
// Configuration (besides the stack's link keys name, module, mtu,
// addresses, neighbors, forwarding, which apply to the wrapped link):
//
//	inner: {module: link.afpacket, device: veth0}  # the wrapped link and its own keys
//	file: /tmp/lan.pcap                           # required; truncated when the link opens
//	snaplen: 262144                               # bytes kept of each packet
//	queue: 256                                    # batches buffered for the writer
//	flush_ms: 1000                                # how often the file is flushed
//
// The packet path never waits for the disk: each received or sent batch is
// encoded into one pooled chunk and handed to a writer goroutine through a
// bounded channel; when it is full the batch is not captured (Dropped).
package sniffer

import (
	"errors"
	"fmt"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(Module)) }

// Module is link.sniffer's configuration.
type Module struct {
	Inner   yaml.Node `yaml:"inner"`
	File    string    `yaml:"file"`
	Snaplen int       `yaml:"snaplen"`
	Queue   int       `yaml:"queue"`
	FlushMS int       `yaml:"flush_ms"`

	innerID string
	inner   pipeline.LinkModule
	name    string
}

// Defaults.
const (
	DefaultSnaplen = 262144
	DefaultQueue   = 256
	DefaultFlushMS = 1000
)

// PipelineModule implements pipeline.Module.
func (*Module) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "link.sniffer",
		Summary: "wraps any link and writes what crosses it (both directions) to a pcap file",
		New:     func() pipeline.Module { return new(Module) },
	}
}

// innerContext is the wrapped module's context: the same, under its own ID.
func (m *Module) innerContext(ctx *pipeline.Context) *pipeline.Context {
	c := *ctx
	c.ModuleID = m.innerID
	c.Logger = ctx.Logger.With().Str("inner", m.innerID).Logger()
	return &c
}

// Provision decodes inner strictly into the wrapped module and provisions
// it.
func (m *Module) Provision(ctx *pipeline.Context) error {
	m.name = ctx.Instance
	if m.Snaplen == 0 {
		m.Snaplen = DefaultSnaplen
	}
	if m.Queue == 0 {
		m.Queue = DefaultQueue
	}
	if m.FlushMS == 0 {
		m.FlushMS = DefaultFlushMS
	}
	n := &m.Inner
	if n.Kind == 0 {
		return errors.New("inner is required: the wrapped link, e.g. inner: {module: link.afpacket, device: veth0}")
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
		for i := 0; i < len(rest.Content); i += 2 {
			if k := rest.Content[i]; len(pipeline.Suggest(k.Value, []string{"module"})) > 0 {
				e := pipeline.UnknownKey(k, []string{"module"}, "the wrapped link's keys")
				e.Msg = "inner: " + e.Msg
				return e
			}
		}
		return &pipeline.PosError{Line: n.Line, Col: n.Column, Msg: "inner has no module: key (e.g. module: link.afpacket)"}
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

// Validate checks the configuration and the wrapped module's.
func (m *Module) Validate() error {
	if m.File == "" {
		return errors.New("file is required (the pcap file to write)")
	}
	if m.Snaplen < 64 || m.Snaplen > 262144 {
		return fmt.Errorf("snaplen %d out of range 64..262144", m.Snaplen)
	}
	if m.Queue < 1 || m.Queue > 65536 {
		return fmt.Errorf("queue %d out of range 1..65536", m.Queue)
	}
	if m.FlushMS < 1 || m.FlushMS > 60000 {
		return fmt.Errorf("flush_ms %d out of range 1..60000", m.FlushMS)
	}
	if v, ok := m.inner.(pipeline.Validator); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("inner %s: %w", m.innerID, err)
		}
	}
	return nil
}

// LinkKey: the capture settings and the wrapped link's key. A new file
// means a new capture (and, as the wrapped device is part of this link, a
// reopened device).
func (m *Module) LinkKey() string {
	return fmt.Sprintf("%s|%d|%d|%d|%s|%s", m.File, m.Snaplen, m.Queue, m.FlushMS, m.innerID, m.inner.LinkKey())
}

// OpenLink opens the wrapped link, then the file.
func (m *Module) OpenLink(ctx *pipeline.Context) (pipeline.LinkEndpoint, error) {
	inner, err := m.inner.OpenLink(m.innerContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("inner %s: %w", m.innerID, err)
	}
	f, err := os.OpenFile(m.File, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		inner.Close()
		return nil, err
	}
	ep, err := New(inner, f, Options{Snaplen: m.Snaplen, Queue: m.Queue, FlushMS: m.FlushMS, Clock: ctx.Clock, Logger: ctx.Logger, Name: m.name})
	if err != nil {
		f.Close()
		inner.Close()
		return nil, err
	}
	return ep, nil
}

// Stop passes the phase on to the wrapped module.
func (m *Module) Stop() error {
	if s, ok := m.inner.(pipeline.Stopper); ok {
		return s.Stop()
	}
	return nil
}

// Cleanup passes the phase on to the wrapped module (also after a half-done
// Provision).
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
