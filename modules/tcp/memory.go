package tcp

import (
	"sync/atomic"

	"github.com/pipestack/pipestack/pipeline"
)

// Buffer auto-tuning and the stack-wide memory cap, as Linux's: the
// receive buffer grows with what the application reads per round trip
// (Dynamic Right-Sizing, tcp_rcv_space_adjust), the send buffer with the
// congestion window (tcp_sndbuf_expand), and the storage of every
// connection's rings counts against the stack's tcp_mem: above the
// pressure mark no buffer grows, out-of-order data that would need more
// memory is not kept and rings that empty are freed; at the limit a ring
// grows no further (beyond memFloor), so data is dropped (mem_drops) and
// writes wait.

// Defaults (Linux's tcp_rmem[1] gives a 64 KiB first window; its
// tcp_mem is a fraction of RAM: here 1 GiB with pressure at 2/3 and the
// end of pressure at 1/2).
const (
	DefaultReceiveBufferInitial = 64 << 10
	DefaultSendBufferInitial    = 64 << 10
	DefaultMemoryLimit          = 1 << 30
	// memFloor is what a ring may always hold, whatever the stack uses,
	// so that every connection still moves (Linux's SK_MEM_QUANTUM-sized
	// forced allocations).
	memFloor = 16 << 10
)

// memAcct is the stack's account of ring storage (Linux's
// tcp_memory_allocated against tcp_mem).
type memAcct struct {
	used                  atomic.Int64
	pressure              atomic.Bool
	low, press, limit     atomic.Int64
	cPressure, cDrops     *pipeline.Counter
	cPruned, cFreedBuffer *pipeline.Counter
}

func (m *memAcct) setLimits(low, press, limit int64) {
	m.low.Store(low)
	m.press.Store(press)
	m.limit.Store(limit)
}

// underPressure reports whether buffers may grow.
func (m *memAcct) underPressure() bool { return m != nil && m.pressure.Load() }

// charge accounts a ring growing to size by delta bytes; false when the
// stack is at its limit (and size is past memFloor).
func (m *memAcct) charge(delta, size int) bool {
	if m == nil {
		return true
	}
	used := m.used.Load() + int64(delta)
	if size > memFloor && used > m.limit.Load() {
		return false
	}
	used = m.used.Add(int64(delta))
	if !m.pressure.Load() && used > m.press.Load() {
		if m.pressure.CompareAndSwap(false, true) {
			m.cPressure.Inc()
		}
	}
	return true
}

// uncharge returns delta bytes; pressure ends below the low mark.
func (m *memAcct) uncharge(delta int) {
	if m == nil || delta == 0 {
		return
	}
	used := m.used.Add(-int64(delta))
	if m.pressure.Load() && used < m.low.Load() {
		m.pressure.Store(false)
	}
}

// MemoryInUse is the bytes of send and receive buffer storage that s's
// TCP connections hold, and whether the stack is under memory pressure.
func MemoryInUse(s *pipeline.Stack) (bytes int64, pressure bool) {
	v, ok := s.SharedLookup(sharedKey)
	if !ok {
		return 0, false
	}
	t, ok := v.(*table)
	if !ok {
		return 0, false
	}
	return t.mem.used.Load(), t.mem.pressure.Load()
}

// initBuffers sets a new connection's buffers from its settings: the
// bounds, the first receive window and send buffer (all of the bound when
// auto-tuning is off), and the memory account of its rings.
func (c *conn) initBuffers() {
	st := c.st
	c.sndBufMax, c.rcvBufMax = st.sndBuf, st.rcvBuf
	c.rcvSpace, c.sndLimit = st.rcvBuf, st.sndBuf
	if st.autoTune {
		c.rcvSpace = min(st.rcvBufInit, st.rcvBuf)
		c.sndLimit = min(st.sndBufInit, st.sndBuf)
	}
	c.rcvBuf.m, c.sndBuf.m = &c.t.mem, &c.t.mem
}

