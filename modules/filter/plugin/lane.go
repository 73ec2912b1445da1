package plugin

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"time"

	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"
	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
	"github.com/pipestack/pipestack/pipeline"
)

// This file is the plugin's data path below the filter: a lane is one Judge
// stream of one plugin process. It knows nothing of how packets were
// stolen or how they go on: the packets of a flight are handed to a sink
// when the plugin answered or when the failure policy applies. The filter
// glue (glue.go) is the sink.
//
// A worker's batch builds its own flights (one per lane it uses, split at
// maxBatch packets) while its rules steal packets, and submits them when
// the batch finishes (BatchFlusher): one message per lane per batch. It
// never blocks. With the window full (window flights sent and not
// answered) a submitted flight waits — the next answer or deadline sends
// it — boundedly: once maxBatch packets wait, a further flight gets the
// failure policy (counted: window_full). A dead lane hands flights to the
// policy at once (unavailable). Answers come back in order and are handed
// to the sink in order; a flight whose deadline passes first gets the
// policy (timeouts) and its late answer is dropped.

// failure says why a flight got the failure policy.
type failure uint8

const (
	failNone failure = iota
	failTimeout
	failWindowFull
	failUnavailable // no process, lane broken, budget spent
)

var failureNames = [...]string{"", "timeout", "window_full", "unavailable"}

func (f failure) String() string { return failureNames[f] }

// item is one packet of a flight.
type item struct {
	pkt  *pipeline.Packet
	hook pipeline.Hook
	kind sdk.Kind
	// The verdict cache's (cache.go): tracked packets count as in flight
	// for their flow until their answer resumed them.
	tracked bool
	setMk   bool // the answer set the mark
	noCache bool // the answer rewrote the packet: not reusable
	code    sdk.Answer
	mark    uint32
	ct      uint64
	cmeta   uint64
}

// flight is one message: the batch sent and the packets it asks about.
type flight struct {
	seq      uint64
	msg      *sdk.EncodedBatch // records and data appended in place, sent as they are
	items    []item
	nics     [][2]uint32 // NIC → link index cache of this flight
	deadline time.Time
	sent     time.Time
	inst     *instance // the version that judges it
	lane     *lane

	// Scratch of the sink.
	pkts    []*pipeline.Packet
	answers []pipeline.Answer
}

// dataLen is how many data bytes were sent for packet i (i <
// len(f.items)): its record's data_len (version 1), its span less an IPv6
// packet's addresses (version 2).
func (f *flight) dataLen(i int) int {
	le, r := binary.LittleEndian, f.msg.Records
	if f.lane.v1 {
		return int(le.Uint32(r[i*sdk.RecordSizeV1+28:]))
	}
	start := uint32(0)
	if i > 0 {
		start = le.Uint32(r[(i-1)*sdk.RecordSize+28:])
	}
	n := int(le.Uint32(r[i*sdk.RecordSize+28:]) - start)
	if r[i*sdk.RecordSize+12]&(1<<5) != 0 {
		n -= 32
	}
	return n
}

// sink ends the packets of flights: answered by the plugin, or failed.
// Both run on a lane's goroutines (or, for failures at submit, on the
// worker's after its batch), never under a lane lock; they own the
// flight's packets.
type sink interface {
	answered(f *flight, a *pb.Answers)
	failed(f *flight, why failure)
}

