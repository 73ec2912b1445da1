package udp

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/pipestack/pipestack/pipeline"
)

// sharedKey is the stack-shared key of the socket table.
const sharedKey = "transport.udp/endpoints"

// Ephemeral ports (Linux's default ip_local_port_range).
const (
	ephemeralFirst = 32768
	ephemeralLast  = 60999
)

// fourTuple keys connected sockets.
type fourTuple struct {
	local, remote netip.AddrPort
}

// table is a stack's UDP socket table. It outlives generations (it is a
// Stack.Shared object) and is closed with the stack.
//
// Locking: the packet path takes mu for reading once per batch; binding and
// closing take it for writing. Keys are comparable structs of netip values
// (no 4-byte addresses hard-wired), so a lookup hashes without allocating.
type table struct {
	c    *counters
	rand *pipeline.Rand // the stack's (nil: the runtime's); set by the module

	mu        sync.RWMutex
	connected map[fourTuple]*endpoint      // connected sockets
	bound     map[netip.AddrPort]*endpoint // bound to one local address
	wildcard  map[uint16]*endpoint         // bound to the wildcard address
	ports     map[uint16][]*endpoint       // every socket by local port
	closed    bool
	fwd       *Forwarder // takes datagrams no socket takes (forwarder.go)
}

func newTable(c *counters) *table {
	return &table{
		c:         c,
		connected: map[fourTuple]*endpoint{},
		bound:     map[netip.AddrPort]*endpoint{},
		wildcard:  map[uint16]*endpoint{},
		ports:     map[uint16][]*endpoint{},
	}
}

// lookup finds the socket a datagram src:sport → dst:dport goes to:
// connected 4-tuple, then bound local address and port, then wildcard
// port. Called with mu held for reading.
func (t *table) lookup(dst netip.Addr, dport uint16, src netip.Addr, sport uint16) *endpoint {
	local := netip.AddrPortFrom(dst, dport)
	if len(t.connected) > 0 {
		if e := t.connected[fourTuple{local, netip.AddrPortFrom(src, sport)}]; e != nil {
			return e
		}
	}
	if len(t.bound) > 0 {
		if e := t.bound[local]; e != nil {
			return e
		}
	}
	return t.wildcard[dport]
}

// errAddrInUse is returned for a binding that conflicts with another.
var errAddrInUse = syscall.EADDRINUSE

// conflicts tells whether a socket bound to addr (invalid: wildcard) on a
// port would overlap with e's binding. Without SO_REUSEADDR two sockets may
// share a port only when both are bound to different specific addresses.
func conflicts(e *endpoint, addr netip.Addr) bool {
	return !e.local.Addr().IsValid() || !addr.IsValid() || e.local.Addr() == addr
}

// bind registers e under its local address (port 0: an ephemeral port is
// chosen) and, when remote is valid, as connected to remote. It sets
// e.local and e.remote.
func (t *table) bind(e *endpoint, local, remote netip.AddrPort) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("stack is closed")
	}
	port := local.Port()
	if port == 0 {
		var ok bool
		if port, ok = t.ephemeral(local.Addr()); !ok {
			return errAddrInUse
		}
	} else {
		for _, o := range t.ports[port] {
			if conflicts(o, local.Addr()) {
				return errAddrInUse
			}
		}
	}
	e.local = netip.AddrPortFrom(local.Addr(), port)
	e.remote = remote
	t.ports[port] = append(t.ports[port], e)
	switch {
	case remote.IsValid():
		t.connected[fourTuple{e.local, remote}] = e
	case local.Addr().IsValid():
		t.bound[e.local] = e
	default:
		t.wildcard[port] = e
	}
	return nil
}

// ephemeral picks a free port for addr in the ephemeral range, starting at
// a random place. Called with mu held.
func (t *table) ephemeral(addr netip.Addr) (uint16, bool) {
	const n = ephemeralLast - ephemeralFirst + 1
	start := t.rand.IntN(n)
next:
	for i := 0; i < n; i++ {
		port := uint16(ephemeralFirst + (start+i)%n)
		for _, o := range t.ports[port] {
			if conflicts(o, addr) {
				continue next
			}
		}
		return port, true
	}
	return 0, false
}

