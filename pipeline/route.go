package pipeline

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
)

// Route is an entry of the route table.
type Route struct {
	Dst netip.Prefix
	// Via is the gateway; the zero Addr means on-link (the destination is
	// the next hop).
	Via    netip.Addr
	NIC    NICID
	Metric uint32
	// Connected marks the routes the stack adds for the subnets of a NIC's
	// addresses.
	Connected bool
}

// NextHop returns the neighbor a packet for dst goes to.
func (r *Route) NextHop(dst netip.Addr) netip.Addr {
	if r.Via.IsValid() {
		return r.Via
	}
	return dst
}

func (r Route) String() string {
	s := r.Dst.String()
	if r.Via.IsValid() {
		s += " via " + r.Via.String()
	}
	return s + fmt.Sprintf(" nic %d metric %d", r.NIC, r.Metric)
}

// RouteTable is an immutable longest-prefix-match table. It is built once per
// generation and read without locks. A small table (at most
// linearRoutes routes per family, what a host or an edge router has) is
// searched linearly, longest prefix first, with precomputed masks: a few
// integer compares, no hashing — measured on IPv6 forwarding with 64 flows,
// the per-length map probes (hashing 16-byte keys) were 40 % of the CPU per
// packet and twice the cost of one flow, whose probes the branch predictor
// had learnt. A larger table costs one hash probe per distinct prefix
// length present, longest first.
type RouteTable struct {
	routes []Route
	v4     lpm[uint32]
	v6     lpm[key6]
	lin4   []lin4 // the v4 routes, longest first, when few
	lin6   []lin6
}

// linearRoutes is the largest per-family table searched linearly.
const linearRoutes = 16

type lin4 struct {
	net, mask uint32
	r         *Route
}

type lin6 struct {
	net, mask key6
	r         *Route
}

// key6 is an IPv6 address as two integers (hashing and masking in two
// words rather than 16 bytes).
type key6 struct{ hi, lo uint64 }

func key6Of(a [16]byte) key6 {
	return key6{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])}
}

func (k key6) and(m key6) key6 { return key6{k.hi & m.hi, k.lo & m.lo} }

func mask4(bits int) uint32 {
	if bits <= 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}

func mask6(bits int) key6 {
	switch {
	case bits <= 0:
		return key6{}
	case bits <= 64:
		return key6{^uint64(0) << (64 - bits), 0}
	default:
		return key6{^uint64(0), ^uint64(0) << (128 - bits)}
	}
}

type lpm[K comparable] struct {
	lens  []int          // distinct prefix lengths, longest first
	masks []K            // parallel to lens
	byLen []map[K]*Route // parallel to lens
}

// NewRouteTable builds a table. For equal prefixes the lowest metric wins
// (the first listed on a tie).
func NewRouteTable(routes []Route) *RouteTable {
	t := &RouteTable{routes: append([]Route(nil), routes...)}
	sort.SliceStable(t.routes, func(i, j int) bool {
		a, b := t.routes[i], t.routes[j]
		if a.Dst.Bits() != b.Dst.Bits() {
			return a.Dst.Bits() > b.Dst.Bits()
		}
		return a.Metric < b.Metric
	})
	var n4, n6 int
	for i := range t.routes {
		if t.routes[i].Dst.Addr().Is4() {
			n4++
		} else {
			n6++
		}
	}
	for i := range t.routes {
		r := &t.routes[i]
		p := r.Dst.Masked()
		if p.Addr().Is4() {
			if n4 <= linearRoutes {
				// In table order: longest first, then lowest metric,
				// then as listed — the first match is the map's answer.
				t.lin4 = append(t.lin4, lin4{key4(p.Addr()), mask4(p.Bits()), r})
			} else {
				t.v4.add(p.Bits(), mask4(p.Bits()), key4(p.Addr()), r)
			}
		} else {
			if n6 <= linearRoutes {
				t.lin6 = append(t.lin6, lin6{key6Of(p.Addr().As16()), mask6(p.Bits()), r})
			} else {
				t.v6.add(p.Bits(), mask6(p.Bits()), key6Of(p.Addr().As16()), r)
			}
		}
	}
	return t
}

