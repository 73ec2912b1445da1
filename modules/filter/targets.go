package filter

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pipestack/pipestack/modules/internal/tcpreset"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

func init() {
	pipeline.RegisterModule(&Verdict{name: "accept"})
	pipeline.RegisterModule(&Verdict{name: "drop"})
	pipeline.RegisterModule(&Verdict{name: "return"})
	pipeline.RegisterModule(&Jump{})
	pipeline.RegisterModule(&Jump{isGoto: true})
	pipeline.RegisterModule(new(Reject))
	pipeline.RegisterModule(new(Log))
	pipeline.RegisterModule(new(MarkTarget))
	pipeline.RegisterModule(&HopTarget{})
	pipeline.RegisterModule(&HopTarget{v6: true})
	pipeline.RegisterModule(new(NoTrack))
	pipeline.RegisterModule(new(TCPMSS))
}

// Verdict is filter.target.accept, .drop and .return: no options.
type Verdict struct {
	name string
	v    pipeline.Verdict
}

// PipelineModule implements pipeline.Module.
func (t *Verdict) PipelineModule() pipeline.ModuleInfo {
	name := t.name
	sum := map[string]string{"accept": "ACCEPT: the packet leaves this table's hook", "drop": "DROP: the packet is dropped", "return": "RETURN: back to the calling chain (the policy in a built-in chain)"}[name]
	return pipeline.ModuleInfo{ID: "filter.target." + name, Summary: sum, New: func() pipeline.Module { return newVerdict(name) }}
}

func newVerdict(name string) *Verdict {
	v := map[string]pipeline.Verdict{"accept": pipeline.VerdictAccept, "drop": pipeline.VerdictDrop, "return": pipeline.VerdictReturn}[name]
	return &Verdict{name: name, v: v}
}

// Options implements Target.
func (*Verdict) Options() []Opt { return nil }

// Action implements pipeline.Target.
func (t *Verdict) Action(*pipeline.PacketContext) (pipeline.Verdict, int) { return t.v, 0 }

// Spec implements Target.
func (t *Verdict) Spec() string { return "-j " + t.Label() }

// Label implements Target.
func (t *Verdict) Label() string { return strings.ToUpper(t.name) }

// Jump is filter.target.jump and filter.target.goto: chain: NAME (a user
// chain of the same table). A goto pushes no return frame: a return in
// the chain gone to goes back past the chain that went there.
type Jump struct {
	Chain  string `yaml:"chain"`
	isGoto bool
}

// PipelineModule implements pipeline.Module.
func (t *Jump) PipelineModule() pipeline.ModuleInfo {
	if t.isGoto {
		return pipeline.ModuleInfo{ID: "filter.target.goto", Summary: "-g CHAIN: continue in a user chain without a return frame", New: func() pipeline.Module { return &Jump{isGoto: true} }}
	}
	return pipeline.ModuleInfo{ID: "filter.target.jump", Summary: "-j CHAIN: continue in a user chain, then come back", New: func() pipeline.Module { return &Jump{} }}
}

// Options implements Target.
func (*Jump) Options() []Opt { return nil }

// Validate checks the chain name.
func (t *Jump) Validate() error {
	if t.Chain == "" {
		return fmt.Errorf("chain: is required")
	}
	return nil
}

// Action implements pipeline.Target (the rule's compiled target answers
// instead: see countedJump).
func (t *Jump) Action(*pipeline.PacketContext) (pipeline.Verdict, int) {
	return pipeline.VerdictDrop, 0
}

// Spec implements Target.
func (t *Jump) Spec() string {
	if t.isGoto {
		return "-g " + t.Chain
	}
	return "-j " + t.Chain
}

// Label implements Target.
func (t *Jump) Label() string { return t.Chain }

// rejectKinds are REJECT's --reject-with values: the error kind handed to
// the network endpoint's ReturnError and the family it is for.
var rejectKinds = []struct {
	name   string
	kind   pipeline.TransportErrorKind
	family int
}{
	{"icmp-net-unreachable", pipeline.ErrorNetUnreachable, 4},
	{"icmp-host-unreachable", pipeline.ErrorHostUnreachable, 4},
	{"icmp-port-unreachable", pipeline.ErrorPortUnreachable, 4},
	{"icmp-proto-unreachable", pipeline.ErrorProtocolUnreachable, 4},
	{"icmp-net-prohibited", pipeline.ErrorNetProhibited, 4},
	{"icmp-host-prohibited", pipeline.ErrorHostProhibited, 4},
	{"icmp-admin-prohibited", pipeline.ErrorAdminProhibited, 4},
	{"icmp6-no-route", pipeline.ErrorNetUnreachable, 6},
	{"no-route", pipeline.ErrorNetUnreachable, 6},
	{"icmp6-adm-prohibited", pipeline.ErrorAdminProhibited, 6},
	{"adm-prohibited", pipeline.ErrorAdminProhibited, 6},
	{"icmp6-addr-unreachable", pipeline.ErrorHostUnreachable, 6},
	{"addr-unreach", pipeline.ErrorHostUnreachable, 6},
	{"icmp6-port-unreachable", pipeline.ErrorPortUnreachable, 6},
	{"tcp-reset", 0, 0},
}