// remove unregisters e. After it returns no batch can reach e.
func (t *table) remove(e *endpoint) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeLocked(e)
}

func (t *table) removeLocked(e *endpoint) {
	port := e.local.Port()
	list := t.ports[port]
	for i, o := range list {
		if o == e {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(t.ports, port)
	} else {
		t.ports[port] = list
	}
	switch {
	case e.remote.IsValid():
		if t.connected[fourTuple{e.local, e.remote}] == e {
			delete(t.connected, fourTuple{e.local, e.remote})
		}
	case e.local.Addr().IsValid():
		if t.bound[e.local] == e {
			delete(t.bound, e.local)
		}
	default:
		if t.wildcard[port] == e {
			delete(t.wildcard, port)
		}
	}
}

// Close closes every socket (their readers get net.ErrClosed): the stack
// calls it when it closes.
func (t *table) Close() error {
	t.mu.Lock()
	t.closed = true
	var all []*endpoint
	for _, list := range t.ports {
		all = append(all, list...)
	}
	for _, e := range all {
		t.removeLocked(e)
	}
	f := t.fwd
	t.fwd = nil
	t.mu.Unlock()
	if f != nil {
		for _, r := range f.shut() {
			r.Drop()
		}
	}
	for _, e := range all {
		e.shut()
	}
	return nil
}

// endpoint is one socket: its binding and its receive queue.
//
// The queue holds the received packets themselves (Data() at the payload,
// network and transport headers still marked), each compacted into a small
// buffer when its data fits one (Packet.Compact): the payload is copied out
// and the packet released when the application reads it, so receiving
// allocates nothing once the ring has grown to its working size.
type endpoint struct {
	t             *table
	local, remote netip.AddrPort // set by bind, then fixed

	mu     sync.Mutex
	ring   []*pipeline.Packet
	head   int
	n      int
	closed bool
	// softErr is an error reported by the network layer (ICMP) for a
	// connected socket, returned by the next read (as Linux does).
	softErr error

	notify chan struct{} // a datagram was queued (capacity 1)
	done   chan struct{} // closed when the socket closes
	shutMu sync.Once

	dropped atomic.Uint64 // datagrams dropped on a full queue
}

func newEndpoint(t *table) *endpoint {
	return &endpoint{t: t, notify: make(chan struct{}, 1), done: make(chan struct{})}
}

// ID is the endpoint's binding.
func (e *endpoint) ID() pipeline.TransportEndpointID {
	return pipeline.TransportEndpointID{
		LocalPort: e.local.Port(), LocalAddress: e.local.Addr(),
		RemotePort: e.remote.Port(), RemoteAddress: e.remote.Addr(),
	}
}

// HandlePackets implements pipeline.TransportEndpoint: packets (Data() at
// the UDP payload) are queued with the receive_queue of the batch's
// generation. The protocol calls enqueue directly.
func (e *endpoint) HandlePackets(b *pipeline.Batch, _ pipeline.TransportEndpointID, pkts []*pipeline.Packet) {
	limit := DefaultReceiveQueue
	if p, ok := b.TransportProtocol(pipeline.UDPProtocolNumber).(*Protocol); ok {
		limit = p.receiveQueue
	}
	n := e.enqueue(pkts, limit)
	e.t.c.delivered.Add(n)
}

// enqueue queues the non-nil packets of pkts, at most limit in all, and
// takes ownership of every one (the slots become nil); packets over the
// limit, or for a closed socket, are dropped and counted. It returns how
// many were queued.
func (e *endpoint) enqueue(pkts []*pipeline.Packet, limit int) uint64 {
	var queued, full uint64
	e.mu.Lock()
	wasEmpty := e.n == 0
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		pkts[i] = nil
		if e.closed {
			pkt.Release()
			continue
		}
		if e.n >= limit {
			full++
			pkt.Release()
			continue
		}
		if e.n == len(e.ring) {
			e.grow(limit)
		}
		// A datagram a link read into a large buffer (TUN with offloads
		// reads everything into 64 KiB) is copied into a small one: the
		// queue then holds what it stores, not 64 KiB per datagram.
		e.ring[(e.head+e.n)%len(e.ring)] = pkt.Compact()
		e.n++
		queued++
	}
	e.mu.Unlock()
	if full > 0 {
		e.t.c.receiveQFull.Add(full)
		e.dropped.Add(full)
	}
	if queued > 0 && wasEmpty {
		e.wake()
	}
	return queued
}

