package filter

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pipestack/pipestack/pipeline"
)

func init() {
	pipeline.RegisterModule(new(Base))
	pipeline.RegisterModule(new(TCP))
	pipeline.RegisterModule(new(UDP))
	pipeline.RegisterModule(new(Multiport))
	pipeline.RegisterModule(new(ICMP))
	pipeline.RegisterModule(new(ICMPv6))
}

// portRange is an inclusive port range, possibly inverted; set false means
// any port.
type portRange struct {
	lo, hi   uint16
	set, inv bool
}

// parsePortRange reads "22", "1000:2000", ":1024", "1024:" with "!".
func parsePortRange(s string) (portRange, error) {
	v, inv := cutBang(s)
	r := portRange{set: true, inv: inv, hi: 65535}
	lo, hi, isRange := strings.Cut(v, ":")
	var err error
	if !isRange {
		if r.lo, err = parsePort(v); err != nil {
			return r, err
		}
		r.hi = r.lo
		return r, nil
	}
	if lo != "" {
		if r.lo, err = parsePort(lo); err != nil {
			return r, err
		}
	}
	if hi != "" {
		if r.hi, err = parsePort(hi); err != nil {
			return r, err
		}
	}
	if r.lo > r.hi {
		return r, fmt.Errorf("invalid portrange (min > max): %q", v)
	}
	return r, nil
}

// portNames are the service names iptables users write most.
var portNames = map[string]uint16{
	"ssh": 22, "http": 80, "https": 443, "domain": 53, "smtp": 25, "ntp": 123, "bootps": 67,
	"bootpc": 68, "telnet": 23, "ftp": 21, "imap": 143, "pop3": 110, "snmp": 161, "syslog": 514,
}

func parsePort(s string) (uint16, error) {
	if p, ok := portNames[s]; ok {
		return p, nil
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("invalid port/service %q specified", s)
	}
	return uint16(n), nil
}

func (r portRange) match(p uint16) bool {
	return (p >= r.lo && p <= r.hi) != r.inv
}

func (r portRange) String() string {
	s := strconv.Itoa(int(r.lo))
	if r.hi != r.lo {
		s += ":" + strconv.Itoa(int(r.hi))
	}
	return s
}

func (r portRange) constraint(f pipeline.FieldSet) pipeline.FieldConstraint {
	return pipeline.FieldConstraint{Field: f, Ranges: []pipeline.ValueRange{{Lo: uint32(r.lo), Hi: uint32(r.hi)}}, Invert: r.inv}
}

// TCP is filter.match.tcp: --sport, --dport (ranges), --tcp-flags MASK
// COMP, --syn, --tcp-option N, each with "!". As Linux: a non-first
// fragment does not match (one at offset 8 is dropped: "evil TCP offset=1
// frag"); a header that is not all there drops the packet (hotdrop).
type TCP struct {
	Sport     string `yaml:"sport"`
	Dport     string `yaml:"dport"`
	TCPFlags  string `yaml:"tcp_flags"`
	Syn       string `yaml:"syn"`
	TCPOption string `yaml:"tcp_option"`

	sport, dport     portRange
	mask, cmp        uint8
	flagsSet         bool
	flagsInv         bool
	option           uint8
	optSet, optInv   bool
	synForm, synOnly bool
}

// PipelineModule implements pipeline.Module.
func (*TCP) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.tcp", Summary: "TCP ports, flags and options (-p tcp --dport, --tcp-flags, --syn)", New: func() pipeline.Module { return new(TCP) }}
}

// Options implements Match.
func (*TCP) Options() []Opt {
	return []Opt{
		{Name: "sport", Aliases: []string{"source-port"}, Args: 1, Invert: true},
		{Name: "dport", Aliases: []string{"destination-port"}, Args: 1, Invert: true},
		{Name: "tcp-flags", Args: 2, Invert: true},
		{Name: "syn", Args: 0, Invert: true},
		{Name: "tcp-option", Args: 1, Invert: true},
	}
}

var tcpFlagNames = map[string]uint8{"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20, "ECE": 0x40, "CWR": 0x80, "ALL": 0xff, "NONE": 0}

var tcpFlagOrder = []string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}

