package control

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pipestack/pipestack/pipeline"
)

// TraceFilter selects the packets `pipectl trace` traces: terms joined by
// `and`, each optionally preceded by `not`:
//
//	ip | ip6                         the family
//	proto tcp|udp|icmp|icmpv6|N      the upper-layer protocol
//	src A[/N], dst A[/N], host A[/N] an address or prefix (host: either)
//	sport N[:M], dport N[:M], port N[:M]   a port or range (port: either)
//	in NAME, out NAME                a link name
//
// The empty filter selects every IP packet. A term that needs a port does
// not match a packet without ports (a non-first fragment, ICMP).
type TraceFilter struct {
	terms []term
	text  string
}

type term struct {
	not    bool
	kind   string
	proto  uint8
	prefix netip.Prefix
	lo, hi uint16
	name   string
}

// ParseTraceFilter parses a filter expression.
func ParseTraceFilter(s string) (*TraceFilter, error) {
	f := &TraceFilter{text: strings.TrimSpace(s)}
	toks := strings.Fields(s)
	for i := 0; i < len(toks); {
		var t term
		if toks[i] == "not" || toks[i] == "!" {
			t.not = true
			i++
		}
		if i >= len(toks) {
			return nil, fmt.Errorf("filter %q: a term is missing at the end", s)
		}
		t.kind = toks[i]
		i++
		arg := func() (string, error) {
			if i >= len(toks) {
				return "", fmt.Errorf("filter %q: %s needs a value", s, t.kind)
			}
			i++
			return toks[i-1], nil
		}
		switch t.kind {
		case "ip", "ip6":
		case "proto":
			a, err := arg()
			if err != nil {
				return nil, err
			}
			switch a {
			case "tcp":
				t.proto = 6
			case "udp":
				t.proto = 17
			case "icmp":
				t.proto = 1
			case "icmpv6", "icmp6":
				t.proto = 58
			default:
				n, err := strconv.ParseUint(a, 10, 8)
				if err != nil {
					return nil, fmt.Errorf("filter %q: proto %q is not tcp, udp, icmp, icmpv6 or a number 0..255", s, a)
				}
				t.proto = uint8(n)
			}
		case "src", "dst", "host":
			a, err := arg()
			if err != nil {
				return nil, err
			}
			p, err := netip.ParsePrefix(a)
			if err != nil {
				ad, err2 := netip.ParseAddr(a)
				if err2 != nil {
					return nil, fmt.Errorf("filter %q: %s %q is not an address or prefix", s, t.kind, a)
				}
				p = netip.PrefixFrom(ad, ad.BitLen())
			}
			t.prefix = p.Masked()
		case "sport", "dport", "port":
			a, err := arg()
			if err != nil {
				return nil, err
			}
			lo, hi, ok := strings.Cut(a, ":")
			l, err := strconv.ParseUint(lo, 10, 16)
			h := l
			if err == nil && ok {
				h, err = strconv.ParseUint(hi, 10, 16)
			}
			if err != nil || h < l {
				return nil, fmt.Errorf("filter %q: %s %q is not a port or range N:M", s, t.kind, a)
			}
			t.lo, t.hi = uint16(l), uint16(h)
		case "in", "out":
			a, err := arg()
			if err != nil {
				return nil, err
			}
			t.name = a
		default:
			return nil, fmt.Errorf("filter %q: unknown term %q (ip, ip6, proto, src, dst, host, sport, dport, port, in, out; joined by and, negated by not)", s, t.kind)
		}
		f.terms = append(f.terms, t)
		if i < len(toks) {
			if toks[i] != "and" && toks[i] != "&&" {
				return nil, fmt.Errorf("filter %q: want and between terms, not %q", s, toks[i])
			}
			i++
			if i == len(toks) {
				return nil, fmt.Errorf("filter %q: a term is missing after and", s)
			}
		}
	}
	return f, nil
}

// String is the expression.
func (f *TraceFilter) String() string { return f.text }

// Match reports whether the packet at pc matches; name gives a NIC's link
// name.
func (f *TraceFilter) Match(pc *pipeline.PacketContext, name func(pipeline.NICID) string) bool {
	tu := &pc.Tuple
	hasPorts := !pc.Fragment && (tu.Proto == 6 || tu.Proto == 17 || tu.Proto == 132 || tu.Proto == 33)
	for i := range f.terms {
		t := &f.terms[i]
		var ok bool
		switch t.kind {
		case "ip":
			ok = tu.Src.Is4() || tu.Src.Is4In6()
		case "ip6":
			ok = tu.Src.Is6() && !tu.Src.Is4In6()
		case "proto":
			ok = uint8(tu.Proto) == t.proto
		case "src":
			ok = t.prefix.Contains(tu.Src)
		case "dst":
			ok = t.prefix.Contains(tu.Dst)
		case "host":
			ok = t.prefix.Contains(tu.Src) || t.prefix.Contains(tu.Dst)
		case "sport":
			ok = hasPorts && tu.SrcPort >= t.lo && tu.SrcPort <= t.hi
		case "dport":
			ok = hasPorts && tu.DstPort >= t.lo && tu.DstPort <= t.hi
		case "port":
			ok = hasPorts && ((tu.SrcPort >= t.lo && tu.SrcPort <= t.hi) || (tu.DstPort >= t.lo && tu.DstPort <= t.hi))
		case "in":
			ok = pc.InNIC != 0 && name(pc.InNIC) == t.name
		case "out":
			ok = pc.OutNIC != 0 && name(pc.OutNIC) == t.name
		}
		if ok == t.not {
			return false
		}
	}
	return true
}
