package tcp

import (
	"net/netip"

	"github.com/pipestack/pipestack/modules/internal/tcpreset"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Protocol is transport.tcp's protocol object, one per generation: the
// generation's settings over the stack's table.
type Protocol struct {
	t  *table
	c  *counters
	st *settings
}

// Number implements pipeline.TransportProtocol.
func (p *Protocol) Number() pipeline.TransportProtocolNumber { return pipeline.TCPProtocolNumber }

// ParsePorts implements pipeline.TransportProtocol.
func (p *Protocol) ParsePorts(b []byte) (src, dst uint16, ok bool) {
	if len(b) < wire.TCPMinimumSize {
		return 0, 0, false
	}
	return wire.Ports(wire.ProtocolTCP, b)
}

// segment is a received segment, parsed.
type segment struct {
	seq, ack uint32
	flags    uint8
	wnd      uint32 // the field as sent, unscaled
	gso      int    // a GRO super-packet's segment payload size (0: one segment)
	data     []byte
	opts     wire.TCPOptions
	// pkt is the packet data points into, when the receive queue may keep
	// it (a connection's segment path); receive clears it when it does.
	pkt *pipeline.Packet
}

func (s *segment) has(f uint8) bool { return s.flags&f != 0 }

// length is SEG.LEN: the data plus one for SYN and one for FIN.
func (s *segment) length() uint32 {
	n := uint32(len(s.data))
	if s.has(wire.TCPFlagSyn) {
		n++
	}
	if s.has(wire.TCPFlagFin) {
		n++
	}
	return n
}

// HandlePackets implements pipeline.TransportProtocol: validate (length,
// data offset, checksum with the pseudo-header), parse the options,
// demultiplex by 4-tuple to a connection, else to a listener, else answer
// with a reset (RFC 9293 §3.10.7.1). Consecutive segments of one
// connection are processed under one lock, and what they call for (ACKs,
// data the ACKs let out) is sent once at the end of the run. Nothing here
// allocates in steady state.
func (p *Protocol) HandlePackets(b *pipeline.Batch, pkts []*pipeline.Packet) {
	c := p.c
	now := p.t.now(b)
	var rx uint64
	// Every segment's header and checksum first, before any connection
	// is locked: the verification is the costliest step per byte, and a
	// connection's lock held across it (a run holds the lock from its
	// first segment to its end) kept the reader from copying out what
	// the run had already queued.
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		rx++
		raw := wire.TCP(pkt.Data())
		src, dst, ok := addresses(pkt)
		switch {
		case raw.Check() != nil || !ok:
			b.Drop(pkt, c.malformed)
		case !pkt.CsumVerified && (len(raw) > 0xffff || !raw.IsChecksumValid(pseudo(src, dst, len(raw)))):
			b.Drop(pkt, c.badChecksum)
		default:
			pkt.CsumVerified = true
			continue
		}
		pkts[i] = nil
	}
	var cur *conn
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		pkts[i] = nil
		raw := wire.TCP(pkt.Data())
		src, dst, _ := addresses(pkt)
		var s segment
		s.seq, s.ack, s.flags, s.wnd = raw.Seq(), raw.Ack(), raw.Flags(), uint32(raw.Window())
		s.data = raw.Payload()
		if pkt.GSO.Type != pipeline.GSONone && pkt.GSO.SegSize > 0 && len(s.data) > int(pkt.GSO.SegSize) {
			// A GRO super-packet (TUN, AF_PACKET, loopback): one segment
			// here, counted as the segments it stands for.
			s.gso = int(pkt.GSO.SegSize)
			c.groRecv.Inc()
			rx += uint64(pkt.GSO.Segments(len(s.data)) - 1)
		}
		if opts := raw.Options(); len(opts) > 0 {
			var good bool
			if s.opts, good = wire.ParseTCPOptions(opts); !good {
				c.badOptions.Inc()
			}
		}
		local := netip.AddrPortFrom(dst, raw.DstPort())
		remote := netip.AddrPortFrom(src, raw.SrcPort())
		cn, l := p.t.lookup(local, remote)
		if cn != cur && cur != nil {
			cur.endRun(b, now)
			cur.mu.Unlock()
			cur = nil
		}
		if cn == nil && p.t.twLookup(fourTuple{local, remote}) {
			found, relisten, iss := p.timeWaitRecord(b, fourTuple{local, remote}, &s, now)
			if found && !relisten {
				pkt.Release()
				continue
			}
			if relisten {
				if l = p.t.listenerFor(local); l != nil {
					p.listenSegment(b, l, &s, pkt, local, remote, iss, now)
					continue
				}
				p.noSocket(b, pkt)
				continue
			}
		}
		if cn != nil {
			if cur == nil {
				cn.mu.Lock()
				cur = cn
			}
			if cn.state != stateClosed {
				s.pkt = pkt
				relisten, iss := cn.segment(b, &s, now)
				if s.pkt == nil {
					continue // kept by the receive queue (rxqueue.go)
				}
				if !relisten {
					pkt.Release()
					continue
				}
				// A new SYN for a TIME-WAIT connection: it is gone, a
				// listener takes the SYN.
				cur.endRun(b, now)
				cur.mu.Unlock()
				cur = nil
				if l = p.t.listenerFor(local); l != nil {
					p.listenSegment(b, l, &s, pkt, local, remote, iss, now)
					continue
				}
			} else {
				cur.mu.Unlock()
				cur = nil
				// It closed after the lookup: as if there were none.
				l = p.t.listenerFor(local)
				if l != nil {
					p.listenSegment(b, l, &s, pkt, local, remote, 0, now)
					continue
				}
			}
			p.noSocket(b, pkt)
			continue
		}
		if l != nil {
			p.listenSegment(b, l, &s, pkt, local, remote, 0, now)
			continue
		}
		p.noSocket(b, pkt)
	}
	if cur != nil {
		cur.endRun(b, now)
		cur.mu.Unlock()
	}
	c.rx.Add(rx)
}

