package udp

import (
	"net/netip"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// counters are the "udp" counter set. The set lives as long as the stack, so
// every generation's protocol object and the socket table share them.
type counters struct {
	rx, delivered, sent                  *pipeline.Counter
	noPort, broadcastNoPort              *pipeline.Counter
	badChecksum, malformed, receiveQFull *pipeline.Counter
}

func newCounters(cs *pipeline.CounterSet) *counters {
	return &counters{
		rx: cs.Get("rx"), delivered: cs.Get("delivered"), sent: cs.Get("sent"),
		noPort: cs.Get("no_port"), broadcastNoPort: cs.Get("broadcast_no_port"),
		badChecksum: cs.Get("bad_checksum"), malformed: cs.Get("malformed"),
		receiveQFull: cs.Get("receive_queue_full"),
	}
}

// Protocol is transport.udp's protocol object, one per generation. It holds
// the generation's settings and points at the stack's socket table.
type Protocol struct {
	t            *table
	c            *counters
	pool         *pipeline.Pool
	receiveQueue int
}

// Number implements pipeline.TransportProtocol.
func (p *Protocol) Number() pipeline.TransportProtocolNumber { return pipeline.UDPProtocolNumber }

// ParsePorts implements pipeline.TransportProtocol.
func (p *Protocol) ParsePorts(b []byte) (src, dst uint16, ok bool) {
	if len(b) < wire.UDPHeaderSize {
		return 0, 0, false
	}
	return wire.Ports(wire.ProtocolUDP, b)
}

// HandlePackets implements pipeline.TransportProtocol: validate, verify the
// checksum, demultiplex and queue each datagram on its socket, in runs of
// consecutive datagrams for the same socket (one socket lock per run). The
// socket table is read under its read lock, taken once per batch; nothing
// here allocates. The run is kept in pkts itself, compacted at the front
// (pkts[:w], slots already visited), so no other slice is needed.
func (p *Protocol) HandlePackets(b *pipeline.Batch, pkts []*pipeline.Packet) {
	c := p.c
	t := p.t
	var rx, delivered uint64
	var runEP *endpoint
	w := 0
	t.mu.RLock()
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		pkts[i] = nil
		rx++
		u := wire.UDP(pkt.Data())
		if u.Check() != nil {
			b.Drop(pkt, c.malformed)
			continue
		}
		pkt.Truncate(int(u.Length()))
		u = u[:u.Length()]
		src, dst, ok := addresses(pkt)
		if !ok {
			b.Drop(pkt, c.malformed)
			continue
		}
		if !pkt.CsumVerified && !checksumValid(pkt, u) {
			b.Drop(pkt, c.badChecksum)
			continue
		}
		ep := t.lookup(dst, u.DstPort(), src, u.SrcPort())
		if ep == nil {
			// Answered outside the table lock: the error path must be
			// free to come back to the transport. The run's socket may
			// close meanwhile; enqueue then drops.
			f := t.fwd
			t.mu.RUnlock()
			if f == nil || !f.take(b, pkt, p.receiveQueue) {
				p.noPort(b, pkt)
			}
			t.mu.RLock()
			continue
		}
		pkt.Pull(wire.UDPHeaderSize)
		if ep != runEP && w > 0 {
			delivered += runEP.enqueue(pkts[:w], p.receiveQueue)
			w = 0
		}
		runEP = ep
		pkts[w] = pkt
		w++
	}
	if w > 0 {
		delivered += runEP.enqueue(pkts[:w], p.receiveQueue)
	}
	t.mu.RUnlock()
	c.rx.Add(rx)
	c.delivered.Add(delivered)
}

// noPort answers a datagram for a port nobody listens on: ICMP port
// unreachable through the network endpoint it came in on, except for
// broadcast and multicast destinations (RFC 1122 §4.1.3.1), which are only
// counted. It takes ownership of pkt (Data() at the UDP header).
func (p *Protocol) noPort(b *pipeline.Batch, pkt *pipeline.Packet) {
	_, dst, _ := addresses(pkt)
	if isBroadcast(b, pkt, dst) {
		b.Drop(pkt, p.c.broadcastNoPort)
		return
	}
	p.c.noPort.Inc()
	ne := b.Gen.NetworkEndpoint(pkt.InNIC, pkt.NetProto)
	if ne == nil {
		b.Drop(pkt, nil)
		return
	}
	ne.ReturnError(b, pkt, pipeline.ErrorPortUnreachable)
}

// isBroadcast tells whether a datagram was sent to a broadcast or multicast
// address, at the link layer or the network layer.
func isBroadcast(b *pipeline.Batch, pkt *pipeline.Packet, dst netip.Addr) bool {
	if pkt.PktType == pipeline.PacketBroadcast || pkt.PktType == pipeline.PacketMulticast || dst.IsMulticast() {
		return true
	}
	if dst.Is4() {
		_, bcast, _ := b.Gen.IsLocal4(dst.As4())
		return bcast
	}
	return false
}

// addresses reads the source and destination addresses of a delivered
// datagram from its network header.
func addresses(pkt *pipeline.Packet) (src, dst netip.Addr, ok bool) {
	nh := pkt.NetworkHeader()
	switch pkt.NetProto {
	case pipeline.IPv4ProtocolNumber:
		if len(nh) < wire.IPv4MinimumSize {
			return src, dst, false
		}
		h := wire.IPv4(nh)
		return netip.AddrFrom4(h.Src()), netip.AddrFrom4(h.Dst()), true
	case pipeline.IPv6ProtocolNumber:
		if len(nh) < wire.IPv6HeaderSize {
			return src, dst, false
		}
		h := wire.IPv6(nh)
		return netip.AddrFrom16(h.Src()), netip.AddrFrom16(h.Dst()), true
	}
	return src, dst, false
}

// checksumValid verifies a datagram's checksum against its pseudo-header.
// A zero checksum means "none" and is accepted on IPv4 only: IPv6 forbids
// it (RFC 8200 §8.1: such a datagram is discarded). The IPv6 pseudo-header
// carries the 32-bit upper-layer length: the UDP length, whatever extension
// headers come before.
func checksumValid(pkt *pipeline.Packet, u wire.UDP) bool {
	switch pkt.NetProto {
	case pipeline.IPv4ProtocolNumber:
		if u.Checksum() == 0 {
			return true
		}
		return u.IsChecksumValid(wire.IPv4PseudoChecksum(wire.IPv4(pkt.NetworkHeader()), u.Length()))
	case pipeline.IPv6ProtocolNumber:
		if u.Checksum() == 0 {
			return false
		}
		return u.IsChecksumValid(wire.IPv6PseudoChecksum(wire.IPv6(pkt.NetworkHeader()), wire.ProtocolUDP, uint32(u.Length())))
	}
	return false
}

// pseudoHeader returns the pseudo-header sum for a datagram of length n
// from src to dst.
func pseudoHeader(src, dst netip.Addr, n uint16) uint16 {
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		return wire.PseudoHeaderChecksum(wire.ProtocolUDP, s[:], d[:], n)
	}
	s, d := src.As16(), dst.As16()
	return wire.PseudoHeaderChecksum(wire.ProtocolUDP, s[:], d[:], n)
}

var _ pipeline.TransportProtocol = (*Protocol)(nil)