// Reject is filter.target.reject: --reject-with TYPE (default
// icmp-port-unreachable, or icmp6-port-unreachable for an IPv6 rule): the
// error is sent through the network endpoint's ReturnError (rate limited
// as that protocol's errors are) and the packet is dropped. Filter table
// only, at input, forward and output, as Linux.
type Reject struct {
	RejectWith string `yaml:"reject_with"`

	kind   pipeline.TransportErrorKind
	family int
	reset  bool
	env    *provisionEnv
	sent   *pipeline.Counter
	pool   *pipeline.Pool
}

// PipelineModule implements pipeline.Module.
func (*Reject) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.reject", Summary: "REJECT: drop and answer with an ICMP error or a TCP reset", New: func() pipeline.Module { return new(Reject) }}
}

// Options implements Target.
func (*Reject) Options() []Opt { return []Opt{{Name: "reject-with", Args: 1}} }

func (t *Reject) setEnv(e *provisionEnv) { t.env = e }

// Provision parses the type.
func (t *Reject) Provision(ctx *pipeline.Context) error {
	t.pool = pipeline.DefaultPool
	if ctx != nil && ctx.Pool != nil {
		t.pool = ctx.Pool
	}
	if t.env != nil && t.env.counters != nil {
		t.sent = t.env.counters.Get("rejected")
	}
	if t.RejectWith == "" {
		t.kind = pipeline.ErrorPortUnreachable
		return nil
	}
	var names []string
	for _, k := range rejectKinds {
		names = append(names, k.name)
		if strings.EqualFold(k.name, t.RejectWith) {
			t.kind, t.family, t.reset = k.kind, k.family, k.name == "tcp-reset"
			return nil
		}
	}
	return fmt.Errorf("reject_with %q: unknown (%s)", t.RejectWith, strings.Join(names, ", "))
}

// Family implements familyMatch: icmp-* types are IPv4's, icmp6-* IPv6's.
func (t *Reject) Family() int { return t.family }

// Tables implements tableLimited.
func (*Reject) Tables() []string { return []string{"filter"} }

// Hooks implements hookLimited.
func (*Reject) Hooks() uint8 { return hIn | hFwd | hOut }

func (t *Reject) validateRule(r *rule) error {
	if t.reset && (r.base == nil || !r.base.protoSet || r.base.protoInv || r.base.proto != 6) {
		return fmt.Errorf("REJECT target: tcp-reset is only valid with -p tcp (proto: tcp)")
	}
	return nil
}

// Action implements pipeline.Target: the network endpoint of the packet's
// NIC sends the error and takes the packet.
func (t *Reject) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	b := pc.Batch
	if b == nil {
		return pipeline.VerdictDrop, 0
	}
	nic := pc.Pkt.InNIC
	if nic == 0 {
		nic = pc.Pkt.OutNIC
	}
	ep := b.Gen.NetworkEndpoint(nic, pc.Pkt.NetProto)
	if ep == nil {
		return pipeline.VerdictDrop, 0
	}
	if t.reset {
		t.sendReset(pc)
		return pipeline.VerdictDrop, 0
	}
	if !unreachOK(pc) {
		return pipeline.VerdictDrop, 0
	}
	if t.sent != nil {
		t.sent.Inc()
	}
	ep.ReturnError(b, pc.Pkt, t.kind)
	return pipeline.VerdictStolen, 0
}