// lane is one Judge stream.
type lane struct {
	inst *instance
	st   pb.FilterPlugin_JudgeClient
	// The bytes the version asked for (its Configure answer).
	data     pb.Data
	maxBytes int
	// v1: the plugin speaks protocol version 1 (72-byte records), else 2.
	v1 bool

	mu        sync.Mutex
	queue     []*flight // sent, oldest first (≤ window)
	waiting   []*flight // submitted with the window full (≤ maxBatch packets)
	waitPkts  int
	nextSeq   uint64
	nextID    uint32
	linkIdx   map[pipeline.NICID]uint32
	names     []string // link index i+1 → name
	announced int      // names the stream has been told
	dead      bool
	free      []*flight // answered flights, for reuse

	sendCh chan *flight
	done   chan struct{} // closed when the stream broke or the lane stopped
	once   sync.Once

	// deliverMu serialises handing flights to the sink (answers on the
	// receiver goroutine, deadlines on the timer's): flights end in order.
	deliverMu sync.Mutex
	deadline  pipeline.Timer // fires at the oldest flight's deadline
}

func newLane(inst *instance, st pb.FilterPlugin_JudgeClient) *lane {
	w := inst.cfg.Window
	l := &lane{
		inst: inst, st: st, nextSeq: 1, linkIdx: map[pipeline.NICID]uint32{},
		data: inst.needs.Data, maxBytes: int(inst.needs.MaxBytes), v1: inst.conn.client.Version() == 1,
		sendCh: make(chan *flight, w), done: make(chan struct{}),
	}
	l.deadline = inst.p.clock.AfterFunc(time.Hour, l.expire)
	l.deadline.Stop()
	go l.sender()
	go l.receiver()
	go l.closer()
	return l
}

// broken marks the lane dead (stream error, stop); the closer fails what
// it holds.
func (l *lane) broken() {
	l.once.Do(func() { close(l.done) })
}

// newFlight returns an empty flight, reusing an answered one.
func (l *lane) newFlight() *flight {
	l.mu.Lock()
	n := len(l.free)
	if n == 0 {
		l.mu.Unlock()
		return &flight{msg: new(sdk.EncodedBatch), inst: l.inst, lane: l}
	}
	f := l.free[n-1]
	l.free = l.free[:n-1]
	l.mu.Unlock()
	m := f.msg
	m.Seq, m.NextLink, m.Records, m.Data, m.Links = 0, 0, m.Records[:0], m.Data[:0], m.Links[:0]
	clear(f.items)
	clear(f.pkts)
	*f = flight{msg: m, items: f.items[:0], nics: f.nics[:0], pkts: f.pkts[:0], answers: f.answers[:0], inst: l.inst, lane: l}
	return f
}

// linkIndex returns the stream's index of a NIC's name (cached per
// flight; new names are announced when a flight is sent).
func (l *lane) linkIndex(f *flight, pc *pipeline.PacketContext, id pipeline.NICID) uint32 {
	if id == 0 {
		return 0
	}
	for _, e := range f.nics {
		if e[0] == uint32(id) {
			return e[1]
		}
	}
	l.mu.Lock()
	i, ok := l.linkIdx[id]
	if !ok {
		name := ""
		if pc.Batch != nil && pc.Batch.Gen != nil {
			if ni, ok := pc.Batch.Gen.NIC(id); ok {
				name = ni.Name()
			}
		}
		if !l.v1 && len(l.names) >= 0xffff {
			// Version 2 has 16-bit link indexes: past that, unknown.
			l.mu.Unlock()
			return 0
		}
		l.names = append(l.names, name)
		i = uint32(len(l.names))
		l.linkIdx[id] = i
	}
	l.mu.Unlock()
	f.nics = append(f.nics, [2]uint32{uint32(id), i})
	return i
}

