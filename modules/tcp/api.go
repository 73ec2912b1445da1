package tcp

import (
	"context"
	"errors"
	"fmt"
	"github.com/pipestack/pipestack/modules/internal/deadline"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// Conn is a TCP connection on a pipestack stack: a net.Conn with the
// methods of *net.TCPConn that make sense here (CloseWrite, CloseRead,
// SetNoDelay, SetKeepAlive, SetKeepAlivePeriod, SetLinger, SetReadBuffer,
// SetWriteBuffer). Addresses are *net.TCPAddr. Safe for concurrent use.
type Conn struct {
	c       *conn
	network string
	closed  atomic.Bool
	rd, wd  deadline.Deadline
}

func newAPIConn(c *conn, network string) *Conn { return &Conn{c: c, network: network} }

func (cn *Conn) opError(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.ECONNREFUSED) {
		err = os.NewSyscallError(op, err)
	}
	return &net.OpError{Op: op, Net: cn.network, Source: cn.LocalAddr(), Addr: cn.RemoteAddr(), Err: err}
}

// do runs fn with the connection locked inside a batch of the stack.
func (c *conn) do(fn func(b *pipeline.Batch, now int64)) bool {
	return c.t.s.Do(func(b *pipeline.Batch) {
		now := c.t.now(b)
		c.mu.Lock()
		fn(b, now)
		c.flush(b)
		c.armTLP(now) // what fn sent (a Write's data, a FIN) is probed as the receive path's is
		c.resched(now)
		c.mu.Unlock()
	})
}

// Read implements net.Conn. It returns what the receive buffer holds (at
// most len(p) bytes), io.EOF after the peer's FIN, the connection's error
// after a reset or a timeout, and blocks otherwise until data, the read
// deadline or Close.
func (cn *Conn) Read(p []byte) (int, error) {
	if cn.closed.Load() {
		return 0, cn.opError("read", net.ErrClosed)
	}
	if len(p) == 0 {
		return 0, nil
	}
	c := cn.c
	for {
		expired := cn.rd.Channel()
		select {
		case <-expired:
			return 0, cn.opError("read", os.ErrDeadlineExceeded)
		default:
		}
		c.mu.Lock()
		if c.rcvHeld() > 0 {
			n := c.rcvBuf.read(p)
			n += c.rxqRead(p[n:])
			c.rcvCopied += uint32(n)
			c.rcvSpaceAdjust(c.lastRecv)
			more := c.rcvHeld() > 0
			update := c.windowUpdateDue()
			c.mu.Unlock()
			if more {
				wake(c.rcvReady)
			}
			if update {
				c.do(func(b *pipeline.Batch, now int64) {
					if c.state.synchronized() && c.state != stateTimeWait {
						c.sendAck(b, now)
					}
				})
			}
			return n, nil
		}
		eof := c.finRcvd || c.rdShut
		err := c.err
		closed := c.state == stateClosed
		c.mu.Unlock()
		if cn.closed.Load() {
			return 0, cn.opError("read", net.ErrClosed)
		}
		if eof {
			return 0, io.EOF
		}
		if err != nil {
			return 0, cn.opError("read", err)
		}
		if closed {
			return 0, io.EOF
		}
		select {
		case <-c.rcvReady:
		case <-expired:
			return 0, cn.opError("read", os.ErrDeadlineExceeded)
		}
	}
}

// windowUpdateDue: after a read, the window we could advertise is at least
// twice what the peer was last told and a segment more (Linux's
// __tcp_cleanup_rbuf): tell it now rather than at the next ACK.
func (c *conn) windowUpdateDue() bool {
	switch c.state {
	case stateEstablished, stateFinWait1, stateFinWait2:
	default:
		return false
	}
	adv := int(c.rcvAdv - c.rcvNxt)
	now := min(c.rcvLimit()-c.rcvHeld(), 0xffff<<c.rcvWScale)
	return now >= 2*adv && now-adv >= max(c.rcvMSS, 536)
}

