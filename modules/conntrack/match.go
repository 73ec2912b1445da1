package conntrack

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/pipeline"
)

func init() {
	pipeline.RegisterModule(new(ConntrackMatch))
	pipeline.RegisterModule(new(StateMatch))
	pipeline.RegisterModule(new(ConnmarkMatch))
	pipeline.RegisterModule(new(ConnmarkTarget))
	pipeline.RegisterModule(new(ConnbytesMatch))
}

// The matchers find the packet's entry through the stack's table slot
// (the netfilter.conntrack module fills it): a pipeline without the
// module has no entries, and every packet is INVALID to them (Linux's
// view of a packet without a conntrack).

// entryOf returns the packet's entry, or nil.
func (h *holder) entryOf(p *pipeline.Packet) (*Entry, Ref) {
	if p.ConnTrack == 0 || h == nil {
		return nil, 0
	}
	t := h.t.Load()
	if t == nil {
		return nil, 0
	}
	r := Ref(p.ConnTrack)
	return t.Entry(r), r
}

// State bits of --ctstate / --state.
const (
	stInvalid = 1 << iota
	stNew
	stEstablished
	stRelated
	stUntracked
	stSNAT
	stDNAT
)

var stateWords = []struct {
	name string
	bit  uint8
}{{"INVALID", stInvalid}, {"NEW", stNew}, {"RELATED", stRelated}, {"ESTABLISHED", stEstablished}, {"UNTRACKED", stUntracked}, {"SNAT", stSNAT}, {"DNAT", stDNAT}}

func stateBit(info pipeline.CTInfo) uint8 {
	switch info.State() {
	case pipeline.CTNew:
		return stNew
	case pipeline.CTEstablished:
		return stEstablished
	case pipeline.CTRelated:
		return stRelated
	case pipeline.CTUntracked:
		return stUntracked
	}
	return stInvalid
}

// parseStates reads "ESTABLISHED,RELATED" (with "!" in front: inverted).
func parseStates(v string, allowNAT bool) (uint8, bool, error) {
	v, inv := cutBang(v)
	var mask uint8
	for _, w := range strings.Split(v, ",") {
		found := false
		for _, s := range stateWords {
			if strings.EqualFold(w, s.name) && (allowNAT || s.bit < stSNAT) {
				mask |= s.bit
				found = true
			}
		}
		if !found {
			return 0, false, fmt.Errorf("bad state %q", w)
		}
	}
	return mask, inv, nil
}

func statesString(mask uint8) string {
	var out []string
	for _, s := range stateWords {
		if mask&s.bit != 0 {
			out = append(out, s.name)
		}
	}
	return strings.Join(out, ",")
}

func cutBang(v string) (string, bool) {
	v = strings.TrimSpace(v)
	if s, ok := strings.CutPrefix(v, "!"); ok {
		return strings.TrimSpace(s), true
	}
	return v, false
}

func bang(inv bool) string {
	if inv {
		return "! "
	}
	return ""
}

// packetStates is the state bits of a packet, SNAT/DNAT from its entry.
func packetStates(h *holder, p *pipeline.Packet, want uint8) uint8 {
	bits := stateBit(p.CTInfo)
	if want&(stSNAT|stDNAT) != 0 {
		if e, _ := h.entryOf(p); e != nil {
			st := e.Status()
			if st&StatusSrcNAT != 0 {
				bits |= stSNAT
			}
			if st&StatusDstNAT != 0 {
				bits |= stDNAT
			}
		}
	}
	return bits
}

// StateMatch is filter.match.state: --state INVALID,NEW,ESTABLISHED,RELATED,UNTRACKED.
type StateMatch struct {
	State string `yaml:"state"`

	h    *holder
	mask uint8
	inv  bool
}

// PipelineModule implements pipeline.Module.
func (*StateMatch) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.state", Summary: "connection state (-m state --state ESTABLISHED,RELATED); needs netfilter.conntrack", New: func() pipeline.Module { return new(StateMatch) }}
}

// Options implements filter.Match.
func (*StateMatch) Options() []filter.Opt {
	return []filter.Opt{{Name: "state", Args: 1, Invert: true}}
}

// ShortKey implements filter.ShortKeyer: state: ESTABLISHED,RELATED.
func (*StateMatch) ShortKey() string { return "state" }

