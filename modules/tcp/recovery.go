package tcp

import (
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// Loss recovery beyond detection: undoing a reduction that spurious
// retransmissions caused (RFC 2883 §4's DSACK counting and RFC 3522's
// Eifel detection by timestamps, as Linux's tcp_try_undo_*), Proportional
// Rate Reduction for the window during a SACK recovery (RFC 6937), the
// RTO's loss state that keeps the SACK scoreboard (Linux's
// tcp_enter_loss), and the windowed minimum RTT RACK uses (Linux's
// minmax over tcp_min_rtt_wlen).

// DefaultMinRTTWindow is the span of the minimum RTT filter (Linux's
// tcp_min_rtt_wlen: 300 s).
const DefaultMinRTTWindow = 300 * time.Second

// undo is what a congestion episode (a recovery or an RTO) can restore:
// the window before it, and the evidence that its retransmissions were
// needed.
type undo struct {
	on        bool   // Linux's undo_marker != 0
	marker    uint32 // SND.UNA when the episode began
	retrans   int    // retransmitted segments not yet shown spurious (-1: none sent)
	stamp     int64  // when the episode's first retransmission was sent (0: none)
	cwnd      int    // prior_cwnd
	ssthresh  int    // prior_ssthresh
	prrDeliv  int    // RFC 6937's prr_delivered
	prrOut    int    // prr_out
	delivered int    // bytes the ACK being processed delivered (acked or SACKed anew)
	newLost   int    // segments RACK marked lost on it
	// totRetrans and dsackDups are the connection's retransmitted
	// segments and the duplicates DSACKs reported: more duplicates than
	// retransmissions are not believed (Linux's tcp_dsack_seen).
	totRetrans, dsackDups int
}

// beginEpisode remembers the window before a reduction (Linux's
// tcp_init_undo with prior_cwnd and prior_ssthresh = tcp_current_ssthresh)
// unless one is under way already.
func (c *conn) beginEpisode() {
	if c.inRecovery || c.inLoss {
		return
	}
	u := &c.un
	u.on, u.marker = true, c.sndUna
	u.retrans = -1
	if c.rk.nRetrans > 0 {
		u.retrans = c.rk.nRetrans
	} else {
		u.stamp = 0
	}
	u.cwnd = c.ccs.Cwnd
	u.ssthresh = max(c.ccs.Ssthresh, c.ccs.Cwnd/2+c.ccs.Cwnd/4)
}

// retransmitted notes one segment sent again (Linux's tcp_retransmit_skb:
// retrans_stamp, undo_retrans).
func (c *conn) retransmitted(now int64) {
	u := &c.un
	if u.stamp == 0 {
		u.stamp = now
	}
	if u.retrans < 0 {
		u.retrans = 0
	}
	u.retrans++
	u.totRetrans++
}

// dsackUndo counts a DSACK against the episode's retransmissions (Linux's
// tcp_check_dsack and tcp_sacktag_one): a duplicate of data after the
// episode began was one retransmission too many. segs is how many
// segments the block covers.
func (c *conn) dsackUndo(right uint32, segs int) {
	u := &c.un
	if u.on && u.retrans > 0 && seqGT(right, u.marker) {
		u.retrans = max(u.retrans-segs, 0)
	}
}

// packetDelayed is Eifel's test (RFC 3522, Linux's tcp_packet_delayed):
// the ACK echoes a timestamp older than the first retransmission, so the
// original segment arrived.
func (c *conn) packetDelayed(s *segment) bool {
	return c.un.stamp != 0 && c.tsOK && s.opts.HasTimestamps && s.opts.TSEcr != 0 &&
		seqLT(s.opts.TSEcr, c.tsNow(c.un.stamp))
}

// mayUndo is Linux's tcp_may_undo: every retransmission was reported
// spurious by DSACK, or the timestamps show the originals arrived.
func (c *conn) mayUndo(s *segment) bool {
	return c.un.on && (c.un.retrans == 0 || c.packetDelayed(s))
}

// undoReduction restores the window of before the episode (Linux's
// tcp_undo_cwnd_reduction with unmark_loss): cwnd and ssthresh back, the
// lost marks cleared (nothing is resent for them), recovery or the loss
// state left. The peer's SACK marks stay.
func (c *conn) undoReduction(now int64, by *pipeline.Counter) {
	u := &c.un
	c.ccs.Cwnd = max(c.ccs.Cwnd, u.cwnd)
	if u.ssthresh > c.ccs.Ssthresh {
		c.ccs.Ssthresh = u.ssthresh
	}
	if un, ok := c.cc.(CCUndoer); ok {
		un.OnUndo(&c.ccs, now)
	}
	u.on = false
	by.Inc()
	rk := &c.rk
	for i := 0; i < rk.segs.n; i++ {
		rk.segs.at(i).flags &^= segLost
	}
	rk.nLost = 0
	if c.inRecovery && c.sackOK {
		c.recoveryDone()
	}
	c.inRecovery, c.inLoss, c.dupAcks = false, false, 0
	c.retries = 0
	c.recover = c.sndUna
	if seqLT(c.sndNxt, c.sndMax) {
		c.sndNxt = c.sndMax // a go-back-N after a spurious timeout stops
	}
}

// tryUndo runs after an acceptable ACK was taken into the scoreboard:
// a DSACK that shows every retransmission spurious undoes at once (Linux's
// tcp_try_undo_dsack), the timestamps of an ACK that ends recovery or
// moves SND.UNA in the loss state undo too (tcp_try_undo_recovery,
// tcp_try_undo_loss), and so do those of a partial ACK in a SACK recovery
// once no retransmission is outstanding: the hole was filled by the
// delayed original (tcp_try_undo_partial).
func (c *conn) tryUndo(s *segment, advanced bool, now int64) {
	u := &c.un
	if !u.on {
		return
	}
	switch {
	case u.retrans == 0:
		c.undoReduction(now, c.t.c.undoDSACK)
	case c.inLoss && advanced && c.packetDelayed(s):
		c.undoReduction(now, c.t.c.undoTimestamps)
	case c.inRecovery && advanced && seqGEQ(s.ack, c.recover) && c.packetDelayed(s):
		c.undoReduction(now, c.t.c.undoTimestamps)
	case c.inRecovery && c.sackOK && advanced && c.rk.nRetrans == 0 && c.packetDelayed(s):
		c.undoReduction(now, c.t.c.undoTimestamps)
	}
}

// prrUpdate is RFC 6937's Proportional Rate Reduction, as Linux's
// tcp_cwnd_reduction in bytes: while pipe is above ssthresh the sender
// sends ssthresh/RecoverFS of what is delivered (RecoverFS is the window
// before recovery), below it slow start up to ssthresh, limited by what
// was delivered (PRR-SSRB); the first retransmission always goes. cwnd
// becomes pipe plus what may be sent.
func (c *conn) prrUpdate(advanced bool) {
	u := &c.un
	delivered := u.delivered
	if delivered <= 0 || u.cwnd <= 0 {
		return
	}
	u.prrDeliv += delivered
	pipe := c.pipe()
	ssth := c.ccs.Ssthresh
	var sndcnt int
	if delta := ssth - pipe; delta < 0 {
		sndcnt = int((int64(ssth)*int64(u.prrDeliv)+int64(u.cwnd)-1)/int64(u.cwnd)) - u.prrOut
	} else {
		sndcnt = max(u.prrDeliv-u.prrOut, delivered)
		if advanced && u.newLost == 0 {
			sndcnt += c.sndMSS
		}
		sndcnt = min(delta, sndcnt)
	}
	if u.prrOut == 0 {
		sndcnt = max(sndcnt, c.sndMSS)
	}
	c.ccs.Cwnd = pipe + max(sndcnt, 0)
}

// enterLoss is the RTO's loss state with SACK (Linux's tcp_enter_loss and
// tcp_timeout_mark_lost): the first segment and every segment not SACKed
// whose RACK deadline passed are marked lost and resent as cwnd allows,
// the SACKed ones are not — unless the first segment is SACKed, which
// shows the receiver reneged, and then every mark is forgotten.
func (c *conn) enterLoss(now int64) {
	rk := &c.rk
	r := &rk.segs
	c.inLoss = true
	if r.n == 0 {
		return
	}
	reneg := r.at(0).flags&segSacked != 0
	if reneg {
		c.t.c.sackReneging.Inc()
		rk.nSacked = 0
	}
	for i := 0; i < r.n; i++ {
		s := r.at(i)
		if reneg {
			s.flags &^= segSacked
		} else if i > 0 && rk.xmit != 0 && s.xmit+rk.rtt-now > 0 {
			continue // sent too recently to be taken for lost yet
		}
		if s.flags&(segSacked|segLost) == 0 {
			s.flags |= segLost
			rk.nLost++
		}
	}
	rk.reoAt, rk.tlpAt, rk.tlpOut = 0, 0, false
}

// minmax is Kathleen Nichols' windowed minimum as Linux's lib/minmax.c:
// the best three samples of the window (the minimum, and the next best in
// its later quarters), so that the minimum ages out in one window without
// keeping every sample.
type minmax struct {
	s [3]mmSample
}

type mmSample struct{ t, v int64 }

func (m *minmax) get() int64 { return m.s[0].v }

// update takes the sample v at t into a window of win (Linux's
// minmax_running_min).
func (m *minmax) update(win, t, v int64) {
	val := mmSample{t, v}
	if m.s[0].v == 0 || v <= m.s[0].v || t-m.s[2].t > win {
		m.s = [3]mmSample{val, val, val}
		return
	}
	if v <= m.s[1].v {
		m.s[1], m.s[2] = val, val
	} else if v <= m.s[2].v {
		m.s[2] = val
	}
	dt := t - m.s[0].t
	switch {
	case dt > win:
		m.s[0], m.s[1], m.s[2] = m.s[1], m.s[2], val
		if t-m.s[0].t > win {
			m.s[0], m.s[1], m.s[2] = m.s[1], m.s[2], val
		}
	case m.s[1].t == m.s[0].t && dt > win/4:
		m.s[1], m.s[2] = val, val
	case m.s[2].t == m.s[1].t && dt > win/2:
		m.s[2] = val
	}
}
