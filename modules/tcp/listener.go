package tcp

import (
	"context"
	"errors"
	"github.com/pipestack/pipestack/modules/internal/deadline"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// DefaultBacklog is a listener's backlog when ListenConfig gives none:
// Linux's somaxconn, which Go's net.Listen uses.
const DefaultBacklog = 4096

// listener is a LISTEN socket: its SYN queue (connections in
// SYN-RECEIVED, counted) and its accept queue, both bounded by the
// backlog.
type listener struct {
	t       *table
	addr    netip.AddrPort
	network string
	// keepalive is the keepalive period of accepted connections (0: off).
	keepalive time.Duration
	// cc is the congestion control of accepted connections (nil: the
	// stack's).
	cc CongestionControl

	mu      sync.Mutex
	backlog int
	synq    int
	queue   []*conn
	closed  bool
	ready   chan struct{} // capacity 1: the queue is not empty
	done    chan struct{}
	// cookieAt is when the listener last sent a SYN cookie (stack ns
	// plus one; 0: never).
	cookieAt atomic.Int64
}

// accepts tells whether a wildcard listener takes a segment to a.
func (l *listener) accepts(a netip.Addr) bool {
	switch l.network {
	case "tcp4":
		return a.Is4()
	case "tcp6":
		return a.Is6()
	}
	return true
}

func (l *listener) synBegin() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.synq >= l.backlog {
		return false
	}
	l.synq++
	return true
}

// acceptFull: the accept queue holds backlog connections (a SYN is then
// dropped rather than answered with a cookie, as Linux).
func (l *listener) acceptFull() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue) >= l.backlog
}

// synForce counts a connection rebuilt from a SYN cookie (beyond the
// backlog: it leaves the SYN queue at once).
func (l *listener) synForce() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.synq++
	return true
}

func (l *listener) synDone() {
	l.mu.Lock()
	l.synq--
	l.mu.Unlock()
}

type enqueueResult uint8

const (
	enqueued enqueueResult = iota
	enqueueFull
	enqueueClosed
)

func (l *listener) enqueue(c *conn) enqueueResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return enqueueClosed
	}
	if len(l.queue) >= l.backlog {
		return enqueueFull
	}
	l.queue = append(l.queue, c)
	wake(l.ready)
	return enqueued
}

// shut closes the listener and returns what its accept queue held.
func (l *listener) shut(error) []*conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	q := l.queue
	l.queue = nil
	close(l.done)
	return q
}

// Listener is a TCP listener on a pipestack stack: a net.Listener whose
// Accept returns *Conn.
type Listener struct {
	l      *listener
	closed atomic.Bool
	dl     deadline.Deadline
}

// ListenConfig holds listener options.
type ListenConfig struct {
	// Backlog bounds the SYN queue and the accept queue (default
	// DefaultBacklog).
	Backlog int
	// KeepAlive is the keepalive period of accepted connections: 0 means
	// 15 s (as Go's net.ListenConfig), negative off.
	KeepAlive time.Duration
	// CongestionControl chooses the accepted connections' algorithm, a
	// tcp.cc module by name ("cubic"); empty: the stack's.
	CongestionControl string
}

// Listen listens on s at address ("10.0.1.2:80", ":80", "[::]:0"; IP
// literals only). network is "tcp" (both families on the wildcard
// address), "tcp4" or "tcp6". s must run a pipeline with transport.tcp.
func Listen(s *pipeline.Stack, network, address string) (*Listener, error) {
	return ListenConfig{}.Listen(s, network, address)
}

