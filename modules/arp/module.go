// Package arp is the network.arp module: ARP (RFC 826) for IPv4 over
// Ethernet links, driving the stack's NUD state machine (pipeline/nud.go)
// for IPv4 next hops. It resolves next hops with broadcast requests (the
// packets waiting are held by the stack in a bounded queue, never waited
// for), confirms neighbors with unicast probes, answers requests for the
// addresses of the link they arrive on (and, as an option, proxy ARP),
// announces addresses with gratuitous ARP, and refuses malformed, martian
// and duplicate-address senders. See README.md for the configuration and
// the counters.
package arp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(Module)) }

// Module is network.arp's configuration. Zero values take the defaults of
// pipeline.DefaultNUDConfigurations.
type Module struct {
	BaseReachableTime   time.Duration `yaml:"base_reachable_time"`
	MinRandomFactor     float32       `yaml:"min_random_factor"`
	MaxRandomFactor     float32       `yaml:"max_random_factor"`
	RetransmitTimer     time.Duration `yaml:"retransmit_timer"`
	DelayFirstProbeTime time.Duration `yaml:"delay_first_probe_time"`
	MaxMulticastProbes  int           `yaml:"max_multicast_probes"`
	MaxUnicastProbes    int           `yaml:"max_unicast_probes"`
	// MaxEntries bounds each link's neighbor table.
	MaxEntries int `yaml:"max_entries"`
	// PendingPackets bounds the packets waiting for one neighbor;
	// PendingPacketsTotal those waiting on one link.
	PendingPackets      int           `yaml:"pending_packets"`
	PendingPacketsTotal int           `yaml:"pending_packets_total"`
	GCStaleTime         time.Duration `yaml:"gc_stale_time"`

	// Proxy lists prefixes for which the module answers requests with the
	// link's own address when the route to the target leaves through
	// another link (proxy ARP).
	Proxy []string `yaml:"proxy"`
	// Gratuitous announces every address a link gains (default true).
	Gratuitous *bool `yaml:"gratuitous"`

	nud   pipeline.NUDConfigurations
	proxy []netip.Prefix
	proto *Protocol
}

// PipelineModule implements pipeline.Module.
func (*Module) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "network.arp",
		Summary: "ARP for IPv4 over Ethernet: NUD neighbor resolution, replies, gratuitous ARP; proxy ARP for listed prefixes",
		New:     func() pipeline.Module { return new(Module) },
	}
}

// Provision sets defaults and builds the protocol.
func (m *Module) Provision(ctx *pipeline.Context) error {
	d := pipeline.DefaultNUDConfigurations()
	m.nud = pipeline.NUDConfigurations{
		BaseReachableTime:   orDefault(m.BaseReachableTime, d.BaseReachableTime),
		MinRandomFactor:     m.MinRandomFactor,
		MaxRandomFactor:     m.MaxRandomFactor,
		RetransmitTimer:     orDefault(m.RetransmitTimer, d.RetransmitTimer),
		DelayFirstProbeTime: orDefault(m.DelayFirstProbeTime, d.DelayFirstProbeTime),
		MaxMulticastProbes:  uint32(orDefault(m.MaxMulticastProbes, int(d.MaxMulticastProbes))),
		MaxUnicastProbes:    uint32(orDefault(m.MaxUnicastProbes, int(d.MaxUnicastProbes))),
		MaxEntries:          orDefault(m.MaxEntries, d.MaxEntries),
		MaxPendingPackets:   orDefault(m.PendingPackets, d.MaxPendingPackets),
		MaxPendingTotal:     orDefault(m.PendingPacketsTotal, d.MaxPendingTotal),
		GCStaleTime:         orDefault(m.GCStaleTime, d.GCStaleTime),
	}
	if m.MinRandomFactor == 0 {
		m.nud.MinRandomFactor = min(d.MinRandomFactor, m.nud.MaxRandomFactor)
		if m.nud.MinRandomFactor == 0 {
			m.nud.MinRandomFactor = d.MinRandomFactor
		}
	}
	if m.MaxRandomFactor == 0 {
		m.nud.MaxRandomFactor = max(d.MaxRandomFactor, m.nud.MinRandomFactor)
	}
	m.proxy = m.proxy[:0]
	for _, s := range m.Proxy {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("proxy: %q is not an IPv4 prefix", s)
		}
		m.proxy = append(m.proxy, p.Masked())
	}
	gratuitous := true
	if m.Gratuitous != nil {
		gratuitous = *m.Gratuitous
	}
	m.proto = newProtocol(ctx, m.nud, m.proxy, gratuitous)
	return nil
}

func orDefault[T time.Duration | int](v, d T) T {
	if v == 0 {
		return d
	}
	return v
}

// Validate checks ranges.
func (m *Module) Validate() error {
	c := &m.nud
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"base_reachable_time", c.BaseReachableTime}, {"retransmit_timer", c.RetransmitTimer},
		{"delay_first_probe_time", c.DelayFirstProbeTime}, {"gc_stale_time", c.GCStaleTime},
	} {
		if d.v < time.Millisecond || d.v > 24*time.Hour {
			return fmt.Errorf("%s %v out of range 1ms..24h", d.name, d.v)
		}
	}
	if !(c.MinRandomFactor > 0) || !(c.MaxRandomFactor >= c.MinRandomFactor) || c.MaxRandomFactor > 10 {
		return fmt.Errorf("random factors must satisfy 0 < min_random_factor (%g) <= max_random_factor (%g) <= 10", c.MinRandomFactor, c.MaxRandomFactor)
	}
	for _, v := range []struct {
		name      string
		v, lo, hi int
	}{
		{"max_multicast_probes", m.MaxMulticastProbes, 0, 255}, {"max_unicast_probes", m.MaxUnicastProbes, 0, 255},
		{"max_entries", m.MaxEntries, 0, 1 << 20}, {"pending_packets", m.PendingPackets, 0, 1024},
		{"pending_packets_total", m.PendingPacketsTotal, 0, 1 << 20},
	} {
		if v.v < v.lo || v.v > v.hi {
			return fmt.Errorf("%s %d out of range 1..%d", v.name, v.v, v.hi)
		}
	}
	if c.MaxPendingTotal < c.MaxPendingPackets {
		return errors.New("pending_packets_total must be at least pending_packets")
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