// Provision parses the states.
func (m *StateMatch) Provision(ctx *pipeline.Context) error {
	if m.State == "" {
		return fmt.Errorf("state match: give --state")
	}
	var err error
	if m.mask, m.inv, err = parseStates(m.State, false); err != nil {
		return err
	}
	m.h = sharedHolder(ctx)
	return nil
}

// Fields implements pipeline.Matcher: the state alone (a classifier
// prunes on it; Match never hotdrops and changes nothing).
func (*StateMatch) Fields() pipeline.FieldSet { return pipeline.FieldCTState }

// Constraint implements pipeline.ConstraintDescriber: the CTInfo states
// whose bit is in the mask (TestStateConstraintAgrees).
func (m *StateMatch) Constraint() []pipeline.FieldConstraint {
	return []pipeline.FieldConstraint{stateConstraint(m.mask, m.inv)}
}

// stateConstraint is FieldCTState over the states whose stateBit is in
// mask.
func stateConstraint(mask uint8, inv bool) pipeline.FieldConstraint {
	c := pipeline.FieldConstraint{Field: pipeline.FieldCTState, Invert: inv}
	for s := pipeline.CTInfo(0); s <= pipeline.CTStateMask; s++ {
		if stateBit(s)&mask != 0 {
			c.Ranges = append(c.Ranges, pipeline.ValueRange{Lo: uint32(s), Hi: uint32(s)})
		}
	}
	return c
}

// Match implements pipeline.Matcher.
func (m *StateMatch) Match(pc *pipeline.PacketContext) (bool, bool) {
	return (stateBit(pc.Pkt.CTInfo)&m.mask != 0) != m.inv, false
}

// Spec implements filter.Match.
func (m *StateMatch) Spec() string {
	return "-m state " + bang(m.inv) + "--state " + statesString(m.mask)
}

// ConntrackMatch is filter.match.conntrack: --ctstate, --ctstatus,
// --ctdir, --ctproto, --ctorigsrc/--ctorigdst/--ctreplsrc/--ctrepldst
// (address[/prefix]), --ctorigsrcport … --ctrepldstport (port[:port]);
// each may be inverted.
type ConntrackMatch struct {
	CTState       string `yaml:"ctstate"`
	CTProto       string `yaml:"ctproto"`
	CTOrigSrc     string `yaml:"ctorigsrc"`
	CTOrigDst     string `yaml:"ctorigdst"`
	CTReplSrc     string `yaml:"ctreplsrc"`
	CTReplDst     string `yaml:"ctrepldst"`
	CTOrigSrcPort string `yaml:"ctorigsrcport"`
	CTOrigDstPort string `yaml:"ctorigdstport"`
	CTReplSrcPort string `yaml:"ctreplsrcport"`
	CTReplDstPort string `yaml:"ctrepldstport"`
	CTStatus      string `yaml:"ctstatus"`
	CTDir         string `yaml:"ctdir"`

	h       *holder
	state   struct{ mask uint8 }
	stInv   bool
	proto   int // -1: not given
	protInv bool
	addrs   [4]addrOpt // orig src, orig dst, repl src, repl dst
	ports   [4]portOpt
	status  uint32
	statInv bool
	hasStat bool
	dir     int // 0 none, 1 ORIGINAL, 2 REPLY
	// onlyState: --ctstate without SNAT/DNAT is the only test, so the
	// state is all Match reads (Fields, Constraint).
	onlyState bool
}

type addrOpt struct {
	set, inv bool
	p        netip.Prefix
}

type portOpt struct {
	set, inv bool
	lo, hi   uint16
}

var statusWords = []struct {
	name string
	bit  uint32
}{{"EXPECTED", 0}, {"SEEN_REPLY", StatusSeenReply}, {"ASSURED", StatusAssured}, {"CONFIRMED", StatusConfirmed}}

// PipelineModule implements pipeline.Module.
func (*ConntrackMatch) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.conntrack", Summary: "connection tracking state, status, direction and tuples (-m conntrack --ctstate ESTABLISHED,RELATED); needs netfilter.conntrack", New: func() pipeline.Module { return new(ConntrackMatch) }}
}