// grow enlarges the ring (doubling, up to limit). Called with mu held.
func (e *endpoint) grow(limit int) {
	size := max(2*len(e.ring), 8)
	if size > limit {
		size = max(limit, e.n+1)
	}
	ring := make([]*pipeline.Packet, size)
	for i := 0; i < e.n; i++ {
		ring[i] = e.ring[(e.head+i)%len(e.ring)]
	}
	e.ring, e.head = ring, 0
}

// wake lets one waiting reader know that the queue is not empty.
func (e *endpoint) wake() {
	select {
	case e.notify <- struct{}{}:
	default:
	}
}

// dequeue takes the oldest queued packet. It returns nil and the reason
// when there is none: closed, a pending soft error, or nothing (nil).
func (e *endpoint) dequeue() (*pipeline.Packet, error) {
	e.mu.Lock()
	if e.softErr != nil {
		err := e.softErr
		e.softErr = nil
		e.mu.Unlock()
		return nil, err
	}
	if e.n == 0 {
		closed := e.closed
		e.mu.Unlock()
		if closed {
			return nil, errClosed
		}
		return nil, nil
	}
	pkt := e.ring[e.head]
	e.ring[e.head] = nil
	e.head = (e.head + 1) % len(e.ring)
	e.n--
	more := e.n > 0
	e.mu.Unlock()
	if more {
		e.wake() // another reader may be waiting
	}
	return pkt, nil
}

// errClosed is dequeue's marker for a closed socket.
var errClosed = errors.New("closed")

// HandleError implements pipeline.TransportEndpoint: an ICMP error about a
// datagram this socket sent. A connected socket reports it on its next read
// (ECONNREFUSED for port unreachable, EMSGSIZE for a datagram over the path
// MTU — the network layer has lowered it: the next ones are fragmented to
// fit —, as Linux does with its default IP_PMTUDISC_WANT); others ignore it.
func (e *endpoint) HandleError(kind pipeline.TransportErrorKind, info uint32, pkt *pipeline.Packet) {
	if pkt != nil {
		pkt.Release()
	}
	if !e.remote.IsValid() {
		return
	}
	var err error
	switch kind {
	case pipeline.ErrorPortUnreachable, pipeline.ErrorProtocolUnreachable:
		err = syscall.ECONNREFUSED
	case pipeline.ErrorNetUnreachable:
		err = syscall.ENETUNREACH
	case pipeline.ErrorHostUnreachable:
		err = syscall.EHOSTUNREACH
	case pipeline.ErrorPacketTooBig:
		err = syscall.EMSGSIZE
	default:
		return
	}
	e.mu.Lock()
	e.softErr = err
	e.mu.Unlock()
	e.wake()
}

// Close implements pipeline.TransportEndpoint: it unregisters the socket,
// releases what it queued and unblocks its readers.
func (e *endpoint) Close() error {
	e.t.remove(e)
	e.shut()
	return nil
}

// shut marks the endpoint closed, releases its queue and wakes every reader.
func (e *endpoint) shut() {
	e.shutMu.Do(func() {
		e.mu.Lock()
		e.closed = true
		for e.n > 0 {
			e.ring[e.head].Release()
			e.ring[e.head] = nil
			e.head = (e.head + 1) % len(e.ring)
			e.n--
		}
		e.mu.Unlock()
		close(e.done)
	})
}

var _ pipeline.TransportEndpoint = (*endpoint)(nil)
