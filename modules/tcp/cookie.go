package tcp

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// SYN cookies (RFC 4987 §3.6, Linux's scheme): when a listener's SYN
// queue is full, the SYN-ACK carries the connection in its ISN and no
// state is kept; the handshake's ACK rebuilds it.
//
// ISN = H1(4-tuple) + the peer's ISN + count<<24 + (H2(4-tuple, count) +
// MSS index) mod 2^24, with count the minute (Linux's
// secure_tcp_syn_cookie; a cookie lives two minutes) and H1, H2 SipHash
// under keys from Stack.Rand. With timestamps, the SYN-ACK's TSval holds
// the window scale (low 4 bits, 15: none) and SACK-permitted (bit 4), as
// Linux's cookie_init_timestamp; without them the connection has neither.

// cookieMSS are the MSS values a cookie can name (Linux's msstab).
var (
	cookieMSS4 = [...]uint16{536, 1300, 1440, 1460}
	cookieMSS6 = [...]uint16{1220, 1420, 1440, 8940}
)

const cookieMaxAge = 2 // minutes (Linux's MAX_SYNCOOKIE_AGE)

// cookieRecent: a listener answers ACKs with cookies for two minutes
// after it last sent one (Linux's tcp_synq_no_recent_overflow).
const cookieRecent = 2 * time.Minute

func cookieCount(now int64) uint32 { return uint32(now / int64(time.Minute)) }

func (t *table) cookieHash(i int, local, remote netip.AddrPort, count uint32) uint32 {
	var b [40]byte
	l, r := local.Addr().As16(), remote.Addr().As16()
	copy(b[0:], l[:])
	copy(b[16:], r[:])
	binary.BigEndian.PutUint16(b[32:], local.Port())
	binary.BigEndian.PutUint16(b[34:], remote.Port())
	binary.BigEndian.PutUint32(b[36:], count)
	return uint32(t.cookieKey[i].sum(b[:]))
}

// makeCookie is the ISN for a SYN from remote with sequence number sseq.
func (t *table) makeCookie(local, remote netip.AddrPort, sseq uint32, mssIdx uint32, now int64) uint32 {
	count := cookieCount(now)
	return t.cookieHash(0, local, remote, 0) + sseq + count<<24 + (t.cookieHash(1, local, remote, count)+mssIdx)&0xffffff
}

// checkCookie returns the MSS index a cookie carries, or false.
func (t *table) checkCookie(local, remote netip.AddrPort, sseq, cookie uint32, now int64) (uint32, bool) {
	v := cookie - t.cookieHash(0, local, remote, 0) - sseq
	count := cookieCount(now)
	diff := (count - v>>24) & 0xff
	if diff >= cookieMaxAge {
		return 0, false
	}
	idx := (v - t.cookieHash(1, local, remote, count-diff)) & 0xffffff
	return idx, idx < uint32(len(cookieMSS4))
}

