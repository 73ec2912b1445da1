package conntrack

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// The nat table's targets (filter.target.snat, dnat, masquerade,
// redirect). They run only on a connection's first packet (the table's
// gate), pick a binding and set it with AlterReply; the per-packet
// rewrite is natHook's. Each ends the nat table (as netfilter's, whose
// verdict is accept), or drops the packet when no free tuple is left.

func init() {
	pipeline.RegisterModule(new(SNAT))
	pipeline.RegisterModule(new(DNAT))
	pipeline.RegisterModule(new(Masquerade))
	pipeline.RegisterModule(new(Redirect))
}

// natRange is a parsed --to-source / --to-destination / --to-ports.
type natRange struct {
	hasAddr    bool
	fam        int
	lo, hi     netip.Addr
	hasPorts   bool
	plo, phi   uint16
	random     bool
	persistent bool
}

// parseRange parses addr[-addr][:port[-port]] (IPv6 addresses in brackets
// when ports follow: [2001:db8::1]-[2001:db8::9]:80-90).
func parseRange(s string) (natRange, error) {
	var r natRange
	addrs, ports := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		if i := strings.LastIndex(s, "]:"); i >= 0 {
			addrs, ports = s[:i+1], s[i+2:]
		}
		addrs = strings.NewReplacer("[", "", "]", "").Replace(addrs)
	case strings.Count(s, ":") == 1:
		addrs, ports, _ = strings.Cut(s, ":")
	}
	if addrs != "" {
		a, b, isRange := strings.Cut(addrs, "-")
		lo, err := netip.ParseAddr(a)
		if err != nil || lo.Zone() != "" {
			return r, fmt.Errorf("bad address %q", a)
		}
		hi := lo
		if isRange {
			if hi, err = netip.ParseAddr(b); err != nil || hi.Is4() != lo.Is4() || hi.Less(lo) {
				return r, fmt.Errorf("bad address range %q", addrs)
			}
			if l, h := lo.As16(), hi.As16(); [12]byte(l[:12]) != [12]byte(h[:12]) {
				return r, fmt.Errorf("address range %q: at most 2^32 addresses (the first 96 bits alike)", addrs)
			}
		}
		r.hasAddr, r.lo, r.hi, r.fam = true, lo, hi, 4
		if !lo.Is4() {
			r.fam = 6
		}
	}
	if ports != "" {
		lo, hi, err := parsePorts(ports)
		if err != nil {
			return r, err
		}
		r.hasPorts, r.plo, r.phi = true, lo, hi
	}
	if !r.hasAddr && !r.hasPorts {
		return r, fmt.Errorf("empty range %q", s)
	}
	return r, nil
}

// parsePorts parses port[-port] (1..65535).
func parsePorts(s string) (uint16, uint16, error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err := strconv.ParseUint(a, 10, 16)
	if err != nil || lo == 0 {
		return 0, 0, fmt.Errorf("bad port %q", a)
	}
	hi := lo
	if isRange {
		if hi, err = strconv.ParseUint(b, 10, 16); err != nil || hi < lo {
			return 0, 0, fmt.Errorf("bad port range %q", s)
		}
	}
	return uint16(lo), uint16(hi), nil
}

func (r *natRange) String() string {
	var s string
	if r.hasAddr {
		s = r.lo.String()
		if r.hi != r.lo {
			s += "-" + r.hi.String()
		}
		if r.fam == 6 && r.hasPorts {
			s = "[" + strings.ReplaceAll(s, "-", "]-[") + "]"
		}
	}
	if r.hasPorts {
		s += ":" + portsString(r.plo, r.phi)
	}
	return s
}

