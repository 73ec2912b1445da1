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

	// tpacket2_hdr fields, and where its sockaddr_ll follows.
	tp2Status  = 0
	tp2Len     = 4
	tp2Snaplen = 8
	tp2Mac     = 12
	tp2Sll     = 32 // TPACKET_ALIGN(sizeof(struct tpacket2_hdr))

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

// runMmsg is the recvmmsg reader. Each of Batch slots holds two pooled
// packets: a small one whose buffer (from the virtio-net header on) is the
// first iovec, and a large one whose buffer, past the room the small part
// would take, is the second. A frame that fits the small buffer is
// delivered in the small packet; a larger one (a GSO super-packet, a jumbo
// frame) already has all but its first small-buffer's worth in the large
// packet, so only that head (2 KiB at most) is copied across and the large
// packet is delivered: every byte of a super-packet is copied once, by the
// kernel. Slots whose packets went to the stack are refilled with one
// GetBatch per size per batch.
func (q *queue) runMmsg() {
	e := q.e
	o := &e.o
	b := o.Batch
	vl := e.vlen
	hdrs := make([]unix.Mmsghdr, b)
	iovs := make([]unix.Iovec, 2*b)
	names := make([]byte, b*sllLen)
	ctrl := make([]byte, b*ctrlLen)
	pkts := make([]*pipeline.Packet, b)   // small
	larges := make([]*pipeline.Packet, b) // large
	bufs := make([][]byte, b)
	lbufs := make([][]byte, b)
	fresh := make([]*pipeline.Packet, b)
	out := make([]*pipeline.Packet, 0, b)
	defer pipeline.ReleaseBatch(pkts)
	defer pipeline.ReleaseBatch(larges)

	// prep makes p's buffer from the virtio-net header's place on readable
	// and returns it.
	prep := func(p *pipeline.Packet) []byte {
		if vl > 0 {
			p.Push(vl)
		}
		p.Append(p.Tailroom())
		return p.Data()
	}
	arm := func(i int, p *pipeline.Packet) {
		pkts[i] = p
		buf := prep(p)
		bufs[i] = buf
		iovs[2*i].Base = &buf[0]
		iovs[2*i].SetLen(len(buf))
	}
	armLarge := func(i int, p *pipeline.Packet) {
		larges[i] = p
		lbuf := prep(p)
		lbufs[i] = lbuf
		rest := lbuf[len(bufs[i]):]
		iovs[2*i+1].Base = &rest[0]
		iovs[2*i+1].SetLen(len(rest))
	}
	for i := 0; i < b; i++ {
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
	o.Pool.GetBatch(fresh, pipeline.LargeDataSize)
	for i := range fresh {
		armLarge(i, fresh[i])
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
			p := pkts[i]
			if ln > len(buf) {
				// The frame went on into the large packet: bring its
				// head (and the virtio-net header) over.
				p = larges[i]
				buf = lbufs[i]
				copy(buf, bufs[i])
			}
			m, drop := e.classify(buf[vl:ln], buf[:vl], pt, status)
			if drop != nil {
				drop.Add(1)
				continue // the packet stays in its slot, untouched
			}
			if p == pkts[i] {
				pkts[i] = nil
			} else {
				larges[i] = nil
			}
			p.Truncate(ln)
			p.Pull(vl)
			m.apply(p)
			out = append(out, p)
		}
		q.deliver(out)
		out = out[:0]
		// Refill the slots whose packets were delivered.
		q.refill(n, pkts, fresh, pipeline.SmallDataSize, arm)
		q.refill(n, larges, fresh, pipeline.LargeDataSize, armLarge)
	}
}

// refill puts a fresh packet of size into every nil slot among the first n
// of slots (one GetBatch for all of them) and arms it.
func (q *queue) refill(n int, slots, fresh []*pipeline.Packet, size int, arm func(int, *pipeline.Packet)) {
	missing := 0
	for _, p := range slots[:n] {
		if p == nil {
			missing++
		}
	}
	if missing == 0 {
		return
	}
	q.e.o.Pool.GetBatch(fresh[:missing], size)
	j := 0
	for i, p := range slots[:n] {
		if p == nil {
			arm(i, fresh[j])
			fresh[j] = nil
			j++
		}
	}
}