// Write implements net.Conn: it queues p on the send buffer, blocking
// while the buffer is full, until all of p is queued, the write deadline
// passes or the connection fails.
func (cn *Conn) Write(p []byte) (int, error) {
	if cn.closed.Load() {
		return 0, cn.opError("write", net.ErrClosed)
	}
	c := cn.c
	total := 0
	for len(p) > 0 {
		expired := cn.wd.Channel()
		select {
		case <-expired:
			return total, cn.opError("write", os.ErrDeadlineExceeded)
		default:
		}
		var k int
		var err error
		if !c.do(func(b *pipeline.Batch, now int64) { k, err = c.write(b, p, now) }) {
			return total, cn.opError("write", errors.New("the stack runs no pipeline"))
		}
		if err != nil {
			return total, cn.opError("write", err)
		}
		total += k
		p = p[k:]
		if k == 0 {
			select {
			case <-c.sndReady:
			case <-c.doneCh():
			case <-expired:
				return total, cn.opError("write", os.ErrDeadlineExceeded)
			}
		}
	}
	return total, nil
}

// write queues what fits of p and sends what the windows allow. Called
// with c.mu held in a batch.
func (c *conn) write(b *pipeline.Batch, p []byte, now int64) (int, error) {
	switch {
	case c.err != nil:
		return 0, c.err
	case c.finQueued || c.userClosed:
		return 0, syscall.EPIPE
	case c.state != stateEstablished && c.state != stateCloseWait:
		return 0, syscall.EPIPE
	}
	k := min(c.sndLimit-c.sndBuf.n, len(p))
	if k <= 0 {
		return 0, nil
	}
	// In packets of one segment (the stack's memory limit may take
	// fewer bytes, or none).
	if k = c.sndBuf.write(p[:k], c.sndChunk(), c.t.s.Pool()); k == 0 {
		return 0, nil
	}
	c.output(b, now)
	return k, nil
}

// Close implements net.Conn: a graceful close (FIN after the queued data;
// the connection lingers in the stack until the peer has it), or a reset
// when unread data is left in the receive buffer or SetLinger(0) was
// called (Linux's tcp_close). With SetLinger(sec > 0) Close waits up to
// sec seconds for the FIN to be acknowledged.
func (cn *Conn) Close() error {
	if cn.closed.Swap(true) {
		return cn.opError("close", net.ErrClosed)
	}
	c := cn.c
	var linger time.Duration
	if !c.do(func(b *pipeline.Batch, now int64) {
		c.userClose(b, now)
		if c.lingerSet {
			linger = c.linger
		}
	}) {
		c.mu.Lock()
		c.userClosed = true
		c.destroy(net.ErrClosed)
		c.mu.Unlock()
	}
	if linger > 0 {
		timer := time.NewTimer(linger)
		defer timer.Stop()
		for {
			c.mu.Lock()
			s := c.state
			c.mu.Unlock()
			if s == stateClosed || s == stateTimeWait || s == stateFinWait2 {
				break
			}
			select {
			case <-c.sndReady:
			case <-c.doneCh():
			case <-timer.C:
				goto out
			}
		}
	}
out:
	wake(c.rcvReady)
	cn.rd.Stop()
	cn.wd.Stop()
	return nil
}

// userClose is close(2) for the connection.
func (c *conn) userClose(b *pipeline.Batch, now int64) {
	c.userClosed = true
	switch c.state {
	case stateClosed:
		c.releaseRcv()
		return
	case stateSynSent:
		c.destroy(net.ErrClosed)
		return
	}
	if c.rcvHeld() > 0 || (c.lingerSet && c.linger == 0) {
		c.abort(b, now, net.ErrClosed)
		return
	}
	c.releaseRcv()
	if c.state == stateTimeWait && c.inTimeWait {
		c.toCompact()
		return
	}
	switch c.state {
	case stateSynRcvd, stateEstablished:
		c.finQueued = true
		c.state = stateFinWait1
		c.output(b, now)
	case stateCloseWait:
		c.finQueued = true
		c.state = stateLastAck
		c.output(b, now)
	case stateFinWait2:
		c.closeAt = now + int64(c.st.finTimeout)
	}
}

