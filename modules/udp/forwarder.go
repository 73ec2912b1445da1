package udp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync/atomic"

	"github.com/pipestack/pipestack/modules/internal/fwdqueue"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Forwarder defaults.
const (
	// DefaultMaxInFlight bounds the flows a Forwarder holds unanswered.
	DefaultMaxInFlight = 1024
	// DefaultPendingDatagrams bounds the datagrams a request holds.
	DefaultPendingDatagrams = 16
)

// Forwarder takes the datagrams that no socket of the stack takes, to any
// destination, as gVisor's udp.Forwarder: with a link marked `transparent:
// true` every unicast packet it receives is delivered to the stack
// (pipeline.NetworkInterface.Transparent), so the Forwarder sees a
// datagram to any address arriving there.
//
// The first datagram of a flow (a source and destination address and port
// no socket takes) becomes a ForwarderRequest queued on the Forwarder;
// the datagrams of the flow that follow before it is answered join it (at
// most PendingDatagrams, more are dropped and counted). Next hands the
// requests out, and the program decides for each: Accept returns a
// connected *Conn bound to the original destination — it reads the
// flow's datagrams, the pending ones first, and what it writes goes to the
// flow's source from the original destination —, Reject answers with ICMP
// port unreachable from the original destination, Drop discards what the
// request held. At most MaxInFlight requests are held; datagrams of new
// flows beyond that are dropped and counted. An accepted flow lives until
// its Conn is closed (a proxy closes it after an idle time of its choice:
// read deadlines); the flow's next datagram is then a new request.
//
// One Forwarder per stack; it survives reloads, as sockets do.
type Forwarder struct {
	t                        *table
	s                        *pipeline.Stack
	maxInFlight, maxDatagram int

	// q holds the requests, queued or handed out, not answered; its lock
	// also guards the requests' fields and orders Accept's bind against
	// take.
	q fwdqueue.Queue[fourTuple, *ForwarderRequest]

	requests, full, pendingFull atomic.Uint64
}

// ForwarderConfig holds a Forwarder's options.
type ForwarderConfig struct {
	// MaxInFlight bounds the requests held, queued or handed out and not
	// answered (default DefaultMaxInFlight).
	MaxInFlight int
	// PendingDatagrams bounds the datagrams one request holds (default
	// DefaultPendingDatagrams).
	PendingDatagrams int
}

// ForwarderStats are a Forwarder's counts.
type ForwarderStats struct {
	Requests    uint64 // flows that became requests
	Full        uint64 // datagrams of new flows dropped: MaxInFlight requests held
	PendingFull uint64 // datagrams dropped: their request held PendingDatagrams
	InFlight    int    // requests held now
}

// NewForwarder installs a Forwarder on s, which must run a pipeline with
// transport.udp. A stack has at most one.
func NewForwarder(s *pipeline.Stack, cfg ForwarderConfig) (*Forwarder, error) {
	t, err := socketTable(s, "udp")
	if err != nil {
		return nil, err
	}
	f := &Forwarder{t: t, s: s, maxInFlight: cfg.MaxInFlight, maxDatagram: cfg.PendingDatagrams}
	if f.maxInFlight <= 0 {
		f.maxInFlight = DefaultMaxInFlight
	}
	f.q.Init(f.maxInFlight, ErrForwarderClosed)
	if f.maxDatagram <= 0 {
		f.maxDatagram = DefaultPendingDatagrams
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return nil, errors.New("stack is closed")
	case t.fwd != nil:
		return nil, errors.New("the stack has a UDP forwarder already")
	}
	t.fwd = f
	return f, nil
}

// ErrForwarderClosed is what Next returns once the Forwarder is closed.
var ErrForwarderClosed = errors.New("udp forwarder closed")

// Next waits for the next request (the oldest first), or fails once ctx
// is done or the Forwarder is closed. Every request it returns must be
// answered (Accept, Reject or Drop): until then it holds a slot and its
// datagrams.
func (f *Forwarder) Next(ctx context.Context) (*ForwarderRequest, error) {
	return f.q.Next(ctx)
}

// Stats returns the Forwarder's counts.
func (f *Forwarder) Stats() ForwarderStats {
	return ForwarderStats{Requests: f.requests.Load(), Full: f.full.Load(), PendingFull: f.pendingFull.Load(), InFlight: f.q.Len()}
}

// Close removes the Forwarder: datagrams for no socket are answered with
// port unreachable again, the requests still queued are dropped, Next
// returns ErrForwarderClosed. Requests handed out stay valid; accepted
// flows are not affected.
func (f *Forwarder) Close() error {
	f.t.mu.Lock()
	if f.t.fwd == f {
		f.t.fwd = nil
	}
	f.t.mu.Unlock()
	for _, r := range f.shut() {
		r.Drop()
	}
	return nil
}

// shut marks f closed and returns what its queue held.
func (f *Forwarder) shut() []*ForwarderRequest { return f.q.Shut() }