// rcvLimit is the receive buffer the window may offer now: the auto-tuned
// size, and under memory pressure no more than the ring holds already
// (four segments at least: Linux's tcp_adjust_rcv_ssthresh).
func (c *conn) rcvLimit() int {
	l := min(c.rcvSpace, c.rcvBufMax)
	if c.t.mem.underPressure() {
		l = min(l, max(len(c.rcvBuf.buf)+c.rcvQueued(), 4*max(c.rcvMSS, 536)))
	}
	return l
}

// rcvRTTUpdate is Linux's tcp_rcv_rtt_update: the receiver's estimate of
// the round trip (ns), the minimum of window-based samples (winDep), and
// smoothed for timestamp samples taken while the application keeps up.
func (c *conn) rcvRTTUpdate(sample int64, winDep bool) {
	sample = max(sample, 1)
	switch {
	case c.rcvRTT == 0 || sample < c.rcvRTT:
		c.rcvRTT = sample
	case winDep || c.rcvHeld() > 0:
		return // (a sample from a backlog measures the application)
	default:
		c.rcvRTT = c.rcvRTT - c.rcvRTT/8 + sample/8
	}
}

// rcvRTTMeasure takes the receiver's RTT samples for in-order data s
// (Linux's tcp_rcv_rtt_measure and tcp_rcv_rtt_measure_ts, both as Linux
// runs them): always the time the peer takes to fill one window, and with
// timestamps the echo of a full segment when the 1 ms clock moved (a
// zero difference is no sample: Linux's tcp_rtt_tsopt_us(tp, 0) — taken
// as 1 ns it made the estimate a nanosecond, DRS measured one Read at a
// time, and a window of one 64 KiB segment never grew).
func (c *conn) rcvRTTMeasure(s *segment, n int, now int64) {
	if c.tsOK && s.opts.HasTimestamps && s.opts.TSEcr != 0 && n >= c.rcvMSS {
		if d := int32(c.tsNow(now) - s.opts.TSEcr); d > 0 {
			c.rcvRTTUpdate(int64(d)*1e6, false)
		}
	}
	if c.rcvRTTTime != 0 && seqLT(c.rcvNxt, c.rcvRTTSeq) {
		return
	}
	if c.rcvRTTTime != 0 {
		c.rcvRTTUpdate(now-c.rcvRTTTime, true)
	}
	// One window on: the window as last announced (Linux's rcv_wnd, the
	// edge less the ACK it rode on), not what is left of it now — with
	// the buffer full that is nothing, the next segment ended the
	// "window" at once, the estimate became one segment's spacing, DRS
	// then compared a few Reads with the buffer and never grew it (at
	// MTU 65,535 a two-segment window stayed two segments).
	wnd := c.rcvAdv - c.lastAckSent
	if seqLT(c.rcvAdv, c.lastAckSent) || wnd < uint32(c.rcvMSS) {
		wnd = uint32(max(c.rcvMSS, 536))
	}
	c.rcvRTTSeq, c.rcvRTTTime = c.rcvNxt+wnd, now
}

// rcvSpaceAdjust is Linux's tcp_rcv_space_adjust (DRS), run when the
// application reads: once per receiver RTT, if it read more than in the
// last one, the buffer becomes twice that plus 16 segments, more again
// by how fast the rate grows (the sender may be in slow start), up to
// receive_buffer.
//
// now is the time of the last segment the connection received
// (lastRecv), not the clock's: reading the clock in every Read was 4 %
// of the CPU of bulk at MTU 65,535 (0.8 µs per 64 KiB). Linux's clock
// here is tcp_mstamp, the stamp its segment processing caches on the
// socket. In bulk a segment arrives between any two Reads, so the stamp
// trails the clock by less than a segment's gap; a Read long after the
// last segment acts at the next Read after one more arrives. The checks
// keep Linux's order: an RTT must have passed since the measurement
// began, then the bytes copied in it are compared with the last round's.
func (c *conn) rcvSpaceAdjust(now int64) {
	if c.rcvRTT == 0 || now-c.rcvqTime < c.rcvRTT {
		return
	}
	copied := int(c.rcvCopied - c.rcvqSeq)
	if copied > c.rcvqSpace {
		if c.st.autoTune && !c.rcvLocked && !c.t.mem.underPressure() && c.rcvqSpace > 0 {
			mss := max(c.sndMSS, c.rcvMSS, 536)
			win := 2*copied + 16*mss
			grow := int(int64(win) * int64(copied-c.rcvqSpace) / int64(c.rcvqSpace))
			win += 2 * grow
			c.rcvSpace = max(c.rcvSpace, min(win, c.rcvBufMax))
		}
		c.rcvqSpace = copied
	}
	c.rcvqSeq, c.rcvqTime = c.rcvCopied, now
}