func parseTCPFlags(s string) (uint8, error) {
	var f uint8
	for _, n := range strings.Split(s, ",") {
		v, ok := tcpFlagNames[strings.ToUpper(strings.TrimSpace(n))]
		if !ok {
			return 0, fmt.Errorf("unknown TCP flag %q (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, ALL, NONE)", n)
		}
		f |= v
	}
	return f, nil
}

func tcpFlagsString(f uint8) string {
	switch f {
	case 0:
		return "NONE"
	case 0xff:
		return "FIN,SYN,RST,PSH,ACK,URG,ECE,CWR"
	}
	var p []string
	for _, n := range tcpFlagOrder {
		if f&tcpFlagNames[n] != 0 {
			p = append(p, n)
		}
	}
	return strings.Join(p, ",")
}

// Provision parses the options.
func (m *TCP) Provision(*pipeline.Context) error {
	var err error
	if m.Sport != "" {
		if m.sport, err = parsePortRange(m.Sport); err != nil {
			return fmt.Errorf("sport: %v", err)
		}
	}
	if m.Dport != "" {
		if m.dport, err = parsePortRange(m.Dport); err != nil {
			return fmt.Errorf("dport: %v", err)
		}
	}
	if m.TCPFlags != "" && m.Syn != "" {
		return fmt.Errorf("tcp_flags and syn together (iptables: \"Only one of `--syn' or `--tcp-flags' may be specified\")")
	}
	if m.TCPFlags != "" {
		v, inv := cutBang(m.TCPFlags)
		f := strings.Fields(v)
		if len(f) != 2 {
			return fmt.Errorf("tcp_flags %q: want \"MASK COMP\", e.g. \"SYN,ACK SYN\"", m.TCPFlags)
		}
		if m.mask, err = parseTCPFlags(f[0]); err != nil {
			return fmt.Errorf("tcp_flags: %v", err)
		}
		if m.cmp, err = parseTCPFlags(f[1]); err != nil {
			return fmt.Errorf("tcp_flags: %v", err)
		}
		m.flagsSet, m.flagsInv = true, inv
	}
	if m.Syn != "" {
		v, inv := cutBang(m.Syn)
		switch v {
		case "true", "":
			m.mask, m.cmp, m.flagsSet, m.flagsInv, m.synForm = 0x17, 0x02, true, inv, true
		case "false":
		default:
			return fmt.Errorf("syn: %q is not true", m.Syn)
		}
	}
	if m.TCPOption != "" {
		v, inv := cutBang(m.TCPOption)
		n, err := strconv.ParseUint(v, 10, 8)
		if err != nil || n == 0 {
			return fmt.Errorf("tcp_option %q: want an option kind 1..255", v)
		}
		m.option, m.optSet, m.optInv = uint8(n), true, inv
	}
	m.synOnly = m.flagsSet && !m.flagsInv && m.mask&0x06 == 0x06 && m.cmp&0x06 == 0x02
	return nil
}

// Protocols implements protoMatch.
func (*TCP) Protocols() []uint8 { return []uint8{6} }

// Fields implements pipeline.Matcher.
func (m *TCP) Fields() pipeline.FieldSet {
	f := pipeline.FieldProto | pipeline.FieldOther // fragments, hotdrops
	if m.sport.set {
		f |= pipeline.FieldSrcPort
	}
	if m.dport.set {
		f |= pipeline.FieldDstPort
	}
	if m.flagsSet {
		f |= pipeline.FieldTCPFlags
	}
	return f
}

// Constraint implements pipeline.ConstraintDescriber.
func (m *TCP) Constraint() []pipeline.FieldConstraint {
	out := []pipeline.FieldConstraint{{Field: pipeline.FieldProto, Ranges: []pipeline.ValueRange{{Lo: 6, Hi: 6}}}}
	if m.sport.set {
		out = append(out, m.sport.constraint(pipeline.FieldSrcPort))
	}
	if m.dport.set {
		out = append(out, m.dport.constraint(pipeline.FieldDstPort))
	}
	if m.flagsSet {
		c := uint32(m.cmp)
		out = append(out, pipeline.FieldConstraint{Field: pipeline.FieldTCPFlags, Mask: uint32(m.mask), Ranges: []pipeline.ValueRange{{Lo: c, Hi: c}}, Invert: m.flagsInv})
	}
	return out
}

