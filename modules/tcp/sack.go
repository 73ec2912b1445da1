package tcp

import (
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// The sender's side of SACK: a scoreboard of the segments in flight (RFC
// 6675), RACK's time-based loss detection and the tail loss probe (RFC
// 8985), DSACK read as evidence of reordering (RFC 2883, RFC 8985 §7.2).
// With SACK on, RACK replaces the three-duplicate-ACK trigger (as Linux's
// tcp_recovery=1); without SACK the connection keeps NewReno.

// Scoreboard flags of a segment.
const (
	segSacked  = 1 << iota // the peer holds it (SACK)
	segLost                // marked lost, not yet retransmitted
	segRetrans             // retransmitted at least once
)

// dupThresh is RFC 6675's DupThresh.
const dupThresh = 3

// wcDelAck is RFC 8985's WCDelAckT: the worst-case delayed ACK a lone
// segment's probe waits for (Linux adds TCP_RTO_MIN).
const wcDelAck = 200 * time.Millisecond

// txSeg is one segment in flight as it was sent: [start, end) (end counts
// the FIN), when it was last sent, and its flags.
type txSeg struct {
	start, end uint32
	xmit       int64
	flags      uint8
}

// segRing holds the segments from SND.UNA to SND.MAX in sequence order.
// It grows (doubling) to the send buffer's segment count, once per
// connection, and is reused after.
type segRing struct {
	s       []txSeg
	head, n int
}

func (r *segRing) at(i int) *txSeg { return &r.s[(r.head+i)&(len(r.s)-1)] }

func (r *segRing) push(x txSeg) {
	if r.n == len(r.s) {
		ns := make([]txSeg, max(64, 2*len(r.s)))
		for i := 0; i < r.n; i++ {
			ns[i] = *r.at(i)
		}
		r.s, r.head = ns, 0
	}
	r.s[(r.head+r.n)&(len(r.s)-1)] = x
	r.n++
}

func (r *segRing) pop() {
	r.head = (r.head + 1) & (len(r.s) - 1)
	r.n--
}

// search is the index of the first segment whose end is after seq.
func (r *segRing) search(seq uint32) int {
	lo, hi := 0, r.n
	for lo < hi {
		m := (lo + hi) / 2
		if seqLEQ(r.at(m).end, seq) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// rack is a connection's RACK-TLP state (RFC 8985 §6.1's RACK.* and §7's
// TLP.*), with the scoreboard's counts.
type rack struct {
	segs           segRing
	nSacked, nLost int
	nRetrans       int
	xmit           int64  // RACK.xmit_ts: the latest send time delivered
	rtt            int64  // RACK.rtt
	minRTT         minmax // windowed over min_rtt_window (Linux's tcp_min_rtt)
	ackRTT         int64  // the RTT of the ACK being processed (0: none)
	reoMult        int    // RACK.reo_wnd_mult
	reoPersist     int
	reoAt, tlpAt   int64  // the reordering timer, the probe timeout
	end            uint32 // RACK.end_seq
	fack           uint32 // RACK.fack: the highest sequence SACKed
	dsackRound     uint32
	tlpHigh        uint32
	dsackL, dsackR uint32
	reorderSeen    bool
	dsackRoundOn   bool
	tlpOut         bool // a probe is outstanding
	tlpRetrans     bool // it was a retransmission
	tlpDsack       bool // a DSACK reported it
	tlpRearm       bool // an ACK or new data: the PTO restarts
	dsackOn        bool // a DSACK block to send (receiver side)
}

// noteSent records [seq, end) as sent at now: new data is appended,
// a resend refreshes the segments it covers.
func (c *conn) noteSent(seq, end uint32, now int64) {
	if !c.sackOK || seq == end {
		return
	}
	r := &c.rk.segs
	if r.n == 0 || seqGEQ(seq, r.at(r.n-1).end) {
		c.pushSegs(seq, end, now)
		return
	}
	for i := r.search(seq); i < r.n; i++ {
		s := r.at(i)
		if !seqLT(s.start, end) {
			break
		}
		c.markRetransmitted(s, now)
	}
	if last := r.at(r.n - 1).end; seqGT(end, last) {
		c.pushSegs(last, end, now)
	}
}

// pushSegs appends [seq, end) to the scoreboard one segment a piece (a
// TSO super-packet is many), so that SACK and loss marks stay per
// segment as Linux's tcp_fragment keeps them.
func (c *conn) pushSegs(seq, end uint32, now int64) {
	r := &c.rk.segs
	ss := uint32(c.segSize())
	if c.txSegSize > 0 {
		ss = uint32(c.txSegSize)
		c.txSegSize = 0
	}
	for int32(end-seq) > int32(ss) {
		r.push(txSeg{start: seq, end: seq + ss, xmit: now})
		seq += ss
	}
	r.push(txSeg{start: seq, end: end, xmit: now})
}

func (c *conn) markRetransmitted(s *txSeg, now int64) {
	if s.flags&segLost != 0 {
		c.rk.nLost--
	}
	if s.flags&segSacked != 0 {
		c.rk.nSacked--
	}
	if s.flags&segRetrans == 0 {
		c.rk.nRetrans++
	}
	s.flags = segRetrans
	s.xmit = now
	c.retransmitted(now)
}

// dropSeg keeps the counts when a segment leaves the scoreboard.
func (c *conn) dropSeg(s *txSeg) {
	if s.flags&segLost != 0 {
		c.rk.nLost--
	}
	if s.flags&segSacked != 0 {
		c.rk.nSacked--
	}
	if s.flags&segRetrans != 0 {
		c.rk.nRetrans--
	}
}

// rackDelivered is RFC 8985 §6.2 steps 1–3 for a segment newly
// acknowledged or SACKed: the RTT it gives, reordering when it lies
// below what was SACKed before, and the latest delivered send time.
func (c *conn) rackDelivered(s *txSeg, sg *segment, now int64, prevFack uint32) {
	rk := &c.rk
	rtt := now - s.xmit
	if s.flags&segRetrans != 0 {
		// Ambiguous: only when the echoed timestamp shows it answers the
		// retransmission (or without timestamps, not shorter than the
		// path allows).
		if rtt < rk.minRTT.get() {
			return
		}
		if c.tsOK && sg.opts.HasTimestamps && sg.opts.TSEcr != 0 && seqLT(sg.opts.TSEcr, c.tsNow(s.xmit)) {
			return
		}
	} else {
		if seqLT(s.end, prevFack) {
			rk.reorderSeen = true
		}
		rk.minRTT.update(int64(c.st.minRTTWin), now, max(rtt, 1))
	}
	if s.flags&segRetrans == 0 {
		rk.ackRTT = max(rtt, 1)
	}
	if s.xmit > rk.xmit || (s.xmit == rk.xmit && seqGT(s.end, rk.end)) || rk.xmit == 0 {
		rk.xmit, rk.end, rk.rtt = s.xmit, s.end, rtt
	}
}

// scoreboard takes an acceptable ACK's cumulative point and SACK blocks
// into the scoreboard. Called before SND.UNA moves.
func (c *conn) scoreboard(sg *segment, now int64) {
	rk := &c.rk
	r := &rk.segs
	if rk.nSacked == 0 {
		rk.fack = c.sndUna // nothing SACKed in flight: no stale value
	}
	prevFack := rk.fack
	rk.ackRTT = 0
	ack := sg.ack
	o := &sg.opts
	// A DSACK first, while the segments it names are on the scoreboard.
	first := 0
	if o.NumSACK > 0 {
		blk := o.SACK[0]
		if seqLT(blk.Left, blk.Right) && (seqLEQ(blk.Right, ack) ||
			(o.NumSACK > 1 && seqGEQ(blk.Left, o.SACK[1].Left) && seqLEQ(blk.Right, o.SACK[1].Right))) {
			c.dsackReceived(blk)
			first = 1
		}
	}
	for r.n > 0 && seqLEQ(r.at(0).end, ack) {
		s := r.at(0)
		if s.flags&segSacked == 0 {
			c.rackDelivered(s, sg, now, prevFack)
			c.un.delivered += int(s.end - s.start)
		}
		c.dropSeg(s)
		r.pop()
	}
	if r.n > 0 && seqLT(r.at(0).start, ack) {
		if r.at(0).flags&segSacked == 0 {
			c.un.delivered += int(ack - r.at(0).start)
		}
		r.at(0).start = ack
	}
	for i := first; i < o.NumSACK; i++ {
		blk := o.SACK[i]
		if !seqLT(blk.Left, blk.Right) {
			continue
		}
		if seqLEQ(blk.Right, ack) || seqGT(blk.Right, c.sndMax) || seqLT(blk.Left, ack) {
			continue
		}
		for j := r.search(blk.Left); j < r.n; j++ {
			s := r.at(j)
			if seqGT(s.end, blk.Right) {
				break
			}
			if seqLT(s.start, blk.Left) || s.flags&segSacked != 0 {
				continue
			}
			c.rackDelivered(s, sg, now, prevFack)
			if s.flags&segLost != 0 {
				rk.nLost--
			}
			s.flags = s.flags&^segLost | segSacked
			rk.nSacked++
			c.un.delivered += int(s.end - s.start)
			if seqGT(s.end, rk.fack) {
				rk.fack = s.end
			}
		}
	}
}

// dsackReceived is RFC 8985 §7.2: a DSACK widens the reordering window
// (once per round trip), for 16 recoveries; it also means reordering.
// It counts against the retransmissions of a congestion episode (undo):
// below SND.UNA by its size in segments (Linux's "dumb counting"), above
// it by the retransmitted segments it names. A DSACK larger than the
// window, or more duplicates than were ever retransmitted, is dubious and
// ignored (Linux's tcp_dsack_seen).
func (c *conn) dsackReceived(blk wire.TCPSACKBlock) {
	rk := &c.rk
	size := blk.Right - blk.Left
	if size > max(c.maxSndWnd, uint32(c.sndMSS)) {
		return
	}
	segs := int((int(size) + c.sndMSS - 1) / max(c.sndMSS, 1))
	c.un.dsackDups += segs
	if c.un.dsackDups > c.un.totRetrans {
		c.un.dsackDups = c.un.totRetrans
		return
	}
	c.t.c.dsackIn.Inc()
	if seqLEQ(blk.Right, c.sndUna) {
		c.dsackUndo(blk.Right, segs)
	} else {
		r := &rk.segs
		for j := r.search(blk.Left); j < r.n; j++ {
			s := r.at(j)
			if !seqLT(s.start, blk.Right) {
				break
			}
			if s.flags&segRetrans != 0 && seqGEQ(s.start, blk.Left) && seqLEQ(s.end, blk.Right) {
				c.dsackUndo(s.end, 1)
			}
		}
	}
	rk.reorderSeen = true
	if rk.tlpOut && seqLEQ(blk.Right, rk.tlpHigh) {
		rk.tlpDsack = true
	}
	if !rk.dsackRoundOn || seqGEQ(c.sndUna, rk.dsackRound) {
		rk.dsackRoundOn, rk.dsackRound = true, c.sndMax
		rk.reoMult = max(rk.reoMult, 1) + 1 // 0 is the initial 1
		rk.reoPersist = 16
	}
}

// reoWnd is RFC 8985 §6.2 step 4's reordering window.
func (c *conn) reoWnd() int64 {
	rk := &c.rk
	if !rk.reorderSeen && (c.inRecovery || rk.nSacked >= dupThresh) {
		return 0
	}
	return min(rk.minRTT.get()/4*int64(max(rk.reoMult, 1)), c.srtt)
}

// rackDetect is RFC 8985 §6.2 step 5: a segment sent before the latest
// delivered one and not delivered within its RTT plus the reordering
// window is lost; the reordering timer covers those still inside it.
func (c *conn) rackDetect(now int64) {
	rk := &c.rk
	rk.reoAt = 0
	if rk.xmit == 0 || (rk.nSacked == 0 && rk.nRetrans == 0 && !c.inRecovery) {
		return
	}
	reo := c.reoWnd()
	var wait int64
	r := &rk.segs
	for i := 0; i < r.n; i++ {
		s := r.at(i)
		if s.flags&(segSacked|segLost) != 0 {
			continue
		}
		if !(s.xmit < rk.xmit || (s.xmit == rk.xmit && seqLT(s.end, rk.end))) {
			if s.flags&segRetrans == 0 && rk.nRetrans == 0 {
				break // sent in order after the latest delivered
			}
			continue
		}
		if rem := s.xmit + rk.rtt + reo - now; rem <= 0 {
			s.flags |= segLost
			rk.nLost++
			c.un.newLost++
			c.t.c.rackLost.Inc()
		} else {
			wait = max(wait, rem)
		}
	}
	if wait > 0 {
		// Plus Linux's TCP_TIMEOUT_MIN (2 ms, tcp_rack_mark_lost), so the
		// timer fires when the segment's deadline has surely passed.
		rk.reoAt = now + wait + reoSlack
	}
}

// reoSlack is what the reordering timer adds to the earliest deadline.
const reoSlack = 2 * int64(time.Millisecond)

// pipe is RFC 6675's estimate of the bytes in the network: those in
// flight less the SACKed and the lost (a retransmitted segment counts
// again until it is delivered or marked lost again).
func (c *conn) pipe() int {
	rk := &c.rk
	flight := int(c.sndMax - c.sndUna)
	if rk.nSacked == 0 && rk.nLost == 0 {
		return flight
	}
	p := 0
	for i := 0; i < rk.segs.n; i++ {
		s := rk.segs.at(i)
		if s.flags&(segSacked|segLost) == 0 {
			p += int(s.end - s.start)
		}
	}
	return p
}

// sackRecover runs after the ACK moved the scoreboard (advanced: it moved
// SND.UNA) or when the reordering timer fired: RACK marks the losses, a
// first loss starts recovery (RFC 6675 §5: ssthresh from the congestion
// control, the window before it kept for an undo), PRR sets cwnd from what
// the ACK delivered (RFC 6937), and the lost segments go out while pipe
// leaves room in cwnd (NextSeg's rule 1; new data, rule 2, is output's).
// In the RTO's loss state the lost segments go out as cwnd grows.
func (c *conn) sackRecover(b *pipeline.Batch, now int64, advanced bool) {
	c.rackDetect(now)
	rk := &c.rk
	u := &c.un
	if c.inLoss {
		u.delivered, u.newLost = 0, 0
		c.retransmitLost(b, now, false)
		return
	}
	if rk.nLost > 0 && !c.inRecovery {
		c.beginEpisode()
		c.t.c.fastRetransmits.Inc()
		c.ccs.InFlight = int(c.sndMax - c.sndUna)
		c.cc.OnCongestion(&c.ccs, now)
		c.ccs.Cwnd = c.ccs.Ssthresh
		c.inRecovery = true
		c.recover = c.sndMax
		u.prrDeliv, u.prrOut = 0, 0
		rk.tlpAt, rk.tlpOut = 0, false
		if u.delivered == 0 {
			u.delivered = c.sndMSS // the reordering timer: one segment's worth (Linux)
		}
	}
	if c.inRecovery {
		c.prrUpdate(advanced)
	}
	u.delivered, u.newLost = 0, 0
	if c.inRecovery {
		c.retransmitLost(b, now, false)
	}
}

// retransmitLost resends lost segments in sequence order while pipe
// leaves a segment's room in cwnd (force: the first one regardless).
func (c *conn) retransmitLost(b *pipeline.Batch, now int64, force bool) {
	rk := &c.rk
	if rk.nLost == 0 {
		return
	}
	p := c.pipe()
	r := &rk.segs
	for i := 0; i < r.n && rk.nLost > 0; i++ {
		s := r.at(i)
		if s.flags&segLost == 0 {
			continue
		}
		if !force && c.ccs.Cwnd-p < c.sndMSS {
			return
		}
		force = false
		if !c.resendSeg(b, s, now) {
			return
		}
		p += int(s.end - s.start)
	}
}

// resendSeg retransmits one scoreboard segment (in pieces if the MSS
// shrank since).
func (c *conn) resendSeg(b *pipeline.Batch, s *txSeg, now int64) bool {
	end := s.end
	dataEnd := c.dataEnd()
	withFin := c.finSent() && seqGT(end, dataEnd)
	if withFin {
		end = dataEnd
	}
	seq := s.start
	for {
		n := min(int(end-seq), c.segSize())
		flags := wire.TCPFlagAck
		last := seq+uint32(n) == end
		if n > 0 && seq+uint32(n) == dataEnd {
			flags |= wire.TCPFlagPsh // the data's last byte, as when first sent
		}
		if last {
			if withFin {
				flags |= wire.TCPFlagFin
			}
		}
		if n < 0 || (n == 0 && !withFin) {
			break
		}
		if !c.emit(b, seq, flags, int(seq-c.sndUna), n, now) {
			return false
		}
		c.t.c.retransmits.Inc()
		seq += uint32(n)
		if last {
			break
		}
	}
	c.markRetransmitted(s, now)
	c.rttTiming = false
	if c.rtoAt == 0 {
		c.rtoAt = now + c.rto
	}
	return true
}

// armTLP is RFC 8985 §7.2: after new data or an ACK that moved SND.UNA,
// outside recovery, the probe timeout PTO = 2·SRTT (plus the worst-case
// delayed ACK for a lone segment), no later than the RTO (then the probe
// goes in its place, as Linux's tcp_schedule_loss_probe).
func (c *conn) armTLP(now int64) {
	rk := &c.rk
	if !rk.tlpRearm {
		return
	}
	rk.tlpRearm = false
	rk.tlpAt = 0
	if !c.sackOK || c.inRecovery || rk.tlpOut || c.sndMax == c.sndUna || c.srtt == 0 ||
		seqLT(c.sndUna, c.recover) || !c.state.synchronized() || c.state == stateTimeWait {
		return
	}
	pto := 2 * c.srtt
	if int(c.sndMax-c.sndUna) <= c.sndMSS {
		pto += int64(wcDelAck)
	} else {
		pto += 2 * int64(time.Millisecond)
	}
	rk.tlpAt = now + pto
	if c.rtoAt != 0 && rk.tlpAt > c.rtoAt {
		rk.tlpAt = c.rtoAt
	}
}

// onTLP sends the loss probe (RFC 8985 §7.3): a new segment if the
// peer's window has room, else the last segment sent again.
func (c *conn) onTLP(b *pipeline.Batch, now int64) {
	rk := &c.rk
	if c.inRecovery || rk.tlpOut || c.sndMax == c.sndUna || rk.segs.n == 0 {
		return
	}
	c.t.c.tlpProbes.Inc()
	rk.tlpRetrans = false
	sent := false
	if seqLT(c.sndNxt, c.dataEnd()) && c.sndNxt == c.sndMax {
		save := c.ccs.Cwnd
		c.ccs.Cwnd = max(save, int(c.sndMax-c.sndUna)+c.segSize())
		before := c.sndMax
		c.output(b, now)
		c.ccs.Cwnd = save
		sent = c.sndMax != before
	}
	if !sent {
		rk.tlpRetrans = true
		if !c.resendSeg(b, rk.segs.at(rk.segs.n-1), now) {
			return
		}
	}
	rk.tlpOut, rk.tlpDsack, rk.tlpHigh = true, false, c.sndMax
	c.rtoAt = now + c.rto
}

// tlpAcked is RFC 8985 §7.4: an ACK past the probe ends the episode; a
// retransmitted probe that no DSACK called spurious repaired a loss,
// which gets the congestion response of a fast recovery.
func (c *conn) tlpAcked(now int64) {
	rk := &c.rk
	if !rk.tlpOut || seqLT(c.sndUna, rk.tlpHigh) {
		return
	}
	rk.tlpOut = false
	if rk.tlpRetrans && !rk.tlpDsack && !c.inRecovery {
		c.ccs.InFlight = int(c.sndMax - c.sndUna)
		c.cc.OnCongestion(&c.ccs, now)
		c.ccs.Cwnd = c.ccs.Ssthresh
		c.cc.OnRecoveryEnd(&c.ccs, now)
	}
}

// recoveryDone is the end of a SACK recovery: RACK's persistence of a
// widened reordering window counts down (RFC 8985 §7.2).
func (c *conn) recoveryDone() {
	rk := &c.rk
	if rk.reoPersist > 0 {
		rk.reoPersist--
		if rk.reoPersist == 0 {
			rk.reoMult = 1
		}
	}
}

// noteDuplicate remembers [left, right) as data received twice: the next
// ACK reports it as its first SACK block (RFC 2883). Duplicates of one
// run that overlap or touch make one block (Linux's tcp_dsack_extend), so
// that a sender counting duplicate segments sees them all; otherwise the
// latest is reported.
func (c *conn) noteDuplicate(left, right uint32) {
	if !c.sackOK || !seqLT(left, right) {
		return
	}
	if c.rk.dsackOn && seqLEQ(left, c.rk.dsackR) && seqLEQ(c.rk.dsackL, right) {
		if seqLT(c.rk.dsackL, left) {
			left = c.rk.dsackL
		}
		if seqGT(c.rk.dsackR, right) {
			right = c.rk.dsackR
		}
	}
	c.rk.dsackOn, c.rk.dsackL, c.rk.dsackR = true, left, right
	c.t.c.dsackOut.Inc()
}

// oooCovers reports whether [left, right) is held out of order already.
func (c *conn) oooCovers(left, right uint32) bool {
	for i := 0; i < c.nooo; i++ {
		if seqLEQ(c.ooo[i].left, left) && seqLEQ(right, c.ooo[i].right) {
			return true
		}
	}
	return false
}
