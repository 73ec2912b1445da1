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
// the old per-length map probes (hashing 16-byte keys) were 40 % of the CPU
// per packet and twice the cost of one flow, whose probes the branch
// predictor had learnt. A larger table is a multibit trie of 8-bit strides
// with the prefixes expanded into its slots (controlled prefix expansion):
// one array index per address byte until the trie ends — at most 4 for
// IPv4, 16 for IPv6 — however many prefix lengths the table has (a hash
// probe per distinct length cost 150 ns with 24 of them; the trie 9 ns).
// A trie node is 2 KiB: a table of /24s spread over M distinct /16s takes
// about M × 2 KiB (65,536 /16s, a full Internet table: 128 MiB).
type RouteTable struct {
	routes []Route
	lin4   []lin4 // the v4 routes, longest first, when few
	lin6   []lin6
	trie4  *trie // else
	trie6  *trie
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

// key6 is an IPv6 address as two integers.
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

// trie is a multibit trie over address bytes. nodes[0] is the root; a
// slot holds the longest prefix ending at its level that covers it (an
// index into routes plus one; 0: none) and the node below (0: none).
type trie struct {
	def   *Route // the /0 route
	nodes [][256]trieSlot
	bits  [][256]uint8 // per slot, the length of its route (building only)
	rs    []*Route
}

type trieSlot struct{ route, child uint32 }

// insert adds r for the prefix a/bits (a masked). Routes are inserted
// from the least preferred to the most (shortest first; among equal
// prefixes the worst first), so a later one covering a slot wins.
func (t *trie) insert(a []byte, bits int, r *Route) {
	if bits == 0 {
		t.def = r
		return
	}
	t.rs = append(t.rs, r)
	ri := uint32(len(t.rs))
	n := 0
	level := (bits - 1) / 8
	for i := 0; i < level; i++ {
		c := t.nodes[n][a[i]].child
		if c == 0 {
			t.nodes = append(t.nodes, [256]trieSlot{})
			t.bits = append(t.bits, [256]uint8{})
			c = uint32(len(t.nodes) - 1)
			t.nodes[n][a[i]].child = c
		}
		n = int(c)
	}
	rem := bits - 8*level // 1..8 bits of a[level]
	first := int(a[level]) &^ (0xff >> rem)
	for s := first; s < first+(1<<(8-rem)); s++ {
		if int(t.bits[n][s]) <= bits {
			t.nodes[n][s].route, t.bits[n][s] = ri, uint8(bits)
		}
	}
}

func (t *trie) lookup(a []byte) *Route {
	best := t.def
	n := 0
	for _, x := range a {
		s := t.nodes[n][x]
		if s.route != 0 {
			best = t.rs[s.route-1]
		}
		if s.child == 0 {
			break
		}
		n = int(s.child)
	}
	return best
}

func newTrie(routes []*Route) *trie {
	t := &trie{nodes: make([][256]trieSlot, 1), bits: make([][256]uint8, 1)}
	for i := len(routes) - 1; i >= 0; i-- {
		p := routes[i].Dst.Masked()
		t.insert(p.Addr().AsSlice(), p.Bits(), routes[i])
	}
	t.bits = nil
	return t
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
	// In table order: longest first, then lowest metric, then as listed.
	var r4, r6 []*Route
	for i := range t.routes {
		if t.routes[i].Dst.Addr().Is4() {
			r4 = append(r4, &t.routes[i])
		} else {
			r6 = append(r6, &t.routes[i])
		}
	}
	if len(r4) <= linearRoutes {
		for _, r := range r4 {
			p := r.Dst.Masked()
			t.lin4 = append(t.lin4, lin4{key4(p.Addr()), mask4(p.Bits()), r})
		}
	} else {
		t.trie4 = newTrie(r4)
	}
	if len(r6) <= linearRoutes {
		for _, r := range r6 {
			p := r.Dst.Masked()
			t.lin6 = append(t.lin6, lin6{key6Of(p.Addr().As16()), mask6(p.Bits()), r})
		}
	} else {
		t.trie6 = newTrie(r6)
	}
	return t
}

func key4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// Lookup4 finds the route for an IPv4 destination given as 4 bytes (the
// forwarding path's form). nil: no route.
func (t *RouteTable) Lookup4(dst [4]byte) *Route {
	if t.trie4 != nil {
		return t.trie4.lookup(dst[:])
	}
	d := binary.BigEndian.Uint32(dst[:])
	for i := range t.lin4 {
		if e := &t.lin4[i]; d&e.mask == e.net {
			return e.r
		}
	}
	return nil
}

// Lookup6 finds the route for an IPv6 destination.
func (t *RouteTable) Lookup6(dst [16]byte) *Route {
	if t.trie6 != nil {
		return t.trie6.lookup(dst[:])
	}
	d := key6Of(dst)
	for i := range t.lin6 {
		if e := &t.lin6[i]; d.and(e.mask) == e.net {
			return e.r
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