// unreachOK is Linux's test before REJECT sends an ICMP error
// (nf_send_unreach, reject6_csum_ok): none about a non-first fragment, and
// none about a packet whose transport checksum is wrong — which a first
// fragment's is bound to be (the sum covers the whole datagram), so a
// fragmented TCP, UDP or ICMP datagram gets no error at all. Not checked:
// a checksum the link verified (Packet.CsumVerified, also a partial one
// the local kernel left to the device), UDP without a checksum, and the
// protocols whose integrity check is another (GRE, ESP, AH, SCTP, UDP-Lite,
// DCCP). IPv4 sums TCP and UDP with the pseudo-header, other protocols
// without; IPv6 sums every protocol with it. The packet is dropped
// without an answer when this fails (as Linux's REJECT does).
func unreachOK(pc *pipeline.PacketContext) bool {
	seg, fragOff, ok := l4(pc)
	if !ok || fragOff != 0 || pc.Fragment {
		return false
	}
	v6 := pc.Pkt.NetProto == pipeline.IPv6ProtocolNumber
	if v6 && len(seg) == 0 {
		return false
	}
	if pc.Pkt.CsumVerified || pc.Pkt.GSO.NeedsCsum {
		return true
	}
	proto := uint8(pc.Tuple.Proto)
	switch proto {
	case wire.ProtocolUDP:
		if len(seg) >= 8 && seg[6] == 0 && seg[7] == 0 {
			return true
		}
	case 33, 47, 50, 51, 132, 136: // DCCP, GRE, ESP, AH, SCTP, UDP-Lite
		return true
	}
	if len(seg) > 0xffff {
		return false
	}
	var initial uint16
	if nh := pc.Pkt.NetworkHeader(); v6 {
		h := wire.IPv6(nh)
		s, d := h.Src(), h.Dst()
		initial = wire.PseudoHeaderChecksum(proto, s[:], d[:], uint16(len(seg)))
	} else if proto == wire.ProtocolTCP || proto == wire.ProtocolUDP {
		h := wire.IPv4(nh)
		s, d := h.Src(), h.Dst()
		initial = wire.PseudoHeaderChecksum(proto, s[:], d[:], uint16(len(seg)))
	}
	return wire.Checksum(seg, initial) == 0xffff
}

// sendReset answers a TCP segment with a reset from its destination, as
// Linux's nf_send_reset: not for a fragment, a reset, a bad checksum or a
// broadcast or multicast destination. The caller drops the packet.
func (t *Reject) sendReset(pc *pipeline.PacketContext) {
	b, pkt := pc.Batch, pc.Pkt
	seg, fragOff, ok := l4(pc)
	if !ok || fragOff != 0 || pc.Tuple.Proto != pipeline.TCPProtocolNumber {
		return
	}
	nh := pkt.NetworkHeader()
	if !pkt.CsumVerified && !tcpreset.ChecksumValid(nh, seg) {
		return
	}
	dst, src := pc.Tuple.Dst, pc.Tuple.Src
	if dst.IsMulticast() || pkt.PktType != pipeline.PacketHost || !src.IsValid() || src.IsUnspecified() || src.IsMulticast() {
		return
	}
	if dst.Is4() {
		if _, bc, ok := b.Gen.IsLocal4(dst.As4()); ok && bc {
			return
		}
	}
	var nic pipeline.NICID
	var hop netip.Addr
	if src.Is6() && src.IsLinkLocalUnicast() {
		nic, hop = pkt.InNIC, src
	} else if r := b.Gen.Routes().Lookup(src); r != nil {
		nic, hop = r.NIC, r.NextHop(src)
	}
	out, found := b.Gen.NIC(nic)
	ep := b.Gen.NetworkEndpoint(nic, pkt.NetProto)
	if !found || ep == nil {
		return
	}
	rst, from, to, ok := tcpreset.Build(t.pool, nh, seg)
	if !ok {
		return
	}
	rst.InNIC = pkt.InNIC
	if t.sent != nil {
		t.sent.Inc()
	}
	one := [1]*pipeline.Packet{rst}
	ep.WritePackets(b, pipeline.RouteInfo{NIC: nic, LocalAddr: from, RemoteAddr: to, NextHop: hop, MTU: out.MTU()},
		pipeline.NetworkHeaderParams{Protocol: pipeline.TCPProtocolNumber}, one[:])
}

// Spec implements Target.
func (t *Reject) Spec() string {
	w := t.RejectWith
	if w == "" {
		return "-j REJECT"
	}
	return "-j REJECT --reject-with " + strings.ToLower(w)
}

// Label implements Target.
func (*Reject) Label() string { return "REJECT" }

// Log is filter.target.log: --log-prefix TEXT (up to 29 bytes, as Linux),
// --log-level LEVEL (emerg … debug or 0..7: zerolog's levels), and
// pipestack's --log-rate / --log-burst (default 10/second, burst 20): a
// rule logs at most that often. An entry goes into a bounded ring that a
// logger goroutine drains, so a worker never waits on the log; a full ring
// drops the entry and counts it (filter counter log_dropped), as does the
// rate limit (log_limited). Non-terminating: the next rule follows.
type Log struct {
	LogPrefix string `yaml:"log_prefix"`
	LogLevel  string `yaml:"log_level"`
	LogRate   string `yaml:"log_rate"`
	LogBurst  int    `yaml:"log_burst"`

	level   int8
	iv      int64
	b       bucket
	env     *provisionEnv
	limited *pipeline.Counter
}

