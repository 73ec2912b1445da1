package tcp

import "fmt"

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
	c.sndBuf.reserve(c.sndBufMax, c.sndBufMax)
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
