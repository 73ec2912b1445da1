package udp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/pipestack/pipestack/modules/internal/deadline"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Conn is a UDP socket on a pipestack stack. It implements net.PacketConn
// and, when made by Dial (connected), net.Conn. Addresses are
// *net.UDPAddr; the AddrPort variants avoid allocating one per datagram.
// A Conn is safe for concurrent use.
type Conn struct {
	s       *pipeline.Stack
	ep      *endpoint
	network string
	closed  atomic.Bool

	rd, wd deadline.Deadline

	wmu  sync.Mutex
	wbuf [1]*pipeline.Packet // the batch handed to WritePackets, under wmu
}

// ListenPacket opens an unconnected socket on s bound to address
// ("10.0.1.2:9000", "[2001:db8::1]:9000", ":9000", ":0" for an ephemeral
// port; IP literals only, no name resolution). network is "udp" (either
// family; a wildcard socket receives both, like Linux with IPV6_V6ONLY
// off), "udp4" or "udp6". s must run a pipeline that configures
// transport.udp (and network.ipv4 or network.ipv6).
func ListenPacket(s *pipeline.Stack, network, address string) (*Conn, error) {
	op := func(err error) error {
		return &net.OpError{Op: "listen", Net: network, Addr: addrOrNil(address), Err: err}
	}
	t, err := socketTable(s, network)
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
	e := newEndpoint(t)
	if err := t.bind(e, local, netip.AddrPort{}); err != nil {
		return nil, op(os.NewSyscallError("bind", err))
	}
	return &Conn{s: s, ep: e, network: network}, nil
}

// Dial opens a socket on s connected to raddr: it sends there by default
// (Write) and receives only from there. laddr may be "" (source address
// chosen by the route, ephemeral port) or an address as for ListenPacket.
func Dial(s *pipeline.Stack, network, laddr, raddr string) (*Conn, error) {
	op := func(err error) error {
		return &net.OpError{Op: "dial", Net: network, Source: addrOrNil(laddr), Addr: addrOrNil(raddr), Err: err}
	}
	t, err := socketTable(s, network)
	if err != nil {
		return nil, op(err)
	}
	remote, err := parseAddr(network, raddr)
	if err != nil {
		return nil, op(err)
	}
	if !remote.Addr().IsValid() || remote.Port() == 0 {
		return nil, op(errors.New("remote address needs a host and a port"))
	}
	local := netip.AddrPortFrom(netip.Addr{}, 0)
	if laddr != "" {
		if local, err = parseAddr(network, laddr); err != nil {
			return nil, op(err)
		}
		if err := checkLocal(s, local.Addr()); err != nil {
			return nil, op(err)
		}
	}
	if !local.Addr().IsValid() {
		// Like connect(2): the route fixes the source address.
		src, err := sourceFor(s, remote.Addr())
		if err != nil {
			return nil, op(err)
		}
		local = netip.AddrPortFrom(src, local.Port())
	}
	e := newEndpoint(t)
	if err := t.bind(e, local, remote); err != nil {
		return nil, op(os.NewSyscallError("bind", err))
	}
	return &Conn{s: s, ep: e, network: network}, nil
}

// socketTable returns the UDP socket table of s, which must run
// transport.udp.
func socketTable(s *pipeline.Stack, network string) (*table, error) {
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, net.UnknownNetworkError(network)
	}
	g := s.Generation()
	if g == nil {
		return nil, errors.New("the stack runs no pipeline")
	}
	p, ok := g.TransportProtocol(pipeline.UDPProtocolNumber).(*Protocol)
	if !ok {
		return nil, errors.New("the pipeline configures no transport.udp")
	}
	return p.t, nil
}

// parseAddr parses "host:port" with an IP literal or empty host (the
// wildcard address, returned as the invalid netip.Addr).
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
			return netip.AddrPort{}, fmt.Errorf("%q is not an IP address (names are not resolved)", host)
		}
		if a.Is4In6() {
			a = a.Unmap()
		}
		if (network == "udp4" && !a.Is4()) || (network == "udp6" && !a.Is6()) {
			return netip.AddrPort{}, syscall.EAFNOSUPPORT
		}
		// A zone names the link of a link-local address; the stack
		// keeps addresses without zones (see zoneLink).
		if a.IsUnspecified() {
			a = netip.Addr{}
		}
	}
	return netip.AddrPortFrom(a, uint16(pn)), nil
}