// take is the packet path's hand-off (Protocol.HandlePackets, for a
// datagram no socket takes; Data() at the UDP header, checksum checked).
// It reports whether it took ownership of pkt: a new request, a datagram
// joining its flow's request (or dropped over the bounds), or one for a
// flow accepted since the caller's lookup (queued on its socket). Called
// without the table's lock.
func (f *Forwarder) take(b *pipeline.Batch, pkt *pipeline.Packet, limit int) bool {
	src, dst, ok := addresses(pkt)
	if !ok || isBroadcast(b, pkt, dst) || !src.IsValid() || src.IsUnspecified() || src.IsMulticast() {
		return false
	}
	u := wire.UDP(pkt.Data())
	k := fourTuple{netip.AddrPortFrom(dst, u.DstPort()), netip.AddrPortFrom(src, u.SrcPort())}
	f.q.Lock()
	defer f.q.Unlock()
	if f.q.ClosedLocked() {
		return false
	}
	if r, ok := f.q.GetLocked(k); ok {
		if len(r.pkts) >= f.maxDatagram {
			f.pendingFull.Add(1)
			pkt.Release()
			return true
		}
		r.pkts = append(r.pkts, pkt.Compact())
		return true
	}
	// Accepted since the caller looked (Accept binds under f.q's lock).
	f.t.mu.RLock()
	ep := f.t.connected[k]
	f.t.mu.RUnlock()
	if ep != nil {
		pkt.Pull(wire.UDPHeaderSize)
		one := [1]*pipeline.Packet{pkt}
		f.t.c.delivered.Add(ep.enqueue(one[:], limit))
		return true
	}
	if f.q.FullLocked() {
		f.full.Add(1)
		f.t.c.noPort.Inc()
		pkt.Release()
		return true
	}
	r := &ForwarderRequest{f: f, local: k.local, remote: k.remote, limit: limit}
	r.pkts = append(r.first[:0], pkt.Compact())
	f.q.PushLocked(k, r)
	f.requests.Add(1)
	return true
}

// ForwarderRequest is one flow a Forwarder holds: datagrams from
// RemoteAddr to LocalAddr, its original destination. Answer it once, with
// Accept, Reject or Drop.
type ForwarderRequest struct {
	f             *Forwarder
	local, remote netip.AddrPort
	limit         int // the receive queue bound of the socket Accept makes
	// guarded by f.q's lock
	answered bool
	pkts     []*pipeline.Packet // the flow's datagrams (Data() at the UDP header)
	first    [1]*pipeline.Packet
}

// LocalAddr is the flow's destination.
func (r *ForwarderRequest) LocalAddr() netip.AddrPort { return r.local }

// RemoteAddr is the flow's source.
func (r *ForwarderRequest) RemoteAddr() netip.AddrPort { return r.remote }

// answer claims the request and frees its slot; it returns the datagrams
// it held (nil, false when it was answered before). Called with f.q's lock
// held.
func (r *ForwarderRequest) answerLocked() ([]*pipeline.Packet, bool) {
	if r.answered {
		return nil, false
	}
	r.answered = true
	r.f.q.ReleaseLocked(fourTuple{r.local, r.remote}, r)
	p := r.pkts
	r.pkts = nil
	return p, true
}

func (r *ForwarderRequest) answer() ([]*pipeline.Packet, bool) {
	r.f.q.Lock()
	defer r.f.q.Unlock()
	return r.answerLocked()
}

// Drop discards the request's datagrams; nothing is sent.
func (r *ForwarderRequest) Drop() {
	pkts, _ := r.answer()
	for _, p := range pkts {
		p.Release()
	}
}

// Reject answers the request's first datagram with ICMP port unreachable,
// from the original destination, and discards the rest.
func (r *ForwarderRequest) Reject() {
	pkts, ok := r.answer()
	if !ok || len(pkts) == 0 {
		return
	}
	for _, p := range pkts[1:] {
		p.Release()
	}
	first := pkts[0]
	if !r.f.s.Do(func(b *pipeline.Batch) {
		ne := b.Gen.NetworkEndpoint(first.InNIC, first.NetProto)
		if ne == nil {
			first.Release()
			return
		}
		r.f.t.c.noPort.Inc()
		ne.ReturnError(b, first, pipeline.ErrorPortUnreachable)
	}) {
		first.Release()
	}
}

// Accept makes the flow's socket: a connected *Conn bound to the original
// destination (LocalAddr) and connected to the flow's source
// (RemoteAddr), holding the datagrams the request held. It fails when the
// request was answered before.
func (r *ForwarderRequest) Accept() (*Conn, error) {
	network := "udp4"
	if r.local.Addr().Is6() {
		network = "udp6"
	}
	f := r.f
	e := newEndpoint(f.t)
	f.q.Lock()
	if r.answered {
		f.q.Unlock()
		return nil, &net.OpError{Op: "accept", Net: network, Source: net.UDPAddrFromAddrPort(r.local),
			Addr: net.UDPAddrFromAddrPort(r.remote), Err: errors.New("the request was answered already")}
	}
	err := f.t.bindFlow(e, r.local, r.remote)
	pkts, _ := r.answerLocked()
	if err == nil {
		for _, p := range pkts {
			p.Pull(wire.UDPHeaderSize)
		}
		f.t.c.delivered.Add(e.enqueue(pkts, r.limit))
	}
	f.q.Unlock()
	if err != nil {
		for _, p := range pkts {
			p.Release()
		}
		return nil, &net.OpError{Op: "accept", Net: network, Source: net.UDPAddrFromAddrPort(r.local),
			Addr: net.UDPAddrFromAddrPort(r.remote), Err: os.NewSyscallError("bind", err)}
	}
	return &Conn{s: f.s, ep: e, network: network}, nil
}

// bindFlow registers e as the socket of one flow, local ↔ remote: only
// that 4-tuple must be free (many flows share a destination).
func (t *table) bindFlow(e *endpoint, local, remote netip.AddrPort) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("stack is closed")
	}
	k := fourTuple{local, remote}
	if t.connected[k] != nil {
		return errAddrInUse
	}
	e.local, e.remote = local, remote
	t.ports[local.Port()] = append(t.ports[local.Port()], e)
	t.connected[k] = e
	return nil
}
