package arp

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Protocol is ARP's protocol object, one per generation. It is both the
// network protocol for EtherType 0x0806 and the stack's
// LinkAddressResolver for IPv4.
type Protocol struct {
	pool       *pipeline.Pool
	stack      *pipeline.Stack
	clock      pipeline.Clock
	nud        pipeline.NUDConfigurations
	proxy      []netip.Prefix
	gratuitous bool
	announced  *announced

	c counters
}

type counters struct {
	rx, requestsIn, repliesIn, repliesOut, proxyRepliesOut, requestsOut, gratuitousOut *pipeline.Counter
	tooShort, badFormat, unknownOp, martian, duplicate, looped, notOurs, notEthernet   *pipeline.Counter
	noSource, unresolvable                                                             *pipeline.Counter
}

// announced remembers, across generations (ctx.Shared), which addresses each
// link has announced, so that a reload announces only new ones.
type announced struct {
	mu sync.Mutex
	m  map[announceKey][]netip.Addr
}

type announceKey struct {
	nic pipeline.NICID
	mac wire.MAC
}

func newProtocol(ctx *pipeline.Context, nud pipeline.NUDConfigurations, proxy []netip.Prefix, gratuitous bool) *Protocol {
	p := &Protocol{pool: ctx.Pool, stack: ctx.Stack(), clock: ctx.Clock, nud: nud, proxy: proxy, gratuitous: gratuitous}
	p.announced = ctx.Shared("network.arp/announced", func() any {
		return &announced{m: map[announceKey][]netip.Addr{}}
	}).(*announced)
	cs := ctx.Counters("arp")
	c := &p.c
	c.rx, c.requestsIn, c.repliesIn = cs.Get("rx"), cs.Get("requests_in"), cs.Get("replies_in")
	c.repliesOut, c.proxyRepliesOut = cs.Get("replies_out"), cs.Get("proxy_replies_out")
	c.requestsOut, c.gratuitousOut = cs.Get("requests_out"), cs.Get("gratuitous_out")
	c.tooShort, c.badFormat = cs.Get("malformed_"+wire.ErrTooShort.Reason()), cs.Get("malformed_"+wire.ErrBadARPFormat.Reason())
	c.unknownOp, c.martian, c.duplicate = cs.Get("unknown_opcode"), cs.Get("martian"), cs.Get("duplicate_address")
	c.looped, c.notOurs, c.notEthernet = cs.Get("looped"), cs.Get("not_ours"), cs.Get("not_ethernet")
	c.noSource, c.unresolvable = cs.Get("no_source_address"), cs.Get("unresolvable")
	return p
}

// Number implements pipeline.NetworkProtocol.
func (p *Protocol) Number() pipeline.NetworkProtocolNumber { return pipeline.ARPProtocolNumber }

// NewEndpoint implements pipeline.NetworkProtocol. On an Ethernet link with
// IPv4 addresses it schedules the gratuitous announcements of the addresses
// the link has not announced yet; they leave once this generation runs.
func (p *Protocol) NewEndpoint(nic pipeline.NetworkInterface) pipeline.NetworkEndpoint {
	e := &endpoint{p: p, nic: nic}
	if p.gratuitous && p.stack != nil && resolving(nic) && len(nic.Addresses(4)) > 0 {
		e.mu.Lock()
		e.timer = p.clock.AfterFunc(0, e.announce)
		e.mu.Unlock()
	}
	return e
}

// resolving reports whether ARP runs on a link: one that needs link
// addresses and has one.
func resolving(nic pipeline.NetworkInterface) bool {
	return nic.Capabilities()&pipeline.CapResolutionRequired != 0 && !nic.LinkAddress().IsZero()
}

// NUDConfigurations implements pipeline.LinkAddressResolver.
func (p *Protocol) NUDConfigurations() pipeline.NUDConfigurations { return p.nud }

// ResolvesFor implements pipeline.LinkAddressResolver.
func (p *Protocol) ResolvesFor() pipeline.NetworkProtocolNumber { return pipeline.IPv4ProtocolNumber }

