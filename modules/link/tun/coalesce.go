package tun

import (
	"bytes"
	"encoding/binary"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Coalescing (software GRO) on the write path. The kernel behind a TUN device
// pays per packet it receives; a batch of consecutive TCP segments of one
// flow written as one GSO super-packet costs it (and us) one write instead of
// many. Nothing is copied: the first segment's headers are rewritten for the
// whole run and the following segments' payloads go out as further iovecs of
// the same writev.
//
// TCP segments qualify as the kernel's own GRO would have them
// (net/ipv4/tcp_offload.c): plain ACK or ACK|PSH, a payload, no IPv4 options
// or fragments, no IPv6 extension headers, equal ACK numbers, TCP options,
// TOS/traffic class, TTL and DF; each one's sequence number follows the
// previous one; all but the last carry the first one's payload size; PSH
// ends a run.
//
// UDP datagrams (only when the device takes USO, TUN_F_USO4/6) go out as one
// VIRTIO_NET_HDR_GSO_UDP_L4 super-packet per run of consecutive datagrams of
// one flow (addresses and ports) with the same TOS/traffic class, TTL and DF,
// all but the last of the first one's payload size: the kernel cuts it back
// into the same datagrams (lengths and checksums recomputed, IPv4 IDs counted
// up from the first) — when it delivers them to a socket, or sends them on —
// and walks its receive path once for the run. The super-packet's UDP length
// is the whole run's, as the kernel's own UDP GSO sends it. A datagram
// without a checksum (IPv4, field 0) is written alone, unchanged.
//
// A segment or datagram whose checksum nobody vouched for (neither
// CsumVerified nor a partial checksum) is checked first, since the kernel
// will not check a super-packet: a bad one is written alone, for the kernel
// to drop. Runs of different flows interleave freely (up to maxGroups open
// runs); any packet that does not qualify first flushes every open run, so
// no flow is reordered.

const (
	maxGroups = 8     // open runs per WritePackets call
	maxSegs   = 64    // segments per run
	maxSuper  = 65535 // bytes per super-packet (IPv4 total length)
)

// frameSink writes one frame: the virtio-net header, head (a whole packet
// whose headers cover the frame) and, appended, the bytes from tailOff of
// each tail packet. It reports whether the kernel took it.
type frameSink interface {
	writeFrame(h *vnetHdr, head []byte, tail []*pipeline.Packet, tailOff int) bool
}

type flowKey struct {
	src, dst [16]byte
	ports    uint32
	ack      uint32 // TCP; 0 for UDP
	proto    uint8
}

type group struct {
	key     flowKey
	head    *pipeline.Packet
	tail    []*pipeline.Packet
	l4, hdr int    // transport header offset, headers length
	seg     int    // payload per segment (the head's)
	size    int    // bytes of the super-packet so far
	next    uint32 // sequence number the next segment must have
	short   bool   // a shorter segment was added: the run is complete
	psh     bool
	udp     bool
}

// coalescer holds the open runs of one WritePackets call. It is reused
// (reset by flushAll) and never allocates once its tails have grown.
type coalescer struct {
	groups  [maxGroups]group
	n       int
	enabled bool // coalesce; otherwise only single is used
	uso     bool // the device takes UDP super-packets: coalesce UDP too
	sink    frameSink
	h       vnetHdr

	// Per-call results, read and zeroed by the writer.
	sent, frames, merged, malformed, errors uint64
}

func newCoalescer(sink frameSink) *coalescer {
	c := &coalescer{sink: sink, enabled: true}
	for i := range c.groups {
		c.groups[i].tail = make([]*pipeline.Packet, 0, maxSegs)
	}
	return c
}

// segment is what a qualifying packet looks like.
type segment struct {
	key     flowKey
	l4, hdr int
	seq     uint32
	payload int
	psh     bool
	udp     bool
}

// qualify tells whether p may be coalesced, and how it is laid out. UDP
// qualifies only with uso.
func qualify(p *pipeline.Packet, s *segment, uso bool) bool {
	if p.GSO.Type != pipeline.GSONone {
		return false
	}
	d := p.Data()
	if len(d) < 28 {
		return false
	}
	switch d[0] >> 4 {
	case 4:
		if d[0]&0xf != 5 || int(binary.BigEndian.Uint16(d[2:])) != len(d) {
			return false
		}
		if d[6]&0x3f != 0 || d[7] != 0 { // MF or a fragment offset
			return false
		}
		s.l4 = 20
		s.key.proto = d[9]
		s.key.src = [16]byte{}
		s.key.dst = [16]byte{}
		copy(s.key.src[:], d[12:16])
		copy(s.key.dst[:], d[16:20])
	case 6:
		if len(d) < 48 || int(binary.BigEndian.Uint16(d[4:]))+40 != len(d) {
			return false
		}
		s.l4 = 40
		s.key.proto = d[6]
		s.key.src = [16]byte(d[8:24])
		s.key.dst = [16]byte(d[24:40])
	default:
		return false
	}
	switch s.key.proto {
	case wire.ProtocolTCP:
		return qualifyTCP(p, d, s)
	case wire.ProtocolUDP:
		return uso && qualifyUDP(p, d, s)
	}
	return false
}

func qualifyTCP(p *pipeline.Packet, d []byte, s *segment) bool {
	if len(d) < s.l4+wire.TCPMinimumSize {
		return false
	}
	t := d[s.l4:]
	th := int(t[12]>>4) * 4
	if th < wire.TCPMinimumSize || s.l4+th >= len(d) {
		return false
	}
	switch t[13] {
	case 0x10: // ACK
		s.psh = false
	case 0x18: // ACK|PSH
		s.psh = true
	default:
		return false
	}
	s.udp = false
	s.hdr = s.l4 + th
	s.payload = len(d) - s.hdr
	s.seq = binary.BigEndian.Uint32(t[4:])
	s.key.ports = binary.BigEndian.Uint32(t[0:])
	s.key.ack = binary.BigEndian.Uint32(t[8:])
	if !p.CsumVerified && !p.GSO.NeedsCsum {
		if wire.Checksum(t, pseudoSumLen(d, wire.ProtocolTCP, len(t))) != 0xffff {
			return false
		}
	}
	return true
}

func qualifyUDP(p *pipeline.Packet, d []byte, s *segment) bool {
	t := d[s.l4:]
	if len(t) <= wire.UDPHeaderSize || int(binary.BigEndian.Uint16(t[4:])) != len(t) {
		return false
	}
	if p.GSO.NeedsCsum {
		if int(p.GSO.CsumStart) != s.l4 || p.GSO.CsumOffset != 6 {
			return false
		}
	} else {
		if binary.BigEndian.Uint16(t[6:]) == 0 {
			return false // no checksum: the kernel would add one
		}
		if !p.CsumVerified && wire.Checksum(t, pseudoSumLen(d, wire.ProtocolUDP, len(t))) != 0xffff {
			return false
		}
	}
	s.udp, s.psh, s.seq = true, false, 0
	s.hdr = s.l4 + wire.UDPHeaderSize
	s.payload = len(d) - s.hdr
	s.key.ports = binary.BigEndian.Uint32(t[0:])
	s.key.ack = 0
	return true
}

// fits tells whether segment s of packet d may follow run g.
func (g *group) fits(d []byte, s *segment) bool {
	if s.hdr != g.hdr || !s.udp && s.seq != g.next || g.psh || g.short || s.payload > g.seg ||
		g.size+s.payload > maxSuper || len(g.tail) == maxSegs-1 {
		return false
	}
	h := g.head.Data()
	if s.l4 == 20 {
		// TOS, DF, TTL.
		if d[1] != h[1] || d[6] != h[6] || d[8] != h[8] {
			return false
		}
	} else if d[0] != h[0] || d[1]>>4 != h[1]>>4 || d[7] != h[7] {
		return false
	}
	return s.udp || bytes.Equal(d[s.l4+20:s.hdr], h[s.l4+20:s.hdr])
}

// add takes p (owned by the caller, who releases it after flushAll).
func (c *coalescer) add(p *pipeline.Packet) {
	var s segment
	if !qualify(p, &s, c.uso) {
		c.flushAll()
		c.single(p)
		return
	}
	d := p.Data()
	for i := 0; i < c.n; i++ {
		g := &c.groups[i]
		if g.key != s.key {
			continue
		}
		if g.fits(d, &s) {
			g.tail = append(g.tail, p)
			g.size += s.payload
			g.next += uint32(s.payload)
			g.short = s.payload < g.seg
			g.psh = s.psh
			return
		}
		// Same flow, not adjacent: the open run ends here.
		c.flush(g)
		c.start(g, p, &s)
		return
	}
	if c.n == maxGroups {
		c.flushAll()
	}
	c.start(&c.groups[c.n], p, &s)
	c.n++
}

func (c *coalescer) start(g *group, p *pipeline.Packet, s *segment) {
	g.key, g.head, g.tail = s.key, p, g.tail[:0]
	g.l4, g.hdr, g.seg = s.l4, s.hdr, s.payload
	g.size = p.Len()
	g.next = s.seq + uint32(s.payload)
	g.short, g.psh, g.udp = false, s.psh, s.udp
}

// flushAll writes every open run, in the order they were opened.
func (c *coalescer) flushAll() {
	for i := 0; i < c.n; i++ {
		c.flush(&c.groups[i])
	}
	c.n = 0
}

// flush writes run g and empties it.
func (c *coalescer) flush(g *group) {
	if g.head == nil {
		return
	}
	head := g.head
	g.head = nil
	if len(g.tail) == 0 {
		c.single(head)
		return
	}
	d := head.Data()
	if g.l4 == 20 {
		ip := wire.IPv4(d)
		ip.SetTotalLength(uint16(g.size))
		ip.SetChecksum(ip.CalculateChecksum())
	} else {
		binary.BigEndian.PutUint16(d[4:], uint16(g.size-40))
	}
	if g.udp {
		u := d[g.l4:]
		binary.BigEndian.PutUint16(u[4:], uint16(g.size-g.l4))
		binary.BigEndian.PutUint16(u[6:], pseudoSumLen(d, wire.ProtocolUDP, g.size-g.l4))
		c.h = vnetHdr{
			flags: vnetFlagNeedsCsum, gsoType: vnetGSOUDPL4,
			hdrLen: uint16(g.hdr), gsoSize: uint16(g.seg),
			csumStart: uint16(g.l4), csumOffset: 6,
		}
	} else {
		t := wire.TCP(d[g.l4:])
		if g.psh {
			t.SetFlags(t.Flags() | 0x08)
		}
		t.SetChecksum(pseudoSumLen(d, wire.ProtocolTCP, g.size-g.l4))
		c.h = vnetHdr{
			flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4,
			hdrLen: uint16(g.hdr), gsoSize: uint16(g.seg),
			csumStart: uint16(g.l4), csumOffset: 16,
		}
		if g.l4 == 40 {
			c.h.gsoType = vnetGSOTCPv6
		}
	}
	n := uint64(1 + len(g.tail))
	if c.sink.writeFrame(&c.h, d, g.tail, g.hdr) {
		c.sent += n
		c.merged += n - 1
	} else {
		c.errors++
	}
	c.frames++
	clear(g.tail)
	g.tail = g.tail[:0]
}

// single writes p as it is, with the header its metadata asks for.
func (c *coalescer) single(p *pipeline.Packet) {
	if !c.h.fromPacket(p) {
		c.malformed++
		return
	}
	c.frames++
	if c.sink.writeFrame(&c.h, p.Data(), nil, 0) {
		c.sent++
	} else {
		c.errors++
	}
}

// pseudoSumLen is pseudoSum for a transport segment of n bytes.
func pseudoSumLen(d []byte, proto uint8, n int) uint16 {
	if d[0]>>4 == 6 {
		return wire.PseudoHeaderChecksum(proto, d[8:24], d[24:40], uint16(n))
	}
	return wire.PseudoHeaderChecksum(proto, d[12:16], d[16:20], uint16(n))
}
