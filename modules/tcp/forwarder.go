package tcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pipestack/pipestack/modules/internal/fwdqueue"
	"github.com/pipestack/pipestack/modules/internal/tcpreset"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// DefaultMaxInFlight bounds a Forwarder's connection requests that are not
// answered yet when ForwarderConfig gives no bound.
const DefaultMaxInFlight = 1024

// Forwarder takes the connection requests (SYNs) that no connection and no
// listener of the stack takes, to any destination: with a link marked
// `transparent: true` every unicast packet it receives is delivered to the
// stack (pipeline.NetworkInterface.Transparent), so the Forwarder sees a
// SYN to any address arriving there — the building block of transparent
// proxies and tun2socks-style programs, as gVisor's tcp.Forwarder.
//
// A SYN becomes a ForwarderRequest queued on the Forwarder; Next hands them
// out, and the program decides for each: Accept completes the handshake and
// returns a *Conn whose LocalAddr is the original destination, Reject
// answers with a reset, Drop ignores it (the peer retries its SYN, which
// then makes a new request). Nothing runs per SYN until the program asks
// (no goroutine, no connection state: the request holds the SYN packet and
// its slot), and at most MaxInFlight requests are held, queued or handed
// out and not answered; SYNs beyond that are dropped and counted, as are
// retransmitted SYNs of a request already held.
//
// One Forwarder per stack. It lives in the stack's TCP table and survives
// reloads, as sockets do; Close removes it.
type Forwarder struct {
	t           *table
	maxInFlight int
	keepalive   time.Duration
	cc          CongestionControl

	// q holds the requests, queued or handed out, not answered.
	q fwdqueue.Queue[fourTuple, *ForwarderRequest]

	requests, full, duplicates atomic.Uint64
}

// ForwarderConfig holds a Forwarder's options.
type ForwarderConfig struct {
	// MaxInFlight bounds the requests held, queued or handed out and not
	// answered (gVisor's maxInFlight; default DefaultMaxInFlight).
	MaxInFlight int
	// KeepAlive is the keepalive period of accepted connections: 0 means
	// 15 s (as Go's net.ListenConfig), negative off.
	KeepAlive time.Duration
	// CongestionControl chooses the accepted connections' algorithm, a
	// tcp.cc module by name ("cubic"); empty: the stack's.
	CongestionControl string
}

// ForwarderStats are a Forwarder's counts.
type ForwarderStats struct {
	Requests   uint64 // SYNs that became requests
	Full       uint64 // SYNs dropped: MaxInFlight requests held
	Duplicates uint64 // SYNs dropped: their request is held already
	InFlight   int    // requests held now
}

// NewForwarder installs a Forwarder on s, which must run a pipeline with
// transport.tcp. A stack has at most one.
func NewForwarder(s *pipeline.Stack, cfg ForwarderConfig) (*Forwarder, error) {
	t, _, err := stackTable(s, "tcp")
	if err != nil {
		return nil, err
	}
	cc, err := ccByName(cfg.CongestionControl)
	if err != nil {
		return nil, err
	}
	f := &Forwarder{t: t, maxInFlight: cfg.MaxInFlight, cc: cc}
	if f.maxInFlight <= 0 {
		f.maxInFlight = DefaultMaxInFlight
	}
	f.q.Init(f.maxInFlight, ErrForwarderClosed)
	switch {
	case cfg.KeepAlive == 0:
		f.keepalive = 15 * time.Second
	case cfg.KeepAlive > 0:
		f.keepalive = cfg.KeepAlive
	}
	t.mu.RLock()
	closed := t.closed
	t.mu.RUnlock()
	if closed {
		return nil, errStackClosed
	}
	if !t.fwd.CompareAndSwap(nil, f) {
		return nil, errors.New("the stack has a TCP forwarder already")
	}
	return f, nil
}

// ErrForwarderClosed is what Next returns once the Forwarder is closed.
var ErrForwarderClosed = errors.New("tcp forwarder closed")

