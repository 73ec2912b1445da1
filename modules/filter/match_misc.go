package filter

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

func init() {
	pipeline.RegisterModule(new(Mark))
	pipeline.RegisterModule(new(IPRange))
	pipeline.RegisterModule(new(Length))
	pipeline.RegisterModule(new(TTL))
	pipeline.RegisterModule(&HL{})
	pipeline.RegisterModule(new(Limit))
	pipeline.RegisterModule(new(PktType))
	pipeline.RegisterModule(new(AddrType))
	pipeline.RegisterModule(new(Comment))
}

// parseUint32 reads decimal or 0x hex.
func parseUint32(s string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 0, 32)
	return uint32(n), err
}

// parseValueMask reads "value[/mask]" (mask default 0xffffffff).
func parseValueMask(s string) (v, mask uint32, err error) {
	vs, ms, hasMask := strings.Cut(s, "/")
	if v, err = parseUint32(vs); err != nil {
		return 0, 0, fmt.Errorf("bad value %q", vs)
	}
	mask = 0xffffffff
	if hasMask {
		if mask, err = parseUint32(ms); err != nil {
			return 0, 0, fmt.Errorf("bad mask %q", ms)
		}
	}
	return v, mask, nil
}

func hex(v uint32) string { return "0x" + strconv.FormatUint(uint64(v), 16) }

// Mark is filter.match.mark: --mark VALUE[/MASK] with "!" (the packet's
// mark ANDed with MASK equals VALUE).
type Mark struct {
	Mark string `yaml:"mark"`

	v, mask uint32
	inv     bool
}

// PipelineModule implements pipeline.Module.
func (*Mark) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.mark", Summary: "the packet's mark (-m mark --mark 0x1/0xff)", New: func() pipeline.Module { return new(Mark) }}
}

// Options implements Match.
func (*Mark) Options() []Opt { return []Opt{{Name: "mark", Args: 1, Invert: true}} }

// ShortKey implements shortKey.
func (*Mark) ShortKey() string { return "mark" }

// Provision parses the value.
func (m *Mark) Provision(*pipeline.Context) error {
	v, inv := cutBang(m.Mark)
	if v == "" {
		return fmt.Errorf("mark: a value is required")
	}
	var err error
	m.v, m.mask, err = parseValueMask(v)
	if err != nil {
		return fmt.Errorf("mark: %v", err)
	}
	m.inv = inv
	return nil
}

// Fields implements pipeline.Matcher.
func (*Mark) Fields() pipeline.FieldSet { return pipeline.FieldMark }

// Constraint implements pipeline.ConstraintDescriber.
func (m *Mark) Constraint() []pipeline.FieldConstraint {
	return []pipeline.FieldConstraint{{Field: pipeline.FieldMark, Mask: m.mask, Ranges: []pipeline.ValueRange{{Lo: m.v, Hi: m.v}}, Invert: m.inv}}
}

// Match implements pipeline.Matcher.
func (m *Mark) Match(pc *pipeline.PacketContext) (bool, bool) {
	return (pc.Pkt.Mark&m.mask == m.v) != m.inv, false
}

// Spec implements Match.
func (m *Mark) Spec() string {
	s := "-m mark " + bang(m.inv) + "--mark " + hex(m.v)
	if m.mask != 0xffffffff {
		s += "/" + hex(m.mask)
	}
	return s
}

// addrRange is an inclusive address range.
type addrRange struct {
	lo, hi   netip.Addr
	set, inv bool
}

func parseAddrRange(s string) (addrRange, error) {
	v, inv := cutBang(s)
	a, b, ok := strings.Cut(v, "-")
	if !ok {
		b = a
	}
	lo, err1 := netip.ParseAddr(strings.TrimSpace(a))
	hi, err2 := netip.ParseAddr(strings.TrimSpace(b))
	if err1 != nil || err2 != nil {
		return addrRange{}, fmt.Errorf("%q is not a range FROM-TO of addresses", v)
	}
	lo, hi = lo.Unmap(), hi.Unmap()
	if lo.Is4() != hi.Is4() {
		return addrRange{}, fmt.Errorf("%q mixes families", v)
	}
	if hi.Less(lo) {
		return addrRange{}, fmt.Errorf("%q: FROM is above TO", v)
	}
	return addrRange{lo: lo, hi: hi, set: true, inv: inv}, nil
}

