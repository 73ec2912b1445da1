package filter

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Base is filter.match.base: iptables' own header filter (-4/-6, -p, -s,
// -d, -i, -o, -f), each with "!". YAML keys proto, src, dst, in, out,
// fragment; a value starting with "!" is inverted (quote it in YAML).
type Base struct {
	Proto    string `yaml:"proto"`
	Src      string `yaml:"src"`
	Dst      string `yaml:"dst"`
	In       string `yaml:"in"`
	Out      string `yaml:"out"`
	Fragment string `yaml:"fragment"`

	family             int // 0 both, 4, 6 (set by the rule)
	proto              uint8
	protoSet, protoInv bool
	src, dst           netip.Prefix
	srcSet, srcInv     bool
	dstSet, dstInv     bool
	in, out            nameMatch
	frag, fragInv      bool
	fragSet            bool
	// IPv4 prefixes as masked numbers (PacketContext.Src4/Dst4).
	src4, dst4             bool
	srcA, srcM, dstA, dstM uint32
}

// nameMatch matches a link name: exact, or a prefix with a trailing "+"
// ("lan+"; "+" alone matches every link). Provision resolves it against
// the generation's links (pipeline.Context.LinkIDs) into one NIC ID or a
// bitmap of IDs, so that Match compares numbers: a link that appears by a
// reload is in a new generation, provisioned anew.
type nameMatch struct {
	name     string
	prefix   bool
	set, inv bool
	id       pipeline.NICID // exact: the link's ID, 0 if the generation has none
	ids      []uint64       // prefix: bit i set for NIC ID i
}

func (n *nameMatch) parse(s string) error {
	v, inv := cutBang(s)
	if v == "" {
		return fmt.Errorf("empty link name")
	}
	for i, r := range v {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' ||
			r == '+' && i == len(v)-1
		if !ok || len(v) > 32 {
			return fmt.Errorf("link name %q: up to 32 letters, digits, '-', '_', '.' (and '+' at the end for a prefix)", v)
		}
	}
	n.set, n.inv, n.name = true, inv, v
	if strings.HasSuffix(v, "+") {
		n.prefix = true
	}
	return nil
}

// resolve finds the links the name matches among links (name → NIC ID).
func (n *nameMatch) resolve(links map[string]pipeline.NICID) {
	n.id, n.ids = 0, nil
	if !n.prefix {
		n.id = links[n.name]
		return
	}
	stem := n.name[:len(n.name)-1]
	for name, id := range links {
		if id == 0 || !strings.HasPrefix(name, stem) {
			continue
		}
		for int(id>>6) >= len(n.ids) {
			n.ids = append(n.ids, 0)
		}
		n.ids[id>>6] |= 1 << (id & 63)
	}
}

// match reports whether NIC id (0: not known at this hook) matches.
func (n *nameMatch) match(id pipeline.NICID) bool {
	var m bool
	if n.prefix {
		w := int(id >> 6)
		m = w < len(n.ids) && n.ids[w]&(1<<(id&63)) != 0
	} else {
		m = id != 0 && id == n.id
	}
	return m != n.inv
}

func cutBang(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "!") {
		return strings.TrimSpace(s[1:]), true
	}
	return s, false
}

// PipelineModule implements pipeline.Module.
func (*Base) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "filter.match.base",
		Summary: "iptables' header filter: -p, -s, -d, -i, -o, -f with !",
		New:     func() pipeline.Module { return new(Base) },
	}
}

// Options implements Match (the base options are iptables' own and parsed
// by the rule parser).
func (*Base) Options() []Opt { return nil }

// Provision parses the values and resolves link names against the
// generation's links.
func (b *Base) Provision(ctx *pipeline.Context) error {
	if b.Proto != "" {
		v, inv := cutBang(b.Proto)
		p, err := parseProto(v)
		if err != nil {
			return err
		}
		if p != 0 {
			b.proto, b.protoSet, b.protoInv = p, true, inv
		} else if inv {
			return fmt.Errorf("proto: \"! all\" matches nothing")
		}
	}
	var err error
	if b.Src != "" {
		if b.src, b.srcInv, err = parsePrefix(b.Src); err != nil {
			return fmt.Errorf("src: %v", err)
		}
		b.srcSet = true
	}
	if b.Dst != "" {
		if b.dst, b.dstInv, err = parsePrefix(b.Dst); err != nil {
			return fmt.Errorf("dst: %v", err)
		}
		b.dstSet = true
	}
	if f := b.impliedFamily(); f != 0 && b.family == 0 {
		b.family = f // also a base used alone: a v4 prefix never sees IPv6
	}
	if b.srcSet && b.src.Addr().Is4() {
		b.src4 = true
		b.srcA, b.srcM = v4Mask(b.src)
	}
	if b.dstSet && b.dst.Addr().Is4() {
		b.dst4 = true
		b.dstA, b.dstM = v4Mask(b.dst)
	}
	if b.srcSet && b.dstSet && b.src.Addr().Is4() != b.dst.Addr().Is4() {
		return fmt.Errorf("src %s and dst %s are of different families", b.src, b.dst)
	}
	if b.In != "" {
		if err := b.in.parse(b.In); err != nil {
			return fmt.Errorf("in: %v", err)
		}
		b.in.resolve(ctx.LinkIDs)
	}
	if b.Out != "" {
		if err := b.out.parse(b.Out); err != nil {
			return fmt.Errorf("out: %v", err)
		}
		b.out.resolve(ctx.LinkIDs)
	}
	if b.Fragment != "" {
		v, inv := cutBang(b.Fragment)
		switch v {
		case "true":
			b.fragSet, b.fragInv = true, inv
		case "false":
			if inv {
				return fmt.Errorf("fragment: \"!false\": say true")
			}
		default:
			return fmt.Errorf("fragment: %q is not true or false", b.Fragment)
		}
	}
	return nil
}