// CloseWrite shuts down the sending side: a FIN follows the queued data
// (shutdown(SHUT_WR)); reading goes on.
func (cn *Conn) CloseWrite() error {
	if cn.closed.Load() {
		return cn.opError("close", net.ErrClosed)
	}
	c := cn.c
	var err error
	c.do(func(b *pipeline.Batch, now int64) {
		switch c.state {
		case stateEstablished:
			c.finQueued = true
			c.state = stateFinWait1
			c.output(b, now)
		case stateCloseWait:
			c.finQueued = true
			c.state = stateLastAck
			c.output(b, now)
		case stateFinWait1, stateFinWait2, stateClosing, stateLastAck, stateTimeWait:
		default:
			err = syscall.ENOTCONN
		}
	})
	return cn.opError("close", err)
}

// CloseRead shuts down the receiving side: reads return io.EOF, and data
// that arrives is acknowledged and discarded.
func (cn *Conn) CloseRead() error {
	if cn.closed.Load() {
		return cn.opError("close", net.ErrClosed)
	}
	c := cn.c
	c.mu.Lock()
	c.rdShut = true
	c.rcvBuf.discard(c.rcvBuf.n)
	c.rxqRelease()
	c.mu.Unlock()
	wake(c.rcvReady)
	return nil
}

// SetNoDelay turns Nagle's algorithm off (true, the default, as for Go's
// *net.TCPConn) or on.
func (cn *Conn) SetNoDelay(noDelay bool) error {
	c := cn.c
	c.do(func(b *pipeline.Batch, now int64) {
		c.noDelay = noDelay
		if noDelay {
			c.output(b, now)
		}
	})
	return nil
}

// SetKeepAlive turns keepalive probes on or off (period: as set by
// SetKeepAlivePeriod, else 15 s idle and 15 s between 9 probes, Go's).
func (cn *Conn) SetKeepAlive(on bool) error {
	c := cn.c
	c.do(func(b *pipeline.Batch, now int64) {
		c.keepalive = on
		c.keepSent = 0
		if on && c.state.synchronized() {
			c.keepAt = now + int64(c.keepIdle)
		} else {
			c.keepAt = 0
		}
	})
	return nil
}

// SetKeepAlivePeriod sets the idle time before the first probe and the
// time between probes (as Go's does on Linux).
func (cn *Conn) SetKeepAlivePeriod(d time.Duration) error {
	if d < time.Second {
		d = time.Second
	}
	c := cn.c
	c.do(func(b *pipeline.Batch, now int64) {
		c.keepIdle, c.keepIntvl = d, d
		if c.keepalive && c.state.synchronized() {
			c.keepAt = now + int64(d)
		}
	})
	return nil
}

// SetLinger sets what Close does with unsent data: sec < 0 (the default)
// closes gracefully in the background; 0 discards it and resets the
// connection; sec > 0 waits up to sec seconds for it to be acknowledged.
func (cn *Conn) SetLinger(sec int) error {
	c := cn.c
	c.mu.Lock()
	c.lingerSet = sec >= 0
	c.linger = time.Duration(max(sec, 0)) * time.Second
	c.mu.Unlock()
	return nil
}

// SetReadBuffer sets the receive buffer's bound (at least 4 KiB, at most
// what the window scale agreed at the handshake can advertise).
func (cn *Conn) SetReadBuffer(n int) error {
	c := cn.c
	c.mu.Lock()
	defer c.mu.Unlock()
	n = max(n, minBuffer, c.rcvHeld())
	c.rcvBufMax = min(n, maxBuffer, 0xffff<<c.rcvWScale)
	c.rcvSpace, c.rcvLocked = c.rcvBufMax, true
	return nil
}

// SetWriteBuffer sets the send buffer's bound (at least 4 KiB).
func (cn *Conn) SetWriteBuffer(n int) error {
	c := cn.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sndBufMax = min(max(n, minBuffer, c.sndBuf.n), maxBuffer)
	c.sndLimit, c.sndLocked = c.sndBufMax, true
	return nil
}

// LocalAddr implements net.Conn.
func (cn *Conn) LocalAddr() net.Addr { return tcpAddr(cn.c.local, cn.network) }

// RemoteAddr implements net.Conn.
func (cn *Conn) RemoteAddr() net.Addr { return tcpAddr(cn.c.remote, cn.network) }

// State is the connection's RFC 9293 state name ("ESTABLISHED").
func (cn *Conn) State() string {
	cn.c.mu.Lock()
	defer cn.c.mu.Unlock()
	return cn.c.state.String()
}