func (r addrRange) match(a netip.Addr) bool {
	in := a.Is4() == r.lo.Is4() && r.lo.Compare(a) <= 0 && a.Compare(r.hi) <= 0
	return in != r.inv
}

// IPRange is filter.match.iprange: --src-range FROM-TO, --dst-range
// FROM-TO, each with "!".
type IPRange struct {
	SrcRange string `yaml:"src_range"`
	DstRange string `yaml:"dst_range"`

	src, dst addrRange
}

// PipelineModule implements pipeline.Module.
func (*IPRange) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.iprange", Summary: "address ranges (-m iprange --src-range 10.0.0.5-10.0.0.9)", New: func() pipeline.Module { return new(IPRange) }}
}

// Options implements Match.
func (*IPRange) Options() []Opt {
	return []Opt{{Name: "src-range", Args: 1, Invert: true}, {Name: "dst-range", Args: 1, Invert: true}}
}

// Provision parses the ranges.
func (m *IPRange) Provision(*pipeline.Context) error {
	var err error
	if m.SrcRange == "" && m.DstRange == "" {
		return fmt.Errorf("give src_range or dst_range")
	}
	if m.SrcRange != "" {
		if m.src, err = parseAddrRange(m.SrcRange); err != nil {
			return fmt.Errorf("src_range: %v", err)
		}
	}
	if m.DstRange != "" {
		if m.dst, err = parseAddrRange(m.DstRange); err != nil {
			return fmt.Errorf("dst_range: %v", err)
		}
	}
	if m.src.set && m.dst.set && m.src.lo.Is4() != m.dst.lo.Is4() {
		return fmt.Errorf("src_range and dst_range are of different families")
	}
	return nil
}

// Family implements familyMatch.
func (m *IPRange) Family() int {
	r := m.src
	if !r.set {
		r = m.dst
	}
	if r.lo.Is4() {
		return 4
	}
	return 6
}

// Fields implements pipeline.Matcher.
func (m *IPRange) Fields() pipeline.FieldSet {
	var f pipeline.FieldSet
	if m.src.set {
		f |= pipeline.FieldSrcAddr
	}
	if m.dst.set {
		f |= pipeline.FieldDstAddr
	}
	return f
}

// Constraint implements pipeline.ConstraintDescriber: a range as the
// prefixes that cover it exactly.
func (m *IPRange) Constraint() []pipeline.FieldConstraint {
	var out []pipeline.FieldConstraint
	if m.src.set {
		out = append(out, pipeline.FieldConstraint{Field: pipeline.FieldSrcAddr, Prefixes: RangePrefixes(m.src.lo, m.src.hi), Invert: m.src.inv})
	}
	if m.dst.set {
		out = append(out, pipeline.FieldConstraint{Field: pipeline.FieldDstAddr, Prefixes: RangePrefixes(m.dst.lo, m.dst.hi), Invert: m.dst.inv})
	}
	return out
}