// add encodes one question into f (the worker's own flight: no lock but
// for a new link name): its record and data are appended to the message's
// own send buffers (sdk.EncodedBatch: sent without another copy).
func (l *lane) add(f *flight, pc *pipeline.PacketContext, kind sdk.Kind, tag uint32) {
	m := f.msg
	t := &pc.Tuple
	meta := uint32(pc.Hook) | uint32(kind)<<3 | uint32(t.Proto)<<8
	if pc.Fragment {
		meta |= 1 << 4
	}
	if t.Src.Is6() && !t.Src.Is4In6() || t.Dst.Is6() && !t.Dst.Is4In6() {
		meta |= 1 << 5
	}
	nh := pc.Pkt.NetworkHeader()
	var data []byte
	switch l.data {
	case pb.Data_DATA_HEADERS:
		end := len(nh)
		if pc.L4End > 0 {
			end = min(end, pc.L4Off+60)
		} else {
			end = min(end, 120)
		}
		data = nh[:end]
	case pb.Data_DATA_PACKET:
		data = nh
		if l.maxBytes > 0 && l.maxBytes < len(nh) {
			data = nh[:l.maxBytes]
		}
	}
	in, out := uint32(0), uint32(0)
	if pc.InNIC != 0 {
		in = l.linkIndex(f, pc, pc.InNIC)
	}
	if pc.OutNIC != 0 {
		out = l.linkIndex(f, pc, pc.OutNIC)
	}
	if l.v1 {
		addV1(m, len(f.items), meta, t, pc.Pkt.Mark, tag, in, out, data, len(nh))
	} else {
		// Version 2: 32 bytes; an IPv6 packet's addresses lead its data.
		r := (*[sdk.RecordSize]byte)(record(m, sdk.RecordSize))
		le := binary.LittleEndian
		plen := uint32(min(len(nh), sdk.MaxPacketLen))
		meta2 := meta&(1<<6-1) | uint32(t.Proto)<<6 | plen<<14
		if meta&(1<<5) != 0 {
			s, d := t.Src.As16(), t.Dst.As16()
			m.Data = append(append(m.Data, s[:]...), d[:]...)
			le.PutUint64(r[0:], 0)
		} else {
			le.PutUint32(r[0:], ipv4Word(t.Src))
			le.PutUint32(r[4:], ipv4Word(t.Dst))
		}
		le.PutUint32(r[8:], uint32(t.SrcPort)<<16|uint32(t.DstPort))
		le.PutUint32(r[12:], meta2)
		le.PutUint32(r[16:], in|out<<16)
		le.PutUint32(r[20:], pc.Pkt.Mark)
		le.PutUint32(r[24:], tag)
		m.Data = append(m.Data, data...)
		le.PutUint32(r[28:], uint32(len(m.Data)))
	}
	// Field by field into the slice (a composite literal is built on the
	// stack and copied: a store-forwarding stall per packet).
	n := len(f.items)
	if n == cap(f.items) {
		f.items = append(f.items, item{})
	}
	f.items = f.items[:n+1]
	it := &f.items[n]
	it.pkt, it.hook, it.kind = pc.Pkt, pc.Hook, kind
	it.tracked, it.setMk, it.noCache, it.code, it.mark, it.ct, it.cmeta = false, false, false, 0, 0, 0, 0
}

// record appends a record of size bytes to m (its capacity doubles, from
// 64 records) and returns it.
func record(m *sdk.EncodedBatch, size int) []byte {
	off := len(m.Records)
	if cap(m.Records)-off < size {
		m.Records = slices.Grow(m.Records, size*max(64, off/size))
	}
	m.Records = m.Records[:off+size]
	return m.Records[off:]
}

// addV1 appends packet id's version 1 record (72 bytes) and data to m.
func addV1(m *sdk.EncodedBatch, id int, meta uint32, t *pipeline.Tuple, mark, tag, in, out uint32, data []byte, plen int) {
	r := (*[sdk.RecordSizeV1]byte)(record(m, sdk.RecordSizeV1))
	le := binary.LittleEndian
	le.PutUint32(r[0:], uint32(id)) // ids: the index in the flight (the stream's seq makes it unique)
	le.PutUint32(r[4:], meta)
	le.PutUint32(r[8:], uint32(t.SrcPort)<<16|uint32(t.DstPort))
	le.PutUint32(r[12:], in)
	le.PutUint32(r[16:], out)
	le.PutUint32(r[20:], mark)
	le.PutUint32(r[24:], tag)
	le.PutUint32(r[28:], uint32(len(data)))
	le.PutUint32(r[32:], uint32(plen))
	le.PutUint32(r[36:], 0)
	putAddr(r[40:56], t.Src)
	putAddr(r[56:72], t.Dst)
	m.Data = append(m.Data, data...)
}