func portsString(lo, hi uint16) string {
	if lo == hi {
		return strconv.Itoa(int(lo))
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

// pickAddr chooses the range's address for a flow: by a hash of its
// source and destination (persistent: the source alone), as Linux's
// find_best_ips_proto, so that one client keeps one address.
func (r *natRange) pickAddr(orig *Key) [16]byte {
	lo, hi := addrKey16(r.lo), addrKey16(r.hi)
	off := 12
	if r.fam == 4 {
		off = 0
	}
	l, h := binary.BigEndian.Uint32(lo[off:]), binary.BigEndian.Uint32(hi[off:])
	if l == h {
		return lo
	}
	k := Key{Src: orig.Src, Family: orig.Family}
	if !r.persistent {
		k.Dst = orig.Dst
	}
	n := uint64(h-l) + 1
	binary.BigEndian.PutUint32(lo[off:], l+uint32(k.hash(0x6e6174)%n))
	return lo
}

// setupNAT makes the binding of the first packet pc carries: the reply
// key with the new address (nil: keep it) and a port (or ICMP id) that no
// other entry uses, the original one when it is free and allowed. dst:
// destination NAT. false: the entry is gone or no free tuple is left
// (the packet is dropped).
func setupNAT(h *holder, pc *pipeline.PacketContext, addr *[16]byte, rg *natRange, dst bool) bool {
	e, ref := h.entryOf(pc.Pkt)
	t := h.t.Load()
	if e == nil || t == nil {
		return false
	}
	e.mu.Lock()
	if !e.Valid(ref) {
		e.mu.Unlock()
		return false
	}
	orig, reply := e.orig.tuple, e.reply.tuple
	e.mu.Unlock()
	defer e.status.Or(doneBit(dst))
	// A flow whose reply key another entry has (nullbind.go) must change
	// it, whatever the binding.
	pending := e.status.Load()&statusReplyPending != 0
	cand := reply
	if addr != nil {
		if dst {
			cand.Src = *addr
		} else {
			cand.Dst = *addr
		}
	}
	// The "port" NAT may change: the reply's destination port for source
	// NAT, its source port for destination NAT; for ICMP the echo id, and
	// only by source NAT.
	var port *uint16
	icmp := cand.Proto == wire.ProtocolICMP || cand.Proto == wire.ProtocolICMPv6
	switch {
	case portRewritten(cand.Proto) && dst:
		port = &cand.SPort
	case portRewritten(cand.Proto):
		port = &cand.DPort
	case icmp && !dst:
		port = &cand.SPort
	}
	try := func() bool {
		if cand == reply && !pending {
			return true // nothing changes: the entry's own key
		}
		return !t.TupleTaken(&cand) && t.AlterReply(ref, cand)
	}
	if port == nil {
		return try()
	}
	cur := *port
	lo, hi := uint16(1), uint16(65535)
	switch {
	case rg != nil && rg.hasPorts:
		lo, hi = rg.plo, rg.phi
	case dst:
		return try() // DNAT without ports keeps the port
	case icmp:
		lo, hi = 0, 65535
	case cur < 512:
		lo, hi = 1, 511
	case cur < 1024:
		lo, hi = 600, 1023
	default:
		lo, hi = 1024, 65535
	}
	random := rg != nil && rg.random
	if !random && cur >= lo && cur <= hi && try() {
		return true
	}
	n := uint32(hi) - uint32(lo) + 1
	var off uint32
	if random {
		off = rand.Uint32()
	} else {
		off = uint32(orig.hash(0x706f7274))
	}
	attempts := n
	if attempts > 1024 {
		attempts = 1024
	}
	for i := uint32(0); i < attempts; i++ {
		*port = lo + uint16((off+i)%n)
		if try() {
			return true
		}
		if !e.Valid(ref) || e.status.Load()&StatusConfirmed != 0 {
			return false
		}
	}
	return false
}

// natOpts are the options every NAT target shares (each target has
// them as its own fields: the filter decodes options strictly, without
// inlined structs).
type natOpts struct {
	Random      string `yaml:"random"`
	RandomFully string `yaml:"random_fully"`
	Persistent  string `yaml:"persistent"`
}

func (o natOpts) flags(r *natRange) string {
	var s string
	if o.Random == "true" || o.RandomFully == "true" {
		r.random = true
	}
	if o.Random == "true" {
		s += " --random"
	}
	if o.RandomFully == "true" {
		s += " --random-fully"
	}
	if o.Persistent == "true" {
		r.persistent = true
		s += " --persistent"
	}
	return s
}

var randomOpts = []filter.Opt{{Name: "random", Args: 0}, {Name: "random-fully", Args: 0}, {Name: "persistent", Args: 0}}

// SNAT is filter.target.snat: --to-source addr[-addr][:port[-port]]
// (Postrouting, Input).
type SNAT struct {
	ToSource    string `yaml:"to_source"`
	Random      string `yaml:"random"`
	RandomFully string `yaml:"random_fully"`
	Persistent  string `yaml:"persistent"`

	h     *holder
	rg    natRange
	flags string
}

// PipelineModule implements pipeline.Module.
func (*SNAT) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.snat", Summary: "SNAT --to-source addr[-addr][:port[-port]]: source NAT of a new connection (nat table, POSTROUTING/INPUT); needs netfilter.conntrack", New: func() pipeline.Module { return new(SNAT) }}
}

// Options implements filter.Target.
func (*SNAT) Options() []filter.Opt {
	return append([]filter.Opt{{Name: "to-source", Args: 1}}, randomOpts...)
}

// Provision parses the range.
func (t *SNAT) Provision(ctx *pipeline.Context) error {
	if t.ToSource == "" {
		return fmt.Errorf("SNAT: give --to-source")
	}
	var err error
	if t.rg, err = parseRange(t.ToSource); err != nil {
		return fmt.Errorf("SNAT --to-source: %v", err)
	}
	if !t.rg.hasAddr {
		return fmt.Errorf("SNAT --to-source %q: an address is needed", t.ToSource)
	}
	t.flags, t.h = natOpts{t.Random, t.RandomFully, t.Persistent}.flags(&t.rg), sharedHolder(ctx)
	return nil
}

// origOf is the original key of the packet's entry.
func origOf(h *holder, p *pipeline.Packet) (Key, bool) {
	e, r := h.entryOf(p)
	if e == nil {
		return Key{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.orig.tuple, e.Valid(r)
}

// Action implements pipeline.Target.
func (t *SNAT) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	orig, ok := origOf(t.h, pc.Pkt)
	if !ok || int(orig.Family) != t.rg.fam {
		return pipeline.VerdictAccept, 0
	}
	a := t.rg.pickAddr(&orig)
	return natVerdict(setupNAT(t.h, pc, &a, &t.rg, false)), 0
}

func natVerdict(ok bool) pipeline.Verdict {
	if ok {
		return pipeline.VerdictAccept
	}
	return pipeline.VerdictDrop
}

// Family implements the filter's family check: the address's.
func (t *SNAT) Family() int { return t.rg.fam }

// Tables implements the filter's table check.
func (*SNAT) Tables() []string { return []string{"nat"} }

// Hooks implements the filter's hook check.
func (*SNAT) Hooks() uint8 { return 1<<pipeline.Postrouting | 1<<pipeline.Input }

// Spec implements filter.Target.
func (t *SNAT) Spec() string { return "-j SNAT --to-source " + t.rg.String() + t.flags }

// Label implements filter.Target.
func (*SNAT) Label() string { return "SNAT" }

// DNAT is filter.target.dnat: --to-destination addr[-addr][:port[-port]]
// (Prerouting, Output).
type DNAT struct {
	ToDestination string `yaml:"to_destination"`
	Random        string `yaml:"random"`
	RandomFully   string `yaml:"random_fully"`
	Persistent    string `yaml:"persistent"`

	h     *holder
	rg    natRange
	flags string
}

// PipelineModule implements pipeline.Module.
func (*DNAT) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.dnat", Summary: "DNAT --to-destination addr[-addr][:port[-port]]: destination NAT of a new connection (nat table, PREROUTING/OUTPUT); needs netfilter.conntrack", New: func() pipeline.Module { return new(DNAT) }}
}

// Options implements filter.Target.
func (*DNAT) Options() []filter.Opt {
	return append([]filter.Opt{{Name: "to-destination", Args: 1}}, randomOpts...)
}

// Provision parses the range.
func (t *DNAT) Provision(ctx *pipeline.Context) error {
	if t.ToDestination == "" {
		return fmt.Errorf("DNAT: give --to-destination")
	}
	var err error
	if t.rg, err = parseRange(t.ToDestination); err != nil {
		return fmt.Errorf("DNAT --to-destination: %v", err)
	}
	t.flags, t.h = natOpts{t.Random, t.RandomFully, t.Persistent}.flags(&t.rg), sharedHolder(ctx)
	return nil
}

// Action implements pipeline.Target.
func (t *DNAT) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	orig, ok := origOf(t.h, pc.Pkt)
	if !ok || (t.rg.hasAddr && int(orig.Family) != t.rg.fam) {
		return pipeline.VerdictAccept, 0
	}
	if !t.rg.hasAddr {
		return natVerdict(setupNAT(t.h, pc, nil, &t.rg, true)), 0
	}
	a := t.rg.pickAddr(&orig)
	return natVerdict(setupNAT(t.h, pc, &a, &t.rg, true)), 0
}

