// Package ipv4 is the network.ipv4 module: IPv4 header validation (options
// checked, malformed ones answered with ICMP parameter problem), anti-spoofing
// (martian sources and destinations, reverse-path filtering per link),
// forwarding with TTL decrement and incremental checksum update and no copy,
// fragmentation of forwarded and local packets, reassembly with memory
// limits that hold up under a fragment flood (and a defragmentation service
// for later stages), local delivery to the configured transport protocols,
// echo replies, and the ICMP errors a host and a router send, behind a token
// bucket. See README.md for the configuration and the counters.
package ipv4

import (
	"errors"
	"fmt"
	"time"

	"github.com/pipestack/pipestack/modules/internal/ipconf"
	"github.com/pipestack/pipestack/modules/internal/pmtu"
	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(Module)) }

// Module is network.ipv4's configuration.
type Module struct {
	DefaultTTL int `yaml:"default_ttl"`

	// ICMP errors and the ICMP rate limiter: icmp_errors, icmp_rate,
	// icmp_burst, icmp_jitter, icmp_ratemask (dest_unreachable,
	// time_exceeded, parameter_problem — the default —, echo_reply),
	// icmp_ratelimit_ms, icmp_ratelimit_burst.
	ICMP ipconf.ICMP `yaml:",inline"`

	Reassembly struct {
		// timeout (default 30s), max_memory, per_source_memory (one
		// source address).
		ipconf.Reassembly `yaml:",inline"`
		// DefragmentForwarded reassembles forwarded fragments too, before
		// the Prerouting hook (what conntrack needs; Linux does it when
		// nf_defrag_ipv4 is loaded); they are fragmented again on egress.
		DefragmentForwarded bool `yaml:"defragment_forwarded"`
	} `yaml:"reassembly"`

	// RPFilter is reverse-path filtering: off, loose or strict, by
	// default and per link name.
	RPFilter struct {
		Default string            `yaml:"default"`
		Links   map[string]string `yaml:"links"`
	} `yaml:"rp_filter"`

	// PathMTU: path MTU discovery for the stack's own packets (RFC 1191).
	PathMTU struct {
		// Timeout after which a learnt path MTU is forgotten (default
		// 10m, Linux's mtu_expires).
		Timeout time.Duration `yaml:"timeout"`
		// MaxEntries bounds the cache (default 4096).
		MaxEntries int `yaml:"max_entries"`
		// Min is the lowest path MTU believed (default 552, Linux's
		// min_pmtu; at least 68, RFC 791): a report below it sets it,
		// and packets to that destination go without DF.
		Min int `yaml:"min"`
	} `yaml:"path_mtu"`

	proto *Protocol
}

// PipelineModule implements pipeline.Module.
func (*Module) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "network.ipv4",
		Summary: "IPv4: validation, anti-spoofing, forwarding, fragmentation and reassembly, local delivery, ICMP",
		New:     func() pipeline.Module { return new(Module) },
	}
}

// rateClasses are the names of icmp_ratemask: ICMP types.
var rateClasses = []ipconf.Class{
	{Name: "echo_reply", Bit: 0}, {Name: "dest_unreachable", Bit: 3},
	{Name: "time_exceeded", Bit: 11}, {Name: "parameter_problem", Bit: 12},
}

var rpModes = map[string]rpMode{"": rpOff, "off": rpOff, "loose": rpLoose, "strict": rpStrict}

// Provision sets defaults and builds the protocol.
func (m *Module) Provision(ctx *pipeline.Context) error {
	if m.DefaultTTL == 0 {
		m.DefaultTTL = 64
	}
	cfg := config{ttl: uint8(m.DefaultTTL), icmpErrors: m.ICMP.Errors()}
	var err error
	if cfg.rate, err = m.ICMP.Limiter(rateClasses); err != nil {
		return err
	}
	cfg.reasm = m.Reassembly.Limits(30 * time.Second)
	cfg.defragAll = m.Reassembly.DefragmentForwarded

	mode, ok := rpModes[m.RPFilter.Default]
	if !ok {
		return fmt.Errorf("rp_filter.default: %q is not one of off, loose, strict", m.RPFilter.Default)
	}
	cfg.rpDefault = mode
	cfg.rpLinks = map[string]rpMode{}
	for link, s := range m.RPFilter.Links {
		mode, ok := rpModes[s]
		if !ok || s == "" {
			return fmt.Errorf("rp_filter.links.%s: %q is not one of off, loose, strict", link, s)
		}
		cfg.rpLinks[link] = mode
	}

	if m.PathMTU.Timeout == 0 {
		m.PathMTU.Timeout = 10 * time.Minute
	}
	if m.PathMTU.MaxEntries == 0 {
		m.PathMTU.MaxEntries = 4096
	}
	if m.PathMTU.Min == 0 {
		m.PathMTU.Min = 552
	}
	cfg.pmtuTimeout, cfg.pmtuMax, cfg.pmtuMin = m.PathMTU.Timeout, m.PathMTU.MaxEntries, m.PathMTU.Min

	cs := ctx.Counters("ipv4")
	m.proto = newProtocol(cs, ctx.Pool, cfg)
	p := m.proto
	p.limiter = ctx.Shared("network.ipv4/icmp-limiter", func() any { return newICMPLimiter(ctx.Stack().Rand().Seed()) }).(*icmpLimiter)
	p.reasm = ctx.Shared("network.ipv4/reassembly", func() any {
		return newReassembler(ctx.Clock, ctx.Stack(), ctx.Pool, &p.c.reasm)
	}).(*reassembler)
	p.pmtu = ctx.Shared("network.ipv4/pmtu", func() any { return pmtu.New[[4]byte]() }).(*pmtu.Cache[[4]byte])
	return nil
}

// Validate checks ranges.
func (m *Module) Validate() error {
	if m.DefaultTTL < 1 || m.DefaultTTL > 255 {
		return fmt.Errorf("default_ttl %d out of range 1..255", m.DefaultTTL)
	}
	if err := ipconf.CheckLimiter(&m.proto.cfg.rate); err != nil {
		return err
	}
	if m.PathMTU.Timeout < time.Minute || m.PathMTU.MaxEntries < 1 || m.PathMTU.Min < 68 || m.PathMTU.Min > 65535 {
		return errors.New("path_mtu: timeout must be at least 1m, max_entries at least 1, min within 68..65535")
	}
	return m.Reassembly.Validate()
}

// NetworkProtocol implements pipeline.NetworkModule.
func (m *Module) NetworkProtocol() pipeline.NetworkProtocol { return m.proto }

var (
	_ pipeline.NetworkModule = (*Module)(nil)
	_ pipeline.Provisioner   = (*Module)(nil)
	_ pipeline.Validator     = (*Module)(nil)
)