// Match implements pipeline.Matcher, as Linux's tcp_mt.
func (m *TCP) Match(pc *pipeline.PacketContext) (bool, bool) {
	b, fragOff, ok := l4(pc)
	if !ok {
		return false, true
	}
	if fragOff != 0 {
		return false, fragOff == 8
	}
	if len(b) < 20 {
		return false, true
	}
	sp, dp := uint16(b[0])<<8|uint16(b[1]), uint16(b[2])<<8|uint16(b[3])
	if m.sport.set && !m.sport.match(sp) {
		return false, false
	}
	if m.dport.set && !m.dport.match(dp) {
		return false, false
	}
	if m.flagsSet && (b[13]&m.mask == m.cmp) == m.flagsInv {
		return false, false
	}
	if m.optSet {
		doff := int(b[12]>>4) * 4
		if doff < 20 {
			return false, true
		}
		if doff > len(b) {
			return false, true
		}
		found := false
		opts := b[20:doff]
		for i := 0; i < len(opts); {
			if opts[i] == m.option {
				found = true
				break
			}
			if opts[i] < 2 {
				i++
				continue
			}
			if i+1 >= len(opts) {
				break
			}
			l := int(opts[i+1])
			if l == 0 {
				l = 1
			}
			i += l
		}
		if found == m.optInv {
			return false, false
		}
	}
	return true, false
}

// Spec implements Match.
func (m *TCP) Spec() string {
	p := []string{"-m tcp"}
	if m.sport.set {
		p = append(p, bang(m.sport.inv)+"--sport "+m.sport.String())
	}
	if m.dport.set {
		p = append(p, bang(m.dport.inv)+"--dport "+m.dport.String())
	}
	if m.flagsSet {
		if m.synForm {
			p = append(p, bang(m.flagsInv)+"--tcp-flags FIN,SYN,RST,ACK SYN")
		} else {
			p = append(p, bang(m.flagsInv)+"--tcp-flags "+tcpFlagsString(m.mask)+" "+tcpFlagsString(m.cmp))
		}
	}
	if m.optSet {
		p = append(p, bang(m.optInv)+"--tcp-option "+strconv.Itoa(int(m.option)))
	}
	return strings.Join(p, " ")
}

// UDP is filter.match.udp: --sport, --dport with ranges and "!".
type UDP struct {
	Sport string `yaml:"sport"`
	Dport string `yaml:"dport"`

	sport, dport portRange
}

// PipelineModule implements pipeline.Module.
func (*UDP) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.udp", Summary: "UDP ports (-p udp --sport, --dport)", New: func() pipeline.Module { return new(UDP) }}
}

// Options implements Match.
func (*UDP) Options() []Opt {
	return []Opt{
		{Name: "sport", Aliases: []string{"source-port"}, Args: 1, Invert: true},
		{Name: "dport", Aliases: []string{"destination-port"}, Args: 1, Invert: true},
	}
}

// Provision parses the ports.
func (m *UDP) Provision(*pipeline.Context) error {
	var err error
	if m.Sport != "" {
		if m.sport, err = parsePortRange(m.Sport); err != nil {
			return fmt.Errorf("sport: %v", err)
		}
	}
	if m.Dport != "" {
		if m.dport, err = parsePortRange(m.Dport); err != nil {
			return fmt.Errorf("dport: %v", err)
		}
	}
	return nil
}

// Protocols implements protoMatch.
func (*UDP) Protocols() []uint8 { return []uint8{17} }

// Fields implements pipeline.Matcher.
func (m *UDP) Fields() pipeline.FieldSet {
	f := pipeline.FieldProto | pipeline.FieldOther
	if m.sport.set {
		f |= pipeline.FieldSrcPort
	}
	if m.dport.set {
		f |= pipeline.FieldDstPort
	}
	return f
}