// rangePrefixes covers [lo, hi] with the fewest prefixes.
func RangePrefixes(lo, hi netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for n := 0; n < 256; n++ {
		bits := lo.BitLen()
		// the largest prefix starting at lo that stays within hi
		for bits > 0 {
			p := netip.PrefixFrom(lo, bits-1).Masked()
			if p.Addr() != lo || lastAddr(p).Compare(hi) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(lo, bits)
		out = append(out, p)
		last := lastAddr(p)
		if last.Compare(hi) >= 0 {
			break
		}
		lo = last.Next()
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Match implements pipeline.Matcher.
func (m *IPRange) Match(pc *pipeline.PacketContext) (bool, bool) {
	if m.src.set && !m.src.match(pc.Tuple.Src) {
		return false, false
	}
	if m.dst.set && !m.dst.match(pc.Tuple.Dst) {
		return false, false
	}
	return true, false
}

// Spec implements Match.
func (m *IPRange) Spec() string {
	p := []string{"-m iprange"}
	if m.src.set {
		p = append(p, bang(m.src.inv)+"--src-range "+m.src.lo.String()+"-"+m.src.hi.String())
	}
	if m.dst.set {
		p = append(p, bang(m.dst.inv)+"--dst-range "+m.dst.lo.String()+"-"+m.dst.hi.String())
	}
	return strings.Join(p, " ")
}

// numRange reads "N", "N:M", ":M", "N:" within 0..max.
func numRange(s string, max uint32) (lo, hi uint32, err error) {
	a, b, isRange := strings.Cut(s, ":")
	if !isRange {
		b = a
	}
	hi = max
	if a != "" {
		if lo, err = parseUint32(a); err != nil || lo > max {
			return 0, 0, fmt.Errorf("bad value %q", a)
		}
	}
	if b != "" {
		if hi, err = parseUint32(b); err != nil || hi > max {
			return 0, 0, fmt.Errorf("bad value %q", b)
		}
	}
	if lo > hi {
		return 0, 0, fmt.Errorf("%q: min above max", s)
	}
	return lo, hi, nil
}

// Length is filter.match.length: --length MIN[:MAX] with "!": the IP
// packet's length (IPv4 total length; IPv6 payload length plus 40).
type Length struct {
	Length string `yaml:"length"`

	lo, hi uint32
	inv    bool
}

// PipelineModule implements pipeline.Module.
func (*Length) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.length", Summary: "the packet's length (-m length --length 0:128)", New: func() pipeline.Module { return new(Length) }}
}

// Options implements Match.
func (*Length) Options() []Opt { return []Opt{{Name: "length", Args: 1, Invert: true}} }

// ShortKey implements shortKey.
func (*Length) ShortKey() string { return "length" }

// Provision parses the range.
func (m *Length) Provision(*pipeline.Context) error {
	v, inv := cutBang(m.Length)
	if v == "" {
		return fmt.Errorf("length: a range is required")
	}
	var err error
	if m.lo, m.hi, err = numRange(v, 65535+40); err != nil {
		return fmt.Errorf("length: %v", err)
	}
	m.inv = inv
	return nil
}

// Fields implements pipeline.Matcher.
func (*Length) Fields() pipeline.FieldSet { return pipeline.FieldOther }

// Constraint implements pipeline.ConstraintDescriber (length is no
// classifier field).
func (*Length) Constraint() []pipeline.FieldConstraint { return nil }

func ipLength(pc *pipeline.PacketContext) (uint32, bool) {
	nh := pc.Pkt.NetworkHeader()
	switch pc.Pkt.NetProto {
	case pipeline.IPv4ProtocolNumber:
		if len(nh) >= wire.IPv4MinimumSize {
			return uint32(wire.IPv4(nh).TotalLength()), true
		}
	case pipeline.IPv6ProtocolNumber:
		if len(nh) >= wire.IPv6HeaderSize {
			return uint32(wire.IPv6(nh).PayloadLength()) + wire.IPv6HeaderSize, true
		}
	}
	return 0, false
}

// Match implements pipeline.Matcher.
func (m *Length) Match(pc *pipeline.PacketContext) (bool, bool) {
	l, ok := ipLength(pc)
	if !ok {
		return false, false
	}
	return (l >= m.lo && l <= m.hi) != m.inv, false
}

// Spec implements Match.
func (m *Length) Spec() string {
	s := "-m length " + bang(m.inv) + "--length " + strconv.Itoa(int(m.lo))
	if m.hi != m.lo {
		s += ":" + strconv.Itoa(int(m.hi))
	}
	return s
}

// hopMatch is the code of ttl and hl: eq (with "!": ne), lt, gt.
type hopMatch struct {
	op  byte // '=', '!', '<', '>'
	val uint8
}

func (h *hopMatch) parse(eq, lt, gt string) error {
	n := 0
	for _, c := range []struct {
		v  string
		op byte
	}{{eq, '='}, {lt, '<'}, {gt, '>'}} {
		if c.v == "" {
			continue
		}
		n++
		v, inv := cutBang(c.v)
		if inv && c.op != '=' {
			return fmt.Errorf("\"!\" only with the eq form")
		}
		x, err := strconv.ParseUint(v, 10, 8)
		if err != nil {
			return fmt.Errorf("bad value %q (0..255)", v)
		}
		h.op, h.val = c.op, uint8(x)
		if inv {
			h.op = '!'
		}
	}
	if n != 1 {
		return fmt.Errorf("give one of eq, lt, gt")
	}
	return nil
}

func (h *hopMatch) match(v uint8) bool {
	switch h.op {
	case '=':
		return v == h.val
	case '!':
		return v != h.val
	case '<':
		return v < h.val
	}
	return v > h.val
}

func (h *hopMatch) spec(prefix string) string {
	v := strconv.Itoa(int(h.val))
	switch h.op {
	case '=':
		return "--" + prefix + "-eq " + v
	case '!':
		return "! --" + prefix + "-eq " + v
	case '<':
		return "--" + prefix + "-lt " + v
	}
	return "--" + prefix + "-gt " + v
}

// TTL is filter.match.ttl: --ttl-eq N ("!" for not equal), --ttl-lt N,
// --ttl-gt N (IPv4).
type TTL struct {
	Eq string `yaml:"ttl_eq"`
	Lt string `yaml:"ttl_lt"`
	Gt string `yaml:"ttl_gt"`

	h hopMatch
}

// PipelineModule implements pipeline.Module.
func (*TTL) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.ttl", Summary: "IPv4 TTL (-m ttl --ttl-lt 2)", New: func() pipeline.Module { return new(TTL) }}
}

// Options implements Match.
func (*TTL) Options() []Opt {
	return []Opt{{Name: "ttl-eq", Args: 1, Invert: true}, {Name: "ttl-lt", Args: 1}, {Name: "ttl-gt", Args: 1}}
}

// Provision parses the test.
func (m *TTL) Provision(*pipeline.Context) error { return m.h.parse(m.Eq, m.Lt, m.Gt) }

// Family implements familyMatch.
func (*TTL) Family() int { return 4 }

// Fields implements pipeline.Matcher.
func (*TTL) Fields() pipeline.FieldSet { return pipeline.FieldOther }

// Constraint implements pipeline.ConstraintDescriber.
func (*TTL) Constraint() []pipeline.FieldConstraint { return nil }

// Match implements pipeline.Matcher.
func (m *TTL) Match(pc *pipeline.PacketContext) (bool, bool) {
	nh := pc.Pkt.NetworkHeader()
	if pc.Pkt.NetProto != pipeline.IPv4ProtocolNumber || len(nh) < wire.IPv4MinimumSize {
		return false, false
	}
	return m.h.match(wire.IPv4(nh).TTL()), false
}

// Spec implements Match.
func (m *TTL) Spec() string { return "-m ttl " + m.h.spec("ttl") }

// HL is filter.match.hl: --hl-eq N ("!" for not equal), --hl-lt N,
// --hl-gt N (IPv6 hop limit).
type HL struct {
	Eq string `yaml:"hl_eq"`
	Lt string `yaml:"hl_lt"`
	Gt string `yaml:"hl_gt"`

	h hopMatch
}

// PipelineModule implements pipeline.Module.
func (*HL) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.hl", Summary: "IPv6 hop limit (-m hl --hl-eq 255)", New: func() pipeline.Module { return new(HL) }}
}

