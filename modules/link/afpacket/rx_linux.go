package afpacket

import (
	"encoding/binary"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

const (
	sllLen  = unix.SizeofSockaddrLinklayer
	sllType = 10 // offset of sll_pkttype
	ctrlLen = 64 // room for one PACKET_AUXDATA control message

	// tpacket3_hdr fields, and where its sockaddr_ll follows.
	tp3NextOffset = 0
	tp3Snaplen    = 12
	tp3Len        = 16
	tp3Status     = 20
	tp3Mac        = 24
	tp3Sll        = 48 // TPACKET_ALIGN(sizeof(struct tpacket3_hdr))

	// tpacket_block_desc / tpacket_hdr_v1 fields.
	blkStatus   = 8
	blkNumPkts  = 12
	blkFirstPkt = 16
)

var ne = binary.NativeEndian

// rxMeta is what classify found out about a frame.
type rxMeta struct {
	proto  pipeline.NetworkProtocolNumber
	ptype  pipeline.PacketType
	gso    pipeline.GSO
	csumOK bool
}

// apply sets the metadata on a packet whose Data() is the Ethernet frame and
// leaves Data() at the network header.
func (m *rxMeta) apply(p *pipeline.Packet) {
	p.NetProto = m.proto
	p.PktType = m.ptype
	p.GSO = m.gso
	p.CsumVerified = m.csumOK
	p.SetLinkHeader()
	p.Pull(wire.EthernetHeaderSize)
	p.SetNetworkHeader()
}

// classify reads a frame (from its Ethernet header), its virtio-net header
// (vh, empty without vnet_hdr), the socket's packet type and status. It
// returns the counter of the reason to drop it, or nil. It may write to the
// frame (to restore a pseudo-header checksum, see below).
func (e *Endpoint) classify(frame, vh []byte, pkttype uint8, status uint32) (m rxMeta, drop *atomic.Uint64) {
	if len(frame) < wire.EthernetHeaderSize {
		return m, &e.RxMalformed
	}
	switch pkttype {
	case unix.PACKET_HOST:
		m.ptype = pipeline.PacketHost
	case unix.PACKET_BROADCAST:
		m.ptype = pipeline.PacketBroadcast
	case unix.PACKET_MULTICAST:
		m.ptype = pipeline.PacketMulticast
	case unix.PACKET_OTHERHOST:
		if !e.o.Promiscuous {
			return m, &e.RxOtherHost
		}
		e.RxOtherHost.Add(1)
		m.ptype = pipeline.PacketOtherHost
	case unix.PACKET_OUTGOING:
		return m, &e.RxOutgoing
	default:
		return m, &e.RxMalformed
	}
	if status&unix.TP_STATUS_VLAN_VALID != 0 {
		return m, &e.RxVLAN
	}
	et := binary.BigEndian.Uint16(frame[12:])
	if et < 0x0600 {
		return m, &e.RxMalformed // 802.3 length: LLC (STP and the like)
	}
	m.proto = pipeline.NetworkProtocolNumber(et)
	nd := frame[wire.EthernetHeaderSize:]
	switch {
	case len(vh) == vnetHdrLen:
		h := decodeVnetHdr(vh)
		if h.flags == 0 && h.gsoType == 0 {
			break
		}
		g, csumOK, ok := gsoFromVnet(h, wire.EthernetHeaderSize, nd)
		if !ok {
			return m, &e.RxBadOffload
		}
		m.gso, m.csumOK = g, csumOK
	case status&unix.TP_STATUS_CSUMNOTREADY != 0:
		// A partial checksum without a vnet header: find it ourselves.
		g, ok := partialCsum(nd, e.devMTU)
		if !ok {
			return m, &e.RxBadOffload
		}
		m.gso = g
	case len(nd) > e.devMTU && (m.proto == pipeline.IPv4ProtocolNumber || m.proto == pipeline.IPv6ProtocolNumber):
		// A merged (GRO) packet with a verified checksum: its checksum
		// field is not valid for the whole. Describe it as a super-packet
		// with a partial checksum (pseudo-header sum in the field), which
		// is what every consumer of GSO metadata expects.
		g, ok := partialCsum(nd, e.devMTU)
		if !ok || g.Type == pipeline.GSONone {
			m.csumOK = status&unix.TP_STATUS_CSUM_VALID != 0
			break
		}
		l4 := int(g.CsumStart)
		var src, dst []byte
		if nd[0]>>4 == 4 {
			src, dst = nd[12:16], nd[16:20]
		} else {
			src, dst = nd[8:24], nd[24:40]
		}
		proto := uint8(wire.ProtocolTCP)
		if g.Type == pipeline.GSOUDPL4 {
			proto = wire.ProtocolUDP
		}
		binary.BigEndian.PutUint16(nd[l4+int(g.CsumOffset):], wire.PseudoHeaderChecksum(proto, src, dst, uint16(len(nd)-l4)))
		m.gso = g
	default:
		m.csumOK = status&unix.TP_STATUS_CSUM_VALID != 0
	}
	if m.gso.Type != pipeline.GSONone {
		e.RxGSO.Add(1)
	}
	return m, nil
}

// auxStatus returns tp_status from a PACKET_AUXDATA control message (0
// when there is none).
func auxStatus(ctrl []byte, n int) uint32 {
	const hdr = unix.SizeofCmsghdr
	if n < hdr+4 || n > len(ctrl) {
		return 0
	}
	lenSize := hdr - 8 // cmsg_len is a size_t
	level := int32(ne.Uint32(ctrl[lenSize:]))
	typ := int32(ne.Uint32(ctrl[lenSize+4:]))
	if level != unix.SOL_PACKET || typ != unix.PACKET_AUXDATA {
		return 0
	}
	return ne.Uint32(ctrl[unix.CmsgLen(0):])
}

// runMmsg is the recvmmsg reader. Each of Batch slots holds a pooled packet
// whose buffer (from the virtio-net header on) is the first iovec; a second
// iovec, per-slot scratch, catches the rest of a frame larger than a small
// buffer (a GSO super-packet, a jumbo frame), which is then copied into a
// large packet. Slots whose packet went to the stack are refilled with one
// GetBatch per batch.
func (q *queue) runMmsg() {
	e := q.e
	o := &e.o
	b := o.Batch
	vl := e.vlen
	ovLen := pipeline.LargeDataSize - pipeline.SmallDataSize
	hdrs := make([]unix.Mmsghdr, b)
	iovs := make([]unix.Iovec, 2*b)
	names := make([]byte, b*sllLen)
	ctrl := make([]byte, b*ctrlLen)
	over := make([]byte, b*ovLen)
	pkts := make([]*pipeline.Packet, b)
	bufs := make([][]byte, b)
	fresh := make([]*pipeline.Packet, b)
	out := make([]*pipeline.Packet, 0, b)
	defer pipeline.ReleaseBatch(pkts)

	arm := func(i int, p *pipeline.Packet) {
		pkts[i] = p
		if vl > 0 {
			p.Push(vl)
		}
		p.Append(p.Tailroom())
		buf := p.Data() // from the virtio-net header on
		bufs[i] = buf
		iovs[2*i].Base = &buf[0]
		iovs[2*i].SetLen(len(buf))
	}
	for i := 0; i < b; i++ {
		iovs[2*i+1].Base = &over[i*ovLen]
		iovs[2*i+1].SetLen(ovLen)
		h := &hdrs[i].Hdr
		h.Name = &names[i*sllLen]
		h.Namelen = sllLen
		h.Iov = &iovs[2*i]
		h.SetIovlen(2)
		if e.auxdata {
			h.Control = &ctrl[i*ctrlLen]
			h.SetControllen(ctrlLen)
		}
	}
	o.Pool.GetBatch(fresh, pipeline.SmallDataSize)
	for i := range fresh {
		arm(i, fresh[i])
		fresh[i] = nil
	}

	for {
		n, err := recvmmsg(q.fd, hdrs, unix.MSG_DONTWAIT)
		if err != nil {
			if err == unix.EAGAIN {
				if !q.wait() {
					return
				}
			} else if !q.fail(err) {
				return
			}
			continue
		}
		if e.linkDown.Load() {
			e.linkDown.Store(false)
		}
		for i := 0; i < n; i++ {
			mh := &hdrs[i]
			ln := int(mh.Len)
			flags := mh.Hdr.Flags
			var status uint32
			if e.auxdata {
				status = auxStatus(ctrl[i*ctrlLen:(i+1)*ctrlLen], int(mh.Hdr.Controllen))
				mh.Hdr.SetControllen(ctrlLen)
			}
			mh.Hdr.Namelen = sllLen
			mh.Hdr.Flags = 0
			if flags&unix.MSG_TRUNC != 0 {
				e.RxTruncated.Add(1)
				continue
			}
			if ln < vl+wire.EthernetHeaderSize {
				e.RxMalformed.Add(1)
				continue
			}
			pt := names[i*sllLen+sllType]
			buf := bufs[i]
			if ln <= len(buf) {
				m, drop := e.classify(buf[vl:ln], buf[:vl], pt, status)
				if drop != nil {
					drop.Add(1)
					continue // the packet stays in its slot, untouched
				}
				p := pkts[i]
				pkts[i] = nil
				p.Truncate(ln)
				p.Pull(vl)
				m.apply(p)
				out = append(out, p)
				continue
			}
			p := o.Pool.Get(ln - vl)
			d, _ := p.Append(ln - vl)
			k := copy(d, buf[vl:])
			copy(d[k:], over[i*ovLen:i*ovLen+ln-len(buf)])
			m, drop := e.classify(d, buf[:vl], pt, status)
			if drop != nil {
				drop.Add(1)
				p.Release()
				continue
			}
			m.apply(p)
			out = append(out, p)
		}
		q.deliver(out)
		out = out[:0]
		// Refill the slots whose packets were delivered (large copies
		// leave theirs in place).
		missing := 0
		for i := 0; i < n; i++ {
			if pkts[i] == nil {
				missing++
			}
		}
		if missing > 0 {
			o.Pool.GetBatch(fresh[:missing], pipeline.SmallDataSize)
			j := 0
			for i := 0; i < n; i++ {
				if pkts[i] == nil {
					arm(i, fresh[j])
					fresh[j] = nil
					j++
				}
			}
		}
	}
}

// runRing is the TPACKET_V3 reader: it walks the blocks the kernel hands
// over, copies each frame into a pooled packet (the stack owns packets
// beyond the call, so they cannot point into the ring), gives the block
// back and delivers in batches of Batch frames.
func (q *queue) runRing() {
	e := q.e
	o := &e.o
	b := o.Batch
	vl := e.vlen
	bs, nb := o.Ring.BlockSize, o.Ring.Blocks
	out := make([]*pipeline.Packet, 0, b)
	spare := make([]*pipeline.Packet, b)
	nspare := 0
	defer func() { pipeline.ReleaseBatch(spare[:nspare]) }()
	cur := 0
	for {
		blk := q.ring[cur*bs : (cur+1)*bs]
		if loadStatus(blk[blkStatus:])&unix.TP_STATUS_USER == 0 {
			if !q.wait() {
				return
			}
			continue
		}
		if e.linkDown.Load() {
			e.linkDown.Store(false)
		}
		num := int(ne.Uint32(blk[blkNumPkts:]))
		off := int(ne.Uint32(blk[blkFirstPkt:]))
		for i := 0; i < num; i++ {
			if off < 0 || off+tp3Sll+sllLen > bs {
				e.RxMalformed.Add(1)
				break
			}
			h := blk[off:]
			next := int(ne.Uint32(h[tp3NextOffset:]))
			snap := int(ne.Uint32(h[tp3Snaplen:]))
			wlen := int(ne.Uint32(h[tp3Len:]))
			status := ne.Uint32(h[tp3Status:])
			start := off + int(ne.Uint16(h[tp3Mac:]))
			end := start + snap
			switch {
			case start-vl < off+tp3Sll || end > bs || snap < vl:
				e.RxMalformed.Add(1)
			case snap < wlen || status&unix.TP_STATUS_COPY != 0:
				e.RxTruncated.Add(1)
			default:
				frame := blk[start:end]
				var p *pipeline.Packet
				small := len(frame) <= pipeline.SmallDataSize
				if small {
					if nspare == 0 {
						o.Pool.GetBatch(spare, pipeline.SmallDataSize)
						nspare = b
					}
					nspare--
					p = spare[nspare]
					spare[nspare] = nil
				} else {
					p = o.Pool.Get(len(frame))
				}
				d, _ := p.Append(len(frame))
				copy(d, frame)
				m, drop := e.classify(d, blk[start-vl:start], h[tp3Sll+sllType], status)
				if drop != nil {
					drop.Add(1)
					if small {
						p.Truncate(0)
						spare[nspare] = p
						nspare++
					} else {
						p.Release()
					}
				} else {
					m.apply(p)
					out = append(out, p)
					if len(out) == b {
						q.deliver(out)
						out = out[:0]
					}
				}
			}
			if next == 0 {
				break
			}
			off += next
		}
		storeStatus(blk[blkStatus:], unix.TP_STATUS_KERNEL)
		cur = (cur + 1) % nb
		q.deliver(out)
		out = out[:0]
	}
}
