package tun

import (
	"encoding/binary"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// The virtio-net header (struct virtio_net_hdr, include/uapi/linux/virtio_net.h)
// that a TUN device opened with IFF_VNET_HDR puts in front of every packet it
// reads and expects in front of every packet written. Its fields are in the
// host's byte order (legacy virtio; we never set TUNSETVNETLE/BE).
const (
	vnetHdrLen = 10

	vnetFlagNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM: checksum is partial
	vnetFlagDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID: checksum verified

	vnetGSONone  = 0
	vnetGSOTCPv4 = 1
	vnetGSOUDP   = 3 // UFO, never enabled
	vnetGSOTCPv6 = 4
	vnetGSOUDPL4 = 5 // USO (Linux 6.2+)
	vnetGSOECN   = 0x80
)

type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

func (h *vnetHdr) decode(b []byte) {
	_ = b[vnetHdrLen-1]
	h.flags, h.gsoType = b[0], b[1]
	h.hdrLen = binary.NativeEndian.Uint16(b[2:])
	h.gsoSize = binary.NativeEndian.Uint16(b[4:])
	h.csumStart = binary.NativeEndian.Uint16(b[6:])
	h.csumOffset = binary.NativeEndian.Uint16(b[8:])
}

func (h *vnetHdr) encode(b []byte) {
	_ = b[vnetHdrLen-1]
	b[0], b[1] = h.flags, h.gsoType
	binary.NativeEndian.PutUint16(b[2:], h.hdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.gsoSize)
	binary.NativeEndian.PutUint16(b[6:], h.csumStart)
	binary.NativeEndian.PutUint16(b[8:], h.csumOffset)
}

// rxResult is how a received header was classified.
type rxResult uint8

const (
	rxPlain rxResult = iota
	rxPartial
	rxGSO
	rxBad
)

// toPacket turns a received header into the packet's offload metadata for
// the IP packet d. hdr_len from the kernel is not trusted (in the kernel's
// forwarding path it can be the whole first segment): the header length is
// read from the transport header. A super-packet that turns out to be a
// single segment is handed on as a plain packet with a partial checksum. It
// returns rxBad for a header that does not describe d or asks for what we
// never enabled (TSO with ECN, UFO).
func (h *vnetHdr) toPacket(d []byte, p *pipeline.Packet) rxResult {
	if h.flags&vnetFlagDataValid != 0 {
		p.CsumVerified = true
	}
	if h.gsoType == vnetGSONone {
		if h.flags&vnetFlagNeedsCsum == 0 {
			return rxPlain
		}
		if int(h.csumStart)+int(h.csumOffset)+2 > len(d) {
			return rxBad
		}
		p.GSO = pipeline.GSO{NeedsCsum: true, CsumStart: h.csumStart, CsumOffset: h.csumOffset}
		// The local kernel left the checksum to the device: the data is
		// as trustworthy as a verified checksum.
		p.CsumVerified = true
		return rxPartial
	}
	if h.flags&vnetFlagNeedsCsum == 0 || len(d) < 1 {
		return rxBad
	}
	v := d[0] >> 4
	var t pipeline.GSOType
	var hdr int
	start := int(h.csumStart)
	switch h.gsoType {
	case vnetGSOTCPv4, vnetGSOTCPv6:
		if h.gsoType == vnetGSOTCPv4 {
			t = pipeline.GSOTCPv4
			if v != 4 {
				return rxBad
			}
		} else {
			t = pipeline.GSOTCPv6
			if v != 6 {
				return rxBad
			}
		}
		if h.csumOffset != 16 || start+wire.TCPMinimumSize > len(d) {
			return rxBad
		}
		th := int(d[start+12]>>4) * 4
		if th < wire.TCPMinimumSize {
			return rxBad
		}
		hdr = start + th
	case vnetGSOUDPL4:
		t = pipeline.GSOUDPL4
		if (v != 4 && v != 6) || h.csumOffset != 6 {
			return rxBad
		}
		hdr = start + wire.UDPHeaderSize
	default:
		return rxBad // ECN (TUN_F_TSO_ECN is never enabled), UFO
	}
	if start < wire.IPv4MinimumSize || hdr > len(d) || h.gsoSize == 0 {
		return rxBad
	}
	p.CsumVerified = true
	p.GSO = pipeline.GSO{NeedsCsum: true, CsumStart: h.csumStart, CsumOffset: h.csumOffset}
	if len(d)-hdr <= int(h.gsoSize) {
		return rxPartial // one segment: a plain packet with a partial checksum
	}
	p.GSO.Type, p.GSO.SegSize, p.GSO.HdrLen = t, h.gsoSize, uint16(hdr)
	return rxGSO
}

// fromPacket builds the header to write in front of p (Data() at the IP
// header). A super-packet always goes with a partial checksum; if p's
// checksum field holds a complete checksum instead (a GSO packet built
// without NeedsCsum), it is replaced by the pseudo-header sum the kernel
// expects. ok is false for metadata that does not fit the packet.
func (h *vnetHdr) fromPacket(p *pipeline.Packet) (ok bool) {
	*h = vnetHdr{}
	g := &p.GSO
	if g.Type == pipeline.GSONone && !g.NeedsCsum {
		return true
	}
	d := p.Data()
	field := int(g.CsumStart) + int(g.CsumOffset)
	if field+2 > len(d) {
		return false
	}
	h.flags = vnetFlagNeedsCsum
	h.csumStart, h.csumOffset = g.CsumStart, g.CsumOffset
	if g.Type == pipeline.GSONone {
		return true
	}
	switch g.Type {
	case pipeline.GSOTCPv4:
		h.gsoType = vnetGSOTCPv4
	case pipeline.GSOTCPv6:
		h.gsoType = vnetGSOTCPv6
	case pipeline.GSOUDPL4:
		h.gsoType = vnetGSOUDPL4
	default:
		return false
	}
	if h.gsoType != vnetGSOUDPL4 && d[int(g.CsumStart)+13]&0x80 != 0 {
		h.gsoType |= vnetGSOECN // CWR set: only the first segment keeps it
	}
	h.hdrLen, h.gsoSize = g.HdrLen, g.SegSize
	if !g.NeedsCsum {
		if d[0]>>4 == 6 && len(d) < 40 || len(d) < wire.IPv4MinimumSize {
			return false
		}
		proto := uint8(wire.ProtocolTCP)
		if g.Type == pipeline.GSOUDPL4 {
			proto = wire.ProtocolUDP
		}
		binary.BigEndian.PutUint16(d[field:], pseudoSum(d, proto, int(g.CsumStart)))
	}
	return true
}

// pseudoSum is the (non-inverted) pseudo-header sum for the transport
// segment at d[l4:], what a partial checksum field holds.
func pseudoSum(d []byte, proto uint8, l4 int) uint16 {
	return pseudoSumLen(d, proto, len(d)-l4)
}
