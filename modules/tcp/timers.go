package tcp

import (
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// resched files the connection's wheel entry at the earliest of its
// deadlines. An entry already filed earlier stays (it fires, finds
// nothing due, and files the next): pushing the retransmission timer back
// on every ACK then costs no wheel operation.
func (c *conn) resched(now int64) {
	next := int64(0)
	for _, d := range [...]int64{c.rtoAt, c.delackAt, c.persistAt, c.keepAt, c.closeAt, c.rk.reoAt, c.rk.tlpAt} {
		if d != 0 && (next == 0 || d < next) {
			next = d
		}
	}
	if next == 0 {
		if c.filedAt != 0 {
			c.t.wheel.schedule(c, 0)
			c.filedAt = 0
		}
		return
	}
	if c.filedAt != 0 && c.filedAt <= next {
		return
	}
	c.t.wheel.schedule(c, next)
	c.filedAt = next
}

// rearmLater files the entry d from now on the wheel's own clock (no
// batch could run).
func (c *conn) rearmLater(d time.Duration) {
	if c.state == stateClosed {
		return
	}
	at := c.t.wheel.nowNS(c.t.wheel.clock.Now()) + int64(d)
	c.t.wheel.schedule(c, at)
	c.filedAt = at
}

// onTimer runs the connection's due timers. Called with c.mu held, inside
// a batch, after the wheel took the entry off.
func (c *conn) onTimer(b *pipeline.Batch, now int64) {
	if c.sweeper {
		c.t.twSweep(now)
		return
	}
	c.filedAt = 0
	if c.state == stateClosed {
		return
	}
	if c.closeAt != 0 && now >= c.closeAt {
		c.closeAt = 0
		c.destroy(nil) // TIME-WAIT over, or an orphaned FIN-WAIT-2 timed out
		return
	}
	if c.rk.tlpAt != 0 && now >= c.rk.tlpAt {
		// The probe comes first: it re-arms the RTO (RFC 8985 §7.3).
		c.rk.tlpAt = 0
		c.onTLP(b, now)
	}
	if c.rtoAt != 0 && now >= c.rtoAt {
		c.rtoAt = 0
		c.onRTO(b, now)
		if c.state == stateClosed {
			return
		}
	}
	if c.rk.reoAt != 0 && now >= c.rk.reoAt {
		c.rk.reoAt = 0
		c.sackRecover(b, now, false) // RACK's reordering timer (RFC 8985 §6.3)
		c.output(b, now)
	}
	if c.persistAt != 0 && now >= c.persistAt {
		c.persistAt = 0
		c.onPersist(b, now)
		if c.state == stateClosed {
			return
		}
	}
	if c.delackAt != 0 && now >= c.delackAt {
		c.delackAt = 0
		if c.rcvUnacked > 0 || c.ackNow {
			c.t.c.delayedACKs.Inc()
			c.sendAck(b, now)
		}
	}
	if c.keepAt != 0 && now >= c.keepAt {
		c.keepAt = 0
		c.onKeepalive(b, now)
		if c.state == stateClosed {
			return
		}
	}
	if c.ackNow {
		c.sendAck(b, now)
	}
	c.flush(b)
	c.armTLP(now)
	c.resched(now)
}

// onRTO is the retransmission timeout (RFC 6298 §5.4–5.7): back off,
// collapse the window to one segment (the congestion control's OnRTO),
// and go back to the first unacknowledged byte. The handshake resends its
// SYN or SYN-ACK; too many retries end the connection (ETIMEDOUT), as
// Linux's tcp_syn_retries, tcp_synack_retries and tcp_retries2 do.
func (c *conn) onRTO(b *pipeline.Batch, now int64) {
	c.t.c.rtos.Inc()
	switch c.state {
	case stateSynSent, stateSynRcvd:
		limit := c.st.synRetries
		if c.state == stateSynRcvd {
			limit = c.st.synackRetries
		}
		c.retries++
		if c.retries > limit {
			c.t.c.timeouts.Inc()
			if c.state == stateSynSent {
				c.t.c.attemptFails.Inc()
				err := c.softErr
				if err == nil {
					err = errTimedOut
				}
				c.destroy(err)
				return
			}
			c.destroy(nil)
			return
		}
		c.rto = min(2*c.rto, int64(maxRTO))
		c.rtoAt = now + c.rto
		c.t.c.retransmits.Inc()
		c.sendSyn(b, now)
		return
	case stateTimeWait, stateClosed:
		return
	}
	if c.sndUna == c.sndMax {
		return
	}
	c.retries++
	if c.retries > c.st.retries2 {
		c.t.c.timeouts.Inc()
		c.destroy(errTimedOut)
		return
	}
	c.ccs.InFlight = int(c.sndMax - c.sndUna)
	if !c.inLoss && !(c.inRecovery && seqGT(c.recover, c.sndUna)) {
		// A new episode (Linux's tcp_enter_loss keeps a recovery's
		// prior window when the RTO interrupts it).
		c.beginEpisode()
	}
	c.cc.OnRTO(&c.ccs, now)
	if c.inRecovery && c.sackOK {
		c.recoveryDone()
	}
	c.inRecovery, c.dupAcks = false, 0
	c.inLoss = true
	c.recover = c.sndMax
	c.rttTiming = false
	c.rto = min(2*c.rto, int64(maxRTO))
	c.rtoAt = now + c.rto
	if c.sackOK {
		// SACK keeps its scoreboard: the lost segments are resent as
		// cwnd allows, the SACKed ones never (Linux's tcp_enter_loss);
		// cwnd is what is still in flight plus one segment.
		c.enterLoss(now)
		c.ccs.Cwnd = c.pipe() + c.sndMSS
		c.retransmitLost(b, now, true)
		return
	}
	c.sndNxt = c.sndUna
	c.output(b, now)
	if c.sndNxt == c.sndUna && (c.sndBuf.n > 0 || (c.finQueued && !c.finAcked)) {
		// The peer's window closed under data in flight: the head goes
		// anyway, a probe that the peer answers with its window (Linux's
		// tcp_retransmit_timer), so that a lost window update cannot
		// stall the connection.
		n := min(c.sndBuf.n, c.segSize())
		flags := wire.TCPFlagAck
		if n == c.sndBuf.n {
			if n > 0 {
				flags |= wire.TCPFlagPsh
			}
			if c.finQueued {
				flags |= wire.TCPFlagFin
			}
		}
		if c.emit(b, c.sndUna, flags, 0, n, now) {
			c.t.c.retransmits.Inc()
			c.sndNxt = c.sndUna + uint32(n)
			if flags&wire.TCPFlagFin != 0 {
				c.sndNxt++
			}
		}
	}
}

// onPersist sends a zero-window probe (Linux's: an ACK one below
// SND.UNA, which the peer answers with its window), backing off; a peer
// that stops answering is given up after tcp_retries2 probes. Any ACK
// resets the count, so a live peer with a closed window is probed forever.
func (c *conn) onPersist(b *pipeline.Batch, now int64) {
	if c.sndWnd != 0 || c.sndNxt != c.sndUna || !seqLT(c.sndNxt, c.dataEnd()) {
		c.persistBackoff = 0
		return
	}
	c.persistProbes++
	if c.persistProbes > c.st.retries2 {
		c.t.c.timeouts.Inc()
		c.destroy(errTimedOut)
		return
	}
	c.t.c.zeroWindowProbes.Inc()
	c.emit(b, c.sndUna-1, wire.TCPFlagAck, 0, 0, now)
	c.persistBackoff++
	c.persistAt = now + c.backedOff(c.persistBackoff)
}

// onKeepalive probes an idle connection (RFC 9293 §3.8.4, Linux's
// timings: idle, then every interval, reset after probes unanswered).
func (c *conn) onKeepalive(b *pipeline.Batch, now int64) {
	if !c.keepalive {
		return
	}
	switch c.state {
	case stateEstablished, stateCloseWait, stateFinWait2:
	default:
		return
	}
	if c.sndMax != c.sndUna || c.sndBuf.n > 0 {
		c.keepAt = now + int64(c.keepIdle)
		return
	}
	if c.keepSent == 0 {
		if idle := now - c.lastRecv; idle < int64(c.keepIdle) {
			c.keepAt = c.lastRecv + int64(c.keepIdle)
			return
		}
	}
	if c.keepSent >= c.keepProbes {
		c.t.c.keepaliveTimeouts.Inc()
		c.abort(b, now, errTimedOut)
		return
	}
	c.keepSent++
	c.t.c.keepaliveProbes.Inc()
	c.emit(b, c.sndUna-1, wire.TCPFlagAck, 0, 0, now)
	c.keepAt = now + int64(c.keepIntvl)
}