var ctAddrNames = [4]string{"ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst"}
var ctPortNames = [4]string{"ctorigsrcport", "ctorigdstport", "ctreplsrcport", "ctrepldstport"}

// Options implements filter.Match.
func (*ConntrackMatch) Options() []filter.Opt {
	o := []filter.Opt{{Name: "ctstate", Args: 1, Invert: true}, {Name: "ctproto", Args: 1, Invert: true}}
	for _, n := range ctAddrNames {
		o = append(o, filter.Opt{Name: n, Args: 1, Invert: true})
	}
	for _, n := range ctPortNames {
		o = append(o, filter.Opt{Name: n, Args: 1, Invert: true})
	}
	return append(o, filter.Opt{Name: "ctstatus", Args: 1, Invert: true}, filter.Opt{Name: "ctdir", Args: 1})
}

// Provision parses the options.
func (m *ConntrackMatch) Provision(ctx *pipeline.Context) error {
	m.h = sharedHolder(ctx)
	m.proto = -1
	any := false
	if m.CTState != "" {
		mask, inv, err := parseStates(m.CTState, true)
		if err != nil {
			return err
		}
		m.state.mask, m.stInv, any = mask, inv, true
	}
	if m.CTProto != "" {
		v, inv := cutBang(m.CTProto)
		p, err := protoNumber(v)
		if err != nil {
			return err
		}
		m.proto, m.protInv, any = p, inv, true
	}
	for i, v := range []string{m.CTOrigSrc, m.CTOrigDst, m.CTReplSrc, m.CTReplDst} {
		if v == "" {
			continue
		}
		v, inv := cutBang(v)
		p, err := parsePrefix(v)
		if err != nil {
			return fmt.Errorf("--%s: %w", ctAddrNames[i], err)
		}
		m.addrs[i], any = addrOpt{set: true, inv: inv, p: p}, true
	}
	for i, v := range []string{m.CTOrigSrcPort, m.CTOrigDstPort, m.CTReplSrcPort, m.CTReplDstPort} {
		if v == "" {
			continue
		}
		v, inv := cutBang(v)
		lo, hi, err := parsePortRange(v)
		if err != nil {
			return fmt.Errorf("--%s: %w", ctPortNames[i], err)
		}
		m.ports[i], any = portOpt{set: true, inv: inv, lo: lo, hi: hi}, true
	}
	if m.CTStatus != "" {
		v, inv := cutBang(m.CTStatus)
		for _, w := range strings.Split(v, ",") {
			found := false
			for _, s := range statusWords {
				if strings.EqualFold(w, s.name) {
					m.status |= s.bit
					found = true
				}
			}
			if strings.EqualFold(w, "NONE") {
				found = true
			}
			if !found {
				return fmt.Errorf("bad ctstatus %q", w)
			}
		}
		m.hasStat, m.statInv, any = true, inv, true
	}
	if m.CTDir != "" {
		switch strings.ToUpper(m.CTDir) {
		case "ORIGINAL":
			m.dir = 1
		case "REPLY":
			m.dir = 2
		default:
			return fmt.Errorf("bad ctdir %q (ORIGINAL or REPLY)", m.CTDir)
		}
		any = true
	}
	if !any {
		return fmt.Errorf("conntrack match: give at least one option (--ctstate …)")
	}
	for i := range m.ports {
		if m.ports[i].set && m.proto < 0 {
			return fmt.Errorf("--%s needs --ctproto", ctPortNames[i])
		}
	}
	m.onlyState = m.state.mask != 0 && m.state.mask&(stSNAT|stDNAT) == 0 && m.proto < 0 && !m.hasStat && m.dir == 0
	for i := range m.addrs {
		m.onlyState = m.onlyState && !m.addrs[i].set && !m.ports[i].set
	}
	return nil
}

