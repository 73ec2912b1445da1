package pipeline

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// NIC is a link attached to the stack. It outlives generations: a reload
// that keeps a link of the same name and LinkKey keeps the NIC, its ID, its
// counters and its neighbor table.
type NIC struct {
	id    NICID
	name  string
	key   string
	mod   string // link module ID
	link  LinkEndpoint
	stack *Stack
	neigh *NeighborTable
	caps  LinkCapabilities

	// Dynamic IPv6 addresses and kind overrides (dynamic.go).
	dynMu sync.Mutex
	dyn   atomic.Pointer[dynAddrs]

	Stats NICStats
}

// NICStats are a NIC's counters (as `ip -s link` shows them).
type NICStats struct {
	RxPackets, RxBytes, RxDropped Counter
	TxPackets, TxBytes, TxDropped Counter
	// RxUnknownProtocol counts frames of a network protocol the pipeline
	// does not configure.
	RxUnknownProtocol Counter
}

// ID is the NIC's ID.
func (n *NIC) ID() NICID { return n.id }

// Name is the link's name in the pipeline file.
func (n *NIC) Name() string { return n.name }

// Module is the link module's ID.
func (n *NIC) Module() string { return n.mod }

// Link returns the link endpoint.
func (n *NIC) Link() LinkEndpoint { return n.link }

// Neighbors returns the NIC's neighbor table.
func (n *NIC) Neighbors() *NeighborTable { return n.neigh }

// DeliverNetworkPackets implements NetworkDispatcher for the NIC's link.
func (n *NIC) DeliverNetworkPackets(pkts []*Packet) { n.stack.deliver(n, pkts) }

// nicGen is a NIC as configured in one generation; it implements
// NetworkInterface.
type nicGen struct {
	nic       *NIC
	cfg       *LinkConfig
	mtu       int
	addrs     [2][]AddressInfo // [0] IPv4, [1] IPv6, in primary order
	raw6      []AddressInfo    // IPv6 addresses as configured, in file order
	merged    atomic.Pointer[mergedAddrs]
	forward   [2]bool
	endpoints []protoEndpoint
}

type protoEndpoint struct {
	num NetworkProtocolNumber
	ep  NetworkEndpoint
}

func famIndex(family int) int {
	if family == 6 {
		return 1
	}
	return 0
}

func (g *nicGen) ID() NICID                      { return g.nic.id }
func (g *nicGen) Name() string                   { return g.nic.name }
func (g *nicGen) MTU() int                       { return g.mtu }
func (g *nicGen) LinkAddress() wire.MAC          { return g.nic.link.LinkAddress() }
func (g *nicGen) Capabilities() LinkCapabilities { return g.nic.caps }
func (g *nicGen) Forwarding(family int) bool     { return g.forward[famIndex(family)] }
func (g *nicGen) NIC() *NIC                      { return g.nic }
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
	for i := range g.endpoints {
		if g.endpoints[i].num == num {
			return g.endpoints[i].ep
		}
	}
	return nil
}
