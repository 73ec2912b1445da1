// Package ipv6 is the network.ipv6 module: IPv6 (RFC 8200) with ICMPv6 (RFC
// 4443) and Neighbor Discovery (RFC 4861, 4862) inside it.
//
// What it does: header validation; a bounded walk of extension headers
// (Hop-by-Hop and Destination options honour the action bits of unknown
// options, Routing headers with segments left are refused, at most
// max_extension_headers); forwarding with hop-limit decrement (no checksum
// to update), a one-entry route cache per batch and Packet Too Big instead
// of fragmentation; local delivery to the configured transports; fragment
// reassembly with memory limits per source /64 and overall, overlapping
// fragments dropped (RFC 5722) and atomic fragments delivered on their own
// (RFC 6946); fragmentation of local packets to the path MTU, which Packet
// Too Big messages lower (RFC 8201); echo replies and the ICMPv6 errors,
// behind the rate limiter network.ipv4 uses; a link-local address on every
// link; NDP: neighbor resolution feeding the stack's NUD state machine,
// duplicate address detection, router advertisements (router side) and
// their processing with SLAAC (host side).
//
// # Why NDP lives here
//
// NDP is ICMPv6: its messages arrive as IPv6 packets to addresses only this
// module knows (solicited-node multicast groups of tentative addresses),
// and they change this module's state (addresses, DAD, routes, the MTU). A
// separate network.ndp module would receive nothing (it would have no
// EtherType) and would need a private channel into this one for every
// message. So network.ipv6's protocol object is also the stack's
// pipeline.LinkAddressResolver for IPv6, exactly as network.arp is for IPv4,
// and NDP is switched off where it makes no sense: on links that need no
// link addresses (TUN, Wintun, raw IP channels) there is no resolution and
// no duplicate address detection; NDP messages are still answered, as Linux
// does on such links.
//
// # Where state lives
//
// The generation is immutable, but IPv6 adds addresses and routes at run
// time. The core keeps them outside generations (pipeline/dynamic.go): each
// NIC has a copy-on-write set of dynamic addresses (link-local, SLAAC) and
// kind overrides of configured addresses (tentative while DAD runs); the
// stack has a copy-on-write table of dynamic routes per owner (here one
// owner per link: the default routers and on-link prefixes learnt from
// Router Advertisements). Both survive reloads and are read lock-free by
// Generation.IsLocal6, NetworkInterface.Addresses/SourceAddress and
// Generation.LookupRoute6. The protocol state that drives them (DAD
// progress, routers and prefixes with their lifetimes, RDNSS, the RA
// schedule, the path MTU cache, reassembly) is long-lived too
// (Context.Shared), with one timer per link on the stack clock.
//
// # Addresses
//
// Link-local addresses are fe80::/64 with an EUI-64 interface identifier
// from the link's MAC, or, on links without one, a stable identifier hashed
// from the link's name (RFC 7217's function with the name as Net_Iface).
// SLAAC addresses use EUI-64 by default (what Linux does with
// addr_gen_mode 0), or RFC 7217 stable-privacy identifiers
// (address_generation: stable_privacy, with stable_secret). With
// dad.transmits ≥ 1 (default 1) every new address on a link that resolves
// link addresses is PermanentTentative — not a source, not accepted as a
// destination, only its solicited-node group answers — until dad.transmits
// Neighbor Solicitations retrans_timer (1 s) apart went unanswered; a
// Neighbor Advertisement for it, or another node's DAD probe, makes it a
// duplicate for good (counter dad_failed).
//
// See README.md for the configuration and the counters.
package ipv6

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/pipestack/pipestack/modules/internal/ipconf"
	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(Module)) }