func protoNumber(v string) (int, error) {
	switch strings.ToLower(v) {
	case "tcp":
		return 6, nil
	case "udp":
		return 17, nil
	case "icmp":
		return 1, nil
	case "icmpv6", "ipv6-icmp":
		return 58, nil
	case "sctp":
		return 132, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 255 {
		return 0, fmt.Errorf("bad protocol %q", v)
	}
	return n, nil
}

func parsePrefix(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return p, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parsePortRange(v string) (uint16, uint16, error) {
	a, b, rng := strings.Cut(v, ":")
	lo, err := strconv.ParseUint(a, 10, 16)
	if err != nil {
		return 0, 0, fmt.Errorf("bad port %q", a)
	}
	hi := lo
	if rng {
		if hi, err = strconv.ParseUint(b, 10, 16); err != nil || hi < lo {
			return 0, 0, fmt.Errorf("bad port range %q", v)
		}
	}
	return uint16(lo), uint16(hi), nil
}

// Fields implements pipeline.Matcher.
// With --ctstate alone (no SNAT/DNAT) the state is all it reads: a
// classifier prunes on it; else FieldOther (it reads the entry).
func (m *ConntrackMatch) Fields() pipeline.FieldSet {
	if m.onlyState {
		return pipeline.FieldCTState
	}
	return pipeline.FieldOther
}

// Constraint implements pipeline.ConstraintDescriber: the states, with
// --ctstate alone (TestStateConstraintAgrees).
func (m *ConntrackMatch) Constraint() []pipeline.FieldConstraint {
	if !m.onlyState {
		return nil
	}
	return []pipeline.FieldConstraint{stateConstraint(m.state.mask, m.stInv)}
}

// Match implements pipeline.Matcher (conntrack_mt: a packet without an
// entry matches only a state test).
func (m *ConntrackMatch) Match(pc *pipeline.PacketContext) (bool, bool) {
	p := pc.Pkt
	if m.state.mask != 0 && (packetStates(m.h, p, m.state.mask)&m.state.mask != 0) == m.stInv {
		return false, false
	}
	if m.proto < 0 && !m.addrs[0].set && !m.addrs[1].set && !m.addrs[2].set && !m.addrs[3].set && !m.hasStat && m.dir == 0 {
		return true, false
	}
	st := p.CTInfo.State()
	if st != pipeline.CTNew && st != pipeline.CTEstablished && st != pipeline.CTRelated {
		return false, false
	}
	if m.dir != 0 && (p.CTInfo&pipeline.CTReply != 0) != (m.dir == 2) {
		return false, false
	}
	e, r := m.h.entryOf(p)
	if e == nil {
		return false, false
	}
	if m.hasStat {
		s := e.Status() & (StatusSeenReply | StatusAssured | StatusConfirmed)
		hit := s&m.status != 0 || (m.status == 0 && s == 0)
		if hit == m.statInv {
			return false, false
		}
	}
	if m.proto < 0 && !m.addrs[0].set && !m.addrs[1].set && !m.addrs[2].set && !m.addrs[3].set {
		return true, false
	}
	e.Lock()
	if !e.Valid(r) {
		e.Unlock()
		return false, false
	}
	o, rp := e.orig.tuple, e.reply.tuple
	e.Unlock()
	if m.proto >= 0 && (int(o.Proto) == m.proto) == m.protInv {
		return false, false
	}
	keys := [4]struct {
		k   *Key
		src bool
	}{{&o, true}, {&o, false}, {&rp, true}, {&rp, false}}
	for i := range m.addrs {
		a := &m.addrs[i]
		if !a.set {
			continue
		}
		addr := keys[i].k.DstAddr()
		if keys[i].src {
			addr = keys[i].k.SrcAddr()
		}
		if a.p.Contains(addr) == a.inv {
			return false, false
		}
	}
	for i := range m.ports {
		po := &m.ports[i]
		if !po.set {
			continue
		}
		v := keys[i].k.DPort
		if keys[i].src {
			v = keys[i].k.SPort
		}
		if (v >= po.lo && v <= po.hi) == po.inv {
			return false, false
		}
	}
	return true, false
}

// Spec implements filter.Match (iptables-save's order).
func (m *ConntrackMatch) Spec() string {
	parts := []string{"-m conntrack"}
	if m.state.mask != 0 {
		parts = append(parts, bang(m.stInv)+"--ctstate "+statesString(m.state.mask))
	}
	if m.proto >= 0 {
		parts = append(parts, bang(m.protInv)+"--ctproto "+strconv.Itoa(m.proto))
	}
	for i, a := range m.addrs {
		if a.set {
			s := a.p.String()
			if a.p.IsSingleIP() {
				s = a.p.Addr().String()
			}
			parts = append(parts, bang(a.inv)+"--"+ctAddrNames[i]+" "+s)
		}
	}
	for i, p := range m.ports {
		if p.set {
			s := strconv.Itoa(int(p.lo))
			if p.hi != p.lo {
				s += ":" + strconv.Itoa(int(p.hi))
			}
			parts = append(parts, bang(p.inv)+"--"+ctPortNames[i]+" "+s)
		}
	}
	if m.hasStat {
		var ws []string
		for _, s := range statusWords {
			if s.bit != 0 && m.status&s.bit != 0 {
				ws = append(ws, s.name)
			}
		}
		if len(ws) == 0 {
			ws = []string{"NONE"}
		}
		parts = append(parts, bang(m.statInv)+"--ctstatus "+strings.Join(ws, ","))
	}
	switch m.dir {
	case 1:
		parts = append(parts, "--ctdir ORIGINAL")
	case 2:
		parts = append(parts, "--ctdir REPLY")
	}
	return strings.Join(parts, " ")
}

// parseMark reads value[/mask] (decimal or 0x…).
func parseMark(v string) (val, mask uint32, hasMask bool, err error) {
	a, b, hasMask := strings.Cut(v, "/")
	x, err := strconv.ParseUint(a, 0, 32)
	if err != nil {
		return 0, 0, false, fmt.Errorf("bad mark %q", v)
	}
	mask = ^uint32(0)
	if hasMask {
		y, err := strconv.ParseUint(b, 0, 32)
		if err != nil {
			return 0, 0, false, fmt.Errorf("bad mask %q", v)
		}
		mask = uint32(y)
	}
	return uint32(x), mask, hasMask, nil
}

func markString(v, mask uint32) string {
	if mask == ^uint32(0) {
		return fmt.Sprintf("0x%x", v)
	}
	return fmt.Sprintf("0x%x/0x%x", v, mask)
}

// ConnmarkMatch is filter.match.connmark: --mark value[/mask] tests the
// connection's mark.
type ConnmarkMatch struct {
	Mark string `yaml:"mark"`

	h         *holder
	val, mask uint32
	inv       bool
}

// PipelineModule implements pipeline.Module.
func (*ConnmarkMatch) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.connmark", Summary: "the connection's mark (-m connmark --mark 1/0xff); needs netfilter.conntrack", New: func() pipeline.Module { return new(ConnmarkMatch) }}
}

// Options implements filter.Match.
func (*ConnmarkMatch) Options() []filter.Opt {
	return []filter.Opt{{Name: "mark", Args: 1, Invert: true}}
}

// ShortKey implements filter.ShortKeyer.
func (*ConnmarkMatch) ShortKey() string { return "mark" }

// Provision parses the mark.
func (m *ConnmarkMatch) Provision(ctx *pipeline.Context) error {
	if m.Mark == "" {
		return fmt.Errorf("connmark match: give --mark")
	}
	v, inv := cutBang(m.Mark)
	var err error
	if m.val, m.mask, _, err = parseMark(v); err != nil {
		return err
	}
	m.inv, m.h = inv, sharedHolder(ctx)
	return nil
}

// Fields implements pipeline.Matcher.
func (*ConnmarkMatch) Fields() pipeline.FieldSet { return pipeline.FieldOther }

// Constraint implements pipeline.ConstraintDescriber.
func (*ConnmarkMatch) Constraint() []pipeline.FieldConstraint { return nil }

// Match implements pipeline.Matcher: no entry, no match.
func (m *ConnmarkMatch) Match(pc *pipeline.PacketContext) (bool, bool) {
	e, _ := m.h.entryOf(pc.Pkt)
	if e == nil {
		return false, false
	}
	return (e.Mark()&m.mask == m.val) != m.inv, false
}

// Spec implements filter.Match.
func (m *ConnmarkMatch) Spec() string {
	return "-m connmark " + bang(m.inv) + "--mark " + markString(m.val, m.mask)
}

// ConnmarkTarget is filter.target.connmark (CONNMARK): --set-xmark
// value[/mask] (ctmark = ctmark&^mask ^ value), --set-mark value[/mask]
// (ctmark = ctmark&^mask | value), --save-mark (ctmark from the packet's
// mark) and --restore-mark (the packet's mark from ctmark), with --mask
// for the last two (both nfmask and ctmask). Goes on with the next rule.
type ConnmarkTarget struct {
	SetXMark    string `yaml:"set_xmark"`
	SetMark     string `yaml:"set_mark"`
	SaveMark    string `yaml:"save_mark"`
	RestoreMark string `yaml:"restore_mark"`
	Mask        string `yaml:"mask"`

	h         *holder
	op        int // 1 xmark, 2 save, 3 restore
	val, mask uint32
}

// PipelineModule implements pipeline.Module.
func (*ConnmarkTarget) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.connmark", Summary: "CONNMARK: set, save or restore the connection's mark; needs netfilter.conntrack", New: func() pipeline.Module { return new(ConnmarkTarget) }}
}