// Options implements Match.
func (*HL) Options() []Opt {
	return []Opt{{Name: "hl-eq", Args: 1, Invert: true}, {Name: "hl-lt", Args: 1}, {Name: "hl-gt", Args: 1}}
}

// Provision parses the test.
func (m *HL) Provision(*pipeline.Context) error { return m.h.parse(m.Eq, m.Lt, m.Gt) }

// Family implements familyMatch.
func (*HL) Family() int { return 6 }

// Fields implements pipeline.Matcher.
func (*HL) Fields() pipeline.FieldSet { return pipeline.FieldOther }

// Constraint implements pipeline.ConstraintDescriber.
func (*HL) Constraint() []pipeline.FieldConstraint { return nil }

// Match implements pipeline.Matcher.
func (m *HL) Match(pc *pipeline.PacketContext) (bool, bool) {
	nh := pc.Pkt.NetworkHeader()
	if pc.Pkt.NetProto != pipeline.IPv6ProtocolNumber || len(nh) < wire.IPv6HeaderSize {
		return false, false
	}
	return m.h.match(wire.IPv6(nh).HopLimit()), false
}

// Spec implements Match.
func (m *HL) Spec() string { return "-m hl " + m.h.spec("hl") }

// bucket is a token bucket on the batch clock, as Linux's xt_limit: it
// holds up to burst packets' worth of credit, earns one packet's worth
// every interval and starts full.
type bucket struct {
	mu       sync.Mutex
	interval int64 // ns per packet
	capacity int64 // burst * interval
	credit   int64
	last     int64 // ns; 0: not started
}

