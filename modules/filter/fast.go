package filter

import (
	"encoding/binary"
	"math/bits"
	"net/netip"

	"github.com/pipestack/pipestack/pipeline"
)

// The hook tables are built with matchers specialised for the commonest
// rule shapes (rule.matchers chooses them): a lone IPv4 -s or -d compares
// one masked number (PacketContext.Src4/Dst4), and -p tcp|udp followed by
// its port options is one matcher over the parsed tuple instead of two
// that each look at the packet. Each answers exactly as the matchers it
// stands for, in the same order (addresses, protocol, fragment, header
// length, ports; hotdrops included) and describes the same constraints.

// v4Mask is the mask of an IPv4 prefix's bits and its address, masked.
func v4Mask(p netip.Prefix) (addr, mask uint32) {
	mask = ^uint32(0) << (32 - p.Bits()) // Bits 0: a shift by 32 gives 0
	a := p.Addr().As4()
	return binary.BigEndian.Uint32(a[:]) & mask, mask
}

// dst4 is a rule's base that is only "-d A/N" (IPv4, not inverted, A not
// 0.0.0.0): an IPv6 packet's Dst4 is 0, which no such prefix holds, so the
// family needs no test of its own. It is 8 bytes: a chain of them is
// little memory to walk.
type dst4 struct{ addr, mask uint32 }

func (m *dst4) Match(pc *pipeline.PacketContext) (bool, bool) {
	return pc.Dst4&m.mask == m.addr, false
}

// Fields and Constraint are those of the base it stands for (a v4
// prefix implies family 4: FieldOther).
func (m *dst4) Fields() pipeline.FieldSet { return pipeline.FieldDstAddr | pipeline.FieldOther }
func (m *dst4) Constraint() []pipeline.FieldConstraint {
	return []pipeline.FieldConstraint{{Field: pipeline.FieldDstAddr, Prefixes: []netip.Prefix{v4Prefix(m.addr, m.mask)}}}
}

// src4 is dst4 for "-s A/N".
type src4 struct{ addr, mask uint32 }

func (m *src4) Match(pc *pipeline.PacketContext) (bool, bool) {
	return pc.Src4&m.mask == m.addr, false
}
func (m *src4) Fields() pipeline.FieldSet { return pipeline.FieldSrcAddr | pipeline.FieldOther }
func (m *src4) Constraint() []pipeline.FieldConstraint {
	return []pipeline.FieldConstraint{{Field: pipeline.FieldSrcAddr, Prefixes: []netip.Prefix{v4Prefix(m.addr, m.mask)}}}
}

func v4Prefix(addr, mask uint32) netip.Prefix {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], addr)
	return netip.PrefixFrom(netip.AddrFrom4(a), bits.OnesCount32(mask))
}

// fastArena makes the specialised matchers of a table in chunks, so that
// those of consecutive rules are neighbours in memory. A nil arena
// allocates each on its own.
type fastArena struct {
	d  []dst4
	s  []src4
	l  []l4Ports
	st []setFast
}

const arenaChunk = 256

// take returns a pointer to a new element of *chunk (a fresh chunk when
// it is full: earlier pointers stay valid).
func take[T any](chunk *[]T) *T {
	if len(*chunk) == cap(*chunk) {
		*chunk = make([]T, 0, arenaChunk)
	}
	*chunk = (*chunk)[:len(*chunk)+1]
	return &(*chunk)[len(*chunk)-1]
}

func (a *fastArena) base(b *Base) pipeline.Matcher {
	switch m := fastBase(b).(type) {
	case *dst4:
		if a != nil {
			p := take(&a.d)
			*p = *m
			return p
		}
		return m
	case *src4:
		if a != nil {
			p := take(&a.s)
			*p = *m
			return p
		}
		return m
	}
	return nil
}

func (a *fastArena) l4(b *Base, m Match) pipeline.Matcher {
	f, ok := fastL4(b, m).(*l4Ports)
	if !ok {
		return nil
	}
	if a != nil {
		p := take(&a.l)
		*p = *f
		return p
	}
	return f
}