// Options implements filter.Target.
func (*ConnmarkTarget) Options() []filter.Opt {
	return []filter.Opt{{Name: "set-xmark", Args: 1}, {Name: "set-mark", Args: 1}, {Name: "save-mark", Args: 0}, {Name: "restore-mark", Args: 0}, {Name: "mask", Args: 1}}
}

// Provision parses the operation.
func (t *ConnmarkTarget) Provision(ctx *pipeline.Context) error {
	t.h = sharedHolder(ctx)
	n := 0
	t.mask = ^uint32(0)
	if t.SetXMark != "" {
		v, m, _, err := parseMark(t.SetXMark)
		if err != nil {
			return err
		}
		t.op, t.val, t.mask = 1, v, m
		n++
	}
	if t.SetMark != "" {
		v, m, _, err := parseMark(t.SetMark)
		if err != nil {
			return err
		}
		t.op, t.val, t.mask = 1, v, m|v // set-mark v/m is set-xmark v/(m|v)
		n++
	}
	if t.SaveMark == "true" {
		t.op = 2
		n++
	}
	if t.RestoreMark == "true" {
		t.op = 3
		n++
	}
	if n != 1 {
		return fmt.Errorf("CONNMARK: give exactly one of --set-xmark, --set-mark, --save-mark, --restore-mark")
	}
	if t.Mask != "" {
		if t.op == 1 {
			return fmt.Errorf("CONNMARK: --mask goes with --save-mark or --restore-mark")
		}
		m, err := strconv.ParseUint(t.Mask, 0, 32)
		if err != nil {
			return fmt.Errorf("bad mask %q", t.Mask)
		}
		t.mask = uint32(m)
	}
	return nil
}

