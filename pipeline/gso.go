package pipeline

import (
	"encoding/binary"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// Software offloads: what the stack does for a link that cannot take a GSO
// super-packet (no CapGSO) or a partial checksum (no CapTXChecksumOffload).
// A packet read from a TUN or AF_PACKET link with virtio-net offloads may be a
// TSO/USO super-packet (up to 64 KiB, Packet.GSO.Type set) or carry a partial
// transport checksum (Packet.GSO.NeedsCsum: the checksum field holds the
// pseudo-header sum and the rest is left to the device). Forwarding keeps
// such packets whole; only when one must leave through a link that cannot
// finish the job is it segmented here (every segment fully checksummed) or
// its checksum completed in place. Batch.transmit calls this with one branch
// per batch; packets without offload metadata never reach it.
//
// The layout the GSO metadata describes, relative to the network header
// (Data() at transmit time): CsumStart is where the transport header begins,
// CsumOffset where its checksum field lies within it (16 TCP, 6 UDP), HdrLen
// the length of the headers every segment repeats, SegSize the payload per
// segment.

// needsSoftOffload reports whether a packet with offload metadata must be
// segmented or checksummed before a link with caps takes it.
func needsSoftOffload(p *Packet, caps LinkCapabilities) bool {
	if p.GSO.Type != GSONone {
		return caps&(CapGSO|CapTXChecksumOffload) != CapGSO|CapTXChecksumOffload
	}
	return p.GSO.NeedsCsum && caps&CapTXChecksumOffload == 0
}

// softwareOffload returns q with every packet the link cannot take
// segmented or checksummed, and the packet and byte counts of the result.
// It owns q's packets: the result holds each of them (or its segments)
// once; malformed ones are dropped and counted as the NIC's TX drops. The
// returned slice is q itself or the batch's segment scratch.
func (b *Batch) softwareOffload(ng *nicGen, q []*Packet) (_ []*Packet, n, bytes uint64) {
	caps := ng.nic.bound.Load().caps
	out := b.segs[:0]
	pool := b.stack.pool
	for i, p := range q {
		if p == nil {
			continue
		}
		q[i] = nil
		if !needsSoftOffload(p, caps) {
			out = append(out, p)
			continue
		}
		if p.GSO.Type == GSONone {
			if !CompleteChecksum(p) {
				b.Drop(p, nil)
				continue
			}
			out = append(out, p)
			continue
		}
		var ok bool
		start := len(out)
		out, ok = SegmentGSO(p, pool, out)
		if !ok {
			ReleaseBatch(out[start:])
			out = out[:start]
			b.Drop(p, nil)
			continue
		}
		p.Release()
	}
	b.segs = out
	for _, p := range out {
		n++
		bytes += uint64(p.Len())
	}
	return out, n, bytes
}

// CompleteChecksum finishes a partial transport checksum (GSO.NeedsCsum) in
// place: the sum from CsumStart to the end, which includes the pseudo-header
// sum already in the field, is stored inverted at CsumStart+CsumOffset. Data()
// must start at the network header. It clears NeedsCsum and reports false,
// changing nothing, when the offsets do not fit the packet. A packet without
// NeedsCsum is left as it is.
func CompleteChecksum(p *Packet) bool {
	if !p.GSO.NeedsCsum {
		return true
	}
	d := p.Data()
	start, field := int(p.GSO.CsumStart), int(p.GSO.CsumStart)+int(p.GSO.CsumOffset)
	if start > len(d) || field+2 > len(d) {
		return false
	}
	sum := ^wire.Checksum(d[start:], 0)
	if sum == 0 && p.GSO.CsumOffset == 6 {
		sum = 0xffff // UDP: 0 means no checksum
	}
	binary.BigEndian.PutUint16(d[field:], sum)
	p.GSO.NeedsCsum = false
	return true
}

// gsoLayout is a checked description of a super-packet.
type gsoLayout struct {
	v6        bool
	tcp       bool
	l4, hdr   int // transport header offset, headers length
	seg       int // payload per segment
	payload   int // total payload
	proto     uint8
	srcOff    int
	addrLen   int
	segsCount int
}

// parseGSO checks the super-packet d against its metadata. The header
// length is taken from the transport header, not trusted from the metadata.
func parseGSO(d []byte, g *GSO) (l gsoLayout, ok bool) {
	if len(d) < 1 || g.SegSize == 0 {
		return l, false
	}
	switch d[0] >> 4 {
	case 4:
		if len(d) < wire.IPv4MinimumSize {
			return l, false
		}
		l.l4 = int(d[0]&0xf) * 4
		l.proto = d[9]
		l.srcOff, l.addrLen = 12, 4
	case 6:
		if len(d) < 40 {
			return l, false
		}
		l.v6 = true
		l.l4 = int(g.CsumStart) // extension headers end where the transport begins
		if l.l4 < 40 {
			l.l4 = 40
		}
		l.proto = d[6]
		l.srcOff, l.addrLen = 8, 16
	default:
		return l, false
	}
	switch g.Type {
	case GSOTCPv4, GSOTCPv6:
		if (g.Type == GSOTCPv6) != l.v6 || l.proto != wire.ProtocolTCP && !l.v6 {
			return l, false
		}
		if len(d) < l.l4+wire.TCPMinimumSize {
			return l, false
		}
		th := int(d[l.l4+12]>>4) * 4
		if th < wire.TCPMinimumSize {
			return l, false
		}
		l.tcp = true
		l.proto = wire.ProtocolTCP
		l.hdr = l.l4 + th
	case GSOUDPL4:
		if !l.v6 && l.proto != wire.ProtocolUDP {
			return l, false
		}
		l.proto = wire.ProtocolUDP
		l.hdr = l.l4 + wire.UDPHeaderSize
	default:
		return l, false
	}
	if l.hdr > len(d) || l.l4 < 20 {
		return l, false
	}
	l.seg = int(g.SegSize)
	l.payload = len(d) - l.hdr
	l.segsCount = (l.payload + l.seg - 1) / l.seg
	if l.segsCount == 0 {
		l.segsCount = 1
	}
	return l, true
}

// SegmentGSO cuts the super-packet p (Data() at the network header) into
// wire-sized packets from pool, appended to dst: each gets the headers with
// lengths, IPv4 ID (+1 per segment), TCP sequence number and flags (FIN and
// PSH only on the last, CWR only on the first) fixed up and a complete
// transport checksum; metadata is copied, GSO cleared. p itself is not
// changed or released. ok is false when the metadata does not describe the
// packet; dst may then hold some segments, which the caller releases.
func SegmentGSO(p *Packet, pool *Pool, dst []*Packet) (_ []*Packet, ok bool) {
	d := p.Data()
	l, ok := parseGSO(d, &p.GSO)
	if !ok {
		return dst, false
	}
	if pool == nil {
		pool = DefaultPool
	}
	var seq uint32
	var flags uint8
	if l.tcp {
		seq = binary.BigEndian.Uint32(d[l.l4+4:])
		flags = d[l.l4+13]
	}
	var id uint16
	if !l.v6 {
		id = binary.BigEndian.Uint16(d[4:])
	}
	src := d[l.srcOff : l.srcOff+l.addrLen]
	dstAddr := d[l.srcOff+l.addrLen : l.srcOff+2*l.addrLen]
	for i, off := 0, l.hdr; i < l.segsCount; i++ {
		end := min(off+l.seg, len(d))
		size := l.hdr + end - off
		q := pool.Get(size)
		b, _ := q.Append(size)
		copy(b, d[:l.hdr])
		copy(b[l.hdr:], d[off:end])
		q.CopyMeta(p)
		q.GSO = GSO{}
		q.SetNetworkHeader()
		if l.v6 {
			binary.BigEndian.PutUint16(b[4:], uint16(size-40))
		} else {
			ip := wire.IPv4(b)
			ip.SetTotalLength(uint16(size))
			ip.SetID(id + uint16(i))
			ip.SetChecksum(ip.CalculateChecksum())
		}
		t := b[l.l4:]
		pseudo := wire.PseudoHeaderChecksum(l.proto, src, dstAddr, uint16(len(t)))
		if l.tcp {
			tc := wire.TCP(t)
			tc.SetSeq(seq + uint32(off-l.hdr))
			f := flags
			if i > 0 {
				f &^= tcpFlagCWR
			}
			if i < l.segsCount-1 {
				f &^= tcpFlagFIN | tcpFlagPSH
			}
			tc.SetFlags(f)
			tc.SetChecksum(tc.CalculateChecksum(pseudo))
		} else {
			u := wire.UDP(t)
			u.SetLength(uint16(len(t)))
			u.SetChecksum(u.CalculateChecksum(pseudo))
		}
		dst = append(dst, q)
		off = end
	}
	return dst, true
}

const (
	tcpFlagFIN = 0x01
	tcpFlagPSH = 0x08
	tcpFlagCWR = 0x80
)

// clearSegs empties the segment scratch after the link took its packets.
func (b *Batch) clearSegs() {
	clear(b.segs)
	b.segs = b.segs[:0]
}