// Listen is Listen with lc's options.
func (lc ListenConfig) Listen(s *pipeline.Stack, network, address string) (*Listener, error) {
	op := func(err error) error {
		return &net.OpError{Op: "listen", Net: network, Addr: addrOrNil(address), Err: err}
	}
	t, _, err := stackTable(s, network)
	if err != nil {
		return nil, op(err)
	}
	local, err := parseAddr(network, address)
	if err != nil {
		return nil, op(err)
	}
	if err := checkLocal(s, local.Addr()); err != nil {
		return nil, op(err)
	}
	cc, err := ccByName(lc.CongestionControl)
	if err != nil {
		return nil, op(err)
	}
	backlog := lc.Backlog
	if backlog <= 0 {
		backlog = DefaultBacklog
	}
	l := &listener{t: t, addr: local, network: network, backlog: backlog, cc: cc, ready: make(chan struct{}, 1), done: make(chan struct{})}
	switch {
	case lc.KeepAlive == 0:
		l.keepalive = 15 * time.Second
	case lc.KeepAlive > 0:
		l.keepalive = lc.KeepAlive
	}
	if err := t.listen(l); err != nil {
		return nil, op(os.NewSyscallError("bind", err))
	}
	return &Listener{l: l}, nil
}

// Accept implements net.Listener.
func (ln *Listener) Accept() (net.Conn, error) {
	c, err := ln.AcceptTCP()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptTCP waits for the next connection and returns it.
func (ln *Listener) AcceptTCP() (*Conn, error) {
	l := ln.l
	for {
		l.mu.Lock()
		if len(l.queue) > 0 {
			c := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			if len(l.queue) == 0 {
				l.queue = nil
			} else {
				wake(l.ready)
			}
			l.mu.Unlock()
			return newAPIConn(c, l.network), nil
		}
		closed := l.closed
		l.mu.Unlock()
		if closed {
			return nil, ln.opError(net.ErrClosed)
		}
		select {
		case <-l.ready:
		case <-l.done:
		case <-ln.dl.Channel():
			return nil, ln.opError(os.ErrDeadlineExceeded)
		}
	}
}

func (ln *Listener) opError(err error) error {
	return &net.OpError{Op: "accept", Net: ln.l.network, Addr: ln.Addr(), Err: err}
}

// SetDeadline sets the deadline of Accept.
func (ln *Listener) SetDeadline(t time.Time) error {
	ln.dl.Set(t)
	return nil
}

// Addr implements net.Listener.
func (ln *Listener) Addr() net.Addr { return tcpAddr(ln.l.addr, ln.l.network) }

// Close implements net.Listener: it stops listening and resets the
// connections that were waiting in the accept queue (as Linux does).
// Connections already accepted are not affected.
func (ln *Listener) Close() error {
	if ln.closed.Swap(true) {
		return ln.opError(net.ErrClosed)
	}
	l := ln.l
	l.t.unlisten(l)
	q := l.shut(nil)
	ln.dl.Stop()
	if len(q) > 0 {
		ran := l.t.s.Do(func(b *pipeline.Batch) {
			now := l.t.now(b)
			for _, c := range q {
				c.mu.Lock()
				c.userClosed = true
				c.abort(b, now, errReset)
				// One the stack had already closed (a reset, a
				// keepalive timeout while it waited) kept its
				// receive side for the Accept that will not come.
				c.releaseRcv()
				c.mu.Unlock()
			}
		})
		if !ran {
			for _, c := range q {
				c.mu.Lock()
				c.userClosed = true
				c.destroy(errReset)
				c.releaseRcv()
				c.mu.Unlock()
			}
		}
	}
	return nil
}

// stackTable returns the TCP table of s and the running generation's
// settings.
func stackTable(s *pipeline.Stack, network string) (*table, *settings, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, nil, net.UnknownNetworkError(network)
	}
	g := s.Generation()
	if g == nil {
		return nil, nil, errors.New("the stack runs no pipeline")
	}
	p, ok := g.TransportProtocol(pipeline.TCPProtocolNumber).(*Protocol)
	if !ok {
		return nil, nil, errors.New("the pipeline configures no transport.tcp")
	}
	return p.t, p.st, nil
}

var (
	_ net.Listener = (*Listener)(nil)
	_              = context.Background
)