// Action implements pipeline.Target.
func (t *ConnmarkTarget) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	e, _ := t.h.entryOf(pc.Pkt)
	if e == nil {
		return pipeline.VerdictContinue, 0
	}
	switch t.op {
	case 1:
		for {
			old := e.mark.Load()
			if e.mark.CompareAndSwap(old, old&^t.mask^t.val) {
				break
			}
		}
	case 2:
		for {
			old := e.mark.Load()
			if e.mark.CompareAndSwap(old, old&^t.mask^(pc.Pkt.Mark&t.mask)) {
				break
			}
		}
	case 3:
		pc.Pkt.Mark = pc.Pkt.Mark&^t.mask ^ (e.Mark() & t.mask)
	}
	return pipeline.VerdictContinue, 0
}

// Spec implements filter.Target.
func (t *ConnmarkTarget) Spec() string {
	switch t.op {
	case 1:
		return fmt.Sprintf("-j CONNMARK --set-xmark 0x%x/0x%x", t.val, t.mask)
	case 2:
		return fmt.Sprintf("-j CONNMARK --save-mark --nfmask 0x%x --ctmask 0x%x", t.mask, t.mask)
	}
	return fmt.Sprintf("-j CONNMARK --restore-mark --nfmask 0x%x --ctmask 0x%x", t.mask, t.mask)
}

// Label implements filter.Target.
func (*ConnmarkTarget) Label() string { return "CONNMARK" }

// ConnbytesMatch is filter.match.connbytes: --connbytes from[:to]
// --connbytes-dir original|reply|both --connbytes-mode packets|bytes|avgpkt.
type ConnbytesMatch struct {
	Connbytes string `yaml:"connbytes"`
	Dir       string `yaml:"connbytes_dir"`
	Mode      string `yaml:"connbytes_mode"`

	h        *holder
	from, to uint64 // to 0: no upper bound
	inv      bool
	dir      int // 0 original, 1 reply, 2 both
	mode     int // 0 packets, 1 bytes, 2 avgpkt
}

