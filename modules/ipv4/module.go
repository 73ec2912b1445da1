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

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(Module)) }

// Module is network.ipv4's configuration.
type Module struct {
	DefaultTTL int   `yaml:"default_ttl"`
	ICMPErrors *bool `yaml:"icmp_errors"`

	// ICMPRate is the global ICMP token bucket's rate in messages per
	// second (Linux icmp_msgs_per_sec; default 1000; 0: unlimited).
	ICMPRate *float64 `yaml:"icmp_rate"`
	// ICMPBurst is the bucket's depth (icmp_msgs_burst; default 50).
	ICMPBurst int `yaml:"icmp_burst"`
	// ICMPJitter randomises each message's cost in [1-j, 1+j] tokens
	// (default 0.5; 0 ≤ j < 1).
	ICMPJitter *float64 `yaml:"icmp_jitter"`
	// ICMPRateMask lists the message types the limiter applies to
	// (Linux icmp_ratemask): dest_unreachable, time_exceeded,
	// parameter_problem (the default), echo_reply.
	ICMPRateMask []string `yaml:"icmp_ratemask"`
	// ICMPPerDest adds a bucket per destination (off by default).
	ICMPPerDest struct {
		Rate  float64 `yaml:"rate"`
		Burst int     `yaml:"burst"`
	} `yaml:"icmp_per_dest"`

	Reassembly struct {
		// Timeout of a datagram being reassembled (default 30s).
		Timeout time.Duration `yaml:"timeout"`
		// MaxMemory bounds all datagrams in reassembly, in bytes of
		// buffers held (default 4 MiB).
		MaxMemory int `yaml:"max_memory"`
		// PerSource bounds one source address (default max_memory/4).
		PerSource int `yaml:"per_source_memory"`
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

var rateMaskNames = map[string]uint8{
	"echo_reply": 0, "dest_unreachable": 3, "time_exceeded": 11, "parameter_problem": 12,
}

var rpModes = map[string]rpMode{"": rpOff, "off": rpOff, "loose": rpLoose, "strict": rpStrict}

// Provision sets defaults and builds the protocol.
func (m *Module) Provision(ctx *pipeline.Context) error {
	if m.DefaultTTL == 0 {
		m.DefaultTTL = 64
	}
	cfg := config{ttl: uint8(m.DefaultTTL), icmpErrors: true}
	if m.ICMPErrors != nil {
		cfg.icmpErrors = *m.ICMPErrors
	}
	rc := &cfg.rate
	rc.Rate, rc.Burst, rc.Jitter = 1000, 50, 0.5
	if m.ICMPRate != nil {
		rc.Rate = *m.ICMPRate
	}
	if m.ICMPBurst != 0 {
		rc.Burst = float64(m.ICMPBurst)
	}
	if m.ICMPJitter != nil {
		rc.Jitter = *m.ICMPJitter
	}
	if m.ICMPRateMask == nil {
		m.ICMPRateMask = []string{"dest_unreachable", "time_exceeded", "parameter_problem"}
	}
	for _, name := range m.ICMPRateMask {
		t, ok := rateMaskNames[name]
		if !ok {
			return fmt.Errorf("icmp_ratemask: %q is not one of echo_reply, dest_unreachable, time_exceeded, parameter_problem", name)
		}
		rc.Mask |= 1 << t
	}
	rc.DestRate, rc.DestBurst = m.ICMPPerDest.Rate, float64(m.ICMPPerDest.Burst)
	if rc.DestRate > 0 && rc.DestBurst == 0 {
		rc.DestBurst = 6
	}

	ra := &m.Reassembly
	if ra.Timeout == 0 {
		ra.Timeout = 30 * time.Second
	}
	if ra.MaxMemory == 0 {
		ra.MaxMemory = 4 << 20
	}
	if ra.PerSource == 0 {
		ra.PerSource = ra.MaxMemory / 4
	}
	cfg.reasm = reasmLimits{timeout: ra.Timeout, maxMemory: ra.MaxMemory, perSource: ra.PerSource}
	cfg.defragAll = ra.DefragmentForwarded

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

	cs := ctx.Counters("ipv4")
	m.proto = newProtocol(cs, ctx.Pool, cfg)
	p := m.proto
	p.limiter = ctx.Shared("network.ipv4/icmp-limiter", func() any { return newICMPLimiter(0) }).(*icmpLimiter)
	p.reasm = ctx.Shared("network.ipv4/reassembly", func() any {
		return newReassembler(ctx.Clock, ctx.Stack(), ctx.Pool, &p.c)
	}).(*reassembler)
	return nil
}

// Validate checks ranges.
func (m *Module) Validate() error {
	if m.DefaultTTL < 1 || m.DefaultTTL > 255 {
		return fmt.Errorf("default_ttl %d out of range 1..255", m.DefaultTTL)
	}
	rc := &m.proto.cfg.rate
	if rc.Rate < 0 || rc.Burst < 1 {
		return errors.New("icmp_rate must be >= 0 and icmp_burst >= 1")
	}
	if rc.Jitter < 0 || rc.Jitter >= 1 {
		return fmt.Errorf("icmp_jitter %g out of range [0, 1)", rc.Jitter)
	}
	if rc.DestRate < 0 || rc.DestBurst < 0 {
		return errors.New("icmp_per_dest: rate and burst must be >= 0")
	}
	ra := &m.Reassembly
	if ra.Timeout < time.Second || ra.Timeout > 10*time.Minute {
		return fmt.Errorf("reassembly.timeout %v out of range 1s..10m", ra.Timeout)
	}
	// One maximal datagram must fit: 64 KiB of payload in 8-byte
	// fragments is not legitimate, but 45 full-size ones are.
	const minShare = 128 << 10
	if ra.PerSource < minShare || ra.MaxMemory < ra.PerSource {
		return fmt.Errorf("reassembly: per_source_memory must be at least %d bytes and at most max_memory (%d)", minShare, ra.MaxMemory)
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