// Next waits for the next connection request and returns it (the oldest
// first), or an error once ctx is done or the Forwarder is closed. Every
// request it returns must be answered (Accept, Reject or Drop): until then
// it holds one of MaxInFlight slots.
func (f *Forwarder) Next(ctx context.Context) (*ForwarderRequest, error) {
	return f.q.Next(ctx)
}

// Stats returns the Forwarder's counts.
func (f *Forwarder) Stats() ForwarderStats {
	return ForwarderStats{Requests: f.requests.Load(), Full: f.full.Load(), Duplicates: f.duplicates.Load(), InFlight: f.q.Len()}
}

// Close removes the Forwarder from its stack: SYNs for no listener are
// answered with resets again, the requests still queued are dropped (their
// peers retry), Next returns ErrForwarderClosed. Requests handed out stay
// valid; connections accepted are not affected.
func (f *Forwarder) Close() error {
	f.t.fwd.CompareAndSwap(f, nil)
	for _, r := range f.shut() {
		r.Drop()
	}
	return nil
}

// shut marks f closed and returns what its queue held.
func (f *Forwarder) shut() []*ForwarderRequest { return f.q.Shut() }

// take is the packet path's hand-off (Protocol.noSocket): a SYN for no
// socket becomes a request. It reports whether it took ownership of pkt
// (queued, or dropped as a duplicate or over the bound); false leaves the
// segment to the usual answer (a reset).
func (f *Forwarder) take(b *pipeline.Batch, pkt *pipeline.Packet) bool {
	raw := wire.TCP(pkt.Data())
	if raw.Flags()&(wire.TCPFlagSyn|wire.TCPFlagAck|wire.TCPFlagRst|wire.TCPFlagFin) != wire.TCPFlagSyn {
		return false
	}
	src, dst, ok := addresses(pkt)
	if !ok || pkt.PktType != pipeline.PacketHost || !answerable(b, src, dst) {
		return false
	}
	k := fourTuple{netip.AddrPortFrom(dst, raw.DstPort()), netip.AddrPortFrom(src, raw.SrcPort())}
	f.q.Lock()
	_, held := f.q.GetLocked(k)
	switch {
	case f.q.ClosedLocked():
		f.q.Unlock()
		return false
	case held:
		f.q.Unlock()
		f.duplicates.Add(1)
		pkt.Release()
		return true
	case f.q.FullLocked():
		f.q.Unlock()
		f.full.Add(1)
		f.t.c.synQueueFull.Inc()
		pkt.Release()
		return true
	}
	// The request keeps the SYN itself, in a buffer of its size (a TUN
	// with offloads reads into 64 KiB ones).
	r := &ForwarderRequest{f: f, local: k.local, remote: k.remote, pkt: pkt.Compact()}
	f.q.PushLocked(k, r)
	f.q.Unlock()
	f.requests.Add(1)
	return true
}

// ForwarderRequest is one connection request a Forwarder holds: the SYN
// from RemoteAddr to LocalAddr, its original destination. Answer it once,
// with Accept, Reject or Drop; later answers fail or do nothing.
type ForwarderRequest struct {
	f             *Forwarder
	local, remote netip.AddrPort
	answered      atomic.Bool
	pkt           *pipeline.Packet // the SYN, until answered
}

// LocalAddr is the SYN's destination: the address the peer connects to.
func (r *ForwarderRequest) LocalAddr() netip.AddrPort { return r.local }

// RemoteAddr is the SYN's source: the peer.
func (r *ForwarderRequest) RemoteAddr() netip.AddrPort { return r.remote }

// answer claims the request for one answer and frees its slot; it returns
// the SYN (nil when the request was answered before).
func (r *ForwarderRequest) answer() *pipeline.Packet {
	if r.answered.Swap(true) {
		return nil
	}
	r.f.q.Release(fourTuple{r.local, r.remote}, r)
	pkt := r.pkt
	r.pkt = nil
	return pkt
}

// Drop ignores the request: nothing is sent, the peer retries its SYN (a
// new request).
func (r *ForwarderRequest) Drop() {
	if pkt := r.answer(); pkt != nil {
		pkt.Release()
	}
}