// sendCookie answers a SYN the full SYN queue cannot hold with a cookie
// SYN-ACK, keeping nothing: the SYN-ACK is built on the stack's scratch
// connection (no allocation per SYN, under a flood too).
func (p *Protocol) sendCookie(b *pipeline.Batch, l *listener, s *segment, local, remote netip.AddrPort, now int64) {
	st := p.st
	t := p.t
	t.cookieMu.Lock()
	defer t.cookieMu.Unlock()
	if t.cookieScratch == nil {
		t.cookieScratch = new(conn)
	}
	c := t.cookieScratch
	*c = conn{t: p.t, st: st, local: local, remote: remote, v6: remote.Addr().Is6(),
		state: stateSynRcvd, passive: true, rto: int64(initialRTO), doneClosed: true, estabDone: true}
	c.initBuffers()
	c.rcvBuf.m, c.sndBuf.m = nil, nil // never holds data
	o := &s.opts
	peerMSS := uint16(c.defaultMSS())
	if o.HasMSS {
		peerMSS = o.MSS
	}
	tab := cookieMSS4[:]
	if c.v6 {
		tab = cookieMSS6[:]
	}
	idx := uint32(0)
	for i := len(tab) - 1; i >= 0; i-- {
		if tab[i] <= peerMSS {
			idx = uint32(i)
			break
		}
	}
	c.irs, c.rcvNxt = s.seq, s.seq+1
	c.rcvAdv = c.rcvNxt
	c.iss = p.t.makeCookie(local, remote, s.seq, idx, now)
	if st.ts && o.HasTimestamps {
		c.tsOK = true
		c.tsRecent = o.TSVal
		bits := uint32(0xf)
		if st.ws && o.HasWindowScale {
			// The peer's shift (ours follows from the buffer, again).
			c.wsOK = true
			c.rcvWScale = windowShift(c.rcvBufMax)
			bits = uint32(min(o.WindowScale, wire.TCPMaxWindowScale))
		}
		if st.sack && o.SACKPermitted {
			c.sackOK = true
			bits |= 0x10
		}
		ts := uint32(now/int64(time.Millisecond)) + uint32(p.t.tsKey.tupleHash(local, remote))
		enc := ts&^0x3f | bits
		if seqGT(enc, ts) {
			enc -= 0x40 // never ahead of the connection's clock
		}
		c.tsOffset = enc - uint32(now/int64(time.Millisecond))
	}
	l.cookieAt.Store(now + 1) // 0: never
	p.c.syncookiesSent.Inc()
	if c.emit(b, c.iss, wire.TCPFlagSyn|wire.TCPFlagAck, 0, 0, now) {
		c.flush(b)
	}
}

// cookieConn rebuilds the connection of an ACK that answers a cookie:
// nil when it does not (or cookies were not sent lately). The connection
// is in SYN-RECEIVED, in the table, locked; the ACK completes it.
func (p *Protocol) cookieConn(b *pipeline.Batch, l *listener, s *segment, local, remote netip.AddrPort, now int64) *conn {
	at := l.cookieAt.Load()
	if at == 0 || now-(at-1) > int64(cookieRecent) || s.has(wire.TCPFlagSyn|wire.TCPFlagRst) {
		return nil
	}
	iss, sseq := s.ack-1, s.seq-1
	idx, ok := p.t.checkCookie(local, remote, sseq, iss, now)
	if !ok {
		p.c.syncookiesFailed.Inc()
		return nil
	}
	st := p.st
	n := newConn(p.t, st, local, remote)
	n.passive, n.state = true, stateSynRcvd
	if l.keepalive > 0 {
		n.keepalive, n.keepIdle, n.keepIntvl = true, l.keepalive, l.keepalive
	}
	n.irs, n.rcvNxt = sseq, s.seq
	n.rcvAdv = n.rcvNxt
	if n.v6 {
		n.peerMSS = int(cookieMSS6[idx])
	} else {
		n.peerMSS = int(cookieMSS4[idx])
	}
	o := &s.opts
	if st.ts && o.HasTimestamps && o.TSEcr != 0 {
		n.tsOK = true
		n.tsRecent, n.tsRecentAt = o.TSVal, now
		n.tsOffset = uint32(p.t.tsKey.tupleHash(local, remote))
		bits := o.TSEcr & 0x3f
		if ws := bits & 0xf; ws != 0xf && st.ws {
			n.wsOK = true
			n.sndWScale = min(uint8(ws), wire.TCPMaxWindowScale)
			n.rcvWScale = windowShift(n.rcvBufMax)
		}
		n.sackOK = st.sack && bits&0x10 != 0
	}
	n.iss, n.sndUna, n.sndNxt, n.sndMax = iss, iss, iss+1, iss+1
	n.recover = iss + 1
	n.sndWnd, n.maxSndWnd = s.wnd, s.wnd
	n.sndWl1, n.sndWl2 = s.seq, s.ack
	n.lastRecv = now
	n.retries = 1 // no RTT sample from a handshake we kept no time for
	if !l.synForce() {
		return nil
	}
	n.listener = l
	if l.cc != nil {
		n.cc = l.cc
	}
	n.mu.Lock()
	if !p.t.insert(n) {
		n.mu.Unlock()
		l.synDone()
		return nil
	}
	p.c.syncookiesRecv.Inc()
	p.c.passiveOpens.Inc()
	n.setMSS(b)
	n.rcvMSS = min(n.sndMSS, 536)
	n.cc.Init(&n.ccs)
	return n
}