// PipelineModule implements pipeline.Module.
func (*ConnbytesMatch) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.connbytes", Summary: "packets or bytes a connection has carried (-m connbytes --connbytes 10000: --connbytes-dir both --connbytes-mode bytes); needs netfilter.conntrack", New: func() pipeline.Module { return new(ConnbytesMatch) }}
}

// Options implements filter.Match.
func (*ConnbytesMatch) Options() []filter.Opt {
	return []filter.Opt{{Name: "connbytes", Args: 1, Invert: true}, {Name: "connbytes-dir", Args: 1}, {Name: "connbytes-mode", Args: 1}}
}

var cbDirs = []string{"original", "reply", "both"}
var cbModes = []string{"packets", "bytes", "avgpkt"}

// Provision parses the options (all three are required, as iptables').
func (m *ConnbytesMatch) Provision(ctx *pipeline.Context) error {
	if m.Connbytes == "" || m.Dir == "" || m.Mode == "" {
		return fmt.Errorf("connbytes: give --connbytes, --connbytes-dir and --connbytes-mode")
	}
	v, inv := cutBang(m.Connbytes)
	a, b, rng := strings.Cut(v, ":")
	from, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return fmt.Errorf("bad connbytes %q", v)
	}
	var to uint64
	if rng && b != "" {
		if to, err = strconv.ParseUint(b, 10, 64); err != nil || to < from {
			return fmt.Errorf("bad connbytes range %q", v)
		}
	}
	m.from, m.to, m.inv = from, to, inv
	m.dir, m.mode = -1, -1
	for i, d := range cbDirs {
		if strings.EqualFold(m.Dir, d) {
			m.dir = i
		}
	}
	for i, d := range cbModes {
		if strings.EqualFold(m.Mode, d) {
			m.mode = i
		}
	}
	if m.dir < 0 {
		return fmt.Errorf("bad connbytes-dir %q (original, reply, both)", m.Dir)
	}
	if m.mode < 0 {
		return fmt.Errorf("bad connbytes-mode %q (packets, bytes, avgpkt)", m.Mode)
	}
	m.h = sharedHolder(ctx)
	return nil
}

// Fields implements pipeline.Matcher.
func (*ConnbytesMatch) Fields() pipeline.FieldSet { return pipeline.FieldOther }

// Constraint implements pipeline.ConstraintDescriber.
func (*ConnbytesMatch) Constraint() []pipeline.FieldConstraint { return nil }

// Match implements pipeline.Matcher.
func (m *ConnbytesMatch) Match(pc *pipeline.PacketContext) (bool, bool) {
	e, r := m.h.entryOf(pc.Pkt)
	if e == nil {
		return false, false
	}
	e.Lock()
	if !e.Valid(r) {
		e.Unlock()
		return false, false
	}
	var pk, by uint64
	switch m.dir {
	case 0, 1:
		s := e.dir(m.dir)
		pk, by = s.packets, s.bytes
	default:
		pk, by = e.orig.packets+e.reply.packets, e.orig.bytes+e.reply.bytes
	}
	e.Unlock()
	var v uint64
	switch m.mode {
	case 0:
		v = pk
	case 1:
		v = by
	default:
		if pk > 0 {
			v = by / pk
		}
	}
	in := v >= m.from && (m.to == 0 || v <= m.to)
	return in != m.inv, false
}

// Spec implements filter.Match.
func (m *ConnbytesMatch) Spec() string {
	r := strconv.FormatUint(m.from, 10)
	if m.to != 0 {
		r += ":" + strconv.FormatUint(m.to, 10)
	}
	return "-m connbytes " + bang(m.inv) + "--connbytes " + r + " --connbytes-mode " + cbModes[m.mode] + " --connbytes-dir " + cbDirs[m.dir]
}

var (
	_ filter.Match  = (*StateMatch)(nil)
	_ filter.Match  = (*ConntrackMatch)(nil)
	_ filter.Match  = (*ConnmarkMatch)(nil)
	_ filter.Match  = (*ConnbytesMatch)(nil)
	_ filter.Target = (*ConnmarkTarget)(nil)
)