// Constraint implements pipeline.ConstraintDescriber.
func (m *UDP) Constraint() []pipeline.FieldConstraint {
	out := []pipeline.FieldConstraint{{Field: pipeline.FieldProto, Ranges: []pipeline.ValueRange{{Lo: 17, Hi: 17}}}}
	if m.sport.set {
		out = append(out, m.sport.constraint(pipeline.FieldSrcPort))
	}
	if m.dport.set {
		out = append(out, m.dport.constraint(pipeline.FieldDstPort))
	}
	return out
}

// Match implements pipeline.Matcher, as Linux's udp_mt.
func (m *UDP) Match(pc *pipeline.PacketContext) (bool, bool) {
	b, fragOff, ok := l4(pc)
	if !ok {
		return false, true
	}
	if fragOff != 0 {
		return false, false
	}
	if len(b) < 8 {
		return false, true
	}
	sp, dp := uint16(b[0])<<8|uint16(b[1]), uint16(b[2])<<8|uint16(b[3])
	return (!m.sport.set || m.sport.match(sp)) && (!m.dport.set || m.dport.match(dp)), false
}

// Spec implements Match.
func (m *UDP) Spec() string {
	p := []string{"-m udp"}
	if m.sport.set {
		p = append(p, bang(m.sport.inv)+"--sport "+m.sport.String())
	}
	if m.dport.set {
		p = append(p, bang(m.dport.inv)+"--dport "+m.dport.String())
	}
	return strings.Join(p, " ")
}

// Multiport is filter.match.multiport: --sports, --dports or --ports (either
// side), up to 15 ports, a range counting two, with "!".
type Multiport struct {
	Sports string `yaml:"sports"`
	Dports string `yaml:"dports"`
	Ports  string `yaml:"ports"`

	which  byte // 's', 'd', 'e'
	ranges []portRange
	inv    bool
}

// PipelineModule implements pipeline.Module.
func (*Multiport) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.multiport", Summary: "lists of ports and ranges (-m multiport --dports 80,443,8000:8080)", New: func() pipeline.Module { return new(Multiport) }}
}

// Options implements Match.
func (*Multiport) Options() []Opt {
	return []Opt{
		{Name: "sports", Aliases: []string{"source-ports"}, Args: 1, Invert: true},
		{Name: "dports", Aliases: []string{"destination-ports"}, Args: 1, Invert: true},
		{Name: "ports", Args: 1, Invert: true},
	}
}

// Provision parses the list.
func (m *Multiport) Provision(*pipeline.Context) error {
	n, list := 0, ""
	for _, c := range []struct {
		v string
		w byte
	}{{m.Sports, 's'}, {m.Dports, 'd'}, {m.Ports, 'e'}} {
		if c.v != "" {
			n++
			m.which, list = c.w, c.v
		}
	}
	if n != 1 {
		return fmt.Errorf("give one of sports, dports, ports")
	}
	v, inv := cutBang(list)
	m.inv = inv
	count := 0
	for _, p := range strings.Split(v, ",") {
		r, err := parsePortRange(strings.TrimSpace(p))
		if err != nil {
			return err
		}
		r.inv = false
		count++
		if r.lo != r.hi {
			count++
		}
		m.ranges = append(m.ranges, r)
	}
	if count > 15 {
		return fmt.Errorf("too many ports specified (at most 15, a range counts two)")
	}
	return nil
}

// Protocols implements protoMatch.
func (*Multiport) Protocols() []uint8 { return []uint8{6, 17, 33, 132, 136} }

// Fields implements pipeline.Matcher.
func (m *Multiport) Fields() pipeline.FieldSet {
	switch m.which {
	case 's':
		return pipeline.FieldSrcPort | pipeline.FieldOther
	case 'd':
		return pipeline.FieldDstPort | pipeline.FieldOther
	}
	return pipeline.FieldSrcPort | pipeline.FieldDstPort | pipeline.FieldOther
}