// checkLocal refuses to bind to an address that is not the stack's (a
// unicast or broadcast address of a link) or a multicast address.
func checkLocal(s *pipeline.Stack, a netip.Addr) error {
	if !a.IsValid() || a.IsMulticast() {
		return nil
	}
	g := s.Generation()
	if g == nil {
		return errors.New("the stack runs no pipeline")
	}
	a = a.WithZone("")
	ok := false
	if a.Is4() {
		_, _, ok = g.IsLocal4(a.As4())
	} else {
		_, ok = g.IsLocal6(a.As16())
	}
	if !ok {
		return os.NewSyscallError("bind", syscall.EADDRNOTAVAIL)
	}
	return nil
}

// sourceFor returns the source address the stack uses towards dst: the
// primary address of the route's outgoing link.
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

// routeFor finds the outgoing NIC and next hop for dst: the routes
// (configured, or learnt by IPv6 from router advertisements), or, for an
// IPv6 link-local or multicast destination, the link its zone names
// ("fe80::1%lan"), unless it is one of the stack's own: then, as every
// address of the stack, through the loopback NIC.
func routeFor(g *pipeline.Generation, dst netip.Addr) (pipeline.NetworkInterface, netip.Addr, error) {
	if dst.Is6() && (dst.IsLinkLocalUnicast() || dst.IsMulticast()) && dst.Zone() != "" && !isOwn6(g, dst) {
		nic, ok := g.NICByName(dst.Zone())
		if !ok {
			return nil, netip.Addr{}, syscall.ENETUNREACH
		}
		return nic, dst.WithZone(""), nil
	}
	dst = dst.WithZone("")
	r := g.LookupRoute(dst)
	if r == nil {
		return nil, netip.Addr{}, syscall.ENETUNREACH
	}
	nic, ok := g.NIC(r.NIC)
	if !ok {
		return nil, netip.Addr{}, syscall.ENETUNREACH
	}
	return nic, r.NextHop(dst), nil
}

func isOwn6(g *pipeline.Generation, a netip.Addr) bool {
	_, own := g.IsLocal6(a.As16())
	return own
}

func addrOrNil(address string) net.Addr {
	if address == "" {
		return nil
	}
	if ap, err := netip.ParseAddrPort(address); err == nil {
		return net.UDPAddrFromAddrPort(ap)
	}
	return nil
}

// udpAddr turns a binding into a *net.UDPAddr (the wildcard as 0.0.0.0,
// or :: for a udp6 socket).
func udpAddr(ap netip.AddrPort, network string) *net.UDPAddr {
	a := ap.Addr()
	if !a.IsValid() {
		a = netip.IPv4Unspecified()
		if network == "udp6" {
			a = netip.IPv6Unspecified()
		}
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, ap.Port()))
}

// LocalAddr implements net.PacketConn: the bound address and port.
func (c *Conn) LocalAddr() net.Addr { return udpAddr(c.ep.local, c.network) }

// RemoteAddr implements net.Conn: the peer of a connected socket, nil
// otherwise.
func (c *Conn) RemoteAddr() net.Addr {
	if !c.ep.remote.IsValid() {
		return nil
	}
	return udpAddr(c.ep.remote, c.network)
}

// LocalAddrPort is LocalAddr as a netip.AddrPort (0.0.0.0, or :: for a
// udp6 socket, for the wildcard).
func (c *Conn) LocalAddrPort() netip.AddrPort {
	return udpAddr(c.ep.local, c.network).AddrPort()
}

func (c *Conn) opError(op string, addr net.Addr, err error) error {
	return &net.OpError{Op: op, Net: c.network, Source: c.LocalAddr(), Addr: addr, Err: err}
}

// ReadFromUDPAddrPort reads one datagram into p and returns its size and
// source. A datagram larger than p is truncated (the rest is discarded).
// It blocks until a datagram arrives, the read deadline passes (an error
// with Timeout() true, wrapping os.ErrDeadlineExceeded) or the socket is
// closed (net.ErrClosed). It does not allocate.
func (c *Conn) ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error) {
	pkt, err := c.readPacket()
	if err != nil {
		return 0, netip.AddrPort{}, c.opError("read", nil, err)
	}
	n := copy(p, pkt.Data())
	from := source(pkt)
	pkt.Release()
	return n, from, nil
}

