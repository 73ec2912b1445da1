package ipv6

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

// noTransport answers a packet addressed to the stack (Data() at its IPv6
// header, its transport header marked, TransProto set) whose protocol no
// transport module handles, as a Linux host without a socket for it does,
// and takes ownership of it: UDP gets ICMPv6 port unreachable (every port
// is closed), TCP a reset (RFC 9293 §3.10.7.1, forged by
// modules/internal/tcpreset), any other protocol Parameter Problem
// "unrecognized next header" pointing at the Next Header field that names
// it. A UDP or TCP packet with a bad checksum gets nothing.
func (e *endpoint) noTransport(b *pipeline.Batch, pkt *pipeline.Packet) {
	c := &e.p.c
	h := wire.IPv6(pkt.Data())
	switch pkt.TransProto {
	case pipeline.UDPProtocolNumber:
		u := wire.UDP(pkt.TransportHeader())
		if u.Check() != nil {
			b.Drop(pkt, c.closed.malformed)
			return
		}
		u = u[:u.Length()]
		if !pkt.CsumVerified && !u.IsChecksumValid(wire.IPv6PseudoChecksum(h, wire.ProtocolUDP, uint32(len(u)))) {
			b.Drop(pkt, c.closed.badChecksum) // including checksum 0 (RFC 8200 §8.1)
			return
		}
		e.icmpError(b, pkt, wire.ICMPv6DstUnreachable, wire.ICMPv6PortUnreachable, 0, false)
		b.Drop(pkt, c.closed.udp)
	case pipeline.TCPProtocolNumber:
		e.reset(b, pkt, h)
	default:
		e.icmpError(b, pkt, wire.ICMPv6ParamProblem, wire.ICMPv6UnrecognizedNextHeader, uint32(nextHeaderOffset(pkt.Data(), e.p.cfg.maxExt)), false)
		b.Drop(pkt, c.unknownProto)
	}
}

// reset answers a TCP segment to the stack (no transport.tcp) with a reset
// from the address it was sent to, and takes ownership of pkt. Like Linux's
// tcp_v6_send_reset: never for a multicast destination or a frame not
// addressed to this host at the link layer, a reset, or a source that
// cannot be answered; not rate limited.
func (e *endpoint) reset(b *pipeline.Batch, pkt *pipeline.Packet, h wire.IPv6) {
	c := &e.p.c
	seg := pkt.TransportHeader()
	if wire.TCP(seg).Check() != nil {
		b.Drop(pkt, c.closed.malformed)
		return
	}
	if !pkt.CsumVerified && !tcpreset.ChecksumValid(h, seg) {
		b.Drop(pkt, c.closed.badChecksum)
		return
	}
	src, dst := h.Src(), h.Dst()
	if isMulticast(&dst) || pkt.PktType != pipeline.PacketHost || isUnspecified(&src) || isMulticast(&src) || isLoopback(&src) && !e.loop {
		b.Drop(pkt, c.closed.tcp)
		return
	}
	rst, from, to, ok := tcpreset.Build(e.p.pool, h, seg)
	in := pkt.InNIC
	b.Drop(pkt, c.closed.tcp) // h and seg are gone with it
	if !ok {
		return
	}
	via := in
	if via == 0 {
		via = e.nic.ID()
	}
	nic, nh, found := e.routeTo(b, src, via)
	var ep pipeline.NetworkEndpoint
	if found {
		ep = b.Gen.NetworkEndpoint(nic.ID(), pipeline.IPv6ProtocolNumber)
	}
	if ep == nil {
		b.Drop(rst, c.noRoute)
		return
	}
	rst.InNIC = in
	c.closed.resetOut.Inc()
	one := [1]*pipeline.Packet{rst}
	ep.WritePackets(b, pipeline.RouteInfo{NIC: nic.ID(), LocalAddr: from, RemoteAddr: to, NextHop: nh},
		pipeline.NetworkHeaderParams{Protocol: pipeline.TCPProtocolNumber}, one[:])
}
