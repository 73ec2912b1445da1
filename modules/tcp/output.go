package tcp

import (
	"net/netip"
	"syscall"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// rcvWindow returns the window to advertise (unscaled bytes) and moves
// the advertised right edge. The edge never moves left (RFC 9293
// §3.8.6.2.2) and moves right only in whole segments, when what is left of
// the window falls a segment below the free space (Linux's
// __tcp_select_window): the window field then stays the same while the
// application keeps up, so that the sender can tell duplicate ACKs, and a
// window of less than a segment is never offered (receiver-side silly
// window avoidance).
func (c *conn) rcvWindow() uint32 {
	// Less one unit of the window scale: the field rounds the window up to
	// it (as Linux's ALIGN does), and what it promises must fit.
	free := min(c.rcvLimit()-c.rcvHeld()-(1<<c.rcvWScale-1), 0xffff<<c.rcvWScale)
	if free < 0 {
		free = 0
	}
	mss := max(c.rcvMSS, 536)
	if seqLT(c.rcvAdv, c.rcvNxt) {
		c.rcvAdv = c.rcvNxt
	}
	cur := int(c.rcvAdv - c.rcvNxt)
	if cur <= free-mss || cur > free {
		w := free
		if w >= mss {
			w -= w % mss
		} else if w < free/2 || w < mss {
			w = 0
		}
		if edge := c.rcvNxt + uint32(w); seqGT(edge, c.rcvAdv) {
			c.rcvAdv = edge
		}
	}
	return c.rcvAdv - c.rcvNxt
}

// windowField is the window as sent: scaled, except on a SYN.
func (c *conn) windowField(syn bool) uint16 {
	w := c.rcvWindow()
	if syn {
		return uint16(min(w, 0xffff))
	}
	// Round up to the scale (the edge we promised must not shrink) and
	// take the edge the field says as the one advertised.
	w = (w + 1<<c.rcvWScale - 1) >> c.rcvWScale
	if w > 0xffff {
		w = 0xffff
	}
	if edge := c.rcvNxt + w<<c.rcvWScale; seqGT(edge, c.rcvAdv) {
		c.rcvAdv = edge
	}
	return uint16(w)
}

// sackBlocks fills blocks with the out-of-order ranges, the one holding
// the latest segment first, then the others by how recently they grew
// (RFC 2018 §4: the blocks most recently reported come next, so that with
// more ranges than blocks each is reported again as the window moves,
// as Linux's selective_acks), and returns how many.
func (c *conn) sackBlocks(blocks *[wire.TCPMaxSACKBlocks]wire.TCPSACKBlock) int {
	n := 0
	if c.rk.dsackOn {
		// A duplicate first (RFC 2883), sent once.
		c.rk.dsackOn = false
		blocks[0] = wire.TCPSACKBlock{Left: c.rk.dsackL, Right: c.rk.dsackR}
		n = 1
	}
	if c.oooLast < c.nooo {
		r := c.ooo[c.oooLast]
		blocks[n] = wire.TCPSACKBlock{Left: r.left, Right: r.right}
		n++
	}
	var last uint32 // the stamp below which the next block is sought
	if c.oooLast < c.nooo {
		last = c.ooo[c.oooLast].at
	}
	for n < len(blocks) {
		best := -1
		for i := 0; i < c.nooo; i++ {
			if a := c.ooo[i].at; a < last && (best < 0 || a > c.ooo[best].at) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		blocks[n] = wire.TCPSACKBlock{Left: c.ooo[best].left, Right: c.ooo[best].right}
		last = c.ooo[best].at
		n++
	}
	return n
}

// emit builds one segment: seq, flags, and n bytes of the send buffer from
// offset off. The segment is queued on c.out (handed to the network layer
// by flush). It reports false when there is no route (the segment is not
// built; the retransmission timer covers it).
func (c *conn) emit(b *pipeline.Batch, seq uint32, flags uint8, off, n int, now int64) bool {
	if !c.route(b) {
		return false
	}
	ss := c.segSize() // before the options take a pending DSACK block
	var ob wire.TCPOptionsBuilder
	syn := flags&wire.TCPFlagSyn != 0
	if syn {
		ob.AddMSS(uint16(c.ourMSS(b)))
		switch {
		case c.sackOK && c.tsOK:
			ob.AddSACKPermittedTimestamps(c.tsSend(now), c.tsRecent)
		case c.tsOK:
			ob.AddTimestamps(c.tsSend(now), c.tsRecent)
		case c.sackOK:
			ob.AddSACKPermitted()
		}
		if c.wsOK {
			ob.AddWindowScale(c.rcvWScale)
		}
	} else if flags&wire.TCPFlagRst == 0 || c.tsOK {
		if c.tsOK {
			ob.AddTimestamps(c.tsSend(now), c.tsRecent)
		}
		if c.sackOK && (c.nooo > 0 || c.rk.dsackOn) && flags&wire.TCPFlagAck != 0 {
			var blocks [wire.TCPMaxSACKBlocks]wire.TCPSACKBlock
			k := c.sackBlocks(&blocks)
			ob.AddSACK(blocks[:k])
		}
	}
	hl := wire.TCPMinimumSize + ob.Len()
	size := hl + n
	tso := n > ss && c.tso
	var pkt *pipeline.Packet
	var body []byte
	var e *sndEntry
	if n > 0 && !tso && c.zeroCopy() {
		e = c.sndBuf.segment(off, n, hl)
	}
	// The payload's checksum sum when known (sumOK): kept by the send
	// queue's packet, or taken while copying the payload out of it; the
	// payload is then not summed again, only the header.
	var sum uint16
	sumOK := n == 0
	if e != nil {
		// The segment is one packet of the send queue: it leaves as a
		// handle of it, the data not copied (sndQueue).
		pkt = e.pkt.Share()
		e.sealed = true
		pkt.Push(hl)
		body = pkt.Data()
		sum, sumOK = e.sum, e.sumOK
		c.t.c.zeroCopySent.Inc()
	} else {
		pkt = c.t.s.Pool().Get(size)
		var ok bool
		if body, ok = pkt.Append(size); !ok {
			pkt.Release()
			return false
		}
		if n > 0 {
			// Summed as copied, unless the link sums (TSO).
			_, sum = c.sndBuf.peek(off, body[hl:], !tso)
			sumOK = !tso
		}
	}
	var ack uint32
	if flags&wire.TCPFlagAck != 0 {
		ack = c.rcvNxt
		c.lastAckSent = c.rcvNxt
	}
	win := uint16(0)
	if flags&wire.TCPFlagRst == 0 {
		win = c.windowField(syn)
	}
	seg := wire.TCP(body)
	seg.Encode(&wire.TCPFields{
		SrcPort: c.local.Port(), DstPort: c.remote.Port(),
		Seq: seq, Ack: ack, Flags: flags, Window: win, Options: ob.Bytes(),
	})
	if tso {
		// A TSO super-packet: the link (or the core, for a link met
		// later that cannot) cuts it into segments of segSize; the
		// checksum is left partial, the pseudo-header sum over the
		// whole length, as Linux's tcp_v4_send_check for GSO.
		ipHdr := wire.IPv4MinimumSize
		typ := pipeline.GSOTCPv4
		if c.v6 {
			ipHdr, typ = wire.IPv6HeaderSize, pipeline.GSOTCPv6
		}
		seg.SetChecksum(pseudo(c.local.Addr(), c.remote.Addr(), size))
		pkt.GSO = pipeline.GSO{Type: typ, SegSize: uint16(ss), HdrLen: uint16(ipHdr + hl),
			NeedsCsum: true, CsumStart: uint16(ipHdr), CsumOffset: 16}
		c.txSegSize = ss
		c.t.c.tsoSent.Inc()
	} else if sumOK {
		seg.SetChecksum(seg.CalculateChecksumPayload(pseudo(c.local.Addr(), c.remote.Addr(), size), sum))
	} else {
		seg.SetChecksum(seg.CalculateChecksum(pseudo(c.local.Addr(), c.remote.Addr(), size)))
	}
	pkt.SetTransportHeader()
	pkt.TransProto = pipeline.TCPProtocolNumber
	if flags&wire.TCPFlagAck != 0 {
		c.ackNow = false
		c.delackAt = 0
		c.rcvUnacked = 0
	}
	if c.inRecovery {
		c.un.prrOut += n // RFC 6937's prr_out
	}
	c.out[c.nout] = pkt
	c.nout++
	if c.nout == len(c.out) {
		c.flush(b)
	}
	return true
}

// flush hands the built segments to the network layer, in the order they
// were built: the batch's output goes to the link when the batch finishes,
// after the connection's lock is released, so the segments two batches
// built one after the other (a Write and an ACK's run on the receive path,
// a Read's window update and the delayed ACK) could reach the link in the
// other order — reordering on a link that never reorders, which the peer
// answers with duplicate ACKs, PAWS drops (an older TSval behind a newer
// one) and SACK recovery (the in-memory bulk benchmark saw hundreds per
// second). So one batch at a time owns the connection's transmission
// (txOwner) until it has transmitted what it took: segments built in
// another batch meanwhile wait in txq, and the owner's FlushBatch (called
// when its queues are out) sends them behind its own, as Linux's socket
// owner processes its backlog before the softirq may send again. The
// stack's scratch connections (SYN cookies, compact TIME-WAIT), rebuilt
// under their own locks, send at once.
func (c *conn) flush(b *pipeline.Batch) {
	if c.nout == 0 {
		return
	}
	n := c.nout
	if c.sndBuf.m != nil { // not a scratch connection
		switch {
		case c.txOwner == nil:
			c.txOwner = b
			b.OnFinish(c)
		case c.txOwner != b:
			if c.txq == nil {
				c.txq = new(txQueue) // once per connection, at its first wait
			}
			c.txq.pkts = append(c.txq.pkts, c.out[:n]...)
			clear(c.out[:n])
			c.nout = 0
			return
		case c.txq != nil && len(c.txq.pkts) > 0:
			c.sendWaiting(b) // built before these
		}
	}
	c.ne.WritePackets(b, c.routeInfo(), pipeline.NetworkHeaderParams{Protocol: pipeline.TCPProtocolNumber}, c.out[:n])
	clear(c.out[:n])
	c.nout = 0
	c.t.c.tx.Add(uint64(n))
}

// txQueue holds the segments built while another batch owned the
// connection's transmission (flush).
type txQueue struct{ pkts []*pipeline.Packet }

// FlushBatch implements pipeline.BatchFlusher: b, the owner of the
// connection's transmission, has sent what it took; what other batches
// built meanwhile goes out now in b, and b stays the owner until that is
// out too.
func (c *conn) FlushBatch(b *pipeline.Batch) {
	c.mu.Lock()
	if c.txOwner == b && c.txq != nil && len(c.txq.pkts) > 0 {
		c.sendWaiting(b)
		b.OnFinish(c)
	} else if c.txOwner == b {
		c.txOwner = nil
	}
	c.mu.Unlock()
}

// sendWaiting hands the segments waiting in txq to the network layer in
// b (dropped when the connection has no route now: retransmission covers
// them).
func (c *conn) sendWaiting(b *pipeline.Batch) {
	q := c.txq.pkts
	if c.route(b) {
		c.ne.WritePackets(b, c.routeInfo(), pipeline.NetworkHeaderParams{Protocol: pipeline.TCPProtocolNumber}, q)
		c.t.c.tx.Add(uint64(len(q)))
	} else {
		pipeline.ReleaseBatch(q)
	}
	clear(q)
	c.txq.pkts = q[:0]
}

// sendAck sends a bare ACK now. Its sequence number is the highest sent
// (SND.MAX), not SND.NXT: after a timeout SND.NXT goes back to resend, and
// an ACK numbered there would fall before the peer's RCV.NXT and be
// dropped as out of window (Linux keeps snd_nxt at the highest and resends
// from its queue; the ACKs it sends are numbered the same way).
func (c *conn) sendAck(b *pipeline.Batch, now int64) {
	c.emit(b, c.sndMax, wire.TCPFlagAck, 0, 0, now)
}

// sendRst sends a reset from a synchronized connection (an abort):
// <SEQ=SND.NXT><CTL=RST,ACK>, as Linux's tcp_send_active_reset.
func (c *conn) sendRst(b *pipeline.Batch, now int64) {
	c.emit(b, c.sndMax, wire.TCPFlagRst|wire.TCPFlagAck, 0, 0, now)
	c.t.c.resetOut.Inc()
}

// sendSyn sends (or resends) the SYN of an active open, or the SYN-ACK.
func (c *conn) sendSyn(b *pipeline.Batch, now int64) {
	flags := wire.TCPFlagSyn
	if c.state == stateSynRcvd {
		flags |= wire.TCPFlagAck
	}
	c.emit(b, c.iss, flags, 0, 0, now)
	c.sndNxt = c.iss + 1
	c.sndMax = c.iss + 1
	if c.rtoAt == 0 {
		c.rtoAt = now + c.rto
	}
}

// dataEnd is the sequence number after the last byte queued to send.
func (c *conn) dataEnd() uint32 { return c.sndUna + uint32(c.sndBuf.n) }

// finSent reports whether the FIN has been sent (it sits at dataEnd).
func (c *conn) finSent() bool { return c.finQueued && !c.finAcked && seqGT(c.sndMax, c.dataEnd()) }

// output sends what the windows allow: new data, retransmissions after a
// timeout (sndNxt moved back), the FIN. Nagle's rule holds unless noDelay.
func (c *conn) output(b *pipeline.Batch, now int64) {
	if !c.state.synchronized() && c.state != stateSynRcvd {
		return
	}
	if c.state == stateSynRcvd || c.state == stateTimeWait {
		return
	}
	end := c.dataEnd()
	start := c.sndNxt
	pipe := -1
	if c.sackOK && c.sndNxt == c.sndMax {
		pipe = c.pipe() // RFC 6675: what SACK says is still in the network
	}
	for {
		if seqGEQ(c.sndNxt, end) {
			break
		}
		unsent := int(end - c.sndNxt)
		flight := int(c.sndNxt - c.sndUna)
		cwFlight := flight
		if pipe >= 0 {
			cwFlight = pipe
		}
		wnd := 0
		if d := int32(c.sndUna + c.sndWnd - c.sndNxt); d > 0 {
			wnd = int(d)
		}
		cw := c.ccs.Cwnd - cwFlight
		if !c.sackOK && !c.inRecovery && c.dupAcks > 0 && c.dupAcks < 3 {
			// RFC 3042's limited transmit: one new segment per duplicate
			// ACK below the threshold, cwnd unchanged (with SACK, pipe
			// does it: the SACKed segment left the network).
			cw += c.dupAcks * c.sndMSS
		}
		n := min(unsent, c.sendSize(), wnd, cw)
		if n <= 0 {
			break
		}
		if ss := c.segSize(); n > ss && n < unsent {
			n -= n % ss // a super-packet carries whole segments but the last of the data
		}
		cut := false
		if c.zeroCopy() {
			// A segment ends where its packet of the send queue does, so
			// that the next starts one and leaves as a handle of it
			// (sndQueue): after a segment cut short by the window, the
			// rest of its packet goes on its own.
			if r := c.sndBuf.toEnd(int(c.sndNxt - c.sndUna)); r < n {
				n, cut = r, true
			}
		}
		if n < c.segSize() && !cut {
			if n < unsent && n < int(c.maxSndWnd/2) && flight > 0 {
				break // sender silly window avoidance: wait for more window
			}
			if n == unsent && !c.noDelay && flight > 0 && !c.finQueued {
				break // Nagle: a small segment waits for the ACK of what flies
			}
		}
		flags := wire.TCPFlagAck
		if n == unsent {
			if n > 0 {
				flags |= wire.TCPFlagPsh // a bare FIN has none (Linux: "F.")
			}
			if c.finQueued {
				flags |= wire.TCPFlagFin
			}
		}
		seq := c.sndNxt
		if !c.emit(b, seq, flags, int(seq-c.sndUna), n, now) {
			break
		}
		c.sndNxt += uint32(n)
		if flags&wire.TCPFlagFin != 0 {
			c.sndNxt++
		}
		c.advanced(seq, now)
		if pipe >= 0 {
			pipe += n
		}
	}
	// A FIN on its own, after the data.
	if c.finQueued && !c.finAcked && c.sndNxt == end {
		if c.emit(b, end, wire.TCPFlagAck|wire.TCPFlagFin, 0, 0, now) {
			c.sndNxt = end + 1
			c.advanced(end, now)
		}
	}
	inflight := int(c.sndNxt - c.sndUna)
	if pipe >= 0 {
		inflight = pipe
	}
	c.cwndValidate(inflight, c.sndNxt != start)
	// Zero window with data waiting and nothing in flight: probe.
	if c.sndNxt == c.sndUna && seqLT(c.sndNxt, end) && c.persistAt == 0 {
		c.persistProbes = 0
		c.persistAt = now + c.backedOff(0)
	}
}

// cwndValidate is Linux's tcp_cwnd_validate: after output sent something
// or found cwnd full, it notes whether cwnd held the sender back and the
// most bytes in flight, for the window of data now in flight (a new
// window starts once SND.UNA passes the last one's end). CCState's
// CwndLimited comes from it.
func (c *conn) cwndValidate(inflight int, sent bool) {
	limited := c.ccs.Cwnd-inflight < c.sndMSS
	if !sent && !limited {
		return
	}
	if !seqLT(c.sndUna, c.cwndUsageSeq) || limited || (!c.cwndLimited && inflight > c.maxOut) {
		c.cwndLimited = limited
		c.maxOut = int(c.sndMax - c.sndUna)
		c.cwndUsageSeq = c.sndNxt
	}
}

// advanced notes a segment from seq just sent: new data past sndMax starts
// an RTT measurement (Karn: never a retransmission) and the timer.
func (c *conn) advanced(seq uint32, now int64) {
	c.noteSent(seq, c.sndNxt, now)
	if seqGT(c.sndNxt, c.sndMax) {
		c.rk.tlpRearm = true
		if !c.rttTiming && !c.tsOK {
			c.rttTiming, c.rttSeq, c.rttStart = true, seq, now
		}
		c.sndMax = c.sndNxt
	} else {
		c.t.c.retransmits.Inc()
		if !c.sackOK {
			c.retransmitted(now)
		}
		if seqGT(c.sndNxt, c.sndMax) {
			c.sndMax = c.sndNxt
		}
	}
	if c.rtoAt == 0 {
		c.rtoAt = now + c.rto
	}
	c.persistAt = 0
}

// maxTSOData is the most data a TSO super-packet carries: its IP packet
// (IPv6: its payload) stays within 64 KiB with the largest headers.
const maxTSOData = 0xffff - wire.IPv6HeaderSize - 60

// sendSize is the payload one packet may carry now: a segment, or as
// many whole segments as a TSO super-packet holds when the route's link
// offloads segmentation.
func (c *conn) sendSize() int {
	ss := c.segSize()
	if !c.tso || ss >= maxTSOData/2 {
		return ss
	}
	return maxTSOData / ss * ss
}

// segSize is the payload a segment may carry now: the MSS less the SACK
// blocks that ride on it while out-of-order data is held (as Linux's
// tcp_current_mss).
func (c *conn) segSize() int {
	if !c.sackOK || (c.nooo == 0 && !c.rk.dsackOn) {
		return c.sndMSS
	}
	k := c.nooo
	if c.rk.dsackOn {
		k++
	}
	k = min(k, wire.TCPMaxSACKBlocks)
	if c.tsOK {
		k = min(k, 3)
	}
	return max(c.sndMSS-4-8*k, 64)
}

// backedOff is the RTO doubled k times, capped.
func (c *conn) backedOff(k int) int64 {
	r := c.rto
	for i := 0; i < k && r < int64(maxRTO); i++ {
		r *= 2
	}
	return min(r, int64(maxRTO))
}

// retransmitHead resends the first unacknowledged segment (fast
// retransmit, a partial ACK, a smaller path MTU) without moving sndNxt.
func (c *conn) retransmitHead(b *pipeline.Batch, now int64) {
	avail := c.sndBuf.n
	n := min(avail, c.segSize())
	flags := wire.TCPFlagAck
	if n == avail {
		if n > 0 {
			flags |= wire.TCPFlagPsh
		}
		if c.finSent() {
			flags |= wire.TCPFlagFin
		}
	}
	if n == 0 && !c.finSent() {
		return
	}
	if c.emit(b, c.sndUna, flags, 0, n, now) {
		c.t.c.retransmits.Inc()
		if !c.sackOK {
			c.retransmitted(now)
		}
		c.rttTiming = false
		end := c.sndUna + uint32(n)
		if flags&wire.TCPFlagFin != 0 {
			end++
		}
		c.noteSent(c.sndUna, end, now)
	}
}

// pseudo is the TCP pseudo-header sum for n bytes from src to dst.
func pseudo(src, dst netip.Addr, n int) uint16 {
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		return wire.PseudoHeaderChecksum(wire.ProtocolTCP, s[:], d[:], uint16(n))
	}
	s, d := src.As16(), dst.As16()
	return wire.PseudoHeaderChecksum(wire.ProtocolTCP, s[:], d[:], uint16(n))
}

// routeFor finds the outgoing NIC and next hop for dst (a zone names the
// link of an IPv6 link-local destination).
func routeFor(g *pipeline.Generation, dst netip.Addr) (pipeline.NetworkInterface, netip.Addr, error) {
	if dst.Is6() && (dst.IsLinkLocalUnicast() || dst.IsMulticast()) && dst.Zone() != "" {
		nic, ok := g.NICByName(dst.Zone())
		if !ok {
			return nil, netip.Addr{}, syscall.ENETUNREACH
		}
		return nic, dst.WithZone(""), nil
	}
	dst = dst.WithZone("")
	r := g.LookupRoute(dst)
	if r == nil {
		return nil, netip.Addr{}, syscall.ENETUNREACH
	}
	nic, ok := g.NIC(r.NIC)
	if !ok {
		return nil, netip.Addr{}, syscall.ENETUNREACH
	}
	return nic, r.NextHop(dst), nil
}