// SetDeadline implements net.Conn.
func (cn *Conn) SetDeadline(t time.Time) error {
	cn.rd.Set(t)
	cn.wd.Set(t)
	return nil
}

// SetReadDeadline implements net.Conn.
func (cn *Conn) SetReadDeadline(t time.Time) error {
	cn.rd.Set(t)
	return nil
}

// SetWriteDeadline implements net.Conn.
func (cn *Conn) SetWriteDeadline(t time.Time) error {
	cn.wd.Set(t)
	return nil
}

// Dialer opens connections on a stack. The zero Dialer with Stack set
// dials with keepalive on (15 s, as Go's net.Dialer) and no timeout
// beyond the SYN retries (about 127 s, Linux's).
type Dialer struct {
	Stack *pipeline.Stack
	// LocalAddr is the local address (and port; 0: ephemeral). The zero
	// value lets the route choose the source address.
	LocalAddr netip.AddrPort
	// Timeout bounds the handshake (0: none besides the retries).
	Timeout time.Duration
	// KeepAlive is the keepalive period: 0 means 15 s, negative off.
	KeepAlive time.Duration
	// Resolver, when set, resolves host names in DialContext's address
	// (StackResolver: over the stack itself); without it only IP
	// literals are dialled.
	Resolver *net.Resolver
	// CongestionControl chooses the connection's algorithm, a tcp.cc
	// module by name ("cubic", "newreno"; what TCP_CONGESTION sets on
	// Linux); empty: the stack's (the pipeline file's).
	CongestionControl string
}

// Dial connects to address on s ("10.0.2.2:80"; IP literals only).
func Dial(s *pipeline.Stack, network, address string) (*Conn, error) {
	d := Dialer{Stack: s}
	return d.DialTCP(context.Background(), network, address)
}

// Dial connects to address.
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialContext connects to address until ctx is done: what an
// http.Transport's DialContext wants.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.DialTCP(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialTCP is DialContext returning *Conn.
func (d *Dialer) DialTCP(ctx context.Context, network, address string) (*Conn, error) {
	op := func(err error) error {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) {
			err = os.NewSyscallError("connect", err)
		}
		var src net.Addr
		if d.LocalAddr.IsValid() {
			src = net.TCPAddrFromAddrPort(d.LocalAddr)
		}
		return &net.OpError{Op: "dial", Net: network, Source: src, Addr: addrOrNil(address), Err: err}
	}
	s := d.Stack
	if s == nil {
		return nil, op(errors.New("Dialer.Stack is nil"))
	}
	t, st, err := stackTable(s, network)
	if err != nil {
		return nil, op(err)
	}
	if host, port, err := net.SplitHostPort(address); err == nil && d.Resolver != nil && isName(host) {
		return d.dialName(ctx, network, host, port)
	}
	remote, err := parseAddr(network, address)
	if err != nil {
		return nil, op(err)
	}
	if !remote.Addr().IsValid() || remote.Port() == 0 {
		return nil, op(errors.New("the remote address needs a host and a port"))
	}
	local := d.LocalAddr
	if local.Addr().Is4In6() {
		local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	}
	if local.Addr().IsValid() {
		if local.Addr().Is4() != remote.Addr().Is4() {
			return nil, op(syscall.EAFNOSUPPORT)
		}
		if err := checkLocal(s, local.Addr()); err != nil {
			return nil, op(err)
		}
	} else {
		src, err := sourceFor(s, remote.Addr())
		if err != nil {
			return nil, op(err)
		}
		local = netip.AddrPortFrom(src, local.Port())
	}
	cc, err := ccByName(d.CongestionControl)
	if err != nil {
		return nil, op(err)
	}
	c := newConn(t, st, local, remote)
	if cc != nil {
		c.cc = cc
	}
	c.state = stateSynSent
	c.wsOK, c.tsOK, c.sackOK = st.ws, st.ts, st.sack
	if c.wsOK {
		c.rcvWScale = windowShift(c.rcvBufMax)
	}
	switch {
	case d.KeepAlive == 0:
		c.keepalive = true
	case d.KeepAlive > 0:
		c.keepalive = true
		c.keepIdle, c.keepIntvl = d.KeepAlive, d.KeepAlive
	}
	if err := t.connect(c); err != nil {
		return nil, op(os.NewSyscallError("connect", err))
	}
	c.tsOffset = uint32(t.tsKey.tupleHash(c.local, c.remote))
	if !c.do(func(b *pipeline.Batch, now int64) {
		c.iss = t.isn(c.local, c.remote, b.Now)
		c.sndUna, c.sndNxt, c.sndMax, c.recover = c.iss, c.iss, c.iss, c.iss
		c.rcvAdv = 0
		c.setMSS(b)
		c.cc.Init(&c.ccs)
		c.rttStart = now
		c.lastRecv = now
		c.sendSyn(b, now)
	}) {
		t.remove(c)
		return nil, op(errors.New("the stack runs no pipeline"))
	}
	t.c.activeOpens.Inc()
	var timeout <-chan time.Time
	if d.Timeout > 0 {
		tm := time.NewTimer(d.Timeout)
		defer tm.Stop()
		timeout = tm.C
	}
	if !c.waitHandshake(ctx.Done(), timeout) {
		err := ctx.Err()
		if err == nil {
			err = errTimedOut
		}
		c.mu.Lock()
		c.userClosed = true
		c.destroy(err)
		c.mu.Unlock()
		return nil, op(err)
	}
	c.mu.Lock()
	ok := c.state.synchronized()
	err = c.err
	c.mu.Unlock()
	if !ok {
		if err == nil {
			err = errRefused
		}
		return nil, op(err)
	}
	return newAPIConn(c, network), nil
}