// ResolveLinkAddress implements pipeline.LinkAddressResolver: broadcast and
// multicast next hops map to their link addresses (RFC 1112 §6.4); others
// wait in the neighbor table while it resolves them.
func (p *Protocol) ResolveLinkAddress(b *pipeline.Batch, nic pipeline.NetworkInterface, pkt *pipeline.Packet) {
	nh := pkt.NextHop
	if !nh.Is4() || !resolving(nic) {
		b.Drop(pkt, p.c.unresolvable)
		return
	}
	a := nh.As4()
	switch {
	case a == [4]byte{255, 255, 255, 255} || subnetBroadcast(nic, a):
		pkt.SetRemoteLinkAddr(wire.BroadcastMAC)
		b.Output(pkt)
	case a[0] >= 224 && a[0] < 240:
		pkt.SetRemoteLinkAddr(wire.MAC{0x01, 0x00, 0x5e, a[1] & 0x7f, a[2], a[3]})
		b.Output(pkt)
	case a[0] == 0 || a[0] == 127 || a[0] >= 240:
		b.Drop(pkt, p.c.unresolvable)
	default:
		t := b.Gen.Neighbors(nic.ID())
		if t == nil {
			b.Drop(pkt, p.c.unresolvable)
			return
		}
		t.QueuePacket(b, pkt)
	}
}

func subnetBroadcast(nic pipeline.NetworkInterface, a [4]byte) bool {
	for _, ai := range nic.Addresses(4) {
		if bits := ai.Prefix.Bits(); bits < 31 {
			n := ai.Prefix.Masked().Addr().As4()
			bc := (uint32(n[0])<<24 | uint32(n[1])<<16 | uint32(n[2])<<8 | uint32(n[3])) | ^uint32(0)>>bits
			if bc == uint32(a[0])<<24|uint32(a[1])<<16|uint32(a[2])<<8|uint32(a[3]) {
				return true
			}
		}
	}
	return false
}

// LinkAddressRequest implements pipeline.LinkAddressResolver: a request
// for addr, broadcast (remote zero) or unicast to remote, from the link's
// address in addr's subnet (else its primary address).
func (p *Protocol) LinkAddressRequest(b *pipeline.Batch, nic pipeline.NetworkInterface, addr netip.Addr, remote wire.MAC) bool {
	if !addr.Is4() || !resolving(nic) {
		return false
	}
	src, ok := sourceFor(nic, addr)
	if !ok {
		p.c.noSource.Inc()
		return false
	}
	dst := remote
	if dst.IsZero() {
		dst = wire.BroadcastMAC
	}
	p.send(b, nic, &wire.ARPFields{Op: wire.ARPRequest, SenderMAC: nic.LinkAddress(), SenderIP: src, TargetIP: addr.As4()}, dst)
	p.c.requestsOut.Inc()
	return true
}

func sourceFor(nic pipeline.NetworkInterface, addr netip.Addr) ([4]byte, bool) {
	for _, a := range nic.Addresses(4) {
		if a.Kind != pipeline.PermanentTentative && a.Prefix.Contains(addr) {
			return a.Prefix.Addr().As4(), true
		}
	}
	if pr, ok := nic.PrimaryAddress(4); ok {
		return pr.Addr().As4(), true
	}
	return [4]byte{}, false
}

// send builds an ARP packet and outputs it to dst through nic.
func (p *Protocol) send(b *pipeline.Batch, nic pipeline.NetworkInterface, f *wire.ARPFields, dst wire.MAC) {
	pkt := p.pool.Get(wire.ARPSize)
	body, _ := pkt.Append(wire.ARPSize)
	wire.ARP(body).Encode(f)
	pkt.SetNetworkHeader()
	pkt.NetProto = pipeline.ARPProtocolNumber
	pkt.OutNIC = nic.ID()
	pkt.SetRemoteLinkAddr(dst)
	b.Output(pkt)
}

// endpoint is ARP on one NIC.
type endpoint struct {
	p      *Protocol
	nic    pipeline.NetworkInterface
	closed atomic.Bool

	mu    sync.Mutex
	timer pipeline.Timer // gratuitous announcements
	tries int
}

// Close implements pipeline.NetworkEndpoint.
func (e *endpoint) Close() {
	e.closed.Store(true)
	e.mu.Lock()
	if e.timer != nil {
		e.timer.Stop()
	}
	e.mu.Unlock()
}

// announceRetry and announceTries bound how long an endpoint waits for its
// generation to be swapped in before it gives up announcing.
const (
	announceRetry = 10 * time.Millisecond
	announceTries = 500
)