// fastBase is the specialised form of a base matcher, or nil.
func fastBase(b *Base) pipeline.Matcher {
	if b.protoSet || b.in.set || b.out.set || b.fragSet || b.srcSet == b.dstSet || b.family != 4 {
		return nil
	}
	p, inv := b.dst, b.dstInv
	if b.srcSet {
		p, inv = b.src, b.srcInv
	}
	addr, mask := v4Mask(p)
	if inv || addr == 0 {
		return nil
	}
	if b.srcSet {
		return &src4{addr: addr, mask: mask}
	}
	return &dst4{addr: addr, mask: mask}
}

// l4Ports is "-p tcp|udp" (alone in the base, with -4/-6 or not) and the
// tcp or udp matcher right after it with only --sport/--dport: the family,
// the protocol, the fragment offset, the header length and the ports from
// the context. An unset port is the range 0–65535. 16 bytes.
type l4Ports struct {
	slo, sspan, dlo, dspan uint16
	proto, minLen          uint8
	fam                    uint8 // 0 both, 4, 6
	sinv, dinv, sset, dset bool
}

func (m *l4Ports) Match(pc *pipeline.PacketContext) (bool, bool) {
	if m.fam != 0 && pc.Tuple.Src.Is4() != (m.fam == 4) {
		return false, false
	}
	if uint8(pc.Tuple.Proto) != m.proto {
		return false, pc.L4Unknown // -p drops a packet whose upper layer is unknown
	}
	if pc.FragOff != 0 {
		return false, m.proto == 6 && pc.FragOff == 8 // "evil TCP offset=1 frag"
	}
	if pc.L4End-pc.L4Off < int(m.minLen) {
		if pc.L4End == 0 {
			return m.slow(pc) // a context not parsed by ParseTuple (tests)
		}
		return false, true
	}
	return m.ports(pc.Tuple.SrcPort, pc.Tuple.DstPort), false
}

func (m *l4Ports) ports(sp, dp uint16) bool {
	return (sp-m.slo <= m.sspan) != m.sinv && (dp-m.dlo <= m.dspan) != m.dinv
}

// slow reads the header from the packet (l4), as the tcp and udp
// matchers do.
func (m *l4Ports) slow(pc *pipeline.PacketContext) (bool, bool) {
	b, fragOff, ok := l4(pc)
	switch {
	case !ok:
		return false, true
	case fragOff != 0:
		return false, m.proto == 6 && fragOff == 8
	case len(b) < int(m.minLen):
		return false, true
	}
	return m.ports(uint16(b[0])<<8|uint16(b[1]), uint16(b[2])<<8|uint16(b[3])), false
}

// Fields and Constraint are those of the base and the tcp or udp matcher.
func (m *l4Ports) Fields() pipeline.FieldSet {
	f := pipeline.FieldProto | pipeline.FieldOther
	if m.sset {
		f |= pipeline.FieldSrcPort
	}
	if m.dset {
		f |= pipeline.FieldDstPort
	}
	return f
}
func (m *l4Ports) Constraint() []pipeline.FieldConstraint {
	p := pipeline.FieldConstraint{Field: pipeline.FieldProto, Ranges: []pipeline.ValueRange{{Lo: uint32(m.proto), Hi: uint32(m.proto)}}}
	out := []pipeline.FieldConstraint{p, p}
	if m.sset {
		out = append(out, pipeline.FieldConstraint{Field: pipeline.FieldSrcPort, Ranges: []pipeline.ValueRange{{Lo: uint32(m.slo), Hi: uint32(m.slo) + uint32(m.sspan)}}, Invert: m.sinv})
	}
	if m.dset {
		out = append(out, pipeline.FieldConstraint{Field: pipeline.FieldDstPort, Ranges: []pipeline.ValueRange{{Lo: uint32(m.dlo), Hi: uint32(m.dlo) + uint32(m.dspan)}}, Invert: m.dinv})
	}
	return out
}

