package afpacket

import (
	"encoding/binary"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// struct virtio_net_hdr, as PACKET_VNET_HDR puts it in front of every frame
// (native byte order: the kernel uses the legacy little-endian layout on the
// little-endian machines this runs on, and the host order elsewhere).
const (
	vnetHdrLen = 10

	vnetFlagNeedsCsum = 1
	vnetFlagDataValid = 2

	vnetGSONone  = 0
	vnetGSOTCPv4 = 1
	vnetGSOUDP   = 3 // UFO: not produced by current kernels; dropped
	vnetGSOTCPv6 = 4
	vnetGSOUDPL4 = 5
	vnetGSOECN   = 0x80
)

// vnetHdr is a decoded struct virtio_net_hdr. Offsets in it are relative
// to the start of the Ethernet frame.
type vnetHdr struct {
	flags, gsoType                         uint8
	hdrLen, gsoSize, csumStart, csumOffset uint16
}

func decodeVnetHdr(b []byte) vnetHdr {
	_ = b[vnetHdrLen-1]
	ne := binary.NativeEndian
	return vnetHdr{
		flags: b[0], gsoType: b[1],
		hdrLen: ne.Uint16(b[2:]), gsoSize: ne.Uint16(b[4:]),
		csumStart: ne.Uint16(b[6:]), csumOffset: ne.Uint16(b[8:]),
	}
}

func (h *vnetHdr) encode(b []byte) {
	_ = b[vnetHdrLen-1]
	ne := binary.NativeEndian
	b[0], b[1] = h.flags, h.gsoType
	ne.PutUint16(b[2:], h.hdrLen)
	ne.PutUint16(b[4:], h.gsoSize)
	ne.PutUint16(b[6:], h.csumStart)
	ne.PutUint16(b[8:], h.csumOffset)
}

// gsoFromVnet turns a received header into the packet's offload metadata
// (offsets relative to the network header, which starts at linkLen in the
// frame; nd is the frame from the network header on). ok is false for a GSO
// kind the stack does not handle or offsets that do not fit the frame.
func gsoFromVnet(h vnetHdr, linkLen int, nd []byte) (g pipeline.GSO, csumOK, ok bool) {
	csumOK = h.flags&vnetFlagDataValid != 0
	if h.flags&vnetFlagNeedsCsum != 0 {
		start := int(h.csumStart) - linkLen
		if start < 0 || start+int(h.csumOffset)+2 > len(nd) {
			return g, false, false
		}
		g.NeedsCsum = true
		g.CsumStart = uint16(start)
		g.CsumOffset = h.csumOffset
	}
	switch h.gsoType &^ vnetGSOECN {
	case vnetGSONone:
		return g, csumOK, true
	case vnetGSOTCPv4:
		g.Type = pipeline.GSOTCPv4
	case vnetGSOTCPv6:
		g.Type = pipeline.GSOTCPv6
	case vnetGSOUDPL4:
		g.Type = pipeline.GSOUDPL4
	default:
		return g, false, false
	}
	if h.gsoSize == 0 {
		return g, false, false
	}
	g.SegSize = h.gsoSize
	// hdr_len from the kernel is the skb's linear length, which need not be
	// the headers' length: take it from the headers themselves.
	if hl, found := transportHeadersEnd(nd, g); found {
		g.HdrLen = uint16(hl)
	} else if int(h.hdrLen) > linkLen {
		g.HdrLen = h.hdrLen - uint16(linkLen)
	} else {
		return g, false, false
	}
	return g, csumOK, true
}

// vnetFromGSO is the header for sending a packet with metadata g whose
// network header starts at linkLen in the frame (tcp is the frame's TCP
// header when g is a TCP GSO, for the ECN bit).
func vnetFromGSO(g *pipeline.GSO, linkLen int, nd []byte) vnetHdr {
	var h vnetHdr
	if g.NeedsCsum {
		h.flags = vnetFlagNeedsCsum
		h.csumStart = g.CsumStart + uint16(linkLen)
		h.csumOffset = g.CsumOffset
	}
	switch g.Type {
	case pipeline.GSONone:
		return h
	case pipeline.GSOTCPv4:
		h.gsoType = vnetGSOTCPv4
	case pipeline.GSOTCPv6:
		h.gsoType = vnetGSOTCPv6
	case pipeline.GSOUDPL4:
		h.gsoType = vnetGSOUDPL4
	}
	h.gsoSize = g.SegSize
	h.hdrLen = g.HdrLen + uint16(linkLen)
	if g.Type != pipeline.GSOUDPL4 {
		if l4 := int(g.CsumStart); g.NeedsCsum && l4+14 <= len(nd) && nd[l4+13]&0x80 != 0 {
			h.gsoType |= vnetGSOECN // CWR set: the device must clear it after the first segment
		}
	}
	return h
}

// transportHeadersEnd returns where the transport header of a packet with
// metadata g ends, relative to the network header: TCP from its data
// offset, UDP after 8 bytes. The transport header is where the checksum
// starts when that is known, else right after a plain IPv4/IPv6 header.
func transportHeadersEnd(nd []byte, g pipeline.GSO) (int, bool) {
	l4, proto, ok := transportOffset(nd)
	if g.NeedsCsum {
		l4 = int(g.CsumStart)
		if g.Type == pipeline.GSOUDPL4 {
			proto = wire.ProtocolUDP
		} else if g.Type != pipeline.GSONone {
			proto = wire.ProtocolTCP
		}
		ok = true
	}
	if !ok {
		return 0, false
	}
	switch proto {
	case wire.ProtocolTCP:
		if l4+wire.TCPMinimumSize > len(nd) {
			return 0, false
		}
		th := int(nd[l4+12]>>4) * 4
		if th < wire.TCPMinimumSize || l4+th > len(nd) {
			return 0, false
		}
		return l4 + th, true
	case wire.ProtocolUDP:
		if l4+wire.UDPHeaderSize > len(nd) {
			return 0, false
		}
		return l4 + wire.UDPHeaderSize, true
	}
	return 0, false
}

// transportOffset finds the transport header of an IPv4 packet, or of an
// IPv6 packet without extension headers.
func transportOffset(nd []byte) (off int, proto uint8, ok bool) {
	if len(nd) < 1 {
		return 0, 0, false
	}
	switch nd[0] >> 4 {
	case 4:
		if len(nd) < wire.IPv4MinimumSize {
			return 0, 0, false
		}
		ihl := int(nd[0]&0xf) * 4
		if ihl < wire.IPv4MinimumSize || ihl > len(nd) {
			return 0, 0, false
		}
		if binary.BigEndian.Uint16(nd[6:])&0x3fff != 0 {
			return 0, 0, false // a fragment: no transport header to speak of
		}
		return ihl, nd[9], true
	case 6:
		if len(nd) < 40 {
			return 0, 0, false
		}
		return 40, nd[6], true
	}
	return 0, 0, false
}

// partialCsum describes a frame whose transport checksum the sender left to
// the device (the socket says so: TP_STATUS_CSUMNOTREADY) when no vnet
// header came with it; mtu tells whether it is a super-packet too (the veth
// or GRO merged segments). ok is false when the headers cannot be found.
func partialCsum(nd []byte, mtu int) (g pipeline.GSO, ok bool) {
	l4, proto, found := transportOffset(nd)
	if !found {
		return g, false
	}
	switch proto {
	case wire.ProtocolTCP:
		g.CsumOffset = 16
	case wire.ProtocolUDP:
		g.CsumOffset = 6
	default:
		return g, false
	}
	g.NeedsCsum = true
	g.CsumStart = uint16(l4)
	if int(g.CsumStart)+int(g.CsumOffset)+2 > len(nd) {
		return pipeline.GSO{}, false
	}
	if len(nd) <= mtu {
		return g, true
	}
	// Over the MTU: a super-packet without its metadata. Cut it back to
	// MTU-sized segments if it must be segmented.
	hl, found := transportHeadersEnd(nd, g)
	if !found || hl >= mtu {
		return pipeline.GSO{}, false
	}
	g.HdrLen = uint16(hl)
	g.SegSize = uint16(mtu - hl)
	switch {
	case proto == wire.ProtocolUDP:
		g.Type = pipeline.GSOUDPL4
	case nd[0]>>4 == 4:
		g.Type = pipeline.GSOTCPv4
	default:
		g.Type = pipeline.GSOTCPv6
	}
	return g, true
}