// announce runs on the clock: once the endpoint's generation is the
// running one, it announces the link's addresses not announced before.
func (e *endpoint) announce() {
	if e.closed.Load() {
		return
	}
	running := false
	e.p.stack.Do(func(b *pipeline.Batch) {
		if b.Gen.NetworkEndpoint(e.nic.ID(), pipeline.ARPProtocolNumber) != pipeline.NetworkEndpoint(e) {
			return
		}
		running = true
		e.announceNew(b)
	})
	if running {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tries++; e.tries < announceTries && !e.closed.Load() {
		e.timer.Reset(announceRetry)
	}
}

// announceNew sends one gratuitous ARP per address of the link that was not
// announced before: a broadcast request with sender IP = target IP and a
// zero target MAC (an RFC 5227 announcement, what Linux sends when an
// address comes up), which updates every neighbor that has an entry for us
// and answers nothing. The link's announced set becomes its current
// addresses, so an address removed and added again is announced again.
func (e *endpoint) announceNew(b *pipeline.Batch) {
	key := announceKey{nic: e.nic.ID(), mac: e.nic.LinkAddress()}
	var cur []netip.Addr
	for _, a := range e.nic.Addresses(4) {
		if a.Kind != pipeline.PermanentTentative {
			cur = append(cur, a.Prefix.Addr())
		}
	}
	an := e.p.announced
	an.mu.Lock()
	prev := an.m[key]
	an.m[key] = cur
	an.mu.Unlock()
	for _, a := range cur {
		seen := false
		for _, q := range prev {
			seen = seen || q == a
		}
		if seen {
			continue
		}
		ip := a.As4()
		e.p.send(b, e.nic, &wire.ARPFields{Op: wire.ARPRequest, SenderMAC: key.mac, SenderIP: ip, TargetIP: ip}, wire.BroadcastMAC)
		e.p.c.gratuitousOut.Inc()
	}
}

// HandlePackets implements pipeline.NetworkEndpoint.
func (e *endpoint) HandlePackets(b *pipeline.Batch, pkts []*pipeline.Packet) {
	var n uint64
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		pkts[i] = nil
		n++
		e.handle(b, pkt)
	}
	e.p.c.rx.Add(n)
}

// handle processes one ARP packet and takes ownership of it.
func (e *endpoint) handle(b *pipeline.Batch, pkt *pipeline.Packet) {
	c := &e.p.c
	if !resolving(e.nic) {
		b.Drop(pkt, c.notEthernet)
		return
	}
	a := wire.ARP(pkt.Data())
	if err := a.Check(); err != nil {
		if err == wire.ErrBadARPFormat {
			b.Drop(pkt, c.badFormat)
		} else {
			b.Drop(pkt, c.tooShort)
		}
		return
	}
	op := a.Op()
	if op != wire.ARPRequest && op != wire.ARPReply {
		b.Drop(pkt, c.unknownOp)
		return
	}
	own := e.nic.LinkAddress()
	sha, sip, tip := a.SenderMAC(), a.SenderIP(), a.TargetIP()
	switch {
	case sha == own:
		b.Drop(pkt, c.looped) // our own frame, reflected
		return
	case sha.IsZero() || sha.IsMulticast(), martianSender(sip, op), tip[0] == 127 || tip[0] >= 224:
		b.Drop(pkt, c.martian)
		return
	}
	if sip != [4]byte{} {
		if _, bcast, local := b.Gen.IsLocal4(sip); local {
			if bcast {
				b.Drop(pkt, c.martian)
			} else {
				// Someone else claims one of our addresses.
				b.Drop(pkt, c.duplicate)
			}
			return
		}
	}
	t := b.Gen.Neighbors(e.nic.ID())
	if t == nil {
		b.Drop(pkt, c.notEthernet)
		return
	}
	sender := netip.AddrFrom4(sip)
	if op == wire.ARPReply {
		c.repliesIn.Inc()
		if sip != [4]byte{} {
			// Solicited when unicast to us (Linux: REACHABLE), else
			// it only refreshes an entry we have.
			t.HandleConfirmation(b, sender, sha, pipeline.ReachabilityConfirmationFlags{
				Solicited: pkt.PktType == pipeline.PacketHost, Override: true,
			})
		}
		pkt.Release()
		return
	}
	c.requestsIn.Inc()
	if e.ours(tip) {
		if sip != [4]byte{} && e.onLink(sender) {
			t.HandleProbe(b, sender, sha)
		}
		e.reply(b, pkt, a, tip)
		c.repliesOut.Inc()
		return
	}
	if sip != [4]byte{} {
		// A request for someone else (a gratuitous one included) refreshes
		// the sender's entry if we have one, as Linux does.
		t.HandleConfirmation(b, sender, sha, pipeline.ReachabilityConfirmationFlags{Override: true})
	}
	if e.proxies(b, sip, tip) {
		e.reply(b, pkt, a, tip)
		c.proxyRepliesOut.Inc()
		return
	}
	c.notOurs.Inc()
	pkt.Release()
}