func (b *Base) provisionEmpty() {}

// Validate: -f is IPv4's (ip6tables has -m frag).
func (b *Base) Validate() error {
	if b.fragSet && b.impliedFamily() == 6 {
		return fmt.Errorf("fragment (-f) is IPv4 only")
	}
	return nil
}

func (b *Base) empty() bool {
	return b.family == 0 && !b.protoSet && !b.srcSet && !b.dstSet && !b.in.set && !b.out.set && !b.fragSet
}

// impliedFamily is the family the addresses imply.
func (b *Base) impliedFamily() int {
	switch {
	case b.srcSet && b.src.Addr().Is4(), b.dstSet && b.dst.Addr().Is4(), b.fragSet:
		return 4
	case b.srcSet, b.dstSet:
		return 6
	}
	return 0
}

// Family implements familyMatch.
func (b *Base) Family() int { return b.impliedFamily() }

// Fields implements pipeline.Matcher.
func (b *Base) Fields() pipeline.FieldSet {
	var f pipeline.FieldSet
	if b.protoSet {
		f |= pipeline.FieldProto
	}
	if b.srcSet {
		f |= pipeline.FieldSrcAddr
	}
	if b.dstSet {
		f |= pipeline.FieldDstAddr
	}
	if b.in.set {
		f |= pipeline.FieldInNIC
	}
	if b.out.set {
		f |= pipeline.FieldOutNIC
	}
	if b.family != 0 || b.fragSet {
		f |= pipeline.FieldOther
	}
	return f
}

// Constraint implements pipeline.ConstraintDescriber.
func (b *Base) Constraint() []pipeline.FieldConstraint {
	var out []pipeline.FieldConstraint
	if b.protoSet {
		out = append(out, pipeline.FieldConstraint{Field: pipeline.FieldProto, Ranges: []pipeline.ValueRange{{Lo: uint32(b.proto), Hi: uint32(b.proto)}}, Invert: b.protoInv})
	}
	if b.srcSet {
		out = append(out, pipeline.FieldConstraint{Field: pipeline.FieldSrcAddr, Prefixes: []netip.Prefix{b.src}, Invert: b.srcInv})
	}
	if b.dstSet {
		out = append(out, pipeline.FieldConstraint{Field: pipeline.FieldDstAddr, Prefixes: []netip.Prefix{b.dst}, Invert: b.dstInv})
	}
	if b.in.set {
		out = append(out, pipeline.FieldConstraint{Field: pipeline.FieldInNIC, Names: []string{b.in.name}, Invert: b.in.inv})
	}
	if b.out.set {
		out = append(out, pipeline.FieldConstraint{Field: pipeline.FieldOutNIC, Names: []string{b.out.name}, Invert: b.out.inv})
	}
	return out
}

// Match implements pipeline.Matcher.
func (b *Base) Match(pc *pipeline.PacketContext) (bool, bool) {
	switch b.family {
	case 4:
		if pc.Pkt.NetProto != pipeline.IPv4ProtocolNumber {
			return false, false
		}
	case 6:
		if pc.Pkt.NetProto != pipeline.IPv6ProtocolNumber {
			return false, false
		}
	}
	// A v4 prefix implies family 4, checked above: Src4/Dst4 are the
	// packet's.
	if b.srcSet {
		var in bool
		if b.src4 {
			in = pc.Src4&b.srcM == b.srcA
		} else {
			in = b.src.Contains(pc.Tuple.Src)
		}
		if in == b.srcInv {
			return false, false
		}
	}
	if b.dstSet {
		var in bool
		if b.dst4 {
			in = pc.Dst4&b.dstM == b.dstA
		} else {
			in = b.dst.Contains(pc.Tuple.Dst)
		}
		if in == b.dstInv {
			return false, false
		}
	}
	if b.in.set && !b.in.match(pc.InNIC) {
		return false, false
	}
	if b.out.set && !b.out.match(pc.OutNIC) {
		return false, false
	}
	if b.protoSet {
		// After addresses and links, as ip6_packet_match: -p (also
		// "! -p") drops a packet whose upper layer is unknown.
		if pc.L4Unknown {
			return false, true
		}
		if (uint8(pc.Tuple.Proto) == b.proto) == b.protoInv {
			return false, false
		}
	}
	if b.fragSet {
		// -f: the second and later fragments (IPv4 only).
		frag := pc.Pkt.NetProto == pipeline.IPv4ProtocolNumber && pc.Fragment
		if frag == b.fragInv {
			return false, false
		}
	}
	return true, false
}