func (b *bucket) init(interval time.Duration, burst int) {
	b.interval = int64(interval)
	b.capacity = int64(burst) * b.interval
	b.credit = b.capacity
}

func (b *bucket) take(now int64) bool {
	b.mu.Lock()
	if b.last != 0 && now > b.last {
		b.credit += now - b.last
		if b.credit > b.capacity {
			b.credit = b.capacity
		}
	}
	if now > b.last {
		b.last = now
	}
	ok := b.credit >= b.interval
	if ok {
		b.credit -= b.interval
	}
	b.mu.Unlock()
	return ok
}

// parseRate reads iptables' N/second|minute|hour|day (the unit may be
// shortened to its first letter; default per second).
func parseRate(s string) (time.Duration, error) {
	n, unit, _ := strings.Cut(s, "/")
	v, err := strconv.ParseUint(n, 10, 32)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("bad rate %q (e.g. 5/second, 10/minute)", s)
	}
	per := time.Second
	switch {
	case unit == "":
	case strings.HasPrefix("second", unit):
	case strings.HasPrefix("minute", unit):
		per = time.Minute
	case strings.HasPrefix("hour", unit):
		per = time.Hour
	case strings.HasPrefix("day", unit):
		per = 24 * time.Hour
	default:
		return 0, fmt.Errorf("bad rate unit %q (second, minute, hour, day)", unit)
	}
	iv := per / time.Duration(v)
	if iv < time.Microsecond {
		return 0, fmt.Errorf("rate too fast %q", s)
	}
	return iv, nil
}

func rateString(iv time.Duration) string {
	for _, u := range []struct {
		d time.Duration
		n string
	}{{time.Second, "sec"}, {time.Minute, "min"}, {time.Hour, "hour"}, {24 * time.Hour, "day"}} {
		if u.d%iv == 0 {
			return strconv.Itoa(int(u.d/iv)) + "/" + u.n
		}
	}
	return strconv.Itoa(int(24*time.Hour/iv)) + "/day"
}

// now is the batch's clock (a test's table evaluated outside a batch:
// testNow).
func now(pc *pipeline.PacketContext) int64 {
	if pc.Batch != nil {
		return pc.Batch.Now.UnixNano()
	}
	if testNow != nil {
		return testNow().UnixNano()
	}
	return time.Now().UnixNano()
}

var testNow func() time.Time