// martianSender: a sender address no neighbor may use (RFC 1812 §5.3.7);
// 0.0.0.0 only in a request (an RFC 5227 probe).
func martianSender(ip [4]byte, op uint16) bool {
	switch {
	case ip == [4]byte{}:
		return op != wire.ARPRequest
	case ip[0] == 0, ip[0] == 127, ip[0] >= 224:
		return true
	}
	return false
}

// ours reports whether ip is an address of the endpoint's own link. Only
// those are answered (like Linux with arp_ignore=1): a request on one link
// for an address of another is not.
func (e *endpoint) ours(ip [4]byte) bool {
	for _, a := range e.nic.Addresses(4) {
		if a.Kind != pipeline.PermanentTentative && a.Prefix.Addr().As4() == ip {
			return true
		}
	}
	return false
}

// onLink reports whether ip lies in a subnet of the link: only such
// senders get an entry from their requests.
func (e *endpoint) onLink(ip netip.Addr) bool {
	for _, a := range e.nic.Addresses(4) {
		if a.Prefix.Contains(ip) {
			return true
		}
	}
	return false
}

// proxies reports whether the module answers for tip on behalf of another
// link: tip lies in a proxy prefix, the route to it leaves through another
// link, and the request is not the sender announcing itself.
func (e *endpoint) proxies(b *pipeline.Batch, sip, tip [4]byte) bool {
	if len(e.p.proxy) == 0 || sip == tip {
		return false
	}
	dst := netip.AddrFrom4(tip)
	in := false
	for _, pr := range e.p.proxy {
		in = in || pr.Contains(dst)
	}
	if !in {
		return false
	}
	r := b.Gen.Routes().Lookup4(tip)
	return r != nil && r.NIC != e.nic.ID()
}

// reply turns the request in pkt into the reply for spa, in place, and
// sends it to the asker. It takes ownership of pkt.
func (e *endpoint) reply(b *pipeline.Batch, pkt *pipeline.Packet, a wire.ARP, spa [4]byte) {
	sha, sip := a.SenderMAC(), a.SenderIP()
	a.SetOp(wire.ARPReply)
	a.SetTargetMAC(sha)
	a.SetTargetIP(sip)
	a.SetSenderMAC(e.nic.LinkAddress())
	a.SetSenderIP(spa)
	pkt.Truncate(wire.ARPSize) // drop the Ethernet padding
	pkt.OutNIC = e.nic.ID()
	pkt.NetProto = pipeline.ARPProtocolNumber
	pkt.SetRemoteLinkAddr(sha)
	b.Output(pkt)
}

// WritePackets implements pipeline.NetworkEndpoint: ARP carries no
// transport, so there is nothing to write.
func (e *endpoint) WritePackets(b *pipeline.Batch, _ pipeline.RouteInfo, _ pipeline.NetworkHeaderParams, pkts []*pipeline.Packet) {
	for i, pkt := range pkts {
		if pkt != nil {
			pkts[i] = nil
			b.Drop(pkt, e.p.c.unresolvable)
		}
	}
}

// ReturnError implements pipeline.NetworkEndpoint: ARP reports no errors.
func (e *endpoint) ReturnError(_ *pipeline.Batch, pkt *pipeline.Packet, _ pipeline.TransportErrorKind) {
	pkt.Release()
}

var (
	_ pipeline.NetworkProtocol     = (*Protocol)(nil)
	_ pipeline.LinkAddressResolver = (*Protocol)(nil)
	_ pipeline.NetworkEndpoint     = (*endpoint)(nil)
)