func (l *lpm[K]) add(bits int, mask, k K, r *Route) {
	i := 0
	for i < len(l.lens) && l.lens[i] > bits {
		i++
	}
	if i == len(l.lens) || l.lens[i] != bits {
		l.lens = append(l.lens, 0)
		copy(l.lens[i+1:], l.lens[i:])
		l.lens[i] = bits
		l.masks = append(l.masks, mask)
		copy(l.masks[i+1:], l.masks[i:])
		l.masks[i] = mask
		l.byLen = append(l.byLen, nil)
		copy(l.byLen[i+1:], l.byLen[i:])
		l.byLen[i] = map[K]*Route{}
	}
	if _, exists := l.byLen[i][k]; !exists {
		l.byLen[i][k] = r
	}
}

func key4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// Lookup4 finds the route for an IPv4 destination given as 4 bytes (the
// forwarding path's form). nil: no route.
func (t *RouteTable) Lookup4(dst [4]byte) *Route {
	d := binary.BigEndian.Uint32(dst[:])
	if t.lin4 != nil {
		for i := range t.lin4 {
			if e := &t.lin4[i]; d&e.mask == e.net {
				return e.r
			}
		}
		return nil
	}
	for i, m := range t.v4.masks {
		if r, ok := t.v4.byLen[i][d&m]; ok {
			return r
		}
	}
	return nil
}

// Lookup6 finds the route for an IPv6 destination.
func (t *RouteTable) Lookup6(dst [16]byte) *Route {
	d := key6Of(dst)
	if t.lin6 != nil {
		for i := range t.lin6 {
			if e := &t.lin6[i]; d.and(e.mask) == e.net {
				return e.r
			}
		}
		return nil
	}
	for i, m := range t.v6.masks {
		if r, ok := t.v6.byLen[i][d.and(m)]; ok {
			return r
		}
	}
	return nil
}

// Lookup finds the route for dst.
func (t *RouteTable) Lookup(dst netip.Addr) *Route {
	dst = dst.Unmap()
	if dst.Is4() {
		return t.Lookup4(dst.As4())
	}
	return t.Lookup6(dst.As16())
}

// Routes returns the table's routes, longest prefix first.
func (t *RouteTable) Routes() []Route { return append([]Route(nil), t.routes...) }

// addrSet6 maps IPv6 addresses to values, built once and read without
// locks: a handful of addresses (a host's or a router's own) are compared
// linearly as two integers each, more go through a map. Measured with the
// IPv6 forwarding benchmark: two 16-byte-key map probes per forwarded packet
// (is the destination one of ours?) were 12 % of its CPU.
type addrSet6[V any] struct {
	keys []key6
	vals []V
	m    map[key6]V
}

// linearAddrs is the largest addrSet6 searched linearly.
const linearAddrs = 16

func newAddrSet6[V any](m map[[16]byte]V) *addrSet6[V] {
	s := &addrSet6[V]{}
	if len(m) > linearAddrs {
		s.m = make(map[key6]V, len(m))
		for a, v := range m {
			s.m[key6Of(a)] = v
		}
		return s
	}
	for a, v := range m {
		s.keys = append(s.keys, key6Of(a))
		s.vals = append(s.vals, v)
	}
	return s
}

func (s *addrSet6[V]) get(a [16]byte) (V, bool) {
	if s == nil {
		var zero V
		return zero, false
	}
	k := key6Of(a)
	if s.m != nil {
		v, ok := s.m[k]
		return v, ok
	}
	for i, x := range s.keys {
		if x == k {
			return s.vals[i], true
		}
	}
	var zero V
	return zero, false
}

func (s *addrSet6[V]) len() int { return len(s.keys) + len(s.m) }