// fastL4 is the l4Ports form of base b and matcher m, or nil.
func fastL4(b *Base, m Match) pipeline.Matcher {
	if !b.protoSet || b.protoInv || b.srcSet || b.dstSet || b.in.set || b.out.set || b.fragSet {
		return nil
	}
	f := &l4Ports{proto: b.proto, fam: uint8(b.family), sspan: 0xffff, dspan: 0xffff}
	var sport, dport portRange
	switch x := m.(type) {
	case *TCP:
		if b.proto != 6 || x.flagsSet || x.optSet {
			return nil
		}
		f.minLen, sport, dport = 20, x.sport, x.dport
	case *UDP:
		if b.proto != 17 {
			return nil
		}
		f.minLen, sport, dport = 8, x.sport, x.dport
	default:
		return nil
	}
	if sport.set {
		f.slo, f.sspan, f.sinv, f.sset = sport.lo, sport.hi-sport.lo, sport.inv, true
	}
	if dport.set {
		f.dlo, f.dspan, f.dinv, f.dset = dport.lo, dport.hi-dport.lo, dport.inv, true
	}
	return f
}

// setFast is "-m set [!] --match-set S dst|src[,dst|src]" over a hash:net
// or an addr . port set without counters: an IPv4 packet's address (and
// port) straight from the parsed context into the IPv4 structure — the
// DIR table, the u64Table — instead of SetMatch.find's netip.Addr and the
// lookup's dispatch on the type. It answers as m (which it calls for
// everything else: IPv6, a snapshot with timeouts, a small hash:net set
// searched in its sorted array) and describes what m does.
type setFast struct {
	m          *SetMatch
	set        *Set
	srcA, srcP bool
	inv        bool
}

func (f *setFast) Match(pc *pipeline.PacketContext) (bool, bool) {
	sn := f.set.snap.Load()
	a, is4 := pc.Dst4, pc.Tuple.Dst.Is4()
	if f.srcA {
		a, is4 = pc.Src4, pc.Tuple.Src.Is4()
	}
	if sn.state || !is4 {
		return f.m.Match(pc)
	}
	var hit bool
	switch sn.typ {
	case setNet:
		if sn.v4dir.top == nil {
			return f.m.Match(pc)
		}
		hit = sn.v4dir.get(a) >= 0
	case setIPPort:
		proto := uint8(pc.Tuple.Proto)
		if pc.Fragment || pc.L4Unknown || !hasPorts(proto) || pc.L4End-pc.L4Off < 4 {
			return f.inv, false // no ports: no element
		}
		port := pc.Tuple.DstPort
		if f.srcP {
			port = pc.Tuple.SrcPort
		}
		k := uint64(a)<<32 | uint64(port)
		if sn.someProto {
			_, hit = sn.ipp4.get(k | uint64(proto)<<16)
		}
		if !hit && sn.anyProto {
			_, hit = sn.ipp4.get(k)
		}
	default:
		return f.m.Match(pc)
	}
	return hit != f.inv, false
}

func (f *setFast) Fields() pipeline.FieldSet              { return f.m.Fields() }
func (f *setFast) Constraint() []pipeline.FieldConstraint { return f.m.Constraint() }

// set is the specialised form of a set matcher, or nil.
func (a *fastArena) set(m Match) pipeline.Matcher {
	sm, ok := m.(*SetMatch)
	if !ok || sm.set == nil || sm.set.decl.counters || len(sm.dirs) == 0 {
		return nil
	}
	if t := sm.set.decl.typ; t != setNet && t != setIPPort {
		return nil
	}
	f := &setFast{m: sm, set: sm.set, srcA: sm.dirs[0], srcP: sm.dirs[len(sm.dirs)-1], inv: sm.inv}
	if a != nil {
		p := take(&a.st)
		*p = *f
		return p
	}
	return f
}

var (
	_ pipeline.ConstraintDescriber = (*setFast)(nil)
	_ pipeline.ConstraintDescriber = (*dst4)(nil)
	_ pipeline.ConstraintDescriber = (*src4)(nil)
	_ pipeline.ConstraintDescriber = (*l4Ports)(nil)
	_ pipeline.Matcher             = (*l4Ports)(nil)
)