// Reject answers the request with a reset (<SEQ=0><ACK=SEG.SEQ+1>
// <CTL=RST,ACK>, from the original destination): the peer's connect fails
// with ECONNREFUSED, as if the destination had no listener.
func (r *ForwarderRequest) Reject() {
	pkt := r.answer()
	if pkt == nil {
		return
	}
	t := r.f.t
	ran := t.s.Do(func(b *pipeline.Batch) {
		p, ok := b.TransportProtocol(pipeline.TCPProtocolNumber).(*Protocol)
		if !ok {
			return
		}
		rst, from, to, ok := tcpreset.Build(t.s.Pool(), pkt.NetworkHeader(), pkt.Data())
		if ok {
			p.sendReset(b, rst, from, to, pkt.InNIC)
		}
	})
	_ = ran
	pkt.Release()
}

// Accept completes the handshake — the connection answers the SYN with a
// SYN-ACK from the original destination, with the options the stack's
// transport.tcp settings and the SYN agree — and returns the connection
// once the peer's ACK arrives: a *Conn whose LocalAddr is the original
// destination and RemoteAddr the peer. It fails when the peer resets, the
// SYN-ACK retries run out (about a minute), ctx is done, or the request
// was answered before. Data the peer sends with its ACK is kept.
func (r *ForwarderRequest) Accept(ctx context.Context) (*Conn, error) {
	network := "tcp4"
	if r.local.Addr().Is6() {
		network = "tcp6"
	}
	op := func(err error) error {
		if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ETIMEDOUT) {
			err = os.NewSyscallError("accept", err)
		}
		return &net.OpError{Op: "accept", Net: network, Source: net.TCPAddrFromAddrPort(r.local),
			Addr: net.TCPAddrFromAddrPort(r.remote), Err: err}
	}
	pkt := r.answer()
	if pkt == nil {
		return nil, op(errors.New("the request was answered already"))
	}
	defer pkt.Release()
	f := r.f
	t := f.t
	// A listener of its own, outside the table, with room for this one
	// connection: the SYN-RECEIVED machinery (SYN-ACK retries, the
	// handshake's checks, the accept queue) is the listeners'.
	l := &listener{t: t, addr: r.local, network: network, keepalive: f.keepalive, cc: f.cc, backlog: 1, synq: 1,
		ready: make(chan struct{}, 1), done: make(chan struct{})}
	var n *conn
	var err error
	ran := t.s.Do(func(b *pipeline.Batch) {
		p, ok := b.TransportProtocol(pipeline.TCPProtocolNumber).(*Protocol)
		if !ok {
			err = errors.New("the pipeline configures no transport.tcp")
			return
		}
		raw := wire.TCP(pkt.Data())
		var s segment
		s.seq, s.ack, s.flags, s.wnd = raw.Seq(), raw.Ack(), raw.Flags(), uint32(raw.Window())
		if opts := raw.Options(); len(opts) > 0 {
			s.opts, _ = wire.ParseTCPOptions(opts)
		}
		now := t.now(b)
		if n = p.synReceived(b, l, &s, r.local, r.remote, 0, now); n == nil {
			err = syscall.EADDRINUSE
		}
	})
	switch {
	case !ran:
		return nil, op(errors.New("the stack runs no pipeline"))
	case err != nil:
		return nil, op(err)
	}
	if !n.waitHandshake(ctx.Done(), nil) {
		n.do(func(b *pipeline.Batch, now int64) {
			n.userClosed = true
			n.abort(b, now, ctx.Err())
		})
		return nil, op(ctx.Err())
	}
	n.mu.Lock()
	ok := n.state.synchronized()
	err = n.err
	timedOut := n.retries > n.st.synackRetries
	n.mu.Unlock()
	l.shut(nil)
	if !ok {
		switch {
		case err != nil:
		case timedOut:
			err = errTimedOut // the SYN-ACK retries ran out
		default:
			err = errReset // the peer reset the handshake
		}
		return nil, op(err)
	}
	return newAPIConn(n, network), nil
}