// PipelineModule implements pipeline.Module.
func (*Log) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.log", Summary: "LOG: a rate-limited log line per packet, off the packet path", New: func() pipeline.Module { return new(Log) }}
}

// Options implements Target.
func (*Log) Options() []Opt {
	return []Opt{{Name: "log-prefix", Args: 1}, {Name: "log-level", Args: 1}, {Name: "log-rate", Args: 1}, {Name: "log-burst", Args: 1}}
}

func (t *Log) setEnv(e *provisionEnv) { t.env = e }

var logLevels = map[string]int8{
	"emerg": 4, "alert": 4, "crit": 4, "err": 3, "error": 3, "warning": 2, "warn": 2, "notice": 1, "info": 1, "debug": 0,
	"0": 4, "1": 4, "2": 4, "3": 3, "4": 2, "5": 1, "6": 1, "7": 0,
}

// Provision sets the defaults.
func (t *Log) Provision(*pipeline.Context) error {
	if t.LogLevel == "" {
		t.LogLevel = "warning"
	}
	l, ok := logLevels[strings.ToLower(t.LogLevel)]
	if !ok {
		return fmt.Errorf("log_level %q: emerg, alert, crit, err, warning, notice, info, debug or 0..7", t.LogLevel)
	}
	t.level = l
	if t.LogRate == "" {
		t.LogRate = "10/second"
	}
	iv, err := parseRate(t.LogRate)
	if err != nil {
		return fmt.Errorf("log_rate: %v", err)
	}
	if t.LogBurst == 0 {
		t.LogBurst = 20
	}
	t.b.init(iv, t.LogBurst)
	if t.env != nil && t.env.counters != nil {
		t.limited = t.env.counters.Get("log_limited")
	}
	return nil
}

// Validate checks the prefix and burst.
func (t *Log) Validate() error {
	if len(t.LogPrefix) > 29 {
		return fmt.Errorf("log_prefix is %d bytes, at most 29", len(t.LogPrefix))
	}
	if t.LogBurst < 1 || t.LogBurst > 10000 {
		return fmt.Errorf("log_burst %d out of range 1..10000", t.LogBurst)
	}
	return nil
}

// Action implements pipeline.Target.
func (t *Log) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	if !t.b.take(now(pc)) {
		if t.limited != nil {
			t.limited.Inc()
		}
		return pipeline.VerdictContinue, 0
	}
	if t.env != nil && t.env.logs != nil {
		t.env.logs.put(t, pc)
	}
	return pipeline.VerdictContinue, 0
}

// Spec implements Target.
func (t *Log) Spec() string {
	s := "-j LOG"
	if t.LogPrefix != "" {
		s += " --log-prefix " + quoteArg(t.LogPrefix)
	}
	if t.LogLevel != "warning" {
		s += " --log-level " + t.LogLevel
	}
	if t.LogRate != "10/second" {
		s += " --log-rate " + t.LogRate
	}
	if t.LogBurst != 20 {
		s += " --log-burst " + strconv.Itoa(t.LogBurst)
	}
	return s
}

// Label implements Target.
func (*Log) Label() string { return "LOG" }

// MarkTarget is filter.target.mark: --set-mark V[/M] (mark = mark&^M | V),
// --set-xmark V[/M] (mark = mark&^M ^ V), --and-mark, --or-mark,
// --xor-mark. Non-terminating.
type MarkTarget struct {
	SetMark  string `yaml:"set_mark"`
	SetXMark string `yaml:"set_xmark"`
	AndMark  string `yaml:"and_mark"`
	OrMark   string `yaml:"or_mark"`
	XorMark  string `yaml:"xor_mark"`

	// mark = (mark & and) ^ xor, as Linux's xt_mark keeps it.
	and, xor uint32
	spec     string
}

// PipelineModule implements pipeline.Module.
func (*MarkTarget) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.mark", Summary: "MARK: set, and, or, xor the packet's mark", New: func() pipeline.Module { return new(MarkTarget) }}
}

// Options implements Target.
func (*MarkTarget) Options() []Opt {
	return []Opt{{Name: "set-mark", Args: 1}, {Name: "set-xmark", Args: 1}, {Name: "and-mark", Args: 1}, {Name: "or-mark", Args: 1}, {Name: "xor-mark", Args: 1}}
}