// ipv4Word is an IPv4 (or IPv4-mapped) address's 4 bytes as a
// little-endian word's bytes (network order in memory), without As4's
// array (see putAddr); 0 when a is not IPv4 (no address).
func ipv4Word(a netip.Addr) uint32 {
	if !a.Is4() && !a.Is4In6() {
		return 0
	}
	v := a.As4()
	return binary.LittleEndian.Uint32(v[:])
}

// putAddr writes a as 16 bytes (IPv4 mapped). An IPv4 address is written
// as words: netip's As16 builds an array on the stack that is then copied
// with one wide load, which stalls (store forwarding) on every packet.
func putAddr(r []byte, a netip.Addr) {
	_ = r[15]
	if a.Is4() {
		v := a.As4()
		binary.LittleEndian.PutUint64(r[0:], 0)
		binary.BigEndian.PutUint32(r[8:], 0xffff)
		binary.BigEndian.PutUint32(r[12:], uint32(v[0])<<24|uint32(v[1])<<16|uint32(v[2])<<8|uint32(v[3]))
		return
	}
	b := a.As16()
	copy(r, b[:])
}

// submit sends a finished flight, lets it wait for a slot, or fails it.
// It never blocks. Called after the worker's batch finished (the stolen
// packets may go to other goroutines from then on).
func (l *lane) submit(f *flight, s sink) {
	l.mu.Lock()
	why := failNone
	switch {
	case l.dead:
		why = failUnavailable
	case len(l.queue) >= l.inst.cfg.Window || len(l.waiting) > 0:
		if l.waitPkts+len(f.items) <= l.inst.cfg.MaxBatch {
			l.waiting = append(l.waiting, f)
			l.waitPkts += len(f.items)
			l.mu.Unlock()
			return
		}
		why = failWindowFull
	}
	if why != failNone {
		l.mu.Unlock()
		l.inst.p.count(why, len(f.items))
		s.failed(f, why)
		return
	}
	l.sendLocked(f)
	l.mu.Unlock()
}

// sendLocked numbers f, announces new link names and queues it for the
// sender (l.mu held; the window has room).
func (l *lane) sendLocked(f *flight) {
	f.seq = l.nextSeq
	l.nextSeq++
	f.msg.Seq = f.seq
	f.msg.Links = f.msg.Links[:0]
	f.msg.NextLink = 0
	if l.announced < len(l.names) {
		f.msg.NextLink = uint32(l.announced + 1)
		f.msg.Links = append(f.msg.Links, l.names[l.announced:]...)
		l.announced = len(l.names)
	}
	now := l.inst.p.clock.Now()
	f.sent = now
	f.deadline = now.Add(l.inst.cfg.Timeout)
	l.queue = append(l.queue, f)
	if len(l.queue) == 1 {
		l.deadline.Reset(f.deadline.Sub(now))
	}
	l.sendCh <- f // never blocks: at most window flights are queued
}

// sendWaitingLocked sends waiting flights while the window has room.
func (l *lane) sendWaitingLocked() {
	for len(l.waiting) > 0 && len(l.queue) < l.inst.cfg.Window && !l.dead {
		f := l.waiting[0]
		l.waiting[0] = nil
		l.waiting = l.waiting[1:]
		l.waitPkts -= len(f.items)
		l.sendLocked(f)
	}
}

func (l *lane) sender() {
	for {
		select {
		case f := <-l.sendCh:
			if err := l.st.SendMsg(f.msg); err != nil {
				l.inst.streamError(err)
				l.broken()
				return
			}
		case <-l.done:
			return
		}
	}
}

