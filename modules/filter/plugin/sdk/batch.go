package sdk

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Protocol version 2's record (RecordSize bytes a packet, little-endian;
// ../proto/filterplugin.proto says it for other languages):
//
//	 0 src       [4]byte IPv4 source address (network order); 0 for IPv6
//	 4 dst       [4]byte IPv4 destination address
//	 8 ports     uint32  source port << 16 | destination port
//	12 meta      uint32  bits 0-2 hook, 3 kind, 4 non-first fragment, 5 IPv6,
//	                     6-13 IP protocol, 14-31 the packet's length
//	16 links     uint32  in_link | out_link << 16 (stream link table indexes)
//	20 mark      uint32
//	24 tag       uint32
//	28 data_end  uint32  end of the packet's span in data (its start: the
//	                     previous record's data_end, 0 for the first); an
//	                     IPv6 packet's span starts with its source and
//	                     destination addresses (32 bytes)
//
// The packet's index in the message is its record's position.
const (
	RecordSize   = 32
	RecordSizeV1 = 72 // protocol version 1's record

	metaV6      = 1 << 5
	metaLenBits = 14
	// MaxPacketLen is the longest packet a version 2 record describes.
	MaxPacketLen = 1<<(32-metaLenBits) - 1
	addrs6Len    = 32
)

// Batch is the packets of one message a Matcher or a Target is asked
// about. A Packet is read from the message when its methods are called:
// nothing is decoded before. Valid only during the call that hands it over.
type Batch struct {
	recs  []byte // the message's records (validated: spans and links in range)
	data  []byte
	links []string
	idx   []uint32 // not nil: packet i is record idx[i] (a message with both kinds)
	n     int
}

// Len is the number of packets.
func (b *Batch) Len() int { return b.n }

// Packet returns packet i (0 ≤ i < Len()).
func (b *Batch) Packet(i int) Packet {
	k := i
	if b.idx != nil {
		k = int(b.idx[i])
	}
	return Packet{r: (*[RecordSize]byte)(b.recs[k*RecordSize:]), b: b, k: uint32(k)}
}

// Packet is one packet of a Batch: a view of its record in the message.
type Packet struct {
	r *[RecordSize]byte
	b *Batch
	k uint32
}

var le = binary.LittleEndian

// ID is the packet's index in the message the host sent.
func (p Packet) ID() uint32 { return p.k }

func (p Packet) meta() uint32 { return le.Uint32(p.r[12:]) }

// Hook is where the host stole the packet.
func (p Packet) Hook() Hook { return Hook(p.r[12] & 7) }

// Kind is what the host asks about it.
func (p Packet) Kind() Kind { return Kind(p.r[12] >> 3 & 1) }

// Fragment: a non-first fragment (ports are 0).
func (p Packet) Fragment() bool { return p.r[12]&(1<<4) != 0 }

// IPv6 reports whether the packet is IPv6.
func (p Packet) IPv6() bool { return p.r[12]&metaV6 != 0 }

// Proto is the IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
func (p Packet) Proto() uint8 { return uint8(p.meta() >> 6) }

// Len is the packet's length from its network header.
func (p Packet) Len() int { return int(p.meta() >> metaLenBits) }

// SrcPort and DstPort are the transport ports (0 when there are none).
func (p Packet) SrcPort() uint16 { return le.Uint16(p.r[10:]) }

// DstPort is the destination port.
func (p Packet) DstPort() uint16 { return le.Uint16(p.r[8:]) }

// Mark is the packet's mark.
func (p Packet) Mark() uint32 { return le.Uint32(p.r[20:]) }

// Tag is the rule's tag (tag: in YAML, --tag in iptables form): one
// plugin may serve rules that ask different questions.
func (p Packet) Tag() uint32 { return le.Uint32(p.r[24:]) }

// InLink and OutLink are the host's link names ("" when not known at the
// hook: no OutLink at Prerouting and Input).
func (p Packet) InLink() string { return p.b.links[le.Uint16(p.r[16:])] }

// OutLink is the link the packet leaves by.
func (p Packet) OutLink() string { return p.b.links[le.Uint16(p.r[18:])] }

// span is the packet's bytes in the message's data (with an IPv6
// packet's addresses).
func (p Packet) span() []byte {
	start := uint32(0)
	if p.k > 0 {
		start = le.Uint32(p.b.recs[(p.k-1)*RecordSize+28:])
	}
	return p.b.data[start:le.Uint32(p.r[28:])]
}

// Src is the source address.
func (p Packet) Src() netip.Addr {
	if p.IPv6() {
		return netip.AddrFrom16([16]byte(p.span()))
	}
	return netip.AddrFrom4([4]byte(p.r[0:4]))
}

// Dst is the destination address.
func (p Packet) Dst() netip.Addr {
	if p.IPv6() {
		return netip.AddrFrom16([16]byte(p.span()[16:]))
	}
	return netip.AddrFrom4([4]byte(p.r[4:8]))
}

// Data holds the bytes the plugin asked for in Needs (nil for DataNone),
// from the network header on.
func (p Packet) Data() []byte {
	s := p.span()
	if p.IPv6() {
		s = s[addrs6Len:]
	}
	if len(s) == 0 {
		return nil
	}
	return s[:len(s):len(s)]
}