// Module is network.ipv6's configuration.
type Module struct {
	// HopLimit of locally generated packets (default 64).
	HopLimit int `yaml:"hop_limit"`
	// MaxExtensionHeaders bounds the extension headers walked per packet
	// (default 8); a longer chain is dropped.
	MaxExtensionHeaders int `yaml:"max_extension_headers"`
	// TransitExtensionHeaders is what a packet that is not for the stack
	// goes through: pass (default; RFC 7045, as Linux) looks only at what
	// forwarding needs — a Hop-by-Hop header, first — and forwards any
	// other chain as it is; strict walks and checks the whole chain, as
	// for local delivery (order, max_extension_headers, lengths).
	TransitExtensionHeaders string `yaml:"transit_extension_headers"`

	// ICMP errors and the rate limiter (as network.ipv4; Linux icmpv6
	// ratelimit): icmp_errors, icmp_rate, icmp_burst, icmp_jitter,
	// icmp_ratemask (dest_unreachable, time_exceeded, parameter_problem —
	// the default —, packet_too_big, echo_reply), icmp_ratelimit_ms,
	// icmp_ratelimit_burst.
	ICMP ipconf.ICMP `yaml:",inline"`

	// Reassembly: timeout (default 60s, RFC 8200), max_memory,
	// per_source_memory (one source /64).
	Reassembly ipconf.Reassembly `yaml:"reassembly"`

	PathMTU struct {
		// Timeout after which a learnt path MTU is forgotten (default
		// 10m, RFC 8201 §4).
		Timeout time.Duration `yaml:"timeout"`
		// MaxEntries bounds the cache (default 4096).
		MaxEntries int `yaml:"max_entries"`
	} `yaml:"path_mtu"`

	// LinkLocal gives every link a link-local address (default true).
	LinkLocal *bool `yaml:"link_local"`
	// AddressGeneration: eui64 (default) or stable_privacy (RFC 7217)
	// for SLAAC addresses.
	AddressGeneration string `yaml:"address_generation"`
	// StableSecret (hex, at least 16 bytes) keys stable_privacy
	// identifiers; default: random per stack.
	StableSecret string `yaml:"stable_secret"`

	DAD struct {
		// Transmits is DupAddrDetectTransmits (default 1; 0: off).
		Transmits *int `yaml:"transmits"`
		// RetransTimer is the time between them (default 1s).
		RetransTimer time.Duration `yaml:"retrans_timer"`
	} `yaml:"dad"`

	// AcceptRA: links that do not forward IPv6 learn default routers,
	// prefixes, MTU and RDNSS from Router Advertisements (default true).
	AcceptRA *bool `yaml:"accept_ra"`
	// RouterSolicitations a host sends when a link comes up (default 3,
	// 4 s apart; 0: none).
	RouterSolicitations *int `yaml:"router_solicitations"`
	// RouterAdvertisements configures the router side, per link name.
	RouterAdvertisements struct {
		Links map[string]*RAConfig `yaml:"links"`
	} `yaml:"router_advertisements"`

	// NDP holds the neighbor state machine's parameters for IPv6 (as
	// network.arp's for IPv4; zero: pipeline.DefaultNUDConfigurations).
	NDP struct {
		BaseReachableTime   time.Duration `yaml:"base_reachable_time"`
		RetransmitTimer     time.Duration `yaml:"retransmit_timer"`
		DelayFirstProbeTime time.Duration `yaml:"delay_first_probe_time"`
		MaxMulticastProbes  int           `yaml:"max_multicast_probes"`
		MaxUnicastProbes    int           `yaml:"max_unicast_probes"`
		MaxEntries          int           `yaml:"max_entries"`
		PendingPackets      int           `yaml:"pending_packets"`
		PendingPacketsTotal int           `yaml:"pending_packets_total"`
		GCStaleTime         time.Duration `yaml:"gc_stale_time"`
	} `yaml:"ndp"`

	proto *Protocol
}

// RAConfig is the Router Advertisement configuration of one link (RFC 4861
// §6.2.1, with radvd's defaults).
type RAConfig struct {
	// Prefixes advertised on-link and for autonomous configuration.
	Prefixes []string `yaml:"prefixes"`
	// PrefixValidLifetime and PrefixPreferredLifetime (defaults 24h and
	// 4h).
	PrefixValidLifetime     time.Duration `yaml:"prefix_valid_lifetime"`
	PrefixPreferredLifetime time.Duration `yaml:"prefix_preferred_lifetime"`
	// MTU option (0: none).
	MTU int `yaml:"mtu"`
	// RDNSS servers (RFC 8106) and their lifetime (default 3×interval).
	RDNSS         []string      `yaml:"rdnss"`
	RDNSSLifetime time.Duration `yaml:"rdnss_lifetime"`
	// Interval is MaxRtrAdvInterval (default 600s, 4s..1800s); RAs go out
	// at random intervals in [interval/3, interval].
	Interval time.Duration `yaml:"interval"`
	// Lifetime is the router lifetime (default 3×interval; 0: not a
	// default router).
	Lifetime *time.Duration `yaml:"lifetime"`
	// HopLimit is the Cur Hop Limit advertised (default 64).
	HopLimit *int `yaml:"hop_limit"`
	Managed  bool `yaml:"managed"`
	Other    bool `yaml:"other_config"`

	prefixes []netip.Prefix
	rdnss    [][16]byte
}

// PipelineModule implements pipeline.Module.
func (*Module) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "network.ipv6",
		Summary: "IPv6: extension headers, forwarding, reassembly, fragmentation of local packets, ICMPv6, NDP (resolution, DAD, RA processing and SLAAC; RAs sent on configured links)",
		New:     func() pipeline.Module { return new(Module) },
	}
}