// Provision turns the option into (and, xor).
func (t *MarkTarget) Provision(*pipeline.Context) error {
	n := 0
	for _, s := range []string{t.SetMark, t.SetXMark, t.AndMark, t.OrMark, t.XorMark} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("give one of set_mark, set_xmark, and_mark, or_mark, xor_mark")
	}
	switch {
	case t.SetMark != "":
		v, m, err := parseValueMask(t.SetMark)
		if err != nil {
			return fmt.Errorf("set_mark: %v", err)
		}
		// (mark &^ m) | v  ==  (mark &^ (m|v)) ^ v
		t.and, t.xor = ^(m | v), v
		t.spec = "--set-xmark " + hex(v) + "/" + hex(m|v)
	case t.SetXMark != "":
		v, m, err := parseValueMask(t.SetXMark)
		if err != nil {
			return fmt.Errorf("set_xmark: %v", err)
		}
		t.and, t.xor = ^m, v
		t.spec = "--set-xmark " + hex(v) + "/" + hex(m)
	case t.AndMark != "":
		v, err := parseUint32(t.AndMark)
		if err != nil {
			return fmt.Errorf("and_mark: bad value %q", t.AndMark)
		}
		t.and, t.xor = v, 0
		t.spec = "--set-xmark 0x0/" + hex(^v)
	case t.OrMark != "":
		v, err := parseUint32(t.OrMark)
		if err != nil {
			return fmt.Errorf("or_mark: bad value %q", t.OrMark)
		}
		t.and, t.xor = ^v, v
		t.spec = "--set-xmark " + hex(v) + "/" + hex(v)
	default:
		v, err := parseUint32(t.XorMark)
		if err != nil {
			return fmt.Errorf("xor_mark: bad value %q", t.XorMark)
		}
		t.and, t.xor = 0xffffffff, v
		t.spec = "--set-xmark " + hex(v) + "/0x0"
	}
	return nil
}

// Action implements pipeline.Target.
func (t *MarkTarget) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	pc.Pkt.Mark = pc.Pkt.Mark&t.and ^ t.xor
	return pipeline.VerdictContinue, 0
}

// Spec implements Target (as iptables-save prints it).
func (t *MarkTarget) Spec() string { return "-j MARK " + t.spec }

// Label implements Target.
func (*MarkTarget) Label() string { return "MARK" }

// HopTarget is filter.target.ttl (--ttl-set, --ttl-dec, --ttl-inc; IPv4,
// checksum updated) and filter.target.hl (--hl-set, --hl-dec, --hl-inc;
// IPv6). Mangle table only, as Linux. Saturates at 0 and 255.
type HopTarget struct {
	TTLSet string `yaml:"ttl_set"`
	TTLDec string `yaml:"ttl_dec"`
	TTLInc string `yaml:"ttl_inc"`
	HLSet  string `yaml:"hl_set"`
	HLDec  string `yaml:"hl_dec"`
	HLInc  string `yaml:"hl_inc"`

	v6  bool
	op  byte // '=', '-', '+'
	val uint8
}

// PipelineModule implements pipeline.Module.
func (t *HopTarget) PipelineModule() pipeline.ModuleInfo {
	if t.v6 {
		return pipeline.ModuleInfo{ID: "filter.target.hl", Summary: "HL: set, decrement or increment the IPv6 hop limit", New: func() pipeline.Module { return &HopTarget{v6: true} }}
	}
	return pipeline.ModuleInfo{ID: "filter.target.ttl", Summary: "TTL: set, decrement or increment the IPv4 TTL", New: func() pipeline.Module { return &HopTarget{} }}
}

// Options implements Target.
func (t *HopTarget) Options() []Opt {
	p := t.prefix()
	return []Opt{{Name: p + "-set", Args: 1}, {Name: p + "-dec", Args: 1}, {Name: p + "-inc", Args: 1}}
}

func (t *HopTarget) prefix() string {
	if t.v6 {
		return "hl"
	}
	return "ttl"
}

// Provision parses the operation.
func (t *HopTarget) Provision(*pipeline.Context) error {
	set, dec, inc := t.TTLSet, t.TTLDec, t.TTLInc
	other := t.HLSet + t.HLDec + t.HLInc
	if t.v6 {
		set, dec, inc = t.HLSet, t.HLDec, t.HLInc
		other = t.TTLSet + t.TTLDec + t.TTLInc
	}
	if other != "" {
		return fmt.Errorf("the %s target takes %s_set, %s_dec or %s_inc", strings.ToUpper(t.prefix()), t.prefix(), t.prefix(), t.prefix())
	}
	n := 0
	for _, c := range []struct {
		v  string
		op byte
	}{{set, '='}, {dec, '-'}, {inc, '+'}} {
		if c.v == "" {
			continue
		}
		n++
		x, err := strconv.ParseUint(c.v, 10, 8)
		if err != nil {
			return fmt.Errorf("bad value %q (0..255)", c.v)
		}
		t.op, t.val = c.op, uint8(x)
		if c.op != '=' && x == 0 {
			return fmt.Errorf("increment or decrement by 0 does nothing")
		}
	}
	if n != 1 {
		return fmt.Errorf("give one of %s_set, %s_dec, %s_inc", t.prefix(), t.prefix(), t.prefix())
	}
	return nil
}

