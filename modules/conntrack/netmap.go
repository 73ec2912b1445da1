package conntrack

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Prefix translation: NETMAP (Linux's xt_NETMAP, stateful, the nat table)
// and NPTv6 (RFC 6296, ip6t_NPT's SNPT and DNPT, stateless, the mangle
// table).

func init() {
	pipeline.RegisterModule(new(Netmap))
	pipeline.RegisterModule(new(SNPT))
	pipeline.RegisterModule(new(DNPT))
}

// parseNetPrefix parses address[/len] (a bare address is a /32 or /128)
// or, for IPv4, address/dotted-mask as iptables accepts.
func parseNetPrefix(s string) (netip.Prefix, error) {
	a, m, hasLen := strings.Cut(s, "/")
	addr, err := netip.ParseAddr(a)
	if err != nil || addr.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad address %q", a)
	}
	if !hasLen {
		return netip.PrefixFrom(addr, addr.BitLen()), nil
	}
	if addr.Is4() && strings.Contains(m, ".") {
		mask, err := netip.ParseAddr(m)
		if err != nil || !mask.Is4() {
			return netip.Prefix{}, fmt.Errorf("bad mask %q", m)
		}
		b := mask.As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		bits := 0
		for v&0x80000000 != 0 {
			bits++
			v <<= 1
		}
		if v != 0 {
			return netip.Prefix{}, fmt.Errorf("mask %q is not contiguous", m)
		}
		return netip.PrefixFrom(addr, bits), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad prefix %q", s)
	}
	return p, nil
}

// mapPrefix returns a with its first bits bits replaced by p's.
func mapPrefix(a [16]byte, p [16]byte, bits int) [16]byte {
	for i := 0; i < 16 && bits > 0; i++ {
		m := byte(0xff)
		if bits < 8 {
			m = ^byte(0xff >> bits)
		}
		a[i] = a[i]&^m | p[i]&m
		bits -= 8
	}
	return a
}

// Netmap is filter.target.netmap: -j NETMAP --to address[/len], a 1:1
// mapping of one prefix onto another that keeps the host part (Linux's
// xt_NETMAP): the destination in PREROUTING and OUTPUT (as DNAT), the
// source in POSTROUTING and INPUT (as SNAT), for a connection's first
// packet; its replies are translated back by conntrack. Ports are kept
// unless the new tuple clashes (then the source port changes, as SNAT's).
type Netmap struct {
	To string `yaml:"to"`

	h    *holder
	pfx  netip.Prefix
	addr [16]byte // the prefix's address as a key address
	bits int      // prefix length within the 16-byte key address
	fam  int
}

// PipelineModule implements pipeline.Module.
func (*Netmap) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.netmap", Summary: "NETMAP --to addr/len: 1:1 prefix mapping keeping the host part (nat table: destination in PREROUTING/OUTPUT, source in POSTROUTING/INPUT); needs netfilter.conntrack", New: func() pipeline.Module { return new(Netmap) }}
}

// Options implements filter.Target.
func (*Netmap) Options() []filter.Opt { return []filter.Opt{{Name: "to", Args: 1}} }

// Provision parses the prefix.
func (t *Netmap) Provision(ctx *pipeline.Context) error {
	if t.To == "" {
		return fmt.Errorf("NETMAP: give --to address/len")
	}
	p, err := parseNetPrefix(t.To)
	if err != nil {
		return fmt.Errorf("NETMAP --to: %v", err)
	}
	t.pfx, t.fam = p, 6
	t.addr, t.bits = addrKey16(p.Addr()), p.Bits()
	if p.Addr().Is4() {
		t.fam = 4
	}
	t.h = sharedHolder(ctx)
	return nil
}

// Action implements pipeline.Target.
func (t *Netmap) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	orig, ok := origOf(t.h, pc.Pkt)
	if !ok || int(orig.Family) != t.fam {
		return pipeline.VerdictAccept, 0
	}
	dst := isDstHook(pc.Hook)
	a := orig.Src
	if dst {
		a = orig.Dst
	}
	// The key's IPv4 address sits in its first 4 bytes (addrKey16).
	a = mapPrefix(a, t.addr, t.bits)
	return natVerdict(setupNAT(t.h, pc, &a, &natRange{fam: t.fam}, dst)), 0
}