// Limit is filter.match.limit: --limit RATE (default 3/hour), --limit-burst
// N (default 5); one token bucket per rule, on the batch clock. The bucket
// starts full at every (re)load.
type Limit struct {
	Limit string `yaml:"limit"`
	Burst int    `yaml:"limit_burst"`

	interval time.Duration
	b        *bucket
}

// PipelineModule implements pipeline.Module.
func (*Limit) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.limit", Summary: "a token bucket per rule (-m limit --limit 5/s --limit-burst 10)", New: func() pipeline.Module { return new(Limit) }}
}

// Options implements Match.
func (*Limit) Options() []Opt { return []Opt{{Name: "limit", Args: 1}, {Name: "limit-burst", Args: 1}} }

// ShortKey implements shortKey.
func (*Limit) ShortKey() string { return "limit" }

// Provision sets the defaults and makes the bucket.
func (m *Limit) Provision(*pipeline.Context) error {
	if m.Limit == "" {
		m.Limit = "3/hour"
	}
	if m.Burst == 0 {
		m.Burst = 5
	}
	var err error
	if m.interval, err = parseRate(m.Limit); err != nil {
		return err
	}
	m.b = new(bucket)
	m.b.init(m.interval, m.Burst)
	return nil
}

// Validate checks the burst.
func (m *Limit) Validate() error {
	if m.Burst < 1 || m.Burst > 10000 {
		return fmt.Errorf("limit_burst %d out of range 1..10000", m.Burst)
	}
	return nil
}

// Fields implements pipeline.Matcher.
func (*Limit) Fields() pipeline.FieldSet { return pipeline.FieldOther }

// Constraint implements pipeline.ConstraintDescriber.
func (*Limit) Constraint() []pipeline.FieldConstraint { return nil }

// Match implements pipeline.Matcher.
func (m *Limit) Match(pc *pipeline.PacketContext) (bool, bool) { return m.b.take(now(pc)), false }

// Spec implements Match.
func (m *Limit) Spec() string {
	return "-m limit --limit " + rateString(m.interval) + " --limit-burst " + strconv.Itoa(m.Burst)
}

// Packet types of pkttype.
const (
	pktUnicast = iota
	pktBroadcast
	pktMulticast
)

var pktTypeNames = map[string]int{"unicast": pktUnicast, "host": pktUnicast, "broadcast": pktBroadcast, "multicast": pktMulticast}

// PktType is filter.match.pkttype: --pkt-type unicast|broadcast|multicast
// with "!". On a framed link the received frame's destination MAC says
// (Linux's skb->pkt_type); otherwise, and for packets the stack sends, the
// destination address: multicast, limited or subnet broadcast, or unicast.
type PktType struct {
	PktType string `yaml:"pkt_type"`

	t   int
	inv bool
}

// PipelineModule implements pipeline.Module.
func (*PktType) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.pkttype", Summary: "unicast, broadcast or multicast (-m pkttype --pkt-type broadcast)", New: func() pipeline.Module { return new(PktType) }}
}

// Options implements Match.
func (*PktType) Options() []Opt { return []Opt{{Name: "pkt-type", Args: 1, Invert: true}} }

// ShortKey implements shortKey.
func (*PktType) ShortKey() string { return "pkt_type" }

// Provision parses the type.
func (m *PktType) Provision(*pipeline.Context) error {
	v, inv := cutBang(m.PktType)
	t, ok := pktTypeNames[strings.ToLower(v)]
	if !ok {
		return fmt.Errorf("pkt_type %q is not unicast, broadcast or multicast", v)
	}
	m.t, m.inv = t, inv
	return nil
}

// Fields implements pipeline.Matcher.
func (*PktType) Fields() pipeline.FieldSet { return pipeline.FieldOther }

// Constraint implements pipeline.ConstraintDescriber.
func (*PktType) Constraint() []pipeline.FieldConstraint { return nil }