// Family implements the filter's family check.
func (t *DNAT) Family() int { return t.rg.fam }

// Tables implements the filter's table check.
func (*DNAT) Tables() []string { return []string{"nat"} }

// Hooks implements the filter's hook check.
func (*DNAT) Hooks() uint8 { return 1<<pipeline.Prerouting | 1<<pipeline.Output }

// Spec implements filter.Target.
func (t *DNAT) Spec() string { return "-j DNAT --to-destination " + t.rg.String() + t.flags }

// Label implements filter.Target.
func (*DNAT) Label() string { return "DNAT" }

// Masquerade is filter.target.masquerade: source NAT to the out-link's
// address (chosen at the connection's first packet), --to-ports
// port[-port] (Postrouting).
type Masquerade struct {
	ToPorts     string `yaml:"to_ports"`
	Random      string `yaml:"random"`
	RandomFully string `yaml:"random_fully"`
	Persistent  string `yaml:"persistent"`

	h     *holder
	rg    natRange
	flags string
}

// PipelineModule implements pipeline.Module.
func (*Masquerade) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.masquerade", Summary: "MASQUERADE [--to-ports p[-p]]: source NAT to the out-link's address (nat table, POSTROUTING); needs netfilter.conntrack", New: func() pipeline.Module { return new(Masquerade) }}
}

