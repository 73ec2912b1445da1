package ipv4

import (
	"github.com/pipestack/pipestack/modules/internal/tcpreset"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// closedCounters count the packets to the stack for a transport the
// pipeline does not have.
type closedCounters struct {
	udp, tcp, resetOut, badChecksum, malformed *pipeline.Counter
}

func newClosedCounters(cs *pipeline.CounterSet) closedCounters {
	return closedCounters{
		udp: cs.Get("udp_no_transport"), tcp: cs.Get("tcp_no_transport"), resetOut: cs.Get("tcp_reset_out"),
		badChecksum: cs.Get("transport_bad_checksum"), malformed: cs.Get("transport_malformed"),
	}
}

// noTransport answers a packet addressed to the stack (Data() at its IPv4
// header, TransProto set) whose protocol no transport module handles, as a
// Linux host without a socket for it does, and takes ownership of it: UDP
// gets ICMP port unreachable (every port is closed), TCP a reset (RFC 9293
// §3.10.7.1, forged by modules/internal/tcpreset), any other protocol ICMP
// protocol unreachable. A UDP or TCP packet with a bad checksum gets
// nothing.
func (e *endpoint) noTransport(b *pipeline.Batch, pkt *pipeline.Packet) {
	c := &e.p.c
	h := wire.IPv4(pkt.Data())
	switch pkt.TransProto {
	case pipeline.UDPProtocolNumber:
		u := wire.UDP(h.Payload())
		if u.Check() != nil {
			b.Drop(pkt, c.closed.malformed)
			return
		}
		u = u[:u.Length()]
		if !pkt.CsumVerified && u.Checksum() != 0 && !u.IsChecksumValid(wire.IPv4PseudoChecksum(h, u.Length())) {
			b.Drop(pkt, c.closed.badChecksum)
			return
		}
		e.icmpError(b, pkt, wire.ICMPv4DstUnreachable, wire.ICMPv4PortUnreachable, 0)
		b.Drop(pkt, c.closed.udp)
	case pipeline.TCPProtocolNumber:
		e.reset(b, pkt, h)
	default:
		e.icmpError(b, pkt, wire.ICMPv4DstUnreachable, wire.ICMPv4ProtoUnreachable, 0)
		b.Drop(pkt, c.unknownProto)
	}
}

// reset answers a TCP segment to the stack (no transport.tcp) with a reset
// from the address it was sent to, and takes ownership of pkt. Like Linux's
// tcp_v4_send_reset: never for a frame not addressed to this host at the
// link layer, a broadcast or multicast destination, a reset, or a source
// that cannot be answered; not rate limited.
func (e *endpoint) reset(b *pipeline.Batch, pkt *pipeline.Packet, h wire.IPv4) {
	c := &e.p.c
	seg := h.Payload()
	if wire.TCP(seg).Check() != nil {
		b.Drop(pkt, c.closed.malformed)
		return
	}
	if !pkt.CsumVerified && !tcpreset.ChecksumValid(h, seg) {
		b.Drop(pkt, c.closed.badChecksum)
		return
	}
	src, dst := h.Src(), h.Dst()
	_, bcast, _ := b.Gen.IsLocal4(dst)
	if bcast || dst[0] >= 224 || pkt.PktType != pipeline.PacketHost || src == [4]byte{} || h.FragmentOffset() != 0 {
		b.Drop(pkt, c.closed.tcp)
		return
	}
	rst, from, to, ok := tcpreset.Build(e.p.pool, h, seg)
	in := pkt.InNIC
	b.Drop(pkt, c.closed.tcp) // h and seg are gone with it
	if !ok {
		return
	}
	r := b.Gen.LookupRoute4(src)
	if r == nil {
		b.Drop(rst, c.noRoute)
		return
	}
	out, found := b.Gen.NIC(r.NIC)
	ep := b.Gen.NetworkEndpoint(r.NIC, pipeline.IPv4ProtocolNumber)
	if !found || ep == nil {
		b.Drop(rst, c.noRoute)
		return
	}
	rst.InNIC = in
	c.closed.resetOut.Inc()
	one := [1]*pipeline.Packet{rst}
	ep.WritePackets(b, pipeline.RouteInfo{NIC: r.NIC, LocalAddr: from, RemoteAddr: to, NextHop: r.NextHop(to), MTU: out.MTU()},
		pipeline.NetworkHeaderParams{Protocol: pipeline.TCPProtocolNumber}, one[:])
}