// Family implements the filter's family check: the prefix's.
func (t *Netmap) Family() int { return t.fam }

// Tables implements the filter's table check.
func (*Netmap) Tables() []string { return []string{"nat"} }

// Hooks implements the filter's hook check.
func (*Netmap) Hooks() uint8 {
	return 1<<pipeline.Prerouting | 1<<pipeline.Output | 1<<pipeline.Postrouting | 1<<pipeline.Input
}

// Spec implements filter.Target.
func (t *Netmap) Spec() string { return "-j NETMAP --to " + t.pfx.String() }

// Label implements filter.Target.
func (*Netmap) Label() string { return "NETMAP" }

// npt is the translation of an SNPT or DNPT rule (RFC 6296): the first
// max(src, dst length) bits of the address become the dst prefix's, and
// one 16-bit word — the fourth (bits 48–63) for prefixes up to /48, else
// the first of words 4–7 that is not 0xffff — takes an adjustment that
// keeps the address's one's-complement sum, so that no transport checksum
// changes (checksum-neutral, as Linux's ip6t_npt_map_pfx).
type npt struct {
	src, dst netip.Prefix
	dstAddr  [16]byte
	bits     int
}

func (n *npt) provision(name, srcPfx, dstPfx string) error {
	if srcPfx == "" || dstPfx == "" {
		return fmt.Errorf("%s: give --src-pfx and --dst-pfx", name)
	}
	for _, x := range []struct {
		opt string
		s   string
		p   *netip.Prefix
	}{{"--src-pfx", srcPfx, &n.src}, {"--dst-pfx", dstPfx, &n.dst}} {
		p, err := netip.ParsePrefix(x.s)
		if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			return fmt.Errorf("%s %s: bad IPv6 prefix %q", name, x.opt, x.s)
		}
		if p.Bits() > 64 {
			return fmt.Errorf("%s %s %s: at most /64 (ip6t_NPT)", name, x.opt, x.s)
		}
		if p.Masked() != p {
			return fmt.Errorf("%s %s %s: bits set past the prefix length", name, x.opt, x.s)
		}
		*x.p = p
	}
	n.dstAddr, n.bits = n.dst.Addr().As16(), max(n.src.Bits(), n.dst.Bits())
	return nil
}

// translate maps the address at a (16 bytes) in place; false when no word
// can take the adjustment (all of words 4–7 are 0xffff).
func (n *npt) translate(a []byte) bool {
	old := [16]byte(a)
	nw := mapPrefix(old, n.dstAddr, n.bits)
	idx := 3
	if n.bits > 48 {
		for idx = 4; idx < 8; idx++ {
			if nw[2*idx] != 0xff || nw[2*idx+1] != 0xff {
				break
			}
		}
		if idx == 8 {
			return false
		}
	}
	// The adjustment: the word plus (sum of the old prefix words − sum of
	// the new ones), in one's complement; 0xffff is written as 0.
	var sum uint32
	for i := 0; i < 8; i++ {
		sum += uint32(old[2*i])<<8 | uint32(old[2*i+1])
		sum += 0xffff - (uint32(nw[2*i])<<8 | uint32(nw[2*i+1]))
	}
	w := uint32(nw[2*idx])<<8 | uint32(nw[2*idx+1])
	sum += w
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	if sum == 0xffff {
		sum = 0
	}
	nw[2*idx], nw[2*idx+1] = byte(sum>>8), byte(sum)
	copy(a, nw[:])
	return true
}

// action translates the source (SNPT) or destination (DNPT) address of
// pc's IPv6 packet; a packet whose address cannot take the adjustment is
// dropped (the hook's filter drop counter; Linux also sends a Parameter
// Problem, which the network endpoints offer no kind for).
func (n *npt) action(pc *pipeline.PacketContext, src bool) (pipeline.Verdict, int) {
	h := pc.Pkt.NetworkHeader()
	if pc.Pkt.NetProto != pipeline.IPv6ProtocolNumber || len(h) < wire.IPv6HeaderSize {
		return pipeline.VerdictContinue, 0
	}
	off := 24
	if src {
		off = 8
	}
	if !n.translate(h[off : off+16]) {
		return pipeline.VerdictDrop, 0
	}
	return pipeline.VerdictContinue, 0
}

