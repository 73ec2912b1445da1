package tcp

import "github.com/pipestack/pipestack/pipeline"

// rxqMax is how many in-order segments a connection holds as packets.
const rxqMax = 32

// rxqHoldMin is the smallest segment held as its packet however large
// its buffer (rxqTake): a 32 KiB write (io.Copy's buffer) at MTU 65,535
// arrives as a segment of 32 KiB in a 64 KiB buffer, just under half of
// it, and went to the ring, the held packets copied in first (rxqFlush):
// most bytes copied twice. A cap on the held buffers below rxqMax (twice
// the receive buffer, say) brought the flushes back (5–7 % of the CPU):
// the window counts bytes, not buffers, and lets in more than the cap.
const rxqHoldMin = 16 << 10

// rxQueue holds in-order segments as the packets they arrived in, after
// the receive ring's contents: Read copies their bytes out once, where
// copying them into the ring first made two copies of every byte (gVisor's
// receive queue keeps its segments the same way). The readable bytes are
// the ring's contents, then the queue's. Only a segment that fills at least
// half its packet's buffer is held (a small one in a large buffer would
// cost the large buffer: Packet.Compact's rule), or of rxqHoldMin bytes
// or more (each packet is charged as its whole buffer; the most a
// connection holds stays rxqMax buffers), only while no
// out-of-order data is held and the stack is not under memory pressure;
// anything else goes to the ring, the queue moved into it first (flush),
// so that the ring's offsets stay those of the sequence space. The held
// buffers are charged to the stack's account of ring storage.
//
// A segment too small for its buffer that arrives while the queue holds
// packets is copied into a small packet of the queue's own (or the tail
// of the last one it made, when that has room), not into the ring: the
// ring would take the whole queue in first (flush), up to rxqMax large
// segments copied for a few bytes. A bulk sender whose writes do not end
// on segment boundaries sends such a tail with every write (64 KiB writes
// at an MSS of 65,495: a 41-byte segment after each full one); flushing
// for it made the ring carry most of the bytes and every byte two copies.
type rxQueue struct {
	e       [rxqMax]rxEntry
	head, n int
	bytes   int // unread bytes held
	charged int // the held packets' buffer bytes, charged to the account
}

// rxEntry is one held segment: its packet and its unread bytes.
type rxEntry struct {
	pkt  *pipeline.Packet
	data []byte
	size int32 // the packet's buffer (charged; at most LargeDataSize and headroom)
	own  bool  // a packet the queue made (rxqCopy): its bytes may grow
}

// rcvHeld is the bytes a Read may return: the ring's and the queue's.
func (c *conn) rcvHeld() int {
	if c.rxq == nil {
		return c.rcvBuf.n
	}
	return c.rcvBuf.n + c.rxq.bytes
}

// rcvQueued is the buffer bytes the queue holds.
func (c *conn) rcvQueued() int {
	if c.rxq == nil {
		return 0
	}
	return c.rxq.charged
}

// rxqTake holds data (in order, at RCV.NXT, the bytes of s.pkt) as its
// packet; false when it is to go to the ring. It takes ownership of the
// packet (s.pkt is cleared).
func (c *conn) rxqTake(s *segment, data []byte) bool {
	pkt := s.pkt
	if pkt == nil || len(data) == 0 || c.nooo > 0 || c.t.mem.underPressure() {
		return false
	}
	size := pkt.Headroom() + pkt.Len() + pkt.Tailroom()
	if 2*len(data) < size && len(data) < rxqHoldMin {
		return c.rxqCopy(data)
	}
	q := c.rxq
	if q == nil {
		q = new(rxQueue) // once per connection, at its first held segment
		c.rxq = q
	}
	if q.n == rxqMax || !c.rcvBuf.m.charge(size, size) {
		return false
	}
	q.e[(q.head+q.n)%rxqMax] = rxEntry{pkt: pkt, data: data, size: int32(size)}
	q.n++
	q.bytes += len(data)
	q.charged += size
	s.pkt = nil
	return true
}

// rxqCopy holds data (a segment too small for its buffer: rxqTake) as a
// copy, behind the packets the queue holds: in the tail of the last entry
// when that is a packet of the queue's own with room, else in a small
// packet of its own. False when the queue is empty (the ring takes it, as
// any small data), full, or data does not fit a small packet.
func (c *conn) rxqCopy(data []byte) bool {
	q := c.rxq
	if q == nil || q.n == 0 || len(data) > pipeline.SmallDataSize {
		return false
	}
	if e := &q.e[(q.head+q.n-1)%rxqMax]; e.own && e.pkt.Tailroom() >= len(data) {
		b, _ := e.pkt.Append(len(data))
		copy(b, data)
		e.data = e.data[:len(e.data)+len(data)] // b follows e.data in the buffer
		q.bytes += len(data)
		return true
	}
	if q.n == rxqMax {
		return false
	}
	pkt := c.t.s.Pool().Get(len(data))
	size := pkt.Headroom() + pkt.Len() + pkt.Tailroom()
	if !c.rcvBuf.m.charge(size, size) {
		pkt.Release()
		return false
	}
	b, _ := pkt.Append(len(data))
	copy(b, data)
	q.e[(q.head+q.n)%rxqMax] = rxEntry{pkt: pkt, data: b, size: int32(size), own: true}
	q.n++
	q.bytes += len(data)
	q.charged += size
	return true
}

// rxqRead copies up to len(p) bytes from the head of the queue into p,
// releasing the packets it empties, and returns how many.
func (c *conn) rxqRead(p []byte) int {
	q := c.rxq
	if q == nil {
		return 0
	}
	total := 0
	for q.n > 0 && len(p) > 0 {
		e := &q.e[q.head]
		k := copy(p, e.data)
		e.data = e.data[k:]
		p = p[k:]
		total += k
		if len(e.data) == 0 {
			c.rxqPop()
		}
	}
	q.bytes -= total
	return total
}

// rxqPop releases the packet at the head of the queue.
func (c *conn) rxqPop() {
	q := c.rxq
	e := &q.e[q.head]
	e.pkt.Release()
	c.rcvBuf.m.uncharge(int(e.size))
	q.charged -= int(e.size)
	*e = rxEntry{}
	q.head = (q.head + 1) % rxqMax
	q.n--
}

// rxqFlush moves the queue's bytes into the ring (before data goes to the
// ring at an offset from its contents); false when the ring cannot grow to
// hold them (the stack's memory limit).
func (c *conn) rxqFlush() bool {
	q := c.rxq
	if q == nil || q.n == 0 {
		return true
	}
	if end := c.rcvBuf.n + q.bytes; !c.rcvBuf.reserve(end, max(c.rcvBufMax, end)) {
		return false
	}
	for q.n > 0 {
		c.rcvBuf.write(q.e[q.head].data)
		c.rxqPop()
	}
	q.bytes = 0
	return true
}

// rxqRelease drops what the queue holds (a close, CloseRead) and the
// queue itself.
func (c *conn) rxqRelease() {
	if c.rxq == nil {
		return
	}
	for c.rxq.n > 0 {
		c.rxqPop()
	}
	c.rxq = nil
}

// releaseRcv frees the receive side's storage: the ring and the queue.
func (c *conn) releaseRcv() {
	c.rcvBuf.release()
	c.rxqRelease()
}