// Constraint implements pipeline.ConstraintDescriber: --ports (either)
// is not one field's constraint and is left to the matcher.
func (m *Multiport) Constraint() []pipeline.FieldConstraint {
	f := pipeline.FieldSrcPort
	switch m.which {
	case 'd':
		f = pipeline.FieldDstPort
	case 'e':
		return nil
	}
	c := pipeline.FieldConstraint{Field: f, Invert: m.inv}
	for _, r := range m.ranges {
		c.Ranges = append(c.Ranges, pipeline.ValueRange{Lo: uint32(r.lo), Hi: uint32(r.hi)})
	}
	return []pipeline.FieldConstraint{c}
}

// Match implements pipeline.Matcher, as Linux's multiport_mt.
func (m *Multiport) Match(pc *pipeline.PacketContext) (bool, bool) {
	b, fragOff, ok := l4(pc)
	if !ok {
		return false, true
	}
	if fragOff != 0 {
		return false, false
	}
	if len(b) < 4 {
		return false, true
	}
	sp, dp := uint16(b[0])<<8|uint16(b[1]), uint16(b[2])<<8|uint16(b[3])
	for _, r := range m.ranges {
		hit := false
		switch m.which {
		case 's':
			hit = r.match(sp)
		case 'd':
			hit = r.match(dp)
		default:
			hit = r.match(sp) || r.match(dp)
		}
		if hit {
			return !m.inv, false
		}
	}
	return m.inv, false
}

// Spec implements Match.
func (m *Multiport) Spec() string {
	opt := map[byte]string{'s': "--sports", 'd': "--dports", 'e': "--ports"}[m.which]
	var l []string
	for _, r := range m.ranges {
		l = append(l, r.String())
	}
	return "-m multiport " + bang(m.inv) + opt + " " + strings.Join(l, ",")
}

// icmpType is a type with a code range; typ 0xff (any) matches all.
type icmpType struct {
	typ, lo, hi uint8
	inv         bool
	name        string
}

func (t icmpType) match(typ, code uint8) bool {
	m := t.typ == 0xff || typ == t.typ && code >= t.lo && code <= t.hi
	return m != t.inv
}

type icmpName struct {
	name      string
	typ, code uint8
	anyCode   bool
}

// icmp4Names are iptables' ICMP type names (iptables -p icmp -h).
var icmp4Names = []icmpName{
	{"any", 0xff, 0, true}, {"echo-reply", 0, 0, true}, {"pong", 0, 0, true},
	{"destination-unreachable", 3, 0, true}, {"network-unreachable", 3, 0, false}, {"host-unreachable", 3, 1, false},
	{"protocol-unreachable", 3, 2, false}, {"port-unreachable", 3, 3, false}, {"fragmentation-needed", 3, 4, false},
	{"source-route-failed", 3, 5, false}, {"network-unknown", 3, 6, false}, {"host-unknown", 3, 7, false},
	{"network-prohibited", 3, 9, false}, {"host-prohibited", 3, 10, false}, {"TOS-network-unreachable", 3, 11, false},
	{"TOS-host-unreachable", 3, 12, false}, {"communication-prohibited", 3, 13, false},
	{"host-precedence-violation", 3, 14, false}, {"precedence-cutoff", 3, 15, false},
	{"source-quench", 4, 0, true}, {"redirect", 5, 0, true}, {"network-redirect", 5, 0, false},
	{"host-redirect", 5, 1, false}, {"TOS-network-redirect", 5, 2, false}, {"TOS-host-redirect", 5, 3, false},
	{"echo-request", 8, 0, true}, {"ping", 8, 0, true}, {"router-advertisement", 9, 0, true},
	{"router-solicitation", 10, 0, true}, {"time-exceeded", 11, 0, true}, {"ttl-exceeded", 11, 0, true},
	{"ttl-zero-during-transit", 11, 0, false}, {"ttl-zero-during-reassembly", 11, 1, false},
	{"parameter-problem", 12, 0, true}, {"ip-header-bad", 12, 0, false}, {"required-option-missing", 12, 1, false},
	{"timestamp-request", 13, 0, true}, {"timestamp-reply", 14, 0, true},
	{"address-mask-request", 17, 0, true}, {"address-mask-reply", 18, 0, true},
}