// startRcvSpace begins DRS's measurement when the connection is
// established (Linux's tcp_init_buffer_space: ten segments at most).
//
// With segments so large that the first window holds fewer than two
// (MTU 65,535: one), the window offered grows to two segments at once
// (Linux: the initial window is at least two segments, and rcv_ssthresh
// grows the window within the 128 KiB first buffer without DRS) while
// DRS measures against the first window: otherwise every segment waits
// for the delayed ACK, and the reader can never copy more in a round trip
// than the one-segment window DRS compares it with, so it never grows.
func (c *conn) startRcvSpace(now int64) {
	c.rcvqSpace = min(c.rcvLimit(), 10*max(c.sndMSS, 536))
	c.rcvqSeq, c.rcvqTime = c.rcvCopied, now
	if two := 2*max(c.sndMSS, c.rcvMSS) + 1<<c.rcvWScale; c.st.autoTune && !c.rcvLocked && c.rcvSpace < two {
		c.rcvSpace = min(two, c.rcvBufMax)
	}
	c.sndBufExpand()
}

// sndBufExpand is Linux's tcp_sndbuf_expand: the send buffer holds two
// congestion windows (one in flight, one queued behind it; four segments
// at least), grown when an ACK freed room and the sender is not held by
// cwnd, up to send_buffer; not under memory pressure.
func (c *conn) sndBufExpand() {
	if !c.st.autoTune || c.sndLocked || c.sndLimit >= c.sndBufMax || c.t.mem.underPressure() {
		return
	}
	if c.established && int(c.sndMax-c.sndUna) >= c.ccs.Cwnd {
		return // cwnd-limited: a larger buffer would not send more
	}
	want := 2 * max(c.ccs.Cwnd, 4*c.sndMSS)
	c.sndLimit = min(max(c.sndLimit, want), c.sndBufMax)
}

// memRelease frees the rings of a connection that emptied them while the
// stack is under memory pressure (Linux's sk_mem_reclaim): an idle
// connection then holds no buffer.
func (c *conn) memRelease() {
	if !c.t.mem.underPressure() {
		return
	}
	if c.sndBuf.n == 0 && c.sndBuf.q != nil && c.sndUna == c.sndMax {
		c.sndBuf.release()
		c.t.mem.cFreedBuffer.Inc()
	}
	if c.rcvBuf.n == 0 && c.rcvBuf.buf != nil && c.nooo == 0 {
		c.rcvBuf.release()
		c.t.mem.cFreedBuffer.Inc()
	}
	if c.rxq != nil && c.rxq.n == 0 {
		c.rxq = nil
	}
}

// writeSpace reports whether a writer waiting for send buffer space is to
// be woken: the free space is at least half what is queued, a third of
// the buffer when it is full (Linux's sk_stream_write_space:
// sk_stream_wspace >= sk_stream_min_wspace). Woken on every ACK, a
// writer blocked on a full buffer ran for one Write's worth of room per
// wake-up.
func (c *conn) writeSpace() bool { return c.sndLimit-c.sndBuf.n >= c.sndBuf.n/2 }