func (n *npt) spec(name string) string {
	return "-j " + name + " --src-pfx " + n.src.String() + " --dst-pfx " + n.dst.String()
}

var nptOpts = []filter.Opt{{Name: "src-pfx", Args: 1}, {Name: "dst-pfx", Args: 1}}

// SNPT is filter.target.snpt: -j SNPT --src-pfx P --dst-pfx Q, RFC 6296
// source prefix translation (ip6tables mangle POSTROUTING, INPUT),
// stateless: every packet the rule matches; the rule set goes on.
type SNPT struct {
	SrcPfx string `yaml:"src_pfx"`
	DstPfx string `yaml:"dst_pfx"`

	n npt
}

// PipelineModule implements pipeline.Module.
func (*SNPT) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.snpt", Summary: "SNPT --src-pfx P --dst-pfx Q: stateless, checksum-neutral IPv6 source prefix translation (NPTv6, RFC 6296; mangle POSTROUTING/INPUT)", New: func() pipeline.Module { return new(SNPT) }}
}

// Options implements filter.Target.
func (*SNPT) Options() []filter.Opt { return nptOpts }

// Provision parses the prefixes.
func (t *SNPT) Provision(*pipeline.Context) error { return t.n.provision("SNPT", t.SrcPfx, t.DstPfx) }

// Action implements pipeline.Target.
func (t *SNPT) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	return t.n.action(pc, true)
}

// Family implements the filter's family check.
func (*SNPT) Family() int { return 6 }

// Tables implements the filter's table check.
func (*SNPT) Tables() []string { return []string{"mangle"} }

// Hooks implements the filter's hook check.
func (*SNPT) Hooks() uint8 { return 1<<pipeline.Postrouting | 1<<pipeline.Input }

// Spec implements filter.Target.
func (t *SNPT) Spec() string { return t.n.spec("SNPT") }

// Label implements filter.Target.
func (*SNPT) Label() string { return "SNPT" }

// DNPT is filter.target.dnpt: -j DNPT --src-pfx P --dst-pfx Q, the
// destination's translation (mangle PREROUTING, OUTPUT).
type DNPT struct {
	SrcPfx string `yaml:"src_pfx"`
	DstPfx string `yaml:"dst_pfx"`

	n npt
}

// PipelineModule implements pipeline.Module.
func (*DNPT) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.dnpt", Summary: "DNPT --src-pfx P --dst-pfx Q: stateless, checksum-neutral IPv6 destination prefix translation (NPTv6, RFC 6296; mangle PREROUTING/OUTPUT)", New: func() pipeline.Module { return new(DNPT) }}
}

// Options implements filter.Target.
func (*DNPT) Options() []filter.Opt { return nptOpts }

// Provision parses the prefixes.
func (t *DNPT) Provision(*pipeline.Context) error { return t.n.provision("DNPT", t.SrcPfx, t.DstPfx) }

// Action implements pipeline.Target.
func (t *DNPT) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	return t.n.action(pc, false)
}

// Family implements the filter's family check.
func (*DNPT) Family() int { return 6 }

// Tables implements the filter's table check.
func (*DNPT) Tables() []string { return []string{"mangle"} }

// Hooks implements the filter's hook check.
func (*DNPT) Hooks() uint8 { return 1<<pipeline.Prerouting | 1<<pipeline.Output }

// Spec implements filter.Target.
func (t *DNPT) Spec() string { return t.n.spec("DNPT") }

// Label implements filter.Target.
func (*DNPT) Label() string { return "DNPT" }

var (
	_ filter.Target        = (*Netmap)(nil)
	_ filter.Target        = (*SNPT)(nil)
	_ filter.Target        = (*DNPT)(nil)
	_ pipeline.Provisioner = (*Netmap)(nil)
	_ pipeline.Provisioner = (*SNPT)(nil)
	_ pipeline.Provisioner = (*DNPT)(nil)
)