// icmp6Names are ip6tables' ICMPv6 type names.
var icmp6Names = []icmpName{
	{"any", 0xff, 0, true}, {"destination-unreachable", 1, 0, true}, {"no-route", 1, 0, false},
	{"communication-prohibited", 1, 1, false}, {"beyond-scope", 1, 2, false}, {"address-unreachable", 1, 3, false},
	{"port-unreachable", 1, 4, false}, {"failed-policy", 1, 5, false}, {"reject-route", 1, 6, false},
	{"packet-too-big", 2, 0, true}, {"time-exceeded", 3, 0, true}, {"ttl-exceeded", 3, 0, true},
	{"ttl-zero-during-transit", 3, 0, false}, {"ttl-zero-during-reassembly", 3, 1, false},
	{"parameter-problem", 4, 0, true}, {"bad-header", 4, 0, false}, {"unknown-header-type", 4, 1, false},
	{"unknown-option", 4, 2, false}, {"echo-request", 128, 0, true}, {"ping", 128, 0, true},
	{"echo-reply", 129, 0, true}, {"pong", 129, 0, true}, {"mld-listener-query", 130, 0, true},
	{"mld-listener-report", 131, 0, true}, {"mld-listener-done", 132, 0, true},
	{"router-solicitation", 133, 0, true}, {"router-advertisement", 134, 0, true},
	{"neighbour-solicitation", 135, 0, true}, {"neighbor-solicitation", 135, 0, true},
	{"neighbour-advertisement", 136, 0, true}, {"neighbor-advertisement", 136, 0, true},
	{"redirect", 137, 0, true},
}

func parseICMPType(s string, names []icmpName) (icmpType, error) {
	v, inv := cutBang(s)
	t := icmpType{inv: inv}
	for _, n := range names {
		if strings.EqualFold(n.name, v) {
			t.typ, t.lo, t.hi, t.name = n.typ, n.code, n.code, n.name
			if n.anyCode {
				t.lo, t.hi = 0, 0xff
			}
			return t, nil
		}
	}
	ts, cs, hasCode := strings.Cut(v, "/")
	typ, err := strconv.ParseUint(ts, 10, 8)
	if err != nil || typ == 0xff {
		return t, fmt.Errorf("invalid ICMP type %q (a name such as echo-request, or type[/code])", v)
	}
	t.typ, t.lo, t.hi = uint8(typ), 0, 0xff
	if hasCode {
		c, err := strconv.ParseUint(cs, 10, 8)
		if err != nil {
			return t, fmt.Errorf("invalid ICMP code %q", cs)
		}
		t.lo, t.hi = uint8(c), uint8(c)
	}
	t.name = v
	return t, nil
}

func (t icmpType) String() string {
	if t.typ == 0xff {
		return "any"
	}
	s := strconv.Itoa(int(t.typ))
	if t.lo == t.hi {
		s += "/" + strconv.Itoa(int(t.lo))
	}
	return s
}

// icmpSpec is what tells filter.match.icmp and filter.match.icmpv6 apart:
// one implementation (icmpMatch) serves both.
type icmpSpec struct {
	id, summary string
	mname, opt  string // "-m icmp", "--icmp-type"
	proto       uint8
	family      int
	names       []icmpName
}

var (
	icmp4Spec = icmpSpec{id: "filter.match.icmp", summary: "ICMP type and code (-p icmp --icmp-type echo-request)",
		mname: "icmp", opt: "icmp-type", proto: 1, family: 4, names: icmp4Names}
	icmp6Spec = icmpSpec{id: "filter.match.icmpv6", summary: "ICMPv6 type and code (-p icmpv6 --icmpv6-type echo-request)",
		mname: "icmpv6", opt: "icmpv6-type", proto: 58, family: 6, names: icmp6Names}
)

// icmpFamily picks the spec of one family (a type, so that the zero value
// of a matcher knows its options before its config is decoded).
type icmpFamily interface{ spec() *icmpSpec }

type icmp4 struct{}

func (icmp4) spec() *icmpSpec { return &icmp4Spec }

type icmp6 struct{}

func (icmp6) spec() *icmpSpec { return &icmp6Spec }