// readPacket waits for the next queued packet.
func (c *Conn) readPacket() (*pipeline.Packet, error) {
	e := c.ep
	for {
		expired := c.rd.Channel()
		select {
		case <-expired:
			return nil, os.ErrDeadlineExceeded
		default:
		}
		pkt, err := e.dequeue()
		if pkt != nil {
			return pkt, nil
		}
		if err == errClosed {
			return nil, net.ErrClosed
		}
		if err != nil {
			return nil, err
		}
		select {
		case <-e.notify:
		case <-e.done:
		case <-expired:
			return nil, os.ErrDeadlineExceeded
		}
	}
}

// source reads a queued datagram's source from its headers.
func source(pkt *pipeline.Packet) netip.AddrPort {
	src, _, _ := addresses(pkt)
	th := pkt.TransportHeader()
	return netip.AddrPortFrom(src, binary.BigEndian.Uint16(th))
}

// ReadFrom implements net.PacketConn.
func (c *Conn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromUDPAddrPort(p)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// ReadFromUDP is ReadFrom with a *net.UDPAddr.
func (c *Conn) ReadFromUDP(p []byte) (int, *net.UDPAddr, error) {
	n, from, err := c.ReadFromUDPAddrPort(p)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// Read implements net.Conn: ReadFrom without the source.
func (c *Conn) Read(p []byte) (int, error) {
	n, _, err := c.ReadFromUDPAddrPort(p)
	return n, err
}

// WriteTo implements net.PacketConn. addr is a *net.UDPAddr, or any
// net.Addr whose String is "ip:port". On a connected socket it fails with
// net.ErrWriteToConnected.
func (c *Conn) WriteTo(p []byte, addr net.Addr) (int, error) {
	var to netip.AddrPort
	switch a := addr.(type) {
	case *net.UDPAddr:
		if a == nil {
			return 0, c.opError("write", nil, errors.New("nil address"))
		}
		to = a.AddrPort()
	case nil:
		return 0, c.opError("write", nil, syscall.EDESTADDRREQ)
	default:
		ap, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return 0, c.opError("write", addr, syscall.EINVAL)
		}
		to = ap
	}
	return c.WriteToUDPAddrPort(p, to)
}

// WriteToUDP is WriteTo with a *net.UDPAddr.
func (c *Conn) WriteToUDP(p []byte, addr *net.UDPAddr) (int, error) {
	if addr == nil {
		return 0, c.opError("write", nil, syscall.EDESTADDRREQ)
	}
	return c.WriteToUDPAddrPort(p, addr.AddrPort())
}

// WriteToUDPAddrPort sends p as one datagram to addr. It does not block
// (a full link drops and counts, as a kernel's does) and, after the first
// datagrams, does not allocate. Datagrams that do not fit the route's MTU
// fail with EMSGSIZE until the stack fragments.
func (c *Conn) WriteToUDPAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	if c.ep.remote.IsValid() {
		return 0, c.opError("write", net.UDPAddrFromAddrPort(addr), net.ErrWriteToConnected)
	}
	return c.write(p, addr)
}

// Write implements net.Conn: it sends p to the connected peer.
func (c *Conn) Write(p []byte) (int, error) {
	if !c.ep.remote.IsValid() {
		return 0, c.opError("write", nil, syscall.EDESTADDRREQ)
	}
	return c.write(p, c.ep.remote)
}