// String is the packet's 5-tuple and question, for logs and tests.
func (p Packet) String() string {
	return fmt.Sprintf("%s %s:%d → %s:%d proto %d tag %d", p.Hook(), p.Src(), p.SrcPort(), p.Dst(), p.DstPort(), p.Proto(), p.Tag())
}

// Results is a target's answers about a Batch: Answers[i] for packet i
// (each Continue until set), and the marks and rewrites it asks for.
type Results struct {
	Answers []Answer
	idx     []uint32 // the batch's (nil: packet i is record i)
	marks   []uint32 // record index, mark
	rwIdx   []uint32
	rwLens  []uint32
	rwData  []byte
}

// SetMark sets packet i's mark (Needs.SetMark required, else ignored).
func (r *Results) SetMark(i int, mark uint32) {
	r.marks = append(r.marks, r.record(i), mark)
}

// Rewrite replaces packet i's bytes from the network header on
// (Needs.Rewrite required, else ignored): data must have the length of
// the bytes the plugin was given (else it is ignored), keep the packet's
// length and keep every checksum valid. It is copied.
func (r *Results) Rewrite(i int, data []byte) {
	r.rwIdx = append(r.rwIdx, r.record(i))
	r.rwLens = append(r.rwLens, uint32(len(data)))
	r.rwData = append(r.rwData, data...)
}

func (r *Results) record(i int) uint32 {
	_ = r.Answers[i] // i in range
	if r.idx != nil {
		return r.idx[i]
	}
	return uint32(i)
}

func (r *Results) reset(b *Batch) {
	r.Answers = resize(r.Answers, b.n)
	for i := range r.Answers {
		r.Answers[i] = Continue
	}
	r.idx = b.idx
	r.marks, r.rwIdx, r.rwLens, r.rwData = r.marks[:0], r.rwIdx[:0], r.rwLens[:0], r.rwData[:0]
}

// check validates a version 2 message's records against its data and the
// stream's link table (so that no Packet method can read out of range) and
// counts its target questions.
func check(recs, data []byte, nlinks int) (targets int, err error) {
	if len(recs)%RecordSize != 0 {
		return 0, errBadBatch
	}
	prev := uint32(0)
	nl := uint32(nlinks)
	for k := 0; k+RecordSize <= len(recs); k += RecordSize {
		r := (*[RecordSize]byte)(recs[k:])
		links, end := le.Uint32(r[16:]), le.Uint32(r[28:])
		min := prev
		if r[12]&metaV6 != 0 {
			min += addrs6Len
		}
		if links&0xffff >= nl || links>>16 >= nl || end < min || end > uint32(len(data)) {
			return 0, errBadBatch
		}
		prev = end
		targets += int(r[12] >> 3 & 1)
	}
	return targets, nil
}

// fromV1 converts a version 1 message's records into version 2's (into
// recs and data, reused): one copy per packet, so that one Packet reads
// both versions.
func fromV1(recs1, data1 []byte, recs, data []byte) ([]byte, []byte, error) {
	if len(recs1)%RecordSizeV1 != 0 {
		return recs, data, errBadBatch
	}
	recs, data = recs[:0], data[:0]
	off := 0
	for k := 0; k+RecordSizeV1 <= len(recs1); k += RecordSizeV1 {
		r := (*[RecordSizeV1]byte)(recs1[k:])
		m1, dl, plen := le.Uint32(r[4:]), int(le.Uint32(r[28:])), le.Uint32(r[32:])
		in, out := le.Uint32(r[12:]), le.Uint32(r[16:])
		if dl < 0 || dl > len(data1)-off || in > 0xffff || out > 0xffff || plen > MaxPacketLen {
			return recs, data, errBadBatch
		}
		v6 := m1&metaV6 != 0
		src, dst := addrOf(r[40:56], v6), addrOf(r[56:72], v6)
		var o [RecordSize]byte
		meta := m1&(1<<6-1) | (m1>>8&0xff)<<6 | plen<<metaLenBits
		if src.Is4() && dst.Is4() {
			meta &^= metaV6
			s, d := src.As4(), dst.As4()
			copy(o[0:4], s[:])
			copy(o[4:8], d[:])
		} else {
			meta |= metaV6
			s, d := src.As16(), dst.As16()
			data = append(append(data, s[:]...), d[:]...)
		}
		copy(o[8:12], r[8:12])
		le.PutUint32(o[12:], meta)
		le.PutUint32(o[16:], in|out<<16)
		copy(o[20:28], r[20:28])
		data = append(data, data1[off:off+dl]...)
		off += dl
		le.PutUint32(o[28:], uint32(len(data)))
		recs = append(recs, o[:]...)
	}
	return recs, data, nil
}

// addrOf reads a version 1 record's 16-byte address: IPv6 when v6 is set,
// else the IPv4 address it maps.
func addrOf(b []byte, v6 bool) netip.Addr {
	a := netip.AddrFrom16([16]byte(b))
	if !v6 {
		a = a.Unmap()
	}
	return a
}