// rateClasses are the names of icmp_ratemask and their limiter class bits.
var rateClasses = []ipconf.Class{
	{Name: "echo_reply", Bit: echoReplyBit}, {Name: "dest_unreachable", Bit: wireDstUnreachBit},
	{Name: "packet_too_big", Bit: wirePTBBit}, {Name: "time_exceeded", Bit: wireTimeExceededBit},
	{Name: "parameter_problem", Bit: wireParamProblemBit},
}

// Provision sets defaults and builds the protocol.
func (m *Module) Provision(ctx *pipeline.Context) error {
	if m.HopLimit == 0 {
		m.HopLimit = 64
	}
	if m.MaxExtensionHeaders == 0 {
		m.MaxExtensionHeaders = 8
	}
	cfg := config{hopLimit: uint8(m.HopLimit), maxExt: m.MaxExtensionHeaders, icmpErrors: m.ICMP.Errors(), linkLocal: true, acceptRA: true}
	switch m.TransitExtensionHeaders {
	case "":
		m.TransitExtensionHeaders = "pass"
	case "pass":
	case "strict":
		cfg.transitStrict = true
	default:
		return fmt.Errorf("transit_extension_headers: %q is not one of pass, strict", m.TransitExtensionHeaders)
	}
	var err error
	if cfg.rate, err = m.ICMP.Limiter(rateClasses); err != nil {
		return err
	}
	cfg.reasm = m.Reassembly.Limits(60 * time.Second)
	if m.PathMTU.Timeout == 0 {
		m.PathMTU.Timeout = 10 * time.Minute
	}
	if m.PathMTU.MaxEntries == 0 {
		m.PathMTU.MaxEntries = 4096
	}
	cfg.pmtuTimeout, cfg.pmtuMax = m.PathMTU.Timeout, m.PathMTU.MaxEntries

	if m.LinkLocal != nil {
		cfg.linkLocal = *m.LinkLocal
	}
	switch m.AddressGeneration {
	case "", "eui64":
	case "stable_privacy":
		cfg.stablePrivacy = true
	default:
		return fmt.Errorf("address_generation: %q is not one of eui64, stable_privacy", m.AddressGeneration)
	}
	if m.StableSecret != "" {
		s, err := hex.DecodeString(m.StableSecret)
		if err != nil || len(s) < 16 {
			return errors.New("stable_secret: want at least 16 bytes in hex")
		}
		cfg.secret = s
	}
	cfg.dadTransmits = 1
	if m.DAD.Transmits != nil {
		cfg.dadTransmits = *m.DAD.Transmits
	}
	cfg.dadRetrans = m.DAD.RetransTimer
	if cfg.dadRetrans == 0 {
		cfg.dadRetrans = time.Second
	}
	if m.AcceptRA != nil {
		cfg.acceptRA = *m.AcceptRA
	}
	cfg.rsCount = 3
	if m.RouterSolicitations != nil {
		cfg.rsCount = *m.RouterSolicitations
	}
	cfg.ra = map[string]*RAConfig{}
	for link, rc := range m.RouterAdvertisements.Links {
		if rc == nil {
			rc = &RAConfig{}
		}
		if err := rc.provision(); err != nil {
			return fmt.Errorf("router_advertisements.links.%s: %w", link, err)
		}
		cfg.ra[link] = rc
	}

	d := pipeline.DefaultNUDConfigurations()
	n := &m.NDP
	cfg.nud = pipeline.NUDConfigurations{
		BaseReachableTime:   n.BaseReachableTime,
		RetransmitTimer:     n.RetransmitTimer,
		DelayFirstProbeTime: n.DelayFirstProbeTime,
		MaxMulticastProbes:  uint32(n.MaxMulticastProbes),
		MaxUnicastProbes:    uint32(n.MaxUnicastProbes),
		MaxEntries:          n.MaxEntries,
		MaxPendingPackets:   n.PendingPackets,
		MaxPendingTotal:     n.PendingPacketsTotal,
		GCStaleTime:         n.GCStaleTime,
		MinRandomFactor:     d.MinRandomFactor,
		MaxRandomFactor:     d.MaxRandomFactor,
	}.WithDefaults()

	m.proto = newProtocol(ctx, cfg)
	return nil
}