// icmpMatch is the ICMP or ICMPv6 matcher, as Linux's icmp_match and
// icmp6_match: a non-first fragment does not match, a header shorter
// than 8 bytes drops the packet.
type icmpMatch[F icmpFamily] struct{ t icmpType }

func (*icmpMatch[F]) spec() *icmpSpec {
	var f F
	return f.spec()
}

func (m *icmpMatch[F]) provision(v string) error {
	if v == "" {
		v = "any"
	}
	var err error
	m.t, err = parseICMPType(v, m.spec().names)
	return err
}

// Options implements Match.
func (m *icmpMatch[F]) Options() []Opt { return []Opt{{Name: m.spec().opt, Args: 1, Invert: true}} }

// ShortKey implements shortKey.
func (m *icmpMatch[F]) ShortKey() string { return strings.ReplaceAll(m.spec().opt, "-", "_") }

// Protocols implements protoMatch.
func (m *icmpMatch[F]) Protocols() []uint8 { return []uint8{m.spec().proto} }

// Family implements familyMatch.
func (m *icmpMatch[F]) Family() int { return m.spec().family }

// Fields implements pipeline.Matcher.
func (*icmpMatch[F]) Fields() pipeline.FieldSet {
	return pipeline.FieldProto | pipeline.FieldICMPType | pipeline.FieldOther // FieldOther: fragments, hotdrops
}

// Constraint implements pipeline.ConstraintDescriber.
func (m *icmpMatch[F]) Constraint() []pipeline.FieldConstraint {
	p := uint32(m.spec().proto)
	tc := pipeline.ValueRange{Lo: 0, Hi: 0xffff} // any
	if t := m.t; t.typ != 0xff {
		tc = pipeline.ValueRange{Lo: uint32(t.typ)<<8 | uint32(t.lo), Hi: uint32(t.typ)<<8 | uint32(t.hi)}
	}
	return []pipeline.FieldConstraint{
		{Field: pipeline.FieldProto, Ranges: []pipeline.ValueRange{{Lo: p, Hi: p}}},
		{Field: pipeline.FieldICMPType, Ranges: []pipeline.ValueRange{tc}, Invert: m.t.inv},
	}
}

// Match implements pipeline.Matcher.
func (m *icmpMatch[F]) Match(pc *pipeline.PacketContext) (bool, bool) {
	b, fragOff, ok := l4(pc)
	if !ok {
		return false, true
	}
	if fragOff != 0 {
		return false, false
	}
	if len(b) < 8 {
		return false, true
	}
	return m.t.match(b[0], b[1]), false
}

// Spec implements Match.
func (m *icmpMatch[F]) Spec() string {
	s := m.spec()
	return "-m " + s.mname + " " + bang(m.t.inv) + "--" + s.opt + " " + m.t.String()
}

// ICMP is filter.match.icmp: --icmp-type NAME|TYPE[/CODE] with "!".
type ICMP struct {
	ICMPType         string `yaml:"icmp_type"`
	icmpMatch[icmp4] `yaml:"-"`
}

// PipelineModule implements pipeline.Module.
func (*ICMP) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: icmp4Spec.id, Summary: icmp4Spec.summary, New: func() pipeline.Module { return new(ICMP) }}
}

// Provision parses the type.
func (m *ICMP) Provision(*pipeline.Context) error { return m.provision(m.ICMPType) }

// ICMPv6 is filter.match.icmpv6: --icmpv6-type NAME|TYPE[/CODE] with "!".
type ICMPv6 struct {
	ICMPv6Type       string `yaml:"icmpv6_type"`
	icmpMatch[icmp6] `yaml:"-"`
}

// PipelineModule implements pipeline.Module.
func (*ICMPv6) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: icmp6Spec.id, Summary: icmp6Spec.summary, New: func() pipeline.Module { return new(ICMPv6) }}
}

// Provision parses the type.
func (m *ICMPv6) Provision(*pipeline.Context) error { return m.provision(m.ICMPv6Type) }

var (
	_ Match = (*TCP)(nil)
	_ Match = (*UDP)(nil)
	_ Match = (*Multiport)(nil)
	_ Match = (*ICMP)(nil)
	_ Match = (*ICMPv6)(nil)
)