// parseAddr parses "host:port" with an IP literal or an empty host (the
// wildcard, returned as the invalid netip.Addr).
func parseAddr(network, address string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, err
	}
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", port)
	}
	var a netip.Addr
	if host != "" {
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, fmt.Errorf("%q is not an IP address (names are resolved only with Dialer.Resolver)", host)
		}
		if a.Is4In6() {
			a = a.Unmap()
		}
		if (network == "tcp4" && !a.Is4()) || (network == "tcp6" && !a.Is6()) {
			return netip.AddrPort{}, syscall.EAFNOSUPPORT
		}
		if a.IsUnspecified() {
			a = netip.Addr{}
		}
	}
	return netip.AddrPortFrom(a, uint16(pn)), nil
}

// checkLocal refuses a local address that is not the stack's.
func checkLocal(s *pipeline.Stack, a netip.Addr) error {
	if !a.IsValid() {
		return nil
	}
	if a.IsMulticast() {
		return syscall.EADDRNOTAVAIL
	}
	g := s.Generation()
	if g == nil {
		return errors.New("the stack runs no pipeline")
	}
	a = a.WithZone("")
	ok := false
	if a.Is4() {
		_, bcast, local := g.IsLocal4(a.As4())
		ok = local && !bcast
	} else {
		_, ok = g.IsLocal6(a.As16())
	}
	if !ok {
		return os.NewSyscallError("bind", syscall.EADDRNOTAVAIL)
	}
	return nil
}

// sourceFor is the source address the route to dst gives.
func sourceFor(s *pipeline.Stack, dst netip.Addr) (netip.Addr, error) {
	g := s.Generation()
	if g == nil {
		return netip.Addr{}, errors.New("the stack runs no pipeline")
	}
	nic, _, err := routeFor(g, dst)
	if err != nil {
		return netip.Addr{}, err
	}
	a, ok := nic.SourceAddress(dst.WithZone(""))
	if !ok {
		return netip.Addr{}, syscall.EADDRNOTAVAIL
	}
	return a, nil
}

func addrOrNil(address string) net.Addr {
	if ap, err := netip.ParseAddrPort(address); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return nil
}

// tcpAddr turns a binding into a *net.TCPAddr (the wildcard as 0.0.0.0,
// or :: for tcp6).
func tcpAddr(ap netip.AddrPort, network string) *net.TCPAddr {
	a := ap.Addr()
	if !a.IsValid() {
		a = netip.IPv4Unspecified()
		if network == "tcp6" || network == "tcp" {
			a = netip.IPv6Unspecified()
		}
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, ap.Port()))
}

var _ net.Conn = (*Conn)(nil)
