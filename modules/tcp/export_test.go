package tcp

import (
	"fmt"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// DebugState renders a connection's variables (for failure messages).
func DebugState(cn *Conn) string {
	c := cn.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("%s una=%d nxt=%d max=%d wnd=%d buf=%d rcvnxt=%d adv=%d rbuf=%d ooo=%d cwnd=%d ssth=%d rto=%v rtoAt=%d persistAt=%d filed=%d rec=%v dup=%d retries=%d",
		c.state, c.sndUna-c.iss, c.sndNxt-c.iss, c.sndMax-c.iss, c.sndWnd, c.sndBuf.n, c.rcvNxt-c.irs, c.rcvAdv-c.rcvNxt, c.rcvBuf.n, c.nooo,
		c.ccs.Cwnd, c.ccs.Ssthresh, c.rto/1e6, c.rtoAt/1e6, c.persistAt/1e6, c.filedAt/1e6, c.inRecovery, c.dupAcks, c.retries)
}

// WheelNow is the wheel's clock reading in ms.
func WheelNow(cn *Conn) int64 { return cn.c.t.wheel.nowNS(cn.c.t.wheel.clock.Now()) / 1e6 }

// GrowBuffers grows a connection's rings, and the sizes auto-tuning
// offers, to their bounds.
func GrowBuffers(cn *Conn) {
	c := cn.c
	c.mu.Lock()
	c.sndLimit, c.rcvSpace = c.sndBufMax, c.rcvBufMax
	c.sndBuf.reserveEntries(c.sndBufMax/max(c.sndMSS, 536) + 2)
	c.rcvBuf.reserve(c.rcvBufMax, c.rcvBufMax)
	c.mu.Unlock()
}

// WheelFires is how often a connection's wheel fired.
func WheelFires(cn *Conn) uint64 {
	w := cn.c.t.wheel
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fires
}

// Buffered is how many bytes a Read returns without blocking.
func Buffered(cn *Conn) int {
	c := cn.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rcvHeld()
}

// Window is a connection's cwnd and ssthresh, in bytes.
func Window(cn *Conn) (cwnd, ssthresh int) {
	c := cn.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ccs.Cwnd, c.ccs.Ssthresh
}

// BufferSizes is a connection's auto-tuned receive buffer (what its
// window may offer) and send buffer (what Write fills).
func BufferSizes(cn *Conn) (rcv, snd int) {
	c := cn.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rcvSpace, c.sndLimit
}

// WriteInTwoBatches queues p1 and sends what it may in one batch, then —
// before that batch has transmitted — p2 in a second batch that finishes
// first and read the clock earlier by skew (the order a Write and an
// ACK's run on the receive path can take), and reports whether both were
// queued whole.
func WriteInTwoBatches(cn *Conn, p1, p2 []byte, skew time.Duration) bool {
	c := cn.c
	whole := false
	c.t.s.Do(func(b1 *pipeline.Batch) {
		now := c.t.now(b1)
		c.mu.Lock()
		k1, _ := c.write(b1, p1, now)
		c.flush(b1)
		c.mu.Unlock()
		c.t.s.Do(func(b2 *pipeline.Batch) {
			c.mu.Lock()
			k2, _ := c.write(b2, p2, now-int64(skew))
			c.flush(b2)
			c.mu.Unlock()
			whole = k1 == len(p1) && k2 == len(p2)
		})
	})
	return whole
}

// HeldPackets is how many segments a connection's receive queue holds as
// their packets (rxqueue.go).
func HeldPackets(cn *Conn) int {
	c := cn.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rxq == nil {
		return 0
	}
	return c.rxq.n
}

// RingHeld is the unread bytes a connection's receive ring holds (the
// rest of Buffered waits in the receive queue as packets).
func RingHeld(cn *Conn) int {
	c := cn.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rcvBuf.n
}

// WriteNow is Write without blocking: it queues what the send buffer
// takes now (Write's steps, until one takes nothing).
func WriteNow(cn *Conn, p []byte) (int, error) {
	c := cn.c
	total := 0
	for len(p) > 0 {
		var k int
		var err error
		c.do(func(b *pipeline.Batch, now int64) { k, err = c.write(b, p, now) })
		total += k
		p = p[k:]
		if err != nil || k == 0 {
			return total, err
		}
	}
	return total, nil
}

// Conns is how many connections a stack's table holds (TIME-WAIT ones as
// connections or as compact records included).
func Conns(s *pipeline.Stack) int {
	v, ok := s.SharedLookup(sharedKey)
	if !ok {
		return 0
	}
	t := v.(*table)
	t.mu.RLock()
	n := len(t.conns)
	t.mu.RUnlock()
	t.tw.mu.Lock()
	n += len(t.tw.idx)
	t.tw.mu.Unlock()
	return n
}