// Spec implements Match.
func (b *Base) Spec() string {
	var p []string
	if b.protoSet {
		p = append(p, bang(b.protoInv)+"-p "+protoName(b.proto))
	}
	if b.srcSet {
		p = append(p, bang(b.srcInv)+"-s "+b.src.String())
	}
	if b.dstSet {
		p = append(p, bang(b.dstInv)+"-d "+b.dst.String())
	}
	if b.in.set {
		p = append(p, bang(b.in.inv)+"-i "+b.in.name)
	}
	if b.out.set {
		p = append(p, bang(b.out.inv)+"-o "+b.out.name)
	}
	if b.fragSet {
		p = append(p, bang(b.fragInv)+"-f")
	}
	return strings.Join(p, " ")
}

func bang(inv bool) string {
	if inv {
		return "! "
	}
	return ""
}

// protocols by name, as /etc/protocols and iptables spell them.
var protoByName = map[string]uint8{
	"all": 0, "icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "egp": 8, "udp": 17, "ipv6": 41,
	"gre": 47, "esp": 50, "ah": 51, "icmpv6": 58, "ipv6-icmp": 58, "icmp6": 58, "ospf": 89,
	"pim": 103, "sctp": 132, "udplite": 136,
}

var protoNames = map[uint8]string{1: "icmp", 2: "igmp", 4: "ipip", 6: "tcp", 8: "egp", 17: "udp", 41: "ipv6", 47: "gre", 50: "esp", 51: "ah", 58: "ipv6-icmp", 89: "ospf", 103: "pim", 132: "sctp", 136: "udplite"}

func parseProto(s string) (uint8, error) {
	if p, ok := protoByName[strings.ToLower(s)]; ok {
		return p, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("unknown protocol %q specified (a name such as tcp, udp, icmp, or 0..255)", s)
	}
	return uint8(n), nil
}

func protoName(p uint8) string {
	if s, ok := protoNames[p]; ok {
		return s
	}
	return strconv.Itoa(int(p))
}

// parsePrefix reads "10.0.0.0/8", "10.0.0.1" or "2001:db8::/32", with "!".
// Host bits are cleared, as iptables does.
func parsePrefix(s string) (netip.Prefix, bool, error) {
	v, inv := cutBang(s)
	if strings.Contains(v, ",") {
		return netip.Prefix{}, false, fmt.Errorf("%q: one address or prefix per rule (write one rule per address)", v)
	}
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, false, fmt.Errorf("%q is not an address or prefix", v)
		}
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p)).Masked(), inv, nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, false, fmt.Errorf("%q is not an address or prefix", v)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), inv, nil
}

func unmapBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return 96
	}
	return 0
}

// l4 returns the transport bytes of the packet (its header and payload,
// up to the IP length) and the fragment offset in bytes. ok is false for a
// malformed network header (which a hook never passes on).
func l4(pc *pipeline.PacketContext) (b []byte, fragOff int, ok bool) {
	if pc.L4Unknown {
		return nil, 0, false // an IPv6 chain ParseTuple could not walk
	}
	nh := pc.Pkt.NetworkHeader()
	if pc.L4End != 0 {
		// Parsed once for the hook (pipeline.ParseTuple), checked there.
		return nh[pc.L4Off:pc.L4End], pc.FragOff, true
	}
	switch pc.Pkt.NetProto {
	case pipeline.IPv4ProtocolNumber:
		ip := wire.IPv4(nh)
		if ip.Check() != nil {
			return nil, 0, false
		}
		return ip.Payload(), int(ip.FragmentOffset()), true
	case pipeline.IPv6ProtocolNumber:
		ip := wire.IPv6(nh)
		if ip.Check() != nil {
			return nil, 0, false
		}
		x, err := ip.WalkExtensions(64)
		if err != nil {
			return nil, 0, false
		}
		end := wire.IPv6HeaderSize + int(ip.PayloadLength())
		if x.ProtocolOffset > end || end > len(ip) {
			return nil, 0, false
		}
		off := 0
		if x.Fragment {
			off = int(x.FragmentOffset)
		}
		return ip[x.ProtocolOffset:end], off, true
	}
	return nil, 0, false
}

var _ Match = (*Base)(nil)