func (rc *RAConfig) provision() error {
	rc.prefixes = rc.prefixes[:0]
	for _, s := range rc.Prefixes {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() {
			return fmt.Errorf("prefixes: %q is not an IPv6 prefix", s)
		}
		rc.prefixes = append(rc.prefixes, p.Masked())
	}
	rc.rdnss = rc.rdnss[:0]
	for _, s := range rc.RDNSS {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is6() || a.Is4In6() {
			return fmt.Errorf("rdnss: %q is not an IPv6 address", s)
		}
		rc.rdnss = append(rc.rdnss, a.As16())
	}
	if rc.Interval == 0 {
		rc.Interval = 600 * time.Second
	}
	if rc.Interval < 4*time.Second || rc.Interval > 1800*time.Second {
		return fmt.Errorf("interval %v out of range 4s..1800s", rc.Interval)
	}
	if rc.Lifetime == nil {
		l := 3 * rc.Interval
		rc.Lifetime = &l
	}
	if *rc.Lifetime < 0 || *rc.Lifetime > 9000*time.Second || (*rc.Lifetime != 0 && *rc.Lifetime < rc.Interval) {
		return fmt.Errorf("lifetime %v: want 0 or interval..9000s", *rc.Lifetime)
	}
	if rc.HopLimit == nil {
		h := 64
		rc.HopLimit = &h
	}
	if *rc.HopLimit < 0 || *rc.HopLimit > 255 {
		return fmt.Errorf("hop_limit %d out of range 0..255", *rc.HopLimit)
	}
	if rc.PrefixValidLifetime == 0 {
		rc.PrefixValidLifetime = 24 * time.Hour
	}
	if rc.PrefixPreferredLifetime == 0 {
		rc.PrefixPreferredLifetime = 4 * time.Hour
	}
	if rc.PrefixPreferredLifetime > rc.PrefixValidLifetime {
		return errors.New("prefix_preferred_lifetime exceeds prefix_valid_lifetime")
	}
	if rc.RDNSSLifetime == 0 {
		rc.RDNSSLifetime = 3 * rc.Interval
	}
	if rc.MTU != 0 && (rc.MTU < 1280 || rc.MTU > 65535) {
		return fmt.Errorf("mtu %d out of range 1280..65535", rc.MTU)
	}
	return nil
}

// Validate checks ranges.
func (m *Module) Validate() error {
	if m.HopLimit < 1 || m.HopLimit > 255 {
		return fmt.Errorf("hop_limit %d out of range 1..255", m.HopLimit)
	}
	if m.MaxExtensionHeaders < 1 || m.MaxExtensionHeaders > 64 {
		return fmt.Errorf("max_extension_headers %d out of range 1..64", m.MaxExtensionHeaders)
	}
	c := &m.proto.cfg
	if err := ipconf.CheckLimiter(&c.rate); err != nil {
		return err
	}
	if err := m.Reassembly.Validate(); err != nil {
		return err
	}
	if m.PathMTU.Timeout < time.Minute || m.PathMTU.MaxEntries < 1 {
		return errors.New("path_mtu: timeout must be at least 1m and max_entries at least 1")
	}
	if c.dadTransmits < 0 || c.dadTransmits > 10 {
		return fmt.Errorf("dad.transmits %d out of range 0..10", c.dadTransmits)
	}
	if c.dadRetrans < 10*time.Millisecond || c.dadRetrans > time.Minute {
		return fmt.Errorf("dad.retrans_timer %v out of range 10ms..1m", c.dadRetrans)
	}
	if c.rsCount < 0 || c.rsCount > 10 {
		return fmt.Errorf("router_solicitations %d out of range 0..10", c.rsCount)
	}
	if len(c.ra) > 0 && !c.linkLocal {
		return errors.New("router_advertisements need link_local: a router advertises from its link-local address")
	}
	n := &m.NDP
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ndp.base_reachable_time", n.BaseReachableTime}, {"ndp.retransmit_timer", n.RetransmitTimer},
		{"ndp.delay_first_probe_time", n.DelayFirstProbeTime}, {"ndp.gc_stale_time", n.GCStaleTime},
	} {
		if d.v != 0 && (d.v < time.Millisecond || d.v > 24*time.Hour) {
			return fmt.Errorf("%s %v out of range 1ms..24h", d.name, d.v)
		}
	}
	for _, v := range []struct {
		name  string
		v, hi int
	}{
		{"ndp.max_multicast_probes", n.MaxMulticastProbes, 255}, {"ndp.max_unicast_probes", n.MaxUnicastProbes, 255},
		{"ndp.max_entries", n.MaxEntries, 1 << 20}, {"ndp.pending_packets", n.PendingPackets, 1024},
		{"ndp.pending_packets_total", n.PendingPacketsTotal, 1 << 20},
	} {
		if v.v < 0 || v.v > v.hi {
			return fmt.Errorf("%s %d out of range 1..%d", v.name, v.v, v.hi)
		}
	}
	if c.nud.MaxPendingTotal < c.nud.MaxPendingPackets {
		return errors.New("ndp.pending_packets_total must be at least ndp.pending_packets")
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