func pktType(pc *pipeline.PacketContext) int {
	if len(pc.Pkt.LinkHeader()) > 0 && pc.Hook <= pipeline.Forward {
		// Received on a framed link: as the link classified the frame.
		switch pc.Pkt.PktType {
		case pipeline.PacketBroadcast:
			return pktBroadcast
		case pipeline.PacketMulticast:
			return pktMulticast
		}
		return pktUnicast
	}
	d := pc.Tuple.Dst
	switch {
	case d.IsMulticast():
		return pktMulticast
	case d.Is4():
		if d == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return pktBroadcast
		}
		if pc.Batch != nil {
			if _, bc, ok := pc.Batch.Gen.IsLocal4(d.As4()); ok && bc {
				return pktBroadcast
			}
		}
	}
	return pktUnicast
}

// Match implements pipeline.Matcher.
func (m *PktType) Match(pc *pipeline.PacketContext) (bool, bool) {
	return (pktType(pc) == m.t) != m.inv, false
}

// Spec implements Match.
func (m *PktType) Spec() string {
	return "-m pkttype " + bang(m.inv) + "--pkt-type " + []string{"unicast", "broadcast", "multicast"}[m.t]
}

// Address types of addrtype (a bit each).
const (
	atUnspec = 1 << iota
	atUnicast
	atLocal
	atBroadcast
	atMulticast
)

var addrTypeNames = []struct {
	name string
	bit  int
}{{"UNSPEC", atUnspec}, {"UNICAST", atUnicast}, {"LOCAL", atLocal}, {"BROADCAST", atBroadcast}, {"MULTICAST", atMulticast}}

// addrTypeUnsupported are Linux's route types that need a routing table
// pipestack does not have (blackhole, prohibit, … routes).
var addrTypeUnsupported = []string{"ANYCAST", "BLACKHOLE", "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE"}

func parseAddrTypes(s string) (int, bool, error) {
	v, inv := cutBang(s)
	mask := 0
	for _, n := range strings.Split(v, ",") {
		n = strings.ToUpper(strings.TrimSpace(n))
		found := false
		for _, t := range addrTypeNames {
			if t.name == n {
				mask |= t.bit
				found = true
			}
		}
		if !found {
			for _, u := range addrTypeUnsupported {
				if u == n {
					return 0, false, fmt.Errorf("address type %s needs route types pipestack does not have (UNSPEC, UNICAST, LOCAL, BROADCAST, MULTICAST are supported)", n)
				}
			}
			return 0, false, fmt.Errorf("unknown address type %q (UNSPEC, UNICAST, LOCAL, BROADCAST, MULTICAST)", n)
		}
	}
	return mask, inv, nil
}

func addrTypesString(mask int) string {
	var p []string
	for _, t := range addrTypeNames {
		if mask&t.bit != 0 {
			p = append(p, t.name)
		}
	}
	return strings.Join(p, ",")
}

// AddrType is filter.match.addrtype: --src-type TYPES, --dst-type TYPES
// (comma-separated, with "!"), the type of the address as the stack sees
// it: UNSPEC (all zeros), MULTICAST, BROADCAST (limited or a subnet
// broadcast of the stack's), LOCAL (the stack's own), else UNICAST.
type AddrType struct {
	SrcType string `yaml:"src_type"`
	DstType string `yaml:"dst_type"`

	src, dst       int
	srcInv, dstInv bool
}

// PipelineModule implements pipeline.Module.
func (*AddrType) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.addrtype", Summary: "address types LOCAL, UNICAST, BROADCAST, MULTICAST, UNSPEC (-m addrtype --dst-type LOCAL)", New: func() pipeline.Module { return new(AddrType) }}
}

// Options implements Match.
func (*AddrType) Options() []Opt {
	return []Opt{{Name: "src-type", Args: 1, Invert: true}, {Name: "dst-type", Args: 1, Invert: true}}
}

