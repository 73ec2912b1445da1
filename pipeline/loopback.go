package pipeline

import (
	"net/netip"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// The loopback NIC: how the stack delivers what it sends to itself.
//
// As in Linux, a packet the stack originates towards one of its own
// addresses (an ICMP error about its own packet, a UDP socket sending to
// the stack's address, 127.0.0.0/8 and ::1) does not leave through a
// link: the output route lookup (Generation.LookupRoute4, LookupOutput6,
// LookupRoute — Linux's local table; the forwarding path keeps
// Routes().Lookup4 and LookupRoute6, which never see our addresses) sends
// it through the stack's loopback NIC, named "lo". It passes Output and Postrouting with OutNIC
// lo, then — when the batch flushes its output queues, never inside the
// call that sent it — it is received on lo, as if from a link: Prerouting
// and Input with InNIC lo, then local delivery. Filters see it at the four
// hooks in Linux's order, and `-i lo`/`-o lo` rules match it.
//
// The loopback NIC is no device: its endpoint (loopbackLink) has no
// goroutine, nothing is written anywhere; Batch.transmit hands its queue
// to the batch's loopback queue, which Batch.finish delivers in rounds
// (what a round delivers may queue more, an echo reply to an echo to
// self). It carries 127.0.0.1/8 (with network.ipv4) and ::1/128 (with
// network.ipv6), exists in every generation that configures an IP
// protocol, keeps its ID, counters and name across reloads like any NIC,
// and is shown by `pipectl stats`. Its ID is the one after the links of
// the first generation: the links keep the IDs they had before it
// existed. No route in the route table points at it (Linux keeps its
// local routes in a table of their own too); a link may not be named lo.
// Only the network endpoints of IPv4 and IPv6 run on it; they treat every
// packet received on it as addressed to the stack (Linux skips the input
// route lookup for such a packet: it kept the route it was sent with) and
// skip the martian checks of packets from outside.

// LoopbackName is the name of the stack's loopback NIC.
const LoopbackName = "lo"

// LoopbackModuleID is what NIC.Module says of the loopback NIC (it is no
// module of the registry).
const LoopbackModuleID = "loopback"

// LoopbackMTU is the loopback NIC's MTU, Linux's.
const LoopbackMTU = 65536

// maxLoopRounds bounds how many times one batch's flush delivers what it
// sent to itself; what is still looping after that is dropped (stack
// counter loopback_rounds). Nothing the stack does loops: an echo to self
// takes two rounds, an ICMP error about it three.
const maxLoopRounds = 64

var (
	loopback4 = netip.MustParsePrefix("127.0.0.1/8")
	loopback6 = netip.MustParsePrefix("::1/128")
)

// loopbackLink is the loopback NIC's endpoint. Batch.transmit never calls
// its WritePackets (it queues the loopback NIC's packets for delivery);
// one written to it by other code is dropped.
type loopbackLink struct{}

func (loopbackLink) MTU() int              { return LoopbackMTU }
func (loopbackLink) MaxHeaderLength() int  { return 0 }
func (loopbackLink) LinkAddress() wire.MAC { return wire.MAC{} }

// Capabilities: whatever the stack hands it stays as it is (super-packets
// whole, partial checksums partial), as Linux's lo does.
func (loopbackLink) Capabilities() LinkCapabilities {
	return CapGSO | CapTXChecksumOffload | CapRXChecksumOffload
}
func (loopbackLink) Attach(NetworkDispatcher) {}
func (loopbackLink) WritePackets(pkts []*Packet) int {
	ReleaseBatch(pkts)
	return 0
}
func (loopbackLink) Close() error { return nil }

// IsLoopback reports whether the NIC is the stack's loopback NIC.
func (n *NIC) IsLoopback() bool { return n.loop }

// loopbackNIC returns the stack's loopback NIC, made on first use with
// the next NIC ID (Stack.mu held, from build).
func (s *Stack) loopbackNIC() (n *NIC, fresh bool) {
	if n := s.nics[LoopbackName]; n != nil {
		return n, false
	}
	id, ok := s.nicIDs[LoopbackName]
	if !ok {
		s.lastNIC++
		id = s.lastNIC
		s.nicIDs[LoopbackName] = id
	}
	n = &NIC{id: id, name: LoopbackName, key: LoopbackModuleID, mod: LoopbackModuleID, stack: s, state: LinkState{Up: true}, loop: true}
	var ep loopbackLink
	n.bound.Store(&boundLink{ep: ep, caps: ep.Capabilities(), port: &nicPort{nic: n, ep: ep}})
	n.neigh = newNeighborTable(id, s.clock, s.opts.NUDDispatcher)
	n.neigh.attach(s)
	return n, true
}

// addLoopback puts the loopback NIC into generation g being built, with
// the addresses of the families it configures (Stack.mu held).
func (s *Stack) addLoopback(g *Generation, families map[int]bool) (fresh *NIC) {
	n, isNew := s.loopbackNIC()
	if isNew {
		fresh = n
	}
	ng := &nicGen{nic: n, cfg: &LinkConfig{Name: LoopbackName, ModuleID: LoopbackModuleID}, key: LoopbackModuleID, mtu: LoopbackMTU}
	if families[4] {
		ng.addrs[0] = []AddressInfo{{Prefix: loopback4}}
	}
	if families[6] {
		ng.addrs[1] = []AddressInfo{{Prefix: loopback6}}
		ng.raw6 = ng.addrs[1]
	}
	for int(n.id) >= len(g.nics) {
		g.nics = append(g.nics, nil)
	}
	g.nics[n.id] = ng
	g.lo = ng
	ng.gen = g
	g.loRoute4 = &Route{Dst: netip.PrefixFrom(netip.AddrFrom4([4]byte{127}), 8), NIC: n.id}
	g.loRoute6 = &Route{Dst: loopback6, NIC: n.id}
	return fresh
}

// LoopbackNIC returns the loopback NIC's ID in this generation (0: none).
func (g *Generation) LoopbackNIC() NICID {
	if g.lo == nil {
		return 0
	}
	return g.lo.nic.id
}

// LookupRoute4 is the output route lookup for a packet the stack sends to
// dst: through the loopback NIC for one of the stack's own unicast
// addresses and for 127.0.0.0/8 (Linux's local table), else as
// Routes().Lookup4. The forwarding path, which never looks up one of the
// stack's addresses, calls Routes().Lookup4 itself. nil: no route.
func (g *Generation) LookupRoute4(dst [4]byte) *Route {
	if g.lo != nil {
		if dst[0] == 127 {
			return g.loRoute4
		}
		if _, bcast, ok := g.IsLocal4(dst); ok && !bcast {
			return g.loRoute4
		}
	}
	return g.Routes().Lookup4(dst)
}

// LookupOutput6 is the output route lookup for a packet the stack sends to
// dst: through the loopback NIC for ::1 and the stack's own usable
// addresses (link-local ones included), else LookupRoute6.
func (g *Generation) LookupOutput6(dst [16]byte) *Route {
	if g.lo != nil {
		if dst == [16]byte{15: 1} {
			return g.loRoute6
		}
		if _, ok := g.IsLocal6(dst); ok {
			return g.loRoute6
		}
	}
	return g.LookupRoute6(dst)
}

// loopSource is the source address of a packet to dst through the
// loopback NIC, what Linux's local routes give as their preferred source:
// dst itself for one of the stack's addresses, 127.0.0.1 for the rest of
// 127/8 (and anything else), ::1 for ::1.
func (g *nicGen) loopSource(dst netip.Addr) (netip.Addr, bool) {
	if dst.Is4() {
		a := dst.As4()
		if _, bcast, ok := g.gen.IsLocal4(a); ok && !bcast && a[0] != 127 {
			return dst, true
		}
		return loopback4.Addr(), len(g.addrs[0]) > 0
	}
	if _, ok := g.gen.IsLocal6(dst.As16()); ok || dst == loopback6.Addr() {
		return dst, true
	}
	return loopback6.Addr(), len(g.addrs[1]) > 0
}

// loopback takes a loopback NIC's output queue (past Postrouting): its
// packets are received on the loopback NIC when the batch flushes
// (deliverLoop). It owns q's packets.
func (b *Batch) loopback(ng *nicGen, q []*Packet) {
	var n, bytes uint64
	for i, p := range q {
		if p == nil {
			continue
		}
		q[i] = nil
		n++
		bytes += uint64(p.Len())
		b.loopq = append(b.loopq, p)
	}
	ng.nic.Stats.TxPackets.Add(n)
	ng.nic.Stats.TxBytes.Add(bytes)
}

// deliverLoop receives the packets the batch sent through the loopback NIC
// on it, as a link's receive would: fresh receive metadata, the NIC's
// receive counters, the network endpoints.
func (b *Batch) deliverLoop() {
	q := b.loopq
	b.loopq = b.loopAlt[:0]
	b.loopRounds++
	ng := b.Gen.lo
	if ng == nil || b.loopRounds > maxLoopRounds {
		for i, p := range q {
			q[i] = nil
			b.Gen.loopRounds.Inc()
			p.Release()
		}
		b.loopAlt = q[:0]
		return
	}
	n := ng.nic
	var cnt, bytes uint64
	for _, p := range q {
		cnt++
		bytes += uint64(p.Len())
		p.InNIC, p.OutNIC = n.id, 0
		p.NextHop = zeroAddr
		p.RemoteLinkAddr = wire.MAC{}
		p.PktType = PacketHost
		p.PathMTU = 0
		p.stage = 0
		// A partial checksum is never completed on the way to oneself:
		// as Linux's lo, the receiver takes it as verified.
		p.CsumVerified = p.GSO.NeedsCsum
	}
	n.Stats.RxPackets.Add(cnt)
	n.Stats.RxBytes.Add(bytes)
	b.stack.dispatch(b, ng, q)
	clear(q)
	b.loopAlt = q[:0]
}