// noSocket answers a segment no connection or listener takes with a reset
// (tcpreset: <SEQ=SEG.ACK><CTL=RST>, or <SEQ=0><ACK=SEG.SEQ+SEG.LEN>
// <CTL=RST,ACK>), never a reset, never to or from a broadcast or
// multicast address, and takes ownership of pkt (Data() at the TCP
// header; checksum verified).
func (p *Protocol) noSocket(b *pipeline.Batch, pkt *pipeline.Packet) {
	if f := p.t.fwd.Load(); f != nil && f.take(b, pkt) {
		return // a connection request for the forwarder (forwarder.go)
	}
	src, dst, _ := addresses(pkt)
	if pkt.PktType != pipeline.PacketHost || !answerable(b, src, dst) {
		b.Drop(pkt, p.c.noSocket)
		return
	}
	rst, from, to, ok := tcpreset.Build(p.t.s.Pool(), pkt.NetworkHeader(), pkt.Data())
	in := pkt.InNIC
	b.Drop(pkt, p.c.noSocket)
	if !ok {
		return
	}
	p.sendReset(b, rst, from, to, in)
}

// answerable: a segment from src to dst may be answered (neither is a
// broadcast, multicast or unspecified address).
func answerable(b *pipeline.Batch, src, dst netip.Addr) bool {
	if dst.IsMulticast() || src.IsMulticast() || src.IsUnspecified() || !src.IsValid() {
		return false
	}
	if dst.Is4() {
		if _, bcast, _ := b.Gen.IsLocal4(dst.As4()); bcast {
			return false
		}
		if s := src.As4(); s == [4]byte{255, 255, 255, 255} {
			return false
		}
		if _, bcast, _ := b.Gen.IsLocal4(src.As4()); bcast {
			return false
		}
	}
	return true
}

// sendReset routes a reset built by tcpreset from from to to, and sends it.
func (p *Protocol) sendReset(b *pipeline.Batch, rst *pipeline.Packet, from, to netip.Addr, in pipeline.NICID) {
	nic, nextHop, err := routeFor(b.Gen, to)
	if err != nil {
		rst.Release()
		return
	}
	proto := pipeline.IPv4ProtocolNumber
	if to.Is6() {
		proto = pipeline.IPv6ProtocolNumber
	}
	ne := b.Gen.NetworkEndpoint(nic.ID(), proto)
	if ne == nil {
		rst.Release()
		return
	}
	rst.InNIC = in
	p.c.resetOut.Inc()
	p.c.tx.Inc()
	one := [1]*pipeline.Packet{rst}
	ne.WritePackets(b, pipeline.RouteInfo{NIC: nic.ID(), LocalAddr: from, RemoteAddr: to, NextHop: nextHop, MTU: nic.MTU()},
		pipeline.NetworkHeaderParams{Protocol: pipeline.TCPProtocolNumber}, one[:])
}