// Family implements familyMatch.
func (t *HopTarget) Family() int {
	if t.v6 {
		return 6
	}
	return 4
}

// Tables implements tableLimited.
func (*HopTarget) Tables() []string { return []string{"mangle"} }

func (t *HopTarget) apply(old uint8) uint8 {
	switch t.op {
	case '=':
		return t.val
	case '-':
		if old < t.val {
			return 0
		}
		return old - t.val
	}
	if int(old)+int(t.val) > 255 {
		return 255
	}
	return old + t.val
}

// Action implements pipeline.Target.
func (t *HopTarget) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	nh := pc.Pkt.NetworkHeader()
	if t.v6 {
		if pc.Pkt.NetProto == pipeline.IPv6ProtocolNumber && len(nh) >= wire.IPv6HeaderSize {
			ip := wire.IPv6(nh)
			ip.SetHopLimit(t.apply(ip.HopLimit()))
		}
		return pipeline.VerdictContinue, 0
	}
	if pc.Pkt.NetProto == pipeline.IPv4ProtocolNumber && len(nh) >= wire.IPv4MinimumSize {
		ip := wire.IPv4(nh)
		old := ip.TTL()
		n := t.apply(old)
		if n != old {
			// TTL and protocol share a 16-bit word.
			ow := uint16(old)<<8 | uint16(ip.Protocol())
			nw := uint16(n)<<8 | uint16(ip.Protocol())
			ip.SetTTL(n)
			ip.SetChecksum(wire.ChecksumUpdate16(ip.Checksum(), ow, nw))
		}
	}
	return pipeline.VerdictContinue, 0
}

// Spec implements Target.
func (t *HopTarget) Spec() string {
	op := map[byte]string{'=': "set", '-': "dec", '+': "inc"}[t.op]
	return "-j " + t.Label() + " --" + t.prefix() + "-" + op + " " + strconv.Itoa(int(t.val))
}

// Label implements Target.
func (t *HopTarget) Label() string { return strings.ToUpper(t.prefix()) }

// NoTrack is filter.target.notrack (raw table): marks the packet as not to
// be tracked (pipeline.CTUntracked): netfilter.conntrack, which runs after
// the raw table, leaves it alone, and -m conntrack --ctstate UNTRACKED
// matches it. Goes on with the next rule, as Linux's NOTRACK (CT --notrack).
type NoTrack struct{}

// PipelineModule implements pipeline.Module.
func (*NoTrack) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.notrack", Summary: "NOTRACK: the packet is not tracked by netfilter.conntrack (UNTRACKED)", New: func() pipeline.Module { return new(NoTrack) }}
}

// Options implements Target.
func (*NoTrack) Options() []Opt { return nil }

// Tables implements tableLimited.
func (*NoTrack) Tables() []string { return []string{"raw"} }

// Action implements pipeline.Target.
func (*NoTrack) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	if pc.Pkt.CTInfo == pipeline.CTNone {
		pc.Pkt.CTInfo = pipeline.CTUntracked
	}
	return pipeline.VerdictContinue, 0
}

// Spec implements Target.
func (*NoTrack) Spec() string { return "-j NOTRACK" }

// Label implements Target.
func (*NoTrack) Label() string { return "NOTRACK" }

// TCPMSS is filter.target.tcpmss: --set-mss N or --clamp-mss-to-pmtu (the
// smaller of the outgoing NIC's MTU and the MTU of the route back to the
// source, minus 40 for IPv4, 60 for IPv6), as Linux's xt_TCPMSS: the MSS
// option of a TCP SYN that is larger is lowered (never raised); a SYN
// without one, without data and with room in its header (data offset under
// 15 words) gets one inserted, of the value but at most 536 (IPv4, RFC
// 1122's default) or 1220 (IPv6), the packet growing by 4 bytes within its
// tailroom (IP length, data offset and checksums fixed; no tailroom: left as
// it is). A header shorter than 20 bytes or whose data offset does not fit
// the segment, or a path MTU not above 40/60, drops the packet. Checksums
// change incrementally, or (a partial checksum, GSO.NeedsCsum) only the
// pseudo-header sum the field holds. As Linux the rule must match SYNs only
// (-p tcp --tcp-flags SYN,RST SYN or --syn) and clamp-mss-to-pmtu is for
// forward, output and postrouting.
type TCPMSS struct {
	SetMSS         string `yaml:"set_mss"`
	ClampMSSToPMTU string `yaml:"clamp_mss_to_pmtu"`

	mss   uint16
	clamp bool
}