// runBlock is the TPACKET_V3 reader: it walks the blocks the kernel hands
// over, copies each frame into a pooled packet (the stack owns packets
// beyond the call, so they cannot point into the ring), gives the block
// back and delivers in batches of Batch frames.
func (q *queue) runBlock() {
	e := q.e
	o := &e.o
	b := o.Batch
	vl := e.vlen
	bs, nb := o.Ring.BlockSize, o.Ring.Blocks
	out := make([]*pipeline.Packet, 0, b)
	cp := ringCopier{e: e, spare: make([]*pipeline.Packet, b)}
	defer cp.release()
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
				if p := cp.frame(blk[start:end], blk[start-vl:start], h[tp3Sll+sllType], status); p != nil {
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

// ringCopier copies frames out of a ring into pooled packets: small ones
// from a batch of spares (one GetBatch per Batch frames), larger ones one
// by one.
type ringCopier struct {
	e     *Endpoint
	spare []*pipeline.Packet
	n     int // spares left, at the front of spare
}

// frame copies frame (from its Ethernet header) into a packet and
// classifies it (vh: its virtio-net header; pt and status: the ring's
// packet type and tp_status). It returns the packet, ready for the stack,
// or nil when the frame was dropped (and counted).
func (c *ringCopier) frame(frame, vh []byte, pt uint8, status uint32) *pipeline.Packet {
	var p *pipeline.Packet
	small := len(frame) <= pipeline.SmallDataSize
	if small {
		if c.n == 0 {
			c.e.o.Pool.GetBatch(c.spare, pipeline.SmallDataSize)
			c.n = len(c.spare)
		}
		c.n--
		p = c.spare[c.n]
		c.spare[c.n] = nil
	} else if p = c.e.o.Pool.TryGet(len(frame)); p == nil {
		// Larger than any packet buffer (a BIG TCP super-packet in a
		// big ring slot): the size is the kernel's, never a panic.
		c.e.RxTruncated.Add(1)
		return nil
	}
	d, _ := p.Append(len(frame))
	copy(d, frame)
	m, drop := c.e.classify(d, vh, pt, status)
	if drop != nil {
		drop.Add(1)
		if small {
			p.Truncate(0)
			c.spare[c.n] = p
			c.n++
		} else {
			p.Release()
		}
		return nil
	}
	m.apply(p)
	return p
}

func (c *ringCopier) release() { pipeline.ReleaseBatch(c.spare[:c.n]) }

// runRing is the TPACKET_V2 reader. The kernel copies each frame into the
// next free slot (in the sender's softirq) and wakes the reader if it
// sleeps; the reader walks the slots the kernel has handed over, copies
// each frame into a pooled packet, gives the slot back and delivers in
// batches of Batch frames, and whenever the ring runs dry (so a lone
// frame is delivered at once: no added latency). A slot marked
// TP_STATUS_COPY holds only the head of a frame too big for it (a GSO
// super-packet): the whole frame waits in the socket's queue, in order,
// and is read with recvmsg straight into a large packet.
func (q *queue) runRing() {
	e := q.e
	o := &e.o
	b := o.Batch
	vl := e.vlen
	bs, fs := o.Ring.BlockSize, o.Ring.FrameSize
	fpb := bs / fs
	nframes := fpb * o.Ring.Blocks
	out := make([]*pipeline.Packet, 0, b)
	cp := ringCopier{e: e, spare: make([]*pipeline.Packet, b)}
	defer cp.release()
	// The recvmsg of a frame that did not fit its slot.
	var large *pipeline.Packet
	defer func() {
		if large != nil {
			large.Release()
		}
	}()
	hdrs := make([]unix.Mmsghdr, 1)
	iov := make([]unix.Iovec, 1)
	hdrs[0].Hdr.Iov = &iov[0]
	hdrs[0].Hdr.SetIovlen(1)
	cur := 0
	for {
		off := cur/fpb*bs + cur%fpb*fs
		h := q.ring[off : off+fs]
		status := loadStatus(h[tp2Status:])
		if status&unix.TP_STATUS_USER == 0 {
			q.deliver(out)
			out = out[:0]
			if !q.wait() {
				return
			}
			continue
		}
		if e.linkDown.Load() {
			e.linkDown.Store(false)
		}
		snap := int(ne.Uint32(h[tp2Snaplen:]))
		wlen := int(ne.Uint32(h[tp2Len:]))
		start := int(ne.Uint16(h[tp2Mac:]))
		end := start + snap
		pt := h[tp2Sll+sllType]
		switch {
		case status&unix.TP_STATUS_COPY != 0:
			// The whole frame (virtio-net header first) is next in the
			// socket's queue.
			if large == nil {
				large = o.Pool.Get(pipeline.LargeDataSize)
				if vl > 0 {
					large.Push(vl)
				}
				large.Append(large.Tailroom())
			}
			buf := large.Data()
			iov[0].Base = &buf[0]
			iov[0].SetLen(len(buf))
			hdrs[0].Hdr.Flags = 0
			n, err := recvmmsg(q.fd, hdrs, unix.MSG_DONTWAIT|unix.MSG_TRUNC)
			ln := int(hdrs[0].Len)
			switch {
			case err != nil || n != 1:
				e.RxTruncated.Add(1) // not queued after all (no room): lost
			case hdrs[0].Hdr.Flags&unix.MSG_TRUNC != 0 || ln > len(buf):
				e.RxTruncated.Add(1)
			case ln < vl+wire.EthernetHeaderSize:
				e.RxMalformed.Add(1)
			default:
				m, drop := e.classify(buf[vl:ln], buf[:vl], pt, status)
				if drop != nil {
					drop.Add(1)
					break
				}
				p := large
				large = nil
				p.Truncate(ln)
				p.Pull(vl)
				m.apply(p)
				out = append(out, p)
			}
		case start-vl < tp2Sll+sllLen || end > fs || snap < 0:
			e.RxMalformed.Add(1)
		case snap < wlen:
			e.RxTruncated.Add(1)
		default:
			if p := cp.frame(h[start:end], h[start-vl:start], pt, status); p != nil {
				out = append(out, p)
			}
		}
		storeStatus(h[tp2Status:], unix.TP_STATUS_KERNEL)
		cur++
		if cur == nframes {
			cur = 0
		}
		if len(out) == b {
			q.deliver(out)
			out = out[:0]
		}
	}
}
