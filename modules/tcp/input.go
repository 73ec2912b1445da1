package tcp

import (
	"syscall"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// segment processes one segment for the connection (RFC 9293 §3.10.7.3
// and .4, with RFC 5961's checks, RFC 7323's PAWS and Linux's choices
// where the RFCs leave one). Called with c.mu held, c not CLOSED. relisten
// is true when the segment is a SYN that ends a TIME-WAIT connection and
// must go to the listener, with iss the ISS to use.
func (c *conn) segment(b *pipeline.Batch, s *segment, now int64) (relisten bool, iss uint32) {
	c.lastRecv = now
	c.keepSent = 0
	if c.state == stateSynSent {
		c.synSentSegment(b, s, now)
		return false, 0
	}
	rst := s.has(wire.TCPFlagRst)
	// PAWS (RFC 7323 §5.3): an older timestamp than TS.Recent (by more
	// than one tick; in TIME-WAIT by any, as Linux) marks an old
	// duplicate. A reset passes (Linux), but in TIME-WAIT only once
	// TS.Recent is older than 60 s (tcp_paws_reject: an old duplicate
	// reset must not end it, RFC 1337's hazard).
	pawsWin := int32(1)
	if c.state == stateTimeWait {
		pawsWin = 0
	}
	if c.tsOK && s.opts.HasTimestamps && !c.pawsOK(s.opts.TSVal, pawsWin, now) && !c.disorderedAck(s) &&
		(!rst || c.state == stateTimeWait && now-c.tsRecentAt < int64(pawsMSL)) {
		c.t.c.paws.Inc()
		if rst {
			return false, 0 // never answered
		}
		if c.state == stateTimeWait {
			c.closeAt = now + int64(c.st.timeWait)
		}
		c.oldData(s)
		if !c.oowLimited(s, now) {
			c.ackNow = true
		}
		return false, 0
	}
	if c.state == stateTimeWait {
		return c.timeWaitSegment(b, s, now)
	}
	// 1. Sequence number acceptable? (Linux's test: the segment ends at or
	// after RCV.NXT and starts at or before the right edge.)
	if !c.acceptable(s) {
		c.t.c.outOfWindow.Inc()
		if rst {
			// After the peer's FIN a reset may carry the FIN's number,
			// RCV.NXT−1 (Linux's tcp_reset_check): it resets.
			if s.seq == c.rcvNxt-1 && (c.state == stateCloseWait || c.state == stateLastAck || c.state == stateClosing) {
				c.t.c.resetIn.Inc()
				c.resetReceived()
			}
			return false, 0
		}
		if s.has(wire.TCPFlagSyn) {
			c.challengeAck(now)
			return false, 0
		}
		c.oldData(s)
		if !c.oowLimited(s, now) {
			c.ackNow = true
		}
		return false, 0
	}
	// 2. RST (RFC 5961 §3.2): exactly RCV.NXT (or, with SACK, the right
	// edge of the highest SACK block we sent, as Linux) resets; anywhere
	// else in the window draws a challenge ACK.
	if rst {
		if s.seq == c.rcvNxt || (c.sackOK && c.nooo > 0 && s.seq == c.ooo[c.nooo-1].right) {
			c.t.c.resetIn.Inc()
			c.resetReceived()
			return false, 0
		}
		c.challengeAck(now)
		return false, 0
	}
	// 4. SYN in a synchronized state (RFC 5961 §4): challenge ACK. In
	// SYN-RECEIVED a retransmitted SYN gets the SYN-ACK again, at most
	// every 500 ms (Linux's tcp_check_req).
	if s.has(wire.TCPFlagSyn) {
		switch {
		case c.state == stateSynRcvd && c.passive && s.seq == c.irs && !s.has(wire.TCPFlagAck):
			if !c.oowLimited(s, now) {
				c.sendSyn(b, now)
			}
			return false, 0
		case c.state == stateSynRcvd && !c.passive && s.has(wire.TCPFlagAck) && len(s.data) == 0 &&
			s.seq+1 == c.rcvNxt && s.ack == c.sndNxt:
			// Simultaneous open: the peer's SYN-ACK completes it
			// (Linux's exception in tcp_validate_incoming).
			s.flags &^= wire.TCPFlagSyn
			s.seq++
		default:
			c.challengeAck(now)
			return false, 0
		}
	}
	// 5. ACK.
	if !s.has(wire.TCPFlagAck) {
		return false, 0
	}
	if c.state == stateSynRcvd {
		if !seqLT(c.sndUna, s.ack) || !seqLEQ(s.ack, c.sndMax) {
			c.rstFor(b, s, now)
			return false, 0
		}
		if !c.handshakeDone(b, s, now) {
			return false, 0
		}
	}
	if !c.processAck(b, s, now) {
		return false, 0
	}
	// 7. Text.
	if len(s.data) > 0 {
		switch c.state {
		case stateEstablished, stateFinWait1, stateFinWait2:
			if c.userClosed {
				// Data for a socket the application closed: Linux
				// resets (tcp_rcv_state_process, TCPAbortOnData).
				c.t.c.abortOnData.Inc()
				c.abort(b, now, errReset)
				return false, 0
			}
			c.receive(b, s, now)
		}
	}
	// 8. FIN.
	if s.has(wire.TCPFlagFin) {
		c.receiveFin(s.seq+uint32(len(s.data)), now)
	}
	return false, 0
}

// oldData reports the part of a dropped segment's data below RCV.NXT as a
// duplicate (Linux's tcp_send_dupack: a DSACK, RFC 2883, also for what
// PAWS or the sequence test dropped), so that the sender learns its
// retransmission was spurious.
func (c *conn) oldData(s *segment) {
	if len(s.data) > 0 && c.state.synchronized() && seqLT(s.seq, c.rcvNxt) {
		end := s.seq + uint32(len(s.data))
		if seqGT(end, c.rcvNxt) {
			end = c.rcvNxt
		}
		c.noteDuplicate(s.seq, end)
	}
}

// pawsOK is Linux's tcp_paws_check: tsval is not older than TS.Recent by
// more than win, or TS.Recent is zero (some stacks send TSval 0 on the
// SYN, then real values) or older than 24 days (RFC 7323 §5.5).
func (c *conn) pawsOK(tsval uint32, win int32, now int64) bool {
	return int32(c.tsRecent-tsval) <= win || c.tsRecent == 0 || now-c.tsRecentAt >= int64(tsRecentValid)
}

// disorderedAck is Linux's tcp_disordered_ack: a duplicate pure ACK that
// was overtaken (reordered) passes PAWS when its timestamp is within an
// RTO of TS.Recent, so that reordering does not eat duplicate ACKs.
func (c *conn) disorderedAck(s *segment) bool {
	return len(s.data) == 0 && s.flags&(wire.TCPFlagSyn|wire.TCPFlagFin|wire.TCPFlagRst) == 0 && s.has(wire.TCPFlagAck) &&
		s.seq == c.rcvNxt && s.ack == c.sndUna && s.wnd<<c.sndWScale == c.sndWnd &&
		int64(int32(c.tsRecent-s.opts.TSVal)) <= c.rto/int64(time.Millisecond)
}

// acceptable is the sequence test (Linux's tcp_sequence): a segment
// ending at or after RCV.NXT and starting at or before the window's right
// edge.
func (c *conn) acceptable(s *segment) bool {
	wnd := c.rcvAdv - c.rcvNxt
	return seqGEQ(s.seq+s.length(), c.rcvNxt) && seqLEQ(s.seq, c.rcvNxt+wnd)
}

// oowLimited is Linux's tcp_oow_rate_limited: a segment without data (or
// with SYN) that draws an ACK from outside the window gets one at most
// every 500 ms, so that two stacks cannot ping-pong ACKs forever. Data
// segments (a retransmission that arrived twice) are always answered.
func (c *conn) oowLimited(s *segment, now int64) bool {
	if len(s.data) > 0 && !s.has(wire.TCPFlagSyn) {
		return false
	}
	if c.lastOOW != 0 && now-c.lastOOW < int64(oowRateLimit) {
		return true
	}
	c.lastOOW = now
	return false
}

// challengeAck sends an ACK <SEQ=SND.NXT><ACK=RCV.NXT> (RFC 5961 §3.2,
// §4.2, §5.2), within the per-connection 500 ms limit and the stack-wide
// budget per second.
func (c *conn) challengeAck(now int64) {
	if c.lastOOW != 0 && now-c.lastOOW < int64(oowRateLimit) {
		c.t.c.challengeLimited.Inc()
		return
	}
	if !c.t.challengeAllowed(now, c.st.challengeLimit) {
		c.t.c.challengeLimited.Inc()
		return
	}
	c.lastOOW = now
	c.t.c.challengeACKs.Inc()
	c.ackNow = true
}

// rstFor sends <SEQ=SEG.ACK><CTL=RST> for an unacceptable ACK (SYN-SENT,
// SYN-RECEIVED).
func (c *conn) rstFor(b *pipeline.Batch, s *segment, now int64) {
	if s.has(wire.TCPFlagRst) {
		return
	}
	tsOK := c.tsOK
	c.tsOK = false
	save := c.rcvNxt
	c.emit(b, s.ack, wire.TCPFlagRst, 0, 0, now)
	c.rcvNxt = save
	c.tsOK = tsOK
	c.t.c.resetOut.Inc()
}

// resetReceived handles an accepted reset (RFC 9293 §3.10.7.4 second).
func (c *conn) resetReceived() {
	switch c.state {
	case stateSynRcvd:
		if c.passive {
			c.destroy(nil) // back to LISTEN: the listener never saw it
			return
		}
		c.t.c.attemptFails.Inc()
		c.destroy(errRefused)
	case stateCloseWait:
		c.destroy(syscall.EPIPE)
	default:
		c.destroy(errReset)
	}
}

// abort sends a reset and closes (an application abort, data for a
// closed socket, a keepalive timeout).
func (c *conn) abort(b *pipeline.Batch, now int64, err error) {
	if c.state.synchronized() || c.state == stateSynRcvd {
		c.sendRst(b, now)
		c.flush(b)
	}
	c.destroy(err)
}

// synSentSegment is RFC 9293 §3.10.7.3: a segment for SYN-SENT.
func (c *conn) synSentSegment(b *pipeline.Batch, s *segment, now int64) {
	if s.has(wire.TCPFlagAck) && (seqLEQ(s.ack, c.iss) || seqGT(s.ack, c.sndMax)) {
		c.rstFor(b, s, now)
		return
	}
	// A SYN-ACK echoing a TSval we did not send between our first SYN
	// and now is not for this connection: a reset, the open goes on
	// (Linux's PAWSActiveRejected in tcp_rcv_synsent_state_process).
	if s.has(wire.TCPFlagAck) && c.tsOK && s.opts.HasTimestamps && s.opts.TSEcr != 0 &&
		(seqLT(s.opts.TSEcr, c.tsNow(c.rttStart)) || seqGT(s.opts.TSEcr, c.tsNow(now))) {
		c.t.c.paws.Inc()
		c.rstFor(b, s, now)
		return
	}
	if s.has(wire.TCPFlagRst) {
		if s.has(wire.TCPFlagAck) {
			c.t.c.resetIn.Inc()
			c.t.c.attemptFails.Inc()
			c.destroy(errRefused)
		}
		return
	}
	if !s.has(wire.TCPFlagSyn) {
		return
	}
	c.irs, c.rcvNxt = s.seq, s.seq+1
	c.rcvAdv = c.rcvNxt
	o := &s.opts
	if o.HasMSS {
		c.peerMSS = int(o.MSS)
	}
	if c.wsOK && o.HasWindowScale {
		c.sndWScale = min(o.WindowScale, wire.TCPMaxWindowScale)
	} else {
		c.wsOK, c.sndWScale, c.rcvWScale = false, 0, 0
	}
	if c.tsOK && o.HasTimestamps {
		c.tsRecent, c.tsRecentAt = o.TSVal, now
	} else {
		c.tsOK = false
	}
	c.sackOK = c.sackOK && o.SACKPermitted
	c.setMSS(b)
	c.rcvMSS = min(c.sndMSS, 536)
	c.cc.Init(&c.ccs)
	c.sndWnd, c.maxSndWnd = s.wnd, s.wnd
	c.sndWl1, c.sndWl2 = s.seq, s.ack
	if !s.has(wire.TCPFlagAck) {
		// Simultaneous open: SYN-RECEIVED, SYN-ACK with our ISS.
		c.state = stateSynRcvd
		c.emit(b, c.iss, wire.TCPFlagSyn|wire.TCPFlagAck, 0, 0, now)
		return
	}
	c.sndUna = s.ack
	if seqLT(c.sndNxt, c.sndUna) {
		c.sndNxt = c.sndUna
	}
	c.rttSampleHandshake(s, now)
	c.state = stateEstablished
	c.establish(now)
	c.ackNow = true
	if len(s.data) > 0 {
		c.receive(b, s, now)
	}
	if s.has(wire.TCPFlagFin) {
		c.receiveFin(s.seq+1+uint32(len(s.data)), now)
	}
}

// rttSampleHandshake takes the RTT of the SYN or SYN-ACK unless it was
// retransmitted (Karn) and timestamps give none.
func (c *conn) rttSampleHandshake(s *segment, now int64) {
	if c.tsOK && s.opts.HasTimestamps && s.opts.TSEcr != 0 {
		c.rttSample(int64(int32(c.tsNow(now)-s.opts.TSEcr)) * int64(time.Millisecond)) // (an echo a ms ahead: tsSend)
	} else if c.retries == 0 {
		c.rttSample(now - c.rttStart)
	}
	c.retries = 0
	c.rtoAt = 0
}

// establish counts an established connection and wakes its opener.
func (c *conn) establish(now int64) {
	c.roundEnd = c.sndMax
	c.startRcvSpace(now)
	c.established = true
	c.t.c.established.Inc()
	c.lastRecv = now
	if c.keepalive {
		c.keepAt = now + int64(c.keepIdle)
	}
	c.finishHandshake()
	wake(c.sndReady)
}

// handshakeDone completes a passive (or simultaneous) open on an
// acceptable ACK in SYN-RECEIVED. A passive connection goes to its
// listener's accept queue; when that is full the ACK is dropped and the
// connection stays in SYN-RECEIVED (Linux without tcp_abort_on_overflow:
// the SYN-ACK is sent again and the peer's ACK retried).
func (c *conn) handshakeDone(b *pipeline.Batch, s *segment, now int64) bool {
	if c.passive {
		l := c.listener
		if l == nil {
			c.abort(b, now, errReset)
			return false
		}
		switch l.enqueue(c) {
		case enqueueFull:
			c.t.c.acceptQueueFull.Inc()
			return false
		case enqueueClosed:
			c.rstFor(b, s, now)
			c.flush(b)
			c.destroy(errReset)
			return false
		}
		l.synDone()
		c.listener = nil
	}
	c.state = stateEstablished
	c.rttSampleHandshake(s, now)
	c.sndUna = c.iss + 1
	c.sndWnd = s.wnd << c.sndWScale
	c.maxSndWnd = max(c.maxSndWnd, c.sndWnd)
	c.sndWl1, c.sndWl2 = s.seq, s.ack
	c.establish(now)
	return true
}

// rttSample feeds one RTT measurement to RFC 6298's estimator; RTO =
// SRTT + max(4·RTTVAR, 200 ms) (Linux's floor), at most 120 s.
func (c *conn) rttSample(r int64) {
	if r <= 0 {
		r = int64(time.Microsecond)
	}
	if c.srtt == 0 {
		c.srtt, c.rttvar = r, r/2
	} else {
		d := c.srtt - r
		if d < 0 {
			d = -d
		}
		c.rttvar = (3*c.rttvar + d) / 4
		c.srtt = (7*c.srtt + r) / 8
	}
	// Whole milliseconds, rounded up, as Linux's jiffies (HZ=1000).
	const ms = int64(time.Millisecond)
	rto := (c.srtt + max(4*c.rttvar, int64(minRTO)) + ms - 1) / ms * ms
	c.rto = min(rto, int64(maxRTO))
}

// processAck is step five for a synchronized connection: RFC 5961 §5.2's
// bounds, the send window, what the ACK acknowledges, RTT, congestion
// control and recovery, and the states the ACK of our FIN leads to. It
// returns false when the segment is to be dropped (or the connection is
// gone).
func (c *conn) processAck(b *pipeline.Batch, s *segment, now int64) bool {
	ack := s.ack
	if seqGT(ack, c.sndMax) {
		// It acknowledges what was never sent: an ACK, rate limited,
		// and the segment dropped (RFC 9293 §3.10.7.4, RFC 5961 §5.2;
		// Linux 6.18 in every state, ESTABLISHED too).
		c.challengeAck(now)
		return false
	}
	if seqLT(ack, c.sndUna) {
		// RFC 5961 §5.2: older than MAX.SND.WND, or than the bytes
		// acknowledged so far (Linux's "do not accept ACK of bytes we
		// never sent": a blind injection needs no ACK guess while
		// SND.UNA is still the ISS + 1).
		bound := c.maxSndWnd
		if acked := c.sndUna - c.iss - 1; !c.ackedFar && acked < bound {
			bound = acked
		}
		if seqLT(ack, c.sndUna-bound) {
			c.challengeAck(now)
			return false
		}
		if c.sackOK && s.opts.NumSACK > 0 {
			// A reordered ACK's SACK blocks still say what arrived
			// (RFC 6675; Linux's tcp_ack takes them at old_ack): the
			// scoreboard and recovery go on from them.
			c.scoreboard(s, now)
			c.sackRecover(b, now, false)
		}
		return true // an old ACK: ignored, the text is still processed
	}
	// Timestamps: TS.Recent follows the segment that covers Last.ACK.sent
	// (RFC 7323 §4.3) — once its ACK is known to be acceptable, as
	// Linux's tcp_ack (tcp_replace_ts_recent after the checks above): a
	// segment dropped for an ACK of unsent data must not move it, or its
	// forged TSval would make PAWS drop every genuine segment after it.
	if c.tsOK && s.opts.HasTimestamps && seqLEQ(s.seq, c.lastAckSent) && c.pawsOK(s.opts.TSVal, 0, now) {
		c.tsRecent, c.tsRecentAt = s.opts.TSVal, now
	}
	// Window update (RFC 9293 §3.10.7.4, fifth, SND.WL1/WL2).
	winChanged := false
	if seqLT(c.sndWl1, s.seq) || (c.sndWl1 == s.seq && seqLEQ(c.sndWl2, ack)) {
		w := s.wnd << c.sndWScale
		winChanged = w != c.sndWnd
		c.sndWnd, c.sndWl1, c.sndWl2 = w, s.seq, ack
		c.maxSndWnd = max(c.maxSndWnd, w)
		if w > 0 {
			c.persistAt, c.persistProbes = 0, 0
		}
	}
	acked := ack - c.sndUna
	if acked > 0 && !c.ackedFar && ack-c.iss >= 1<<31 {
		c.ackedFar = true // SND.UNA − ISS wraps from here on
	}
	if c.sackOK {
		c.scoreboard(s, now)
	}
	if acked == 0 {
		if len(s.data) == 0 && !s.has(wire.TCPFlagSyn|wire.TCPFlagFin) && !winChanged && c.sndMax != c.sndUna {
			if c.sackOK {
				// RACK decides (RFC 8985), not the count of duplicates.
				c.t.c.dupACKs.Inc()
			} else {
				c.dupAck(b, now)
			}
		}
		if c.sackOK {
			c.tryUndo(s, false, now)
			c.sackRecover(b, now, false)
		}
		return true
	}
	c.persistProbes = 0
	// RTT: timestamps echo any segment (RFC 7323 §4); without them the
	// timed segment, never a retransmitted one (Karn).
	var rtt int64
	if c.tsOK && s.opts.HasTimestamps && s.opts.TSEcr != 0 {
		rtt = max(int64(int32(c.tsNow(now)-s.opts.TSEcr))*int64(time.Millisecond), 1) // (an echo a ms ahead: tsSend)
		c.rttSample(rtt)
	} else if c.rttTiming && seqGT(ack, c.rttSeq) {
		c.rttTiming = false
		rtt = max(now-c.rttStart, 1)
		c.rttSample(rtt)
	}
	if c.rk.ackRTT > 0 {
		rtt = c.rk.ackRTT // the scoreboard's: per segment, to the ns
		c.rk.ackRTT = 0
	}
	data := min(int(acked), c.sndBuf.n)
	finAcked := int(acked) > c.sndBuf.n
	c.sndBuf.discard(data)
	c.sndUna = ack
	if seqLT(c.sndNxt, c.sndUna) {
		c.sndNxt = c.sndUna // acknowledged past a go-back-N restart
	}
	c.retries = 0
	flight := int(c.sndMax - c.sndUna)
	c.ccs.InFlight = flight
	c.rk.tlpRearm = true
	c.tryUndo(s, true, now)
	if c.inLoss && seqGEQ(ack, c.recover) {
		c.inLoss = false // the RTO's loss state ends (Linux: TCP_CA_Open)
	}
	if c.sackOK && c.inRecovery {
		if seqGEQ(ack, c.recover) {
			// RFC 6675 §5: recovery ends at RecoveryPoint.
			c.inRecovery = false
			c.ccs.Cwnd = c.ccs.Ssthresh
			c.cc.OnRecoveryEnd(&c.ccs, now)
			c.recoveryDone()
		}
	} else if c.inRecovery {
		if seqGEQ(ack, c.recover) {
			// Full ACK (RFC 6582 §3.2 step 3): deflate.
			c.inRecovery = false
			c.ccs.Cwnd = min(c.ccs.Ssthresh, max(flight, c.sndMSS)+c.sndMSS)
			c.cc.OnRecoveryEnd(&c.ccs, now)
		} else {
			// Partial ACK: resend the next hole, deflate by what was
			// acknowledged, add back one segment.
			c.retransmitHead(b, now)
			c.ccs.Cwnd = max(c.ccs.Cwnd-int(acked), c.sndMSS)
			if int(acked) >= c.sndMSS {
				c.ccs.Cwnd += c.sndMSS
			}
		}
	} else {
		c.ccs.RTT = rtt
		c.ccs.CwndLimited = c.cwndLimited || (c.ccs.Cwnd < c.ccs.Ssthresh && c.ccs.Cwnd < 2*c.maxOut)
		c.ccs.NewRound = seqGEQ(ack, c.roundEnd)
		if c.ccs.NewRound {
			c.roundEnd = c.sndMax
		}
		c.cc.OnAck(&c.ccs, int(acked), c.srtt, now)
	}
	c.dupAcks = 0
	if data > 0 {
		c.sndBufExpand()
		if c.writeSpace() {
			wake(c.sndReady)
		}
	}
	if c.sndUna == c.sndMax {
		c.rtoAt = 0
	} else {
		c.rtoAt = now + c.rto
	}
	if c.sackOK {
		c.tlpAcked(now)
		c.sackRecover(b, now, true)
	}
	if finAcked {
		c.finAcked = true
		switch c.state {
		case stateFinWait1:
			c.state = stateFinWait2
			if c.userClosed {
				c.closeAt = now + int64(c.st.finTimeout)
			}
			wake(c.sndReady)
		case stateClosing:
			c.enterTimeWait(now)
		case stateLastAck:
			c.destroy(nil)
			return false
		}
	}
	return true
}

// dupAck counts a duplicate ACK (RFC 5681 §2): three start fast
// retransmit and NewReno recovery (RFC 6582); more inflate the window.
func (c *conn) dupAck(b *pipeline.Batch, now int64) {
	c.dupAcks++
	c.t.c.dupACKs.Inc()
	if c.inRecovery {
		c.ccs.Cwnd += c.sndMSS
		return
	}
	if c.dupAcks != 3 || seqLT(c.sndUna, c.recover) {
		return
	}
	c.beginEpisode()
	c.t.c.fastRetransmits.Inc()
	c.ccs.InFlight = int(c.sndMax - c.sndUna)
	c.cc.OnCongestion(&c.ccs, now)
	c.inRecovery = true
	c.recover = c.sndMax
	c.retransmitHead(b, now)
	c.ccs.Cwnd = c.ccs.Ssthresh + 3*c.sndMSS
	c.rtoAt = now + c.rto
}

// receive takes the segment's text into the receive buffer: in order it
// extends the readable bytes (and pulls in what out-of-order segments
// filled behind it), out of order it is held in place and remembered as a
// range (SACK blocks report them). Bytes before RCV.NXT and past the
// buffer are trimmed.
func (c *conn) receive(b *pipeline.Batch, s *segment, now int64) {
	if c.rdShut {
		// CloseRead: the bytes are acknowledged and discarded.
		n := uint32(len(s.data))
		if s.seq == c.rcvNxt {
			c.rcvNxt += n
			c.ackNow = true
		}
		return
	}
	seq, data := s.seq, s.data
	dup := false // a duplicate of this segment is reported already
	if seqLT(seq, c.rcvNxt) {
		skip := c.rcvNxt - seq
		if skip >= uint32(len(data)) {
			c.noteDuplicate(seq, seq+uint32(len(data)))
			c.ackNow = true // a duplicate: ACK at once (RFC 5681 §4.2)
			return
		}
		c.noteDuplicate(seq, c.rcvNxt)
		dup = true
		data, seq = data[skip:], c.rcvNxt
	}
	// Room: the buffer offered now, and never less than the window
	// advertised — even past receive_buffer: the window field rounds the
	// edge up to the scale's unit each time it is sent, so while the
	// application lags the edge creeps past the buffer by up to a unit
	// per ACK (Linux's tcp_select_window does the same, ALIGN(cur_win)),
	// and data the window let in is taken (Linux's tcp_data_queue); cut
	// to the buffer, it was dropped and the sender took the next segment's
	// arrival for reordering (hundreds of out-of-order segments and dup
	// ACKs per second at MTU 1500 in the in-memory bulk benchmark).
	held := c.rcvHeld()
	room := max(c.rcvLimit()-held, int(c.rcvAdv-c.rcvNxt))
	off := int(seq - c.rcvNxt)
	if off >= room {
		c.ackNow = true // beyond the window
		return
	}
	if len(data) > room-off {
		data = data[:room-off]
	}
	// The peer's segment size (Linux's tcp_measure_rcv_mss: gso_size
	// for a super-packet), which paces delayed ACKs and the window.
	if l := len(data); s.gso == 0 && l > c.rcvMSS {
		c.rcvMSS = l
	} else if s.gso > c.rcvMSS {
		c.rcvMSS = s.gso
	}
	queued := off == 0 && c.rxqTake(s, data) // held as its packet (rxqueue.go)
	if !queued && !c.rxqFlush() {
		// The stack's memory limit: the ring cannot take the held
		// segments in before this one; the sender resends it.
		c.t.c.memDrops.Inc()
		c.ackNow = true
		return
	}
	if end := c.rcvBuf.n + off + len(data); !queued && end > len(c.rcvBuf.buf) {
		if off > 0 && c.t.mem.underPressure() {
			// Memory pressure: out-of-order data that needs more
			// memory is not kept (Linux's tcp_prune_ofo_queue); the
			// sender resends it.
			c.t.c.oooPruned.Inc()
			c.sendAck(b, now)
			return
		}
		if !c.rcvBuf.reserve(end, max(c.rcvBufMax, end)) { // (end is within the room above)
			// The stack's memory limit: keep what the ring holds.
			c.t.c.memDrops.Inc()
			fit := len(c.rcvBuf.buf) - c.rcvBuf.n - off
			if fit <= 0 {
				c.ackNow = true
				return
			}
			data = data[:min(fit, len(data))]
		}
	}
	if !queued {
		c.rcvBuf.writeAt(c.rcvBuf.n+off, data)
	}
	end := seq + uint32(len(data))
	if off > 0 {
		if c.oooCovers(seq, end) {
			c.noteDuplicate(seq, end)
		}
		if !c.addOOO(seq, end) {
			c.t.c.oooDropped.Inc()
		} else {
			c.t.c.oooQueued.Inc()
		}
		// Out of order: a duplicate ACK at once, one per segment, even
		// inside a run of segments (RFC 5681 §4.2: the sender counts them).
		c.sendAck(b, now)
		return
	}
	hole := c.nooo > 0
	if !queued {
		c.rcvBuf.extend(len(data))
	}
	c.rcvNxt = end
	c.rcvRTTMeasure(s, len(data), now)
	// Ranges now reached join the readable bytes. The first that the
	// segment overlaps was received twice: a DSACK (RFC 2883; Linux's
	// tcp_ofo_queue, whose tcp_dsack_extend keeps the first range).
	for c.nooo > 0 && seqLEQ(c.ooo[0].left, c.rcvNxt) {
		if l := c.ooo[0].left; !dup && seqLT(l, end) {
			hi := c.ooo[0].right
			if seqGT(hi, end) {
				hi = end
			}
			c.noteDuplicate(l, hi)
			dup = true
		}
		if r := c.ooo[0].right; seqGT(r, c.rcvNxt) {
			c.rcvBuf.extend(int(r - c.rcvNxt))
			c.rcvNxt = r
		}
		copy(c.ooo[:], c.ooo[1:c.nooo])
		c.nooo--
		if c.oooLast > 0 {
			c.oooLast--
		}
	}
	if c.finPending && c.finAt == c.rcvNxt {
		c.finPending = false
		c.receiveFin(c.finAt, now)
	}
	c.rcvUnacked += len(data)
	switch {
	case hole:
		c.sendAck(b, now) // it filled (part of) a hole: at once
	case c.quickAcks > 0:
		c.quickAcks--
		c.ackNow = true
	case c.rcvUnacked >= 2*c.rcvMSS:
		c.ackNow = true
	}
	wake(c.rcvReady)
}

// addOOO records [left, right) as held out of order, merging ranges; false
// when no range is free.
func (c *conn) addOOO(left, right uint32) bool {
	if c.ooo == nil {
		c.ooo = new([maxOOO]oooRange)
	}
	i := 0
	for i < c.nooo && seqLT(c.ooo[i].right, left) {
		i++
	}
	// Merge every range that overlaps or touches [left, right).
	j := i
	for j < c.nooo && seqLEQ(c.ooo[j].left, right) {
		if seqLT(c.ooo[j].left, left) {
			left = c.ooo[j].left
		}
		if seqGT(c.ooo[j].right, right) {
			right = c.ooo[j].right
		}
		j++
	}
	if j > i {
		c.oooTick++
		c.ooo[i] = oooRange{left, right, c.oooTick}
		copy(c.ooo[i+1:], c.ooo[j:c.nooo])
		c.nooo -= j - i - 1
		c.oooLast = i
		return true
	}
	if c.nooo == maxOOO {
		return false
	}
	copy(c.ooo[i+1:c.nooo+1], c.ooo[i:c.nooo])
	c.oooTick++
	c.ooo[i] = oooRange{left, right, c.oooTick}
	c.nooo++
	c.oooLast = i
	return true
}

// receiveFin handles a FIN at sequence number at (step eight).
func (c *conn) receiveFin(at uint32, now int64) {
	if c.finRcvd {
		c.ackNow = true // a retransmitted FIN
		return
	}
	if at != c.rcvNxt {
		if seqGT(at, c.rcvNxt) {
			c.finPending, c.finAt = true, at
		}
		c.ackNow = true
		return
	}
	switch c.state {
	case stateSynRcvd, stateEstablished, stateFinWait1, stateFinWait2:
	default:
		return
	}
	c.rcvNxt++
	c.finRcvd = true
	c.ackNow = true
	wake(c.rcvReady)
	switch c.state {
	case stateSynRcvd, stateEstablished:
		c.state = stateCloseWait
	case stateFinWait1:
		c.state = stateClosing
	case stateFinWait2:
		c.enterTimeWait(now)
	}
}

// enterTimeWait moves to TIME-WAIT for 2*MSL, or straight to CLOSED when
// the stack holds time_wait_max connections in TIME-WAIT already.
func (c *conn) enterTimeWait(now int64) {
	if !c.t.enterTimeWait(c.st.timeWaitMax) {
		// Closed once the ACK of the FIN is out (endRun), as Linux's
		// tcp_fin sends it before tcp_time_wait gives up.
		c.t.c.timeWaitOverflow.Inc()
		c.closeNow = true
		c.state = stateTimeWait
		c.rtoAt, c.delackAt, c.persistAt, c.keepAt = 0, 0, 0, 0
		return
	}
	c.inTimeWait = true
	c.state = stateTimeWait
	c.closeAt = now + int64(c.st.timeWait)
	c.rtoAt, c.delackAt, c.persistAt, c.keepAt = 0, 0, 0, 0
	c.sndBuf.release()
	if c.userClosed {
		c.releaseRcv()
	}
	wake(c.rcvReady)
	wake(c.sndReady)
}

// timeWaitSegment is Linux's tcp_timewait_state_process: a reset in
// window ends TIME-WAIT, a new SYN (a higher sequence number or a newer
// timestamp) reopens the port to a listener, anything else is ACKed (rate
// limited) and restarts the 2*MSL timer.
func (c *conn) timeWaitSegment(b *pipeline.Batch, s *segment, now int64) (bool, uint32) {
	if s.seq == c.rcvNxt && (s.length() == 0 || s.has(wire.TCPFlagRst)) {
		if s.has(wire.TCPFlagRst) {
			c.destroy(nil)
			return false, 0
		}
		c.closeAt = now + int64(c.st.timeWait)
		if c.tsOK && s.opts.HasTimestamps {
			c.tsRecent, c.tsRecentAt = s.opts.TSVal, now
		}
		return false, 0
	}
	if s.has(wire.TCPFlagSyn) && !s.has(wire.TCPFlagRst|wire.TCPFlagAck) &&
		(seqGT(s.seq, c.rcvNxt) || (c.tsOK && s.opts.HasTimestamps && seqLT(c.tsRecent, s.opts.TSVal))) {
		iss := c.sndNxt + 65535 + 2
		if iss == 0 {
			iss++
		}
		c.destroy(nil)
		return true, iss
	}
	if s.has(wire.TCPFlagRst) {
		return false, 0
	}
	if s.has(wire.TCPFlagAck) {
		c.closeAt = now + int64(c.st.timeWait)
	}
	if !c.oowLimited(s, now) {
		c.ackNow = true
	}
	return false, 0
}

// endRun sends what a run of segments called for: data the ACKs let out,
// an ACK now or a delayed one, and files the connection's next timer.
func (c *conn) endRun(b *pipeline.Batch, now int64) {
	if c.state == stateClosed {
		c.flush(b)
		return
	}
	c.output(b, now)
	c.armTLP(now)
	if c.ackNow {
		c.sendAck(b, now)
	} else if c.rcvUnacked > 0 && c.delackAt == 0 {
		c.delackAt = now + int64(c.st.delayedACK)
	}
	c.flush(b)
	if c.closeNow {
		c.destroy(nil)
		return
	}
	if c.state == stateTimeWait && c.inTimeWait && c.userClosed {
		c.toCompact()
		return
	}
	c.memRelease()
	c.resched(now)
}