// addresses reads the source and destination addresses of a delivered
// segment from its network header.
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

// listenSegment is RFC 9293 §3.10.7.2, a segment for a LISTEN socket: a
// reset is ignored, an ACK answered with a reset, a SYN makes a connection
// in SYN-RECEIVED (when the listener's SYN queue has room) that answers
// with a SYN-ACK. iss, when not zero, is the ISS to use (a SYN that
// reopened a TIME-WAIT connection, as Linux picks it). It takes ownership
// of pkt.
func (p *Protocol) listenSegment(b *pipeline.Batch, l *listener, s *segment, pkt *pipeline.Packet, local, remote netip.AddrPort, iss uint32, now int64) {
	c := p.c
	switch {
	case s.has(wire.TCPFlagRst):
		pkt.Release()
		return
	case s.has(wire.TCPFlagAck):
		if n := p.cookieConn(b, l, s, local, remote, now); n != nil {
			n.segment(b, s, now)
			if n.state == stateSynRcvd {
				// The accept queue is full: nothing is kept (the
				// peer's next segment brings the cookie again).
				n.destroy(nil)
			}
			n.endRun(b, now)
			n.mu.Unlock()
			pkt.Release()
			return
		}
		p.noSocket(b, pkt)
		return
	case !s.has(wire.TCPFlagSyn) || s.has(wire.TCPFlagFin):
		pkt.Release()
		return
	}
	if pkt.PktType != pipeline.PacketHost || !answerable(b, remote.Addr(), local.Addr()) {
		pkt.Release()
		return
	}
	if !l.synBegin() {
		c.synQueueFull.Inc()
		if p.st.syncookies && !l.acceptFull() {
			p.sendCookie(b, l, s, local, remote, now)
		}
		pkt.Release()
		return
	}
	pkt.Release()
	if p.synReceived(b, l, s, local, remote, iss, now) == nil {
		l.synDone()
	}
}

// synReceived makes the connection of a SYN for l (counted in its SYN
// queue by the caller) in SYN-RECEIVED, registers it and answers with the
// SYN-ACK; nil when its 4-tuple is taken (the caller gives the SYN queue
// slot back). iss as for listenSegment.
func (p *Protocol) synReceived(b *pipeline.Batch, l *listener, s *segment, local, remote netip.AddrPort, iss uint32, now int64) *conn {
	c := p.c
	st := p.st
	n := newConn(p.t, st, local, remote)
	n.passive, n.listener, n.state = true, l, stateSynRcvd
	if l.cc != nil {
		n.cc = l.cc
	}
	if l.keepalive > 0 {
		n.keepalive, n.keepIdle, n.keepIntvl = true, l.keepalive, l.keepalive
	}
	n.irs, n.rcvNxt = s.seq, s.seq+1
	n.rcvAdv = n.rcvNxt
	o := &s.opts
	if o.HasMSS {
		n.peerMSS = int(o.MSS)
	}
	if st.ws && o.HasWindowScale {
		n.wsOK = true
		n.sndWScale = min(o.WindowScale, wire.TCPMaxWindowScale)
		n.rcvWScale = windowShift(n.rcvBufMax)
	}
	if st.ts && o.HasTimestamps {
		n.tsOK = true
		n.tsRecent, n.tsRecentAt = o.TSVal, now
		n.tsOffset = uint32(p.t.tsKey.tupleHash(local, remote))
	}
	n.sackOK = st.sack && o.SACKPermitted
	n.sndWnd, n.maxSndWnd = s.wnd, s.wnd
	n.sndWl1, n.sndWl2 = s.seq, 0
	if iss == 0 {
		iss = p.t.isn(local, remote, b.Now)
	}
	n.iss, n.sndUna, n.sndNxt, n.sndMax = iss, iss, iss, iss
	n.recover = iss
	n.lastRecv = now
	n.mu.Lock()
	if !p.t.insert(n) {
		n.mu.Unlock()
		return nil
	}
	c.passiveOpens.Inc()
	n.setMSS(b)
	n.rcvMSS = min(n.sndMSS, 536)
	n.cc.Init(&n.ccs)
	n.rttStart = now
	n.sendSyn(b, now)
	n.flush(b)
	n.resched(now)
	n.mu.Unlock()
	return n
}

var (
	_ pipeline.TransportProtocol     = (*Protocol)(nil)
	_ pipeline.TransportErrorHandler = (*Protocol)(nil)
)
