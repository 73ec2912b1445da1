package pipeline

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// NIC is a link attached to the stack. Its identity is the link's name: a
// NIC outlives generations and the link endpoints behind it. A reload that
// keeps a link of the same name keeps the NIC, its ID, its counters, its
// neighbor table and its dynamic addresses, whether the endpoint is handed
// over (same LinkKey) or reopened (another LinkKey: a driver setting such
// as a TUN batch size or an AF_PACKET mode changed; the device is the same
// device, so, as Linux keeps the neighbors of a device whose driver
// settings change, its neighbors stay). A device that disappears under a
// running stack (LinkStateDispatcher.LinkDown) leaves the NIC in place,
// down, until the stack reopens it (linkstate.go).
type NIC struct {
	id    NICID
	name  string
	stack *Stack
	neigh *NeighborTable
	loop  bool // the stack's loopback NIC (loopback.go)

	// bound is the endpoint in use and its capabilities; never nil once
	// the NIC is made. While the link is down it is a downLink that drops.
	// Replaced (whole) under Stack.mu; read lock-free by the packet path.
	bound atomic.Pointer[boundLink]
	// key and mod describe the endpoint that bound holds or last held
	// (guarded by Stack.mu).
	key string
	mod string

	// Link state (linkstate.go), guarded by stMu.
	stMu  sync.Mutex
	state LinkState
	retry linkRetry

	// Dynamic IPv6 addresses and kind overrides (dynamic.go).
	dynMu sync.Mutex
	dyn   atomic.Pointer[dynAddrs]

	Stats NICStats
}

// boundLink is a NIC's endpoint as the packet path sees it. Immutable.
type boundLink struct {
	ep   LinkEndpoint
	caps LinkCapabilities
	port *nicPort // the dispatcher ep was attached with; nil for a downLink
}

// NICStats are a NIC's counters (as `ip -s link` shows them).
type NICStats struct {
	RxPackets, RxBytes, RxDropped Counter
	TxPackets, TxBytes, TxDropped Counter
	// RxUnknownProtocol counts frames of a network protocol the pipeline
	// does not configure.
	RxUnknownProtocol Counter
	// TxLinkDown counts packets handed to the link while its device was
	// gone (also in TxDropped). Routes through a down link are withdrawn,
	// so only packets sent on the NIC by name (NDP, ARP) get here.
	TxLinkDown Counter
}

// ID is the NIC's ID.
func (n *NIC) ID() NICID { return n.id }

// Name is the link's name in the pipeline file.
func (n *NIC) Name() string { return n.name }

// Module is the link module's ID.
func (n *NIC) Module() string { return n.mod }

// Link returns the link endpoint in use: while the link is down, a
// placeholder that drops what it is given.
func (n *NIC) Link() LinkEndpoint { return n.bound.Load().ep }

// link is Link for the stack's own use.
func (n *NIC) link() LinkEndpoint { return n.bound.Load().ep }

// Neighbors returns the NIC's neighbor table.
func (n *NIC) Neighbors() *NeighborTable { return n.neigh }

// bind makes ep the NIC's endpoint and attaches it (Stack.mu held).
func (n *NIC) bind(ep LinkEndpoint) {
	port := &nicPort{nic: n, ep: ep}
	n.bound.Store(&boundLink{ep: ep, caps: ep.Capabilities(), port: port})
	ep.Attach(port)
}

// nicPort is the NetworkDispatcher a NIC hands to one endpoint: it tells
// a report from the endpoint in use from a late one of an endpoint the NIC
// no longer has.
type nicPort struct {
	nic  *NIC
	ep   LinkEndpoint
	down atomic.Bool
	err  atomic.Pointer[error]
}

// DeliverNetworkPackets implements NetworkDispatcher.
func (p *nicPort) DeliverNetworkPackets(pkts []*Packet) { p.nic.stack.deliver(p.nic, pkts) }

// LinkDown implements LinkStateDispatcher: the first report of the
// endpoint in use wakes the stack's link supervisor; later ones, and
// those of an endpoint the NIC no longer uses, change nothing.
func (p *nicPort) LinkDown(err error) {
	if p.nic.bound.Load().port != p {
		return
	}
	if err == nil {
		err = errLinkGone
	}
	p.err.CompareAndSwap(nil, &err)
	if p.down.CompareAndSwap(false, true) {
		p.nic.stack.kickLinks()
	}
}

// nicGen is a NIC as configured in one generation; it implements
// NetworkInterface.
type nicGen struct {
	nic *NIC
	cfg *LinkConfig
	// open is the endpoint this generation's build opened for a NIC the
	// stack already had (a LinkKey change), bound by Apply at the swap;
	// until then (bound false) the generation's view answers from it.
	open  LinkEndpoint
	bound atomic.Bool
	key   string

	mtu       int
	addrs     [2][]AddressInfo // [0] IPv4, [1] IPv6, in primary order
	raw6      []AddressInfo    // IPv6 addresses as configured, in file order
	merged    atomic.Pointer[mergedAddrs]
	forward   [2]bool
	endpoints []protoEndpoint
	gen       *Generation // set on the loopback NIC only (its source addresses)
}

type protoEndpoint struct {
	num NetworkProtocolNumber
	ep  NetworkEndpoint
	// The endpoint's optional roles, asserted once when it is made (an
	// assertion per batch would fill the runtime's per-site cache at a
	// random call: an allocation on the packet path).
	hr   HookResumer
	frag Fragmenter
}

func famIndex(family int) int {
	if family == 6 {
		return 1
	}
	return 0
}

func (g *nicGen) ID() NICID    { return g.nic.id }
func (g *nicGen) Name() string { return g.nic.name }
func (g *nicGen) MTU() int     { return g.mtu }
func (g *nicGen) LinkAddress() wire.MAC {
	if g.open != nil && !g.bound.Load() {
		return g.open.LinkAddress()
	}
	return g.nic.link().LinkAddress()
}
func (g *nicGen) Capabilities() LinkCapabilities {
	if g.open != nil && !g.bound.Load() {
		return g.open.Capabilities()
	}
	return g.nic.bound.Load().caps
}
func (g *nicGen) Forwarding(family int) bool { return g.forward[famIndex(family)] }
func (g *nicGen) Transparent() bool          { return g.cfg != nil && g.cfg.Transparent }
func (g *nicGen) NIC() *NIC                  { return g.nic }
func (g *nicGen) Addresses(family int) []AddressInfo {
	if family == 6 {
		return g.addrs6()
	}
	return g.addrs[0]
}

func (g *nicGen) PrimaryAddress(family int) (netip.Prefix, bool) {
	for _, a := range g.Addresses(family) {
		if primaryCandidate(a) {
			return a.Prefix, true
		}
	}
	return netip.Prefix{}, false
}

func (g *nicGen) endpoint(num NetworkProtocolNumber) NetworkEndpoint {
	if pe := g.protoEndpoint(num); pe != nil {
		return pe.ep
	}
	return nil
}

func (g *nicGen) protoEndpoint(num NetworkProtocolNumber) *protoEndpoint {
	for i := range g.endpoints {
		if g.endpoints[i].num == num {
			return &g.endpoints[i]
		}
	}
	return nil
}
