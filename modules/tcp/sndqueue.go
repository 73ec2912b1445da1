package tcp

import (
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// sndRoom is the room a send-queue packet keeps in front of its data
// beyond the pool's headroom: the largest TCP header and an IPv6 header,
// so that a segment sent as a handle of the packet (sndQueue.segment)
// pushes its headers without copying the data.
const sndRoom = 60 + wire.IPv6HeaderSize

// sndQueue is the send buffer: the bytes from SND.UNA on (n of them),
// held as packets from the stack's pool, each at most one segment of
// data with room for the headers in front (Linux's write queue of skbs).
// Write copies the application's bytes into them once; a segment that is
// exactly one such packet leaves as a handle of it (pipeline.Packet.Share:
// the bytes are not copied again), which the network layer and the link
// own while the queue keeps the packet for retransmission; any other
// segment (a part of a packet, several packets, one whose earlier
// transmission is still held somewhere) is copied out of the queue
// (peek). Where gVisor's segments share views of its send buffer, this is
// our second copy saved: the bytes are copied by Write and by the
// receiver's Read, nothing in between. The packets' buffers are charged
// to the stack's account of ring storage. An idle connection holds
// nothing (q is nil).
type sndQueue struct {
	n int
	m *memAcct
	q *sndPkts
}

// sndPkts is the queue's storage, made at the first write.
type sndPkts struct {
	e       []sndEntry // a ring: cnt entries from head
	head    int
	cnt     int
	front   int64 // stream position of the first byte held
	charged int   // buffer bytes charged to the account
}

// sndEntry is one packet of the queue and the stream position of its
// first byte. A sealed packet (sent as a handle once) takes no more bytes:
// the handle's holder may write behind its data.
//
// When sumOK, sum is the checksum sum (wire.Checksum, not inverted) of
// the packet's bytes, taken while Write copied them in (wire.CopyChecksum):
// a segment that leaves as a handle of the packet takes its checksum from
// it and the header's, its payload not summed again, retransmissions
// included. Only packets of one segment each (zeroCopy) keep it, and a
// packet loses it when an ACK takes bytes from its front (discard).
type sndEntry struct {
	pkt    *pipeline.Packet
	start  int64
	sum    uint16
	sumOK  bool
	sealed bool
}

func (q *sndPkts) at(i int) *sndEntry { return &q.e[(q.head+i)%len(q.e)] }

// push appends an entry, growing the ring (doubling; once per connection
// at its working size).
func (q *sndPkts) push(e sndEntry) {
	if q.cnt == len(q.e) {
		ne := make([]sndEntry, max(2*len(q.e), 8))
		for i := 0; i < q.cnt; i++ {
			ne[i] = *q.at(i)
		}
		q.e, q.head = ne, 0
	}
	*q.at(q.cnt) = e
	q.cnt++
}

// zeroCopy reports whether segments leave as handles of the send queue's
// packets: when a segment fills at least half of the large buffer it
// needs (the receive queue's rule, Packet.Compact's), and the link does
// not take TSO super-packets (built of several packets: copied). A
// smaller segment is cheaper to copy than to share, and the queue then
// packs its bytes densely, in large buffers, as a ring.
func (c *conn) zeroCopy() bool {
	return !c.tso && 2*(sndRoom+c.sndMSS) >= pipeline.LargeDataSize
}

// sndChunk is the data a send-queue packet takes: one segment when
// segments leave as handles (zeroCopy), else 0: packed (write).
func (c *conn) sndChunk() int {
	if c.zeroCopy() {
		return c.sndMSS
	}
	return 0
}

// packSmall is the queue size under which packed bytes go to small
// buffers: a connection with little unacknowledged data (a request, a
// response) holds 2 KiB buffers, not 64 KiB ones, as the ring it replaced
// started at 4 KiB.
const packSmall = 16 << 10

// reserveEntries grows the ring to hold k entries without growing later.
func (s *sndQueue) reserveEntries(k int) {
	if s.q == nil {
		s.q = new(sndPkts)
	}
	q := s.q
	if k > len(q.e) {
		ne := make([]sndEntry, k)
		for i := 0; i < q.cnt; i++ {
			ne[i] = *q.at(i)
		}
		q.e, q.head = ne, 0
	}
}

// write queues what it can of p in packets of at most chunk bytes from
// pool (chunk 0: packed, a small buffer's worth while the queue holds
// less than packSmall, a large one's after), filling the last packet
// first when it is not sealed, and returns how many bytes it queued
// (fewer than len(p) only at the stack's memory limit).
func (s *sndQueue) write(p []byte, chunk int, pool *pipeline.Pool) int {
	packed := chunk <= 0
	chunk = max(1, min(chunk, pipeline.LargeDataSize-sndRoom))
	if s.q == nil {
		s.q = new(sndPkts) // once per connection (and after a release)
	}
	q := s.q
	total := 0
	if q.cnt > 0 {
		e := q.at(q.cnt - 1)
		if packed {
			chunk = pipeline.LargeDataSize - sndRoom // the tailroom bounds it
		}
		if room := chunk - e.pkt.Len(); !e.sealed && room > 0 {
			k := min(room, len(p), e.pkt.Tailroom())
			at := e.pkt.Len()
			b, _ := e.pkt.Append(k)
			if e.sumOK {
				_, sum := wire.CopyChecksum(b, p[:k], 0)
				e.sum = wire.ChecksumCombine(e.sum, wire.ChecksumShift(sum, at))
			} else {
				copy(b, p[:k])
			}
			p, total = p[k:], k
		}
	}
	for len(p) > 0 {
		if packed {
			chunk = pipeline.LargeDataSize - sndRoom
			if s.n+total < packSmall {
				chunk = pipeline.SmallDataSize - sndRoom
			}
		}
		k := min(chunk, len(p))
		pkt := pool.Get(sndRoom + chunk)
		size := pkt.Headroom() + pkt.Len() + pkt.Tailroom()
		if !s.m.charge(size, q.charged+size) {
			pkt.Release()
			break
		}
		q.charged += size
		pkt.Append(sndRoom + k)
		pkt.Pull(sndRoom)
		e := sndEntry{pkt: pkt, start: q.front + int64(s.n+total)}
		if packed {
			copy(pkt.Data(), p[:k]) // segments are copied out (peek)
		} else {
			_, e.sum = wire.CopyChecksum(pkt.Data(), p[:k], 0)
			e.sumOK = true
		}
		q.push(e)
		p, total = p[k:], total+k
	}
	s.n += total
	return total
}

// find returns the index of the entry holding byte off (off < n).
func (q *sndPkts) find(off int) int {
	pos := q.front + int64(off)
	lo, hi := 0, q.cnt-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if q.at(mid).start <= pos {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// peek copies bytes from offset off into p and returns how many and,
// when sum is set, their checksum sum (wire.Checksum, not inverted),
// summed as they are copied (wire.CopyChecksum).
func (s *sndQueue) peek(off int, p []byte, sum bool) (int, uint16) {
	if off >= s.n || len(p) == 0 {
		return 0, 0
	}
	q := s.q
	total := 0
	var cs uint16
	for i := q.find(off); i < q.cnt && len(p) > 0; i++ {
		e := q.at(i)
		d := e.pkt.Data()
		if skip := q.front + int64(off+total) - e.start; skip > 0 {
			d = d[skip:]
		}
		var k int
		if sum {
			var ps uint16
			k, ps = wire.CopyChecksum(p, d, 0)
			cs = wire.ChecksumCombine(cs, wire.ChecksumShift(ps, total))
		} else {
			k = copy(p, d)
		}
		p, total = p[k:], total+k
	}
	return total, cs
}

// segment returns the packet holding exactly bytes [off, off+n) when it
// may leave as a handle of it: it holds nothing else, nobody holds an
// earlier handle of it, and it has room for hl bytes of TCP header and
// an IP header in front. nil otherwise (the segment is copied).
func (s *sndQueue) segment(off, n, hl int) *sndEntry {
	if s.q == nil || off >= s.n {
		return nil
	}
	q := s.q
	e := q.at(q.find(off))
	if e.start != q.front+int64(off) || e.pkt.Len() != n || e.pkt.Shared() || e.pkt.Headroom() < hl+wire.IPv6HeaderSize+pipeline.DefaultHeadroom/2 {
		return nil
	}
	return e
}

// toEnd is how many bytes from offset off (< n) to the end of the packet
// holding it.
func (s *sndQueue) toEnd(off int) int {
	q := s.q
	e := q.at(q.find(off))
	return int(e.start + int64(e.pkt.Len()) - (q.front + int64(off)))
}

// discard drops k bytes from the front (acknowledged), releasing the
// packets it empties.
func (s *sndQueue) discard(k int) {
	k = min(k, s.n)
	if k == 0 {
		return
	}
	q := s.q
	s.n -= k
	q.front += int64(k)
	for q.cnt > 0 && k > 0 {
		e := q.at(0)
		l := e.pkt.Len()
		if k < l {
			e.pkt.Pull(k)
			e.start += int64(k)
			e.sumOK = false // the sum was of the bytes pulled too
			break
		}
		k -= l
		s.popFront()
	}
}

// popFront releases the first packet.
func (s *sndQueue) popFront() {
	q := s.q
	e := q.at(0)
	size := e.pkt.Headroom() + e.pkt.Len() + e.pkt.Tailroom()
	e.pkt.Release()
	s.m.uncharge(size)
	q.charged -= size
	*e = sndEntry{}
	q.head = (q.head + 1) % len(q.e)
	q.cnt--
}

// release frees what the queue holds and its storage.
func (s *sndQueue) release() {
	if s.q == nil {
		return
	}
	for s.q.cnt > 0 {
		s.popFront()
	}
	s.q, s.n = nil, 0
}