// Options implements filter.Target.
func (*Masquerade) Options() []filter.Opt {
	return append([]filter.Opt{{Name: "to-ports", Args: 1}}, randomOpts...)
}

// Provision parses the ports.
func (t *Masquerade) Provision(ctx *pipeline.Context) error {
	if t.ToPorts != "" {
		lo, hi, err := parsePorts(t.ToPorts)
		if err != nil {
			return fmt.Errorf("MASQUERADE --to-ports: %v", err)
		}
		t.rg.hasPorts, t.rg.plo, t.rg.phi = true, lo, hi
	}
	t.flags, t.h = natOpts{t.Random, t.RandomFully, t.Persistent}.flags(&t.rg), sharedHolder(ctx)
	return nil
}

// Action implements pipeline.Target.
func (t *Masquerade) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	if pc.Batch == nil {
		return pipeline.VerdictDrop, 0
	}
	nic, ok := pc.Batch.Gen.NIC(pc.OutNIC)
	if !ok {
		return pipeline.VerdictDrop, 0
	}
	src, ok := nic.SourceAddress(pc.Tuple.Dst)
	if !ok {
		return pipeline.VerdictDrop, 0 // Linux: no address on the out-link, dropped
	}
	a := addrKey16(src)
	if !setupNAT(t.h, pc, &a, &t.rg, false) {
		return pipeline.VerdictDrop, 0
	}
	// Bound to the out-link: flushed when it loses the address or goes
	// down (FlushMasquerade).
	if e, r := t.h.entryOf(pc.Pkt); e != nil && e.Valid(r) {
		e.masq.Store(uint32(pc.OutNIC) + 1)
	}
	return pipeline.VerdictAccept, 0
}