// PipelineModule implements pipeline.Module.
func (*TCPMSS) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.tcpmss", Summary: "TCPMSS: lower the MSS option of SYNs to a value or the path MTU", New: func() pipeline.Module { return new(TCPMSS) }}
}

// Options implements Target.
func (*TCPMSS) Options() []Opt {
	return []Opt{{Name: "set-mss", Args: 1}, {Name: "clamp-mss-to-pmtu", Args: 0}}
}

// Provision parses the option.
func (t *TCPMSS) Provision(*pipeline.Context) error {
	t.clamp = t.ClampMSSToPMTU == "true"
	if t.ClampMSSToPMTU != "" && !t.clamp {
		return fmt.Errorf("clamp_mss_to_pmtu: %q is not true", t.ClampMSSToPMTU)
	}
	if (t.SetMSS != "") == t.clamp {
		return fmt.Errorf("give one of set_mss, clamp_mss_to_pmtu")
	}
	if t.SetMSS != "" {
		v, err := strconv.ParseUint(t.SetMSS, 10, 16)
		if err != nil || v == 0 {
			return fmt.Errorf("set_mss %q: want 1..65535", t.SetMSS)
		}
		t.mss = uint16(v)
	}
	return nil
}

func (t *TCPMSS) validateRule(r *rule) error {
	if r.base == nil || !r.base.protoSet || r.base.protoInv || r.base.proto != 6 {
		return fmt.Errorf("TCPMSS target: only valid with -p tcp")
	}
	for _, m := range r.ms {
		if tm, ok := m.(*TCP); ok && tm.synOnly {
			if t.clamp && r.hooksOf()&^(hFwd|hOut|hPost) != 0 {
				return fmt.Errorf("TCPMSS target: path-MTU clamping only supported in FORWARD, OUTPUT and POSTROUTING hooks")
			}
			return nil
		}
	}
	return fmt.Errorf("TCPMSS target: only works on TCP SYN packets (add --tcp-flags SYN,RST SYN or --syn)")
}

// Action implements pipeline.Target, as Linux's tcpmss_mangle_packet.
func (t *TCPMSS) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	b, fragOff, ok := l4(pc)
	if !ok || fragOff != 0 {
		return pipeline.VerdictContinue, 0
	}
	if len(b) < 20 {
		return pipeline.VerdictDrop, 0
	}
	if b[13]&0x02 == 0 {
		return pipeline.VerdictContinue, 0 // the rule matches SYNs: not one
	}
	doff := int(b[12]>>4) * 4
	if doff < 20 || doff > len(b) {
		return pipeline.VerdictDrop, 0
	}
	v6 := pc.Pkt.NetProto == pipeline.IPv6ProtocolNumber
	mss := t.mss
	if t.clamp {
		mtu := t.pathMTU(pc)
		minLen := 40
		if v6 {
			minLen = 60
		}
		if mtu <= minLen {
			return pipeline.VerdictDrop, 0 // Linux: "unknown or invalid path-MTU"
		}
		mss = uint16(min(mtu-minLen, 0xffff))
	}
	partial := pc.Pkt.GSO.NeedsCsum
	// Linux's walk: every option at i ≤ doff-4, a kind ≤ 1 (end, no-op)
	// or a zero length taking one byte.
	for i := 20; i <= doff-4; {
		if b[i] == 2 && b[i+1] == 4 {
			old := binary.BigEndian.Uint16(b[i+2:])
			if old <= mss {
				return pipeline.VerdictContinue, 0 // never raised
			}
			binary.BigEndian.PutUint16(b[i+2:], mss)
			if !partial {
				// The option's value sits at an even offset of the
				// header when i is even; the checksum word pairs bytes
				// from there.
				sum := binary.BigEndian.Uint16(b[16:])
				if i%2 == 0 {
					sum = wire.ChecksumUpdate16(sum, old, mss)
				} else {
					sum = wire.ChecksumUpdate16(sum, uint16(b[i+1])<<8|old>>8, uint16(b[i+1])<<8|mss>>8)
					sum = wire.ChecksumUpdate16(sum, old<<8|uint16(b[i+4]), mss<<8|uint16(b[i+4]))
				}
				binary.BigEndian.PutUint16(b[16:], sum)
			}
			return pipeline.VerdictContinue, 0
		}
		if b[i] <= 1 || b[i+1] == 0 {
			i++
		} else {
			i += int(b[i+1])
		}
	}
	// No MSS option: insert one, as Linux, when the SYN carries no data
	// (the option cannot go in without moving it, and the SYN could
	// grow too large) and the data offset has room.
	if len(b) > doff || doff >= 60 {
		return pipeline.VerdictContinue, 0
	}
	t.insert(pc, b, mss, v6, partial)
	return pipeline.VerdictContinue, 0
}

