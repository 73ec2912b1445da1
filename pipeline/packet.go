package pipeline

import (
	"net/netip"
	"sync/atomic"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// Buffer geometry. Every pooled packet has DefaultHeadroom bytes in front of
// its data so that links and protocols push headers without copying.
const (
	// DefaultHeadroom is the space reserved in front of received or built
	// data: room for an Ethernet header, a virtio-net header and an
	// encapsulation.
	DefaultHeadroom = 128
	// SmallDataSize is the data capacity of a small buffer: a 1500-byte
	// MTU frame and then some.
	SmallDataSize = 2048 - DefaultHeadroom
	// LargeDataSize is the data capacity of a large buffer: a 64 KiB GSO
	// super-packet with its headers.
	LargeDataSize = 65536 + 256
)

// GSOType is the kind of a GSO super-packet (virtio-net header gso_type).
type GSOType uint8

const (
	GSONone GSOType = iota
	GSOTCPv4
	GSOTCPv6
	GSOUDPL4
)

// GSO is the offload metadata of a packet, as TUN IFF_VNET_HDR and AF_PACKET
// PACKET_VNET_HDR deliver it (struct virtio_net_hdr).
type GSO struct {
	Type GSOType
	// SegSize is the payload size of each segment (gso_size); MTU checks
	// on forwarding use it, not the super-packet's length.
	SegSize uint16
	// HdrLen is the length of the headers repeated in each segment.
	HdrLen uint16
	// NeedsCsum: the transport checksum is partial (VIRTIO_NET_HDR_F_NEEDS_CSUM);
	// CsumStart and CsumOffset locate it relative to the network header.
	NeedsCsum  bool
	CsumStart  uint16
	CsumOffset uint16
}

// Segments is how many wire packets the packet stands for (counters count
// segments).
func (g *GSO) Segments(payloadLen int) int {
	if g.Type == GSONone || g.SegSize == 0 || payloadLen <= 0 {
		return 1
	}
	return (payloadLen + int(g.SegSize) - 1) / int(g.SegSize)
}

// PacketType tells how a received frame was addressed.
type PacketType uint8

const (
	PacketHost PacketType = iota
	PacketBroadcast
	PacketMulticast
	PacketOtherHost
)

// Packet is one packet and its metadata. Its bytes live in one contiguous
// buffer with headroom in front:
//
//	buf: [ headroom | link hdr | network hdr | transport hdr | payload | tailroom ]
//	                ^head                                             ^tail
//
// Header offsets are absolute positions in buf, -1 when not set. A packet is
// owned by exactly one holder at a time (see registration.go); the holder
// ends it with Release, or hands it on.
//
// Shared buffers. Share gives a second handle to the same bytes — a
// Packet of its own (position, header marks, metadata), the buffer in
// common, freed when the last handle is released — so that a sender may
// keep data it has sent (TCP's retransmission queue) and hand the same
// bytes on without copying them. While a buffer is shared (Shared):
//
//   - the bytes of Data() at the time of Share are read-only for every
//     handle;
//   - the handle Share returned owns the headroom in front of them and the
//     tailroom behind: it may Push and write headers there, and Append;
//   - the handle that called Share writes nothing in the buffer (no Push,
//     Append, SetData or header rewrite) and shares it no more until
//     Shared is false again.
//
// A stage handed a packet that rewrites bytes past the headers in front of
// its data calls Unshare first (a filter plugin's Rewrite does; NAT, TTL
// and checksum updates write headers; fragmentation and GSO copy the
// payload).
type Packet struct {
	buf        []byte
	head, tail int
	linkHdr    int
	netHdr     int
	transHdr   int

	// InNIC is the NIC the packet was received on (0: locally generated).
	InNIC NICID
	// OutNIC is the NIC it leaves through, once routed.
	OutNIC NICID
	// NetProto is the network protocol (EtherType) of the packet.
	NetProto NetworkProtocolNumber
	// TransProto is the transport protocol, set by the network layer.
	TransProto TransportProtocolNumber
	// PktType says how the frame was addressed at the link layer.
	PktType PacketType
	// CsumVerified: a link with RX checksum offload already verified the
	// transport checksum.
	CsumVerified bool
	// Hash is a flow hash (0: none computed). Nothing computes it yet:
	// conntrack (upcoming) sets it once per packet from the 5-tuple and
	// picks its bucket with it; CopyMeta carries it to fragments and
	// segments.
	Hash uint32
	// Mark is a filter mark (like skb->mark).
	Mark uint32
	// ConnTrack is the packet's reference to its conntrack entry (0:
	// none), set by the conntrack module (modules/conntrack) at its hook:
	// the entry's index + 1 in the low 32 bits and the entry's generation
	// in the high 32, so that a packet held (stolen) while its entry is
	// freed and reused finds a mismatch instead of another flow's entry.
	ConnTrack uint64
	// CTInfo is the packet's connection-tracking state and direction
	// (CTNew …, | CTReply), set with ConnTrack; CTUntracked is set by the
	// raw table's NOTRACK target before conntrack runs.
	CTInfo CTInfo
	// NextHop is the neighbor the packet is sent to, once routed.
	NextHop netip.Addr
	// RemoteLinkAddr is the destination link address, set by neighbor
	// resolution before WritePackets on links that need it.
	RemoteLinkAddr wire.MAC
	// GSO is the packet's offload metadata.
	GSO GSO
	// PathMTU, set by the network layer on a packet the stack originates,
	// is the largest size it may leave with (the path MTU towards its
	// destination: a route's MTU, an advertised one, one learnt from ICMP);
	// 0 on forwarded packets but a datagram reassembled on its way
	// (Defragmenter), where it is its largest fragment's size: it is cut
	// to that size again, as Linux's frag_max_size. At transmit a packet
	// larger than the lesser of it and the egress NIC's MTU is fragmented
	// (see Fragmenter).
	PathMTU uint16

	// stage holds the stack's progress bits (batch.go): which stages of
	// the output path a re-injected or resolved packet has passed.
	stage uint8

	// tok is the resume token of a packet stolen inside a hook
	// (resume.go); nil otherwise. Release gives it back.
	tok *resumeToken

	pool *Pool
	next *Packet // free list / queue link

	// root is, in a handle made by Share, the Packet whose struct carries
	// the buffer (nil in that one); sc is the carrier's count of the
	// other handles, made at its first Share and kept with the buffer.
	root *Packet
	sc   *shareCount

	dbg debugState // ownership checks under -race (debug_race.go); empty otherwise
}

// Data returns the packet's bytes from the current position (the header
// being processed) to the end.
func (p *Packet) Data() []byte { return p.buf[p.head:p.tail] }

// Len is len(Data()).
func (p *Packet) Len() int { return p.tail - p.head }

// Headroom is how many bytes can be pushed in front of Data().
func (p *Packet) Headroom() int { return p.head }

// Tailroom is how many bytes can be appended after Data().
func (p *Packet) Tailroom() int { return len(p.buf) - p.tail }

// Push grows the packet at the front by n bytes and returns them (to be
// filled by the caller). ok is false, and nothing changes, when the headroom
// is too small.
func (p *Packet) Push(n int) (b []byte, ok bool) {
	if n < 0 || n > p.head {
		return nil, false
	}
	p.head -= n
	return p.buf[p.head : p.head+n], true
}

// Pull consumes n bytes at the front (a parsed header). ok is false, and
// nothing changes, when the packet is shorter than n.
func (p *Packet) Pull(n int) bool {
	if n < 0 || n > p.tail-p.head {
		return false
	}
	p.head += n
	return true
}

// Append grows the packet at the end by n bytes and returns them. ok is
// false, and nothing changes, when the tailroom is too small.
func (p *Packet) Append(n int) (b []byte, ok bool) {
	if n < 0 || n > len(p.buf)-p.tail {
		return nil, false
	}
	p.tail += n
	return p.buf[p.tail-n : p.tail], true
}

// Truncate shortens the packet to n bytes from the current position (drops
// link padding). It does nothing when n is not shorter.
func (p *Packet) Truncate(n int) {
	if n >= 0 && n < p.tail-p.head {
		p.tail = p.head + n
	}
}

// SetRemoteLinkAddr sets the destination link address of a packet whose
// sender knows it (an ARP message, a broadcast or multicast, a packet
// answering a frame it just received): neighbor resolution leaves the
// packet alone. Nothing else changes: an IP packet still passes the
// Postrouting hook (and fragmentation) at transmit, as every packet leaving
// through a NIC does.
func (p *Packet) SetRemoteLinkAddr(mac wire.MAC) {
	p.RemoteLinkAddr = mac
	p.stage |= stageLinkAddrSet
}

// SetLinkHeader marks the current position as the start of the link header.
func (p *Packet) SetLinkHeader() { p.linkHdr = p.head }

// SetNetworkHeader marks the current position as the network header.
func (p *Packet) SetNetworkHeader() { p.netHdr = p.head }

// SetTransportHeader marks the current position as the transport header.
func (p *Packet) SetTransportHeader() { p.transHdr = p.head }

// LinkHeader returns the link header (between its mark and the network
// header), or nil when not marked.
func (p *Packet) LinkHeader() []byte {
	if p.linkHdr < 0 || p.netHdr < p.linkHdr {
		return nil
	}
	return p.buf[p.linkHdr:p.netHdr]
}

// NetworkHeader returns the bytes from the network header to the end of the
// packet, or nil when not marked.
func (p *Packet) NetworkHeader() []byte {
	if p.netHdr < 0 || p.netHdr > p.tail {
		return nil
	}
	return p.buf[p.netHdr:p.tail]
}

// TransportHeader returns the bytes from the transport header to the end of
// the packet, or nil when not marked.
func (p *Packet) TransportHeader() []byte {
	if p.transHdr < 0 || p.transHdr > p.tail {
		return nil
	}
	return p.buf[p.transHdr:p.tail]
}

// RewindToNetwork moves the current position back to the network header
// (after a transport or an error path has consumed it). ok is false when no
// network header is marked.
func (p *Packet) RewindToNetwork() bool {
	if p.netHdr < 0 || p.netHdr > p.tail {
		return false
	}
	p.head = p.netHdr
	return true
}

// SetData replaces the packet's contents with a copy of b placed after the
// default headroom (or, for a buffer too small for that, at the start). ok is
// false when b does not fit.
func (p *Packet) SetData(b []byte) bool {
	off := DefaultHeadroom
	if off+len(b) > len(p.buf) {
		return false
	}
	p.head = off
	p.tail = off + copy(p.buf[off:], b)
	p.linkHdr, p.netHdr, p.transHdr = -1, -1, -1
	return true
}

// Reset clears the packet's metadata and leaves it empty with the default
// headroom. Get returns packets in this state.
func (p *Packet) reset() {
	pool, buf, sc := p.pool, p.buf, p.sc
	*p = Packet{buf: buf, pool: pool, sc: sc}
	p.head, p.tail = DefaultHeadroom, DefaultHeadroom
	p.linkHdr, p.netHdr, p.transHdr = -1, -1, -1
}

// ResetMeta clears the metadata and header marks but keeps the bytes: for a
// packet handed from one stack to another (a cable between two in-memory
// links), which must look freshly received.
func (p *Packet) ResetMeta() {
	if p.tok != nil {
		p.tok.release()
	}
	buf, pool, head, tail, root, sc := p.buf, p.pool, p.head, p.tail, p.root, p.sc
	*p = Packet{buf: buf, pool: pool, head: head, tail: tail, root: root, sc: sc}
	p.linkHdr, p.netHdr, p.transHdr = -1, -1, -1
}

// CopyMeta copies the metadata (not the bytes or header marks) of q into p.
func (p *Packet) CopyMeta(q *Packet) {
	p.InNIC, p.OutNIC = q.InNIC, q.OutNIC
	p.NetProto, p.TransProto = q.NetProto, q.TransProto
	p.PktType, p.CsumVerified = q.PktType, q.CsumVerified
	p.Hash, p.Mark, p.ConnTrack, p.CTInfo = q.Hash, q.Mark, q.ConnTrack, q.CTInfo
	p.NextHop, p.RemoteLinkAddr, p.GSO = q.NextHop, q.RemoteLinkAddr, q.GSO
	p.PathMTU = q.PathMTU
}

// Clone returns a copy of the packet (bytes, header marks and metadata) in
// a buffer from the same pool.
func (p *Packet) Clone() *Packet {
	pool := p.pool
	if pool == nil {
		pool = DefaultPool
	}
	q := pool.Get(p.tail - p.head)
	q.head = p.head
	if q.head+p.tail-p.head > len(q.buf) {
		q.head = 0
	}
	q.tail = q.head + copy(q.buf[q.head:], p.buf[p.head:p.tail])
	shift := q.head - p.head
	mark := func(o int) int {
		if o < 0 || o+shift < 0 {
			return -1
		}
		return o + shift
	}
	q.linkHdr, q.netHdr, q.transHdr = mark(p.linkHdr), mark(p.netHdr), mark(p.transHdr)
	q.CopyMeta(p)
	return q
}

// Release returns the packet to its pool. The caller gives up the packet: it
// must not touch it, nor any slice from it, afterwards. Releasing a packet
// twice is a bug that corrupts whoever gets the buffer next; with the race
// detector on (or the pipestack_debug tag) it panics, naming where the
// packet was first released.
func (p *Packet) Release() {
	if debugChecks {
		p.markReleased()
	}
	if p.tok != nil {
		p.tok.release() // a stolen packet dropped instead of resumed
		p.tok = nil
	}
	if p.sharing() {
		p.releaseShared()
		return
	}
	if p.pool != nil {
		p.pool.put(p)
	}
}

// shareCount is how many handles of a buffer there are besides one.
type shareCount struct{ n atomic.Int32 }

// carrier is the Packet whose struct holds p's buffer: p, or its root.
func (p *Packet) carrier() *Packet {
	if p.root != nil {
		return p.root
	}
	return p
}

// sharing reports whether p is a handle made by Share or has such
// handles alive (Release then goes through releaseShared).
func (p *Packet) sharing() bool {
	return p.root != nil || (p.sc != nil && p.sc.n.Load() != 0)
}

// Shared reports whether another handle of p's buffer exists (see
// "Shared buffers" on Packet). It turns false when the other handles are
// released, never true behind the caller's back: only a holder shares.
func (p *Packet) Shared() bool {
	c := p.carrier()
	return c.sc != nil && c.sc.n.Load() != 0
}

// Share returns another handle of p's bytes: the same position, header
// marks and metadata, the buffer in common (see "Shared buffers" on
// Packet for who may write what). Each handle is released on its own; the
// buffer goes back to its pool with the last. It copies no bytes and,
// once the pool is warm, allocates nothing.
func (p *Packet) Share() *Packet {
	c := p.carrier()
	if c.sc == nil {
		c.sc = new(shareCount) // once per buffer: kept across its reuse
	}
	c.sc.n.Add(1)
	var v *Packet
	if p.pool != nil {
		v = p.pool.getView()
	} else {
		v = new(Packet)
	}
	v.buf, v.head, v.tail = p.buf, p.head, p.tail
	v.linkHdr, v.netHdr, v.transHdr = p.linkHdr, p.netHdr, p.transHdr
	v.CopyMeta(p)
	v.root = c
	return v
}

// Unshare gives p a buffer of its own when it is a handle made by Share
// and the buffer is still shared: its bytes are copied (same positions,
// header marks and metadata kept; the Packet itself, and so a resume
// token it carries, is the same), so that it may write anywhere in them.
// A stage that rewrites bytes past the headers in front of a packet's
// data calls it first. True when p may write its bytes; false when p is
// the handle other handles were made from (the sharer writes nothing).
func (p *Packet) Unshare() bool {
	if !p.Shared() {
		return true
	}
	if p.root == nil {
		return false
	}
	q := p.Clone() // a buffer of its own, carried by q's struct
	c := p.root
	if c.sc.n.Add(-1) < 0 { // p was the last handle of the old buffer
		c.sc.n.Store(0)
		if c.pool != nil {
			c.pool.put(c)
		}
	}
	p.buf, p.head, p.tail = q.buf, q.head, q.tail
	p.linkHdr, p.netHdr, p.transHdr = q.linkHdr, q.netHdr, q.transHdr
	p.pool, p.root, p.sc = q.pool, nil, q.sc
	// q's struct, now without a buffer, goes back as a bare handle.
	if pool := q.pool; pool != nil {
		*q = Packet{pool: pool}
		pool.putView(q)
	}
	return true
}

// releaseShared releases a handle of a shared buffer: the buffer (its
// carrier) goes back to the pool with the last handle; a handle made by
// Share goes back to the pool's list of bare handles.
func (p *Packet) releaseShared() {
	c := p.carrier()
	last := c.sc.n.Add(-1) < 0
	if last {
		c.sc.n.Store(0) // one handle again: the carrier, released below
	}
	if p != c && p.pool != nil {
		p.pool.putView(p)
	}
	if last && c.pool != nil {
		c.pool.put(c)
	}
}

// Compact takes ownership of p and returns it in the smallest buffer class
// that holds its bytes: p itself when its buffer is small, when it has no
// pool, or when its bytes need a large buffer; otherwise a copy in a small
// buffer from p's pool — the bytes from its first header mark (or the
// current position) to the end, the marks, the position and all metadata —
// and p is released. A holder that keeps packets for long (a socket's
// receive queue, reassembly) compacts them, so that what it holds costs
// what it stores and not the buffer a link read it into: with offloads on,
// a TUN reads every packet into a large (64 KiB) buffer. It allocates
// nothing once the pool is warm; a small packet costs one compare.
func (p *Packet) Compact() *Packet {
	const small = SmallDataSize + DefaultHeadroom
	if len(p.buf) <= small || p.pool == nil {
		return p
	}
	start := p.head
	for _, m := range [...]int{p.linkHdr, p.netHdr, p.transHdr} {
		if m >= 0 && m < start {
			start = m
		}
	}
	n := p.tail - start
	if n > small {
		return p
	}
	// Keep the offsets where they are when they fit (the headroom stays
	// what it was), else move the bytes to the end of the small buffer.
	shift := 0
	if p.tail > small {
		shift = small - p.tail
	}
	q := p.pool.get(0)
	buf, pool, sc := q.buf, q.pool, q.sc
	*q = *p
	q.buf, q.pool, q.next, q.dbg = buf, pool, nil, debugState{}
	q.root, q.sc = nil, sc // q is the only handle of its own buffer
	p.tok = nil            // q's now
	copy(q.buf[start+shift:], p.buf[start:p.tail])
	q.head += shift
	q.tail += shift
	for _, m := range [...]*int{&q.linkHdr, &q.netHdr, &q.transHdr} {
		switch {
		case *m > p.tail: // a stale mark past the end: unset, as it reads
			*m = -1
		case *m >= 0:
			*m += shift
		}
	}
	p.Release()
	return q
}