func (c *Conn) write(p []byte, to netip.AddrPort) (int, error) {
	if c.closed.Load() {
		return 0, c.opError("write", nil, net.ErrClosed)
	}
	select {
	case <-c.wd.Channel():
		return 0, c.opError("write", nil, os.ErrDeadlineExceeded)
	default:
	}
	if to.Addr().Is4In6() {
		to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	}
	if a := to.Addr(); !a.IsValid() || (c.network == "udp4" && !a.Is4()) || (c.network == "udp6" && !a.Is6()) {
		return 0, c.opError("write", net.UDPAddrFromAddrPort(to), syscall.EAFNOSUPPORT)
	}
	if to.Port() == 0 {
		return 0, c.opError("write", net.UDPAddrFromAddrPort(to), syscall.EINVAL)
	}
	var err error
	c.wmu.Lock()
	ran := c.s.Do(func(b *pipeline.Batch) { err = c.output(b, p, to) })
	c.wmu.Unlock()
	if !ran {
		err = errors.New("the stack runs no pipeline")
	}
	if err != nil {
		return 0, c.opError("write", net.UDPAddrFromAddrPort(to), err)
	}
	return len(p), nil
}

// maxPayload is the largest UDP payload: 65535 - IPv4 header - UDP header
// for IPv4; for IPv6, whose payload length does not count its 40-byte
// header, 65535 - UDP header. Datagrams larger than the path MTU are
// fragmented by the network layer, as Linux does for UDP without
// IP_PMTUDISC_DO.
func maxPayload(v6 bool) int {
	if v6 {
		return 0xffff - wire.UDPHeaderSize
	}
	return 0xffff - wire.IPv4MinimumSize - wire.UDPHeaderSize
}

// output builds the datagram into a pooled packet and hands it to the
// network endpoint of the route's NIC. Called in c.s.Do with c.wmu held.
func (c *Conn) output(b *pipeline.Batch, p []byte, to netip.AddrPort) error {
	nic, nextHop, err := routeFor(b.Gen, to.Addr())
	if err != nil {
		return err
	}
	dst := to.Addr().WithZone("")
	v6 := dst.Is6()
	netProto := pipeline.IPv4ProtocolNumber
	if v6 {
		netProto = pipeline.IPv6ProtocolNumber
	}
	ne := b.Gen.NetworkEndpoint(nic.ID(), netProto)
	if ne == nil {
		return syscall.ENETUNREACH
	}
	src := c.ep.local.Addr()
	if !src.IsValid() || src.IsMulticast() || src.Is6() != v6 {
		var ok bool
		if src, ok = nic.SourceAddress(dst); !ok {
			return syscall.EADDRNOTAVAIL
		}
	}
	mtu := nic.MTU()
	if len(p) > maxPayload(v6) {
		return syscall.EMSGSIZE
	}
	n := wire.UDPHeaderSize + len(p)
	pkt := c.s.Pool().Get(n)
	body, _ := pkt.Append(n)
	u := wire.UDP(body)
	u.Encode(&wire.UDPFields{SrcPort: c.ep.local.Port(), DstPort: to.Port(), Length: uint16(n)})
	copy(u[wire.UDPHeaderSize:], p)
	u.SetChecksum(u.CalculateChecksum(pseudoHeader(src, dst, uint16(n))))
	pkt.SetTransportHeader()
	ri := pipeline.RouteInfo{NIC: nic.ID(), LocalAddr: src, RemoteAddr: dst, NextHop: nextHop, MTU: mtu}
	c.wbuf[0] = pkt
	ne.WritePackets(b, ri, pipeline.NetworkHeaderParams{Protocol: pipeline.UDPProtocolNumber}, c.wbuf[:])
	c.wbuf[0] = nil
	c.ep.t.c.sent.Inc()
	return nil
}

// Close implements net.PacketConn: it unbinds the socket, drops what it
// queued and unblocks readers with net.ErrClosed. Closing twice fails
// with net.ErrClosed.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return c.opError("close", nil, net.ErrClosed)
	}
	c.ep.Close()
	c.rd.Stop()
	c.wd.Stop()
	return nil
}

// SetDeadline implements net.Conn: read and write deadlines at once.
func (c *Conn) SetDeadline(t time.Time) error {
	c.rd.Set(t)
	c.wd.Set(t)
	return nil
}

// SetReadDeadline implements net.Conn. It also applies to a read already
// blocked; the zero time means none.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rd.Set(t)
	return nil
}

// SetWriteDeadline implements net.Conn. Writes never block; a write after
// the deadline fails with a timeout.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wd.Set(t)
	return nil
}

var (
	_ net.PacketConn = (*Conn)(nil)
	_ net.Conn       = (*Conn)(nil)
)
