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
// generation and read without locks. Lookup costs one hash probe per distinct
// prefix length present (a handful in practice), longest first.
type RouteTable struct {
	routes []Route
	v4     lpm[uint32]
	v6     lpm[[16]byte]
}

type lpm[K comparable] struct {
	lens  []int          // distinct prefix lengths, longest first
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
	for i := range t.routes {
		r := &t.routes[i]
		p := r.Dst.Masked()
		if p.Addr().Is4() {
			t.v4.add(p.Bits(), key4(p.Addr()), r)
		} else {
			t.v6.add(p.Bits(), p.Addr().As16(), r)
		}
	}
	return t
}

func (l *lpm[K]) add(bits int, k K, r *Route) {
	i := 0
	for i < len(l.lens) && l.lens[i] > bits {
		i++
	}
	if i == len(l.lens) || l.lens[i] != bits {
		l.lens = append(l.lens, 0)
		copy(l.lens[i+1:], l.lens[i:])
		l.lens[i] = bits
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
	for i, bits := range t.v4.lens {
		k := d
		if bits < 32 {
			k &= ^uint32(0) << (32 - bits)
		}
		if bits == 0 {
			k = 0
		}
		if r, ok := t.v4.byLen[i][k]; ok {
			return r
		}
	}
	return nil
}

// Lookup6 finds the route for an IPv6 destination.
func (t *RouteTable) Lookup6(dst [16]byte) *Route {
	for i, bits := range t.v6.lens {
		k := dst
		for j := 0; j < 16; j++ {
			switch {
			case bits >= (j+1)*8:
			case bits <= j*8:
				k[j] = 0
			default:
				k[j] &= byte(0xff << (8 - (bits - j*8)))
			}
		}
		if r, ok := t.v6.byLen[i][k]; ok {
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