// Tables implements the filter's table check.
func (*Masquerade) Tables() []string { return []string{"nat"} }

// Hooks implements the filter's hook check.
func (*Masquerade) Hooks() uint8 { return 1 << pipeline.Postrouting }

// Spec implements filter.Target.
func (t *Masquerade) Spec() string {
	s := "-j MASQUERADE"
	if t.rg.hasPorts {
		s += " --to-ports " + portsString(t.rg.plo, t.rg.phi)
	}
	return s + t.flags
}

// Label implements filter.Target.
func (*Masquerade) Label() string { return "MASQUERADE" }

// Redirect is filter.target.redirect: destination NAT to the in-link's
// primary address (the loopback address for locally generated packets),
// --to-ports port[-port] (Prerouting, Output).
type Redirect struct {
	ToPorts     string `yaml:"to_ports"`
	Random      string `yaml:"random"`
	RandomFully string `yaml:"random_fully"`
	Persistent  string `yaml:"persistent"`

	h     *holder
	rg    natRange
	flags string
}

// PipelineModule implements pipeline.Module.
func (*Redirect) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.redirect", Summary: "REDIRECT [--to-ports p[-p]]: destination NAT to the stack itself (nat table, PREROUTING/OUTPUT); needs netfilter.conntrack", New: func() pipeline.Module { return new(Redirect) }}
}

// Options implements filter.Target.
func (*Redirect) Options() []filter.Opt {
	return append([]filter.Opt{{Name: "to-ports", Args: 1}}, randomOpts...)
}

// Provision parses the ports.
func (t *Redirect) Provision(ctx *pipeline.Context) error {
	if t.ToPorts != "" {
		lo, hi, err := parsePorts(t.ToPorts)
		if err != nil {
			return fmt.Errorf("REDIRECT --to-ports: %v", err)
		}
		t.rg.hasPorts, t.rg.plo, t.rg.phi = true, lo, hi
	}
	t.flags, t.h = natOpts{t.Random, t.RandomFully, t.Persistent}.flags(&t.rg), sharedHolder(ctx)
	return nil
}

var (
	loop4 = addrKey16(netip.AddrFrom4([4]byte{127, 0, 0, 1}))
	loop6 = addrKey16(netip.IPv6Loopback())
)

// Action implements pipeline.Target.
func (t *Redirect) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	var a [16]byte
	fam := 4
	if !pc.Tuple.Dst.Is4() {
		fam = 6
	}
	switch {
	case pc.Hook == pipeline.Output:
		a = loop4
		if fam == 6 {
			a = loop6
		}
	case pc.Batch == nil:
		return pipeline.VerdictDrop, 0
	default:
		nic, ok := pc.Batch.Gen.NIC(pc.InNIC)
		if !ok {
			return pipeline.VerdictDrop, 0
		}
		p, ok := nic.PrimaryAddress(fam)
		if !ok {
			return pipeline.VerdictDrop, 0 // no address on the in-link: Linux drops
		}
		a = addrKey16(p.Addr())
	}
	return natVerdict(setupNAT(t.h, pc, &a, &t.rg, true)), 0
}

// Tables implements the filter's table check.
func (*Redirect) Tables() []string { return []string{"nat"} }

// Hooks implements the filter's hook check.
func (*Redirect) Hooks() uint8 { return 1<<pipeline.Prerouting | 1<<pipeline.Output }

// Spec implements filter.Target.
func (t *Redirect) Spec() string {
	s := "-j REDIRECT"
	if t.rg.hasPorts {
		s += " --to-ports " + portsString(t.rg.plo, t.rg.phi)
	}
	return s + t.flags
}

// Label implements filter.Target.
func (*Redirect) Label() string { return "REDIRECT" }

var (
	_ filter.Target = (*SNAT)(nil)
	_ filter.Target = (*DNAT)(nil)
	_ filter.Target = (*Masquerade)(nil)
	_ filter.Target = (*Redirect)(nil)
)