func (l *lane) receiver() {
	if g := l.inst.gate; g != nil {
		select {
		case <-g:
		case <-l.done:
			return
		}
	}
	s := l.inst.p.sink
	a := new(pb.Answers)
	for {
		if err := l.st.RecvMsg(a); err != nil {
			l.inst.streamError(err)
			l.broken()
			return
		}
		l.deliverMu.Lock()
		l.answer(s, a)
		l.deliverMu.Unlock()
	}
}

// closer fails what the lane holds once it broke.
func (l *lane) closer() {
	<-l.done
	l.deliverMu.Lock()
	l.mu.Lock()
	l.dead = true
	q := append(l.queue, l.waiting...)
	l.queue, l.waiting, l.waitPkts = nil, nil, 0
	l.deadline.Stop()
	l.mu.Unlock()
	s := l.inst.p.sink
	for _, f := range q {
		l.inst.p.count(failUnavailable, len(f.items))
		s.failed(f, failUnavailable)
	}
	l.deliverMu.Unlock()
	l.inst.laneGone(l)
}

// answer hands the oldest flight to the sink with the plugin's answer
// (l.deliverMu held).
func (l *lane) answer(s sink, a *pb.Answers) {
	l.mu.Lock()
	if len(l.queue) == 0 || a.Seq < l.queue[0].seq {
		// The answer to a flight that timed out.
		l.mu.Unlock()
		l.inst.p.stats.late.Add(1)
		return
	}
	f := l.queue[0]
	if a.Seq != f.seq || len(a.Answers) != len(f.items) {
		l.mu.Unlock()
		l.inst.streamError(errOutOfOrder)
		l.broken()
		return
	}
	l.queue[0] = nil
	l.queue = l.queue[1:]
	now := l.inst.p.clock.Now()
	l.sendWaitingLocked()
	if len(l.queue) > 0 {
		l.deadline.Reset(l.queue[0].deadline.Sub(now))
	} else {
		l.deadline.Stop()
	}
	empty := len(l.queue) == 0
	l.mu.Unlock()
	l.inst.p.stats.observe(now.Sub(f.sent), len(f.items))
	s.answered(f, a)
	if empty && l.inst.draining.Load() {
		select {
		case l.inst.drainCh <- struct{}{}:
		default:
		}
	}
	// The plugin answered: the sender is done with f.msg (gRPC encodes a
	// message before it is sent), so f can carry a later flight. A flight
	// that timed out is left to the collector instead.
	l.mu.Lock()
	if len(l.free) < 2*l.inst.cfg.Window+2 {
		l.free = append(l.free, f)
	}
	l.mu.Unlock()
}

// expire fails the flights whose deadline passed (the deadline timer's
// goroutine).
func (l *lane) expire() {
	if g := l.inst.gate; g != nil {
		select {
		case <-g:
		default:
			// The answers wait for the replaced version to hand back what
			// it held (at most its deadline): so do the deadlines.
			l.deadline.Reset(time.Millisecond)
			return
		}
	}
	l.deliverMu.Lock()
	defer l.deliverMu.Unlock()
	now := l.inst.p.clock.Now()
	var late []*flight
	l.mu.Lock()
	for len(l.queue) > 0 && !now.Before(l.queue[0].deadline) {
		late = append(late, l.queue[0])
		l.queue = l.queue[1:]
	}
	l.sendWaitingLocked()
	if len(l.queue) > 0 {
		l.deadline.Reset(l.queue[0].deadline.Sub(now))
	}
	l.mu.Unlock()
	s := l.inst.p.sink
	for _, f := range late {
		l.inst.p.count(failTimeout, len(f.items))
		s.failed(f, failTimeout)
	}
	if len(late) > 0 {
		l.inst.timedOut()
	}
}

// inFlight is how many flights wait for an answer or a slot.
func (l *lane) inFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue) + len(l.waiting)
}