// Provision parses the types.
func (m *AddrType) Provision(*pipeline.Context) error {
	var err error
	if m.SrcType == "" && m.DstType == "" {
		return fmt.Errorf("give src_type or dst_type")
	}
	if m.SrcType != "" {
		if m.src, m.srcInv, err = parseAddrTypes(m.SrcType); err != nil {
			return fmt.Errorf("src_type: %v", err)
		}
	}
	if m.DstType != "" {
		if m.dst, m.dstInv, err = parseAddrTypes(m.DstType); err != nil {
			return fmt.Errorf("dst_type: %v", err)
		}
	}
	return nil
}

// Fields implements pipeline.Matcher.
func (*AddrType) Fields() pipeline.FieldSet { return pipeline.FieldOther }

// Constraint implements pipeline.ConstraintDescriber (the types depend
// on the generation's addresses: not a static constraint).
func (*AddrType) Constraint() []pipeline.FieldConstraint { return nil }

func addrType(pc *pipeline.PacketContext, a netip.Addr) int {
	switch {
	case !a.IsValid() || a.IsUnspecified():
		return atUnspec
	case a.IsMulticast():
		return atMulticast
	case a.Is4():
		if a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return atBroadcast
		}
		if pc.Batch != nil {
			if _, bc, ok := pc.Batch.Gen.IsLocal4(a.As4()); ok {
				if bc {
					return atBroadcast
				}
				return atLocal
			}
		}
	default:
		if pc.Batch != nil {
			if _, ok := pc.Batch.Gen.IsLocal6(a.As16()); ok {
				return atLocal
			}
		}
	}
	return atUnicast
}

// Match implements pipeline.Matcher.
func (m *AddrType) Match(pc *pipeline.PacketContext) (bool, bool) {
	if m.src != 0 && (addrType(pc, pc.Tuple.Src)&m.src != 0) == m.srcInv {
		return false, false
	}
	if m.dst != 0 && (addrType(pc, pc.Tuple.Dst)&m.dst != 0) == m.dstInv {
		return false, false
	}
	return true, false
}

// Spec implements Match.
func (m *AddrType) Spec() string {
	p := []string{"-m addrtype"}
	if m.src != 0 {
		p = append(p, bang(m.srcInv)+"--src-type "+addrTypesString(m.src))
	}
	if m.dst != 0 {
		p = append(p, bang(m.dstInv)+"--dst-type "+addrTypesString(m.dst))
	}
	return strings.Join(p, " ")
}

// Comment is filter.match.comment: --comment TEXT (up to 256 bytes); it
// always matches.
type Comment struct {
	Comment string `yaml:"comment"`
}

// PipelineModule implements pipeline.Module.
func (*Comment) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.comment", Summary: "a comment on the rule (-m comment --comment TEXT)", New: func() pipeline.Module { return new(Comment) }}
}

// Options implements Match.
func (*Comment) Options() []Opt { return []Opt{{Name: "comment", Args: 1}} }

// ShortKey implements shortKey.
func (*Comment) ShortKey() string { return "comment" }

// Validate checks the length.
func (m *Comment) Validate() error {
	if len(m.Comment) > 256 {
		return fmt.Errorf("comment is %d bytes, at most 256", len(m.Comment))
	}
	return nil
}

// Fields implements pipeline.Matcher.
func (*Comment) Fields() pipeline.FieldSet { return 0 }

// Constraint implements pipeline.ConstraintDescriber.
func (*Comment) Constraint() []pipeline.FieldConstraint { return nil }

// Match implements pipeline.Matcher.
func (*Comment) Match(*pipeline.PacketContext) (bool, bool) { return true, false }

// Spec implements Match.
func (m *Comment) Spec() string { return "-m comment --comment " + quoteArg(m.Comment) }

var (
	_ Match = (*Mark)(nil)
	_ Match = (*IPRange)(nil)
	_ Match = (*Length)(nil)
	_ Match = (*TTL)(nil)
	_ Match = (*HL)(nil)
	_ Match = (*Limit)(nil)
	_ Match = (*PktType)(nil)
	_ Match = (*AddrType)(nil)
	_ Match = (*Comment)(nil)
)