// pathMTU is the MTU clamp-mss-to-pmtu clamps to: the lesser of the
// outgoing NIC's and the NIC's of the route back to the source (Linux's
// tcpmss_reverse_mtu), 0 when the outgoing NIC is unknown.
func (t *TCPMSS) pathMTU(pc *pipeline.PacketContext) int {
	if pc.Batch == nil {
		return 0
	}
	g := pc.Batch.Gen
	nic, ok := g.NIC(pc.Pkt.OutNIC)
	if !ok {
		return 0
	}
	mtu := nic.MTU()
	if r := g.Routes().Lookup(pc.Tuple.Src); r != nil {
		if back, ok := g.NIC(r.NIC); ok {
			mtu = min(mtu, back.MTU())
		}
	}
	return mtu
}

// insert adds an MSS option of at most mss (536 for IPv4, 1220 for IPv6)
// after the fixed header of the SYN seg (header only, doff < 60), growing
// the packet by 4 bytes within its tailroom, and fixes the IP length (and
// IPv4 header checksum), the data offset, the TCP checksum and pc.L4End.
// Without tailroom (or with a length that would overflow) it changes
// nothing.
func (t *TCPMSS) insert(pc *pipeline.PacketContext, seg []byte, mss uint16, v6, partial bool) {
	pkt := pc.Pkt
	if pkt.GSO.Type != pipeline.GSONone || len(pkt.NetworkHeader()) != pc.L4End || pc.L4End+4 > 0xffff {
		return // a super-packet, bytes past the IP length: not a plain SYN
	}
	if _, ok := pkt.Append(4); !ok {
		return
	}
	if v6 {
		mss = min(mss, 1220)
	} else {
		mss = min(mss, 536)
	}
	nh := pkt.NetworkHeader()
	off, n := pc.L4Off, len(seg) // the segment's offset and old length
	seg = nh[off : off+n+4]
	copy(seg[24:], seg[20:n])
	opt := uint32(2)<<24 | uint32(4)<<16 | uint32(mss)
	binary.BigEndian.PutUint32(seg[20:], opt)
	oldWord := binary.BigEndian.Uint16(seg[12:])
	seg[12] += 1 << 4 // one more 32-bit word
	sum := binary.BigEndian.Uint16(seg[16:])
	if partial {
		// The field holds the pseudo-header sum (not inverted): only
		// the length in it moves.
		sum = ^wire.ChecksumUpdate16(^sum, uint16(n), uint16(n+4))
	} else {
		sum = wire.ChecksumUpdate16(sum, uint16(n), uint16(n+4)) // pseudo-header
		sum = wire.ChecksumUpdate32(sum, 0, opt)                 // the option (even offset)
		sum = wire.ChecksumUpdate16(sum, oldWord, binary.BigEndian.Uint16(seg[12:]))
	}
	binary.BigEndian.PutUint16(seg[16:], sum)
	if v6 {
		ip := wire.IPv6(nh)
		binary.BigEndian.PutUint16(ip[4:], ip.PayloadLength()+4)
	} else {
		ip := wire.IPv4(nh)
		old := ip.TotalLength()
		binary.BigEndian.PutUint16(ip[2:], old+4)
		binary.BigEndian.PutUint16(ip[10:], wire.ChecksumUpdate16(binary.BigEndian.Uint16(ip[10:]), old, old+4))
	}
	pc.L4End += 4
}

// Spec implements Target.
func (t *TCPMSS) Spec() string {
	if t.clamp {
		return "-j TCPMSS --clamp-mss-to-pmtu"
	}
	return "-j TCPMSS --set-mss " + strconv.Itoa(int(t.mss))
}

// Label implements Target.
func (*TCPMSS) Label() string { return "TCPMSS" }

// hooksOf is set while validating (the rule's chain's hooks).
func (r *rule) hooksOf() uint8 { return r.hooks }

var (
	_ Target = (*Verdict)(nil)
	_ Target = (*Jump)(nil)
	_ Target = (*Reject)(nil)
	_ Target = (*Log)(nil)
	_ Target = (*MarkTarget)(nil)
	_ Target = (*HopTarget)(nil)
	_ Target = (*NoTrack)(nil)
	_ Target = (*TCPMSS)(nil)
)
