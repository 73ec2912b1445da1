// Package ipv4 is the network.ipv4 module: IPv4 header validation (options
// are skipped safely), forwarding with TTL decrement and incremental checksum
// update and no copy, local delivery to the configured transport protocols,
// echo replies, and the ICMP errors a router sends: time exceeded, net
// unreachable, fragmentation needed, protocol unreachable.
//
// Configuration (under modules:):
//
//   - module: network.ipv4
//     default_ttl: 64          # TTL of packets the stack originates
//     icmp_errors: true        # send ICMP errors (time exceeded, unreachable)
//
// Counters (set "ipv4"): rx, delivered, forwarded, sent, and one per drop
// reason (malformed_*, ttl_exceeded, no_route, not_forwarding, too_big,
// fragment_unsupported, unknown_protocol, martian, no_source_address…), icmp_*
// for ICMP in and out.
package ipv4

import (
	"fmt"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(Module)) }

// Module is network.ipv4's configuration.
type Module struct {
	DefaultTTL int   `yaml:"default_ttl"`
	ICMPErrors *bool `yaml:"icmp_errors"`

	proto *Protocol
}

// PipelineModule implements pipeline.Module.
func (*Module) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "network.ipv4",
		Summary: "IPv4: validation, forwarding, local delivery, ICMP echo and errors",
		New:     func() pipeline.Module { return new(Module) },
	}
}

// Provision sets defaults and builds the protocol.
func (m *Module) Provision(ctx *pipeline.Context) error {
	if m.DefaultTTL == 0 {
		m.DefaultTTL = 64
	}
	icmp := true
	if m.ICMPErrors != nil {
		icmp = *m.ICMPErrors
	}
	m.proto = newProtocol(ctx.Counters("ipv4"), ctx.Pool, uint8(m.DefaultTTL), icmp)
	return nil
}

// Validate checks ranges.
func (m *Module) Validate() error {
	if m.DefaultTTL < 1 || m.DefaultTTL > 255 {
		return fmt.Errorf("default_ttl %d out of range 1..255", m.DefaultTTL)
	}
	return nil
}

// NetworkProtocol implements pipeline.NetworkModule.
func (m *Module) NetworkProtocol() pipeline.NetworkProtocol { return m.proto }

var (
	_ pipeline.NetworkModule = (*Module)(nil)
	_ pipeline.Provisioner   = (*Module)(nil)
	_ pipeline.Validator     = (*Module)(nil)
)
