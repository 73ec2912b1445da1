package plugin

import (
	"encoding/binary"
	"sync"
	"time"

	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"
	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
	"github.com/pipestack/pipestack/pipeline"
)

// This file is the plugin's data path below the filter: a lane is one Judge
// stream of one plugin process, used by the workers whose shard maps to it.
// It knows nothing of how packets were stolen or how they go on: the
// packets of a flight are handed to a sink when the plugin answered or when
// the failure policy applies. The filter glue (glue.go) is the sink.
//
// A worker adds questions to its lane's open flight (add) and sends it
// (flush) at the end of its batch or when it holds maxBatch packets; it
// never blocks. With the window full (window flights sent and not
// answered) the open flight waits — the next answer or deadline sends it —
// and keeps filling; once it holds maxBatch packets it gets the failure
// policy (counted: window_full). So at most window + 1 flights are held
// per lane. A dead lane hands flights to the policy at once (unavailable). Answers come back in order; the
// deliverer hands each flight to the sink in order, and a flight whose
// deadline passes first is failed (timeouts) and its late answer dropped.

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
	tok  any // the glue's handle (how to resume the packet)
}

// flight is one message: the batch sent and the packets it asks about.
type flight struct {
	seq      uint64
	msg      *pb.Batch
	items    []item
	lens     []uint32 // data bytes sent per packet
	deadline time.Time
	sent     time.Time
	inst     *instance // the version that judges it
}

// sink ends the packets of flights: answered by the plugin, or failed.
// Both run on a lane's deliverer goroutine (or, for failures at flush, on
// the worker's), never under a lane lock; they own the flight's packets.
type sink interface {
	answered(f *flight, a *pb.Answers)
	failed(f *flight, why failure)
}

// lane is one Judge stream.
type lane struct {
	inst *instance
	st   pb.FilterPlugin_JudgeClient

	mu      sync.Mutex
	open    *flight   // being filled by workers
	queue   []*flight // sent or queued for sending, oldest first (≤ window)
	nextSeq uint64
	nextID  uint32
	linkIdx map[pipeline.NICID]uint32
	dead    bool
	free    []*flight // answered flights, for reuse

	sendCh chan *flight
	done   chan struct{} // closed when the stream broke or the lane stopped
	once   sync.Once

	// deliverMu serialises handing flights to the sink (answers on the
	// receiver goroutine, deadlines on the timer's): flights end in order.
	deliverMu sync.Mutex
	deadline  pipeline.Timer // fires at the oldest flight's deadline
	linger    pipeline.Timer // flushes a partly filled flight
}

func newLane(inst *instance, st pb.FilterPlugin_JudgeClient) *lane {
	w := inst.cfg.Window
	l := &lane{
		inst: inst, st: st, nextSeq: 1, linkIdx: map[pipeline.NICID]uint32{},
		sendCh: make(chan *flight, w), done: make(chan struct{}),
	}
	clock := inst.p.clock
	l.deadline = clock.AfterFunc(time.Hour, l.expire)
	l.deadline.Stop()
	l.linger = clock.AfterFunc(time.Hour, func() { l.flush(l.inst.p.sink) })
	l.linger.Stop()
	go l.sender()
	go l.receiver()
	go l.closer()
	return l
}

// broken marks the lane dead (stream error, stop); the deliverer fails
// what it holds.
func (l *lane) broken() {
	l.once.Do(func() { close(l.done) })
}

// add appends one question to the lane's open flight and returns true when
// the flight is full (the caller flushes).
func (l *lane) add(pc *pipeline.PacketContext, kind sdk.Kind, tag uint32, tok any) bool {
	l.mu.Lock()
	f := l.open
	if f == nil {
		f = l.newFlight()
		l.open = f
		// Until the core tells a guest module its batch ended, a partly
		// filled flight goes after linger.
		l.linger.Reset(l.inst.p.lingerFor)
	}
	l.encode(f, pc, kind, tag)
	f.items = append(f.items, item{pkt: pc.Pkt, hook: pc.Hook, kind: kind, tok: tok})
	full := len(f.items) >= l.inst.cfg.MaxBatch
	l.mu.Unlock()
	return full
}

// linkIndex returns the stream's index of a NIC's name, announcing new
// ones in f (l.mu held).
func (l *lane) linkIndex(f *flight, pc *pipeline.PacketContext, id pipeline.NICID) uint32 {
	if id == 0 {
		return 0
	}
	if i, ok := l.linkIdx[id]; ok {
		return i
	}
	name := ""
	if pc.Batch != nil && pc.Batch.Gen != nil {
		if ni, ok := pc.Batch.Gen.NIC(id); ok {
			name = ni.Name()
		}
	}
	if len(f.msg.Links) == 0 {
		f.msg.NextLink = uint32(len(l.linkIdx) + 1)
	}
	i := uint32(len(l.linkIdx) + 1)
	l.linkIdx[id] = i
	f.msg.Links = append(f.msg.Links, name)
	return i
}

// encode appends pc's record and data to f's message (l.mu held).
func (l *lane) encode(f *flight, pc *pipeline.PacketContext, kind sdk.Kind, tag uint32) {
	m := f.msg
	t := &pc.Tuple
	meta := uint32(pc.Hook) | uint32(kind)<<3 | uint32(t.Proto)<<8
	if pc.Fragment {
		meta |= 1 << 4
	}
	if t.Src.Is6() && !t.Src.Is4In6() {
		meta |= 1 << 5
	}
	nh := pc.Pkt.NetworkHeader()
	data := l.inst.dataOf(pc, nh)
	l.nextID++
	off := len(m.Records)
	m.Records = append(m.Records, make([]byte, sdk.RecordSize)...)
	r := m.Records[off : off+sdk.RecordSize]
	le := binary.LittleEndian
	le.PutUint32(r[0:], l.nextID)
	le.PutUint32(r[4:], meta)
	le.PutUint32(r[8:], uint32(t.SrcPort)<<16|uint32(t.DstPort))
	le.PutUint32(r[12:], l.linkIndex(f, pc, pc.InNIC))
	le.PutUint32(r[16:], l.linkIndex(f, pc, pc.OutNIC))
	le.PutUint32(r[20:], pc.Pkt.Mark)
	le.PutUint32(r[24:], tag)
	le.PutUint32(r[28:], uint32(len(data)))
	le.PutUint32(r[32:], uint32(len(nh)))
	s16, d16 := t.Src.As16(), t.Dst.As16()
	copy(r[40:], s16[:])
	copy(r[56:], d16[:])
	m.Data = append(m.Data, data...)
	f.lens = append(f.lens, uint32(len(data)))
}

// flush sends the lane's open flight, or fails it at once when the window
// is full or the lane is dead. It never blocks.
func (l *lane) flush(s sink) {
	l.mu.Lock()
	f := l.open
	if f == nil {
		l.mu.Unlock()
		return
	}
	why := failNone
	switch {
	case l.dead:
		why = failUnavailable
	case len(l.queue) >= l.inst.cfg.Window:
		if len(f.items) < l.inst.cfg.MaxBatch {
			// Queue boundedly: the open flight waits for a free slot
			// (the next answer or deadline sends it) and keeps filling;
			// once it holds max_batch packets it gets the policy.
			l.mu.Unlock()
			return
		}
		why = failWindowFull
	}
	l.open = nil
	l.linger.Stop()
	if why != failNone {
		// The stream's link table keeps names announced in f: the next
		// flight announces them again from the same index.
		if n := len(f.msg.Links); n > 0 {
			for id, i := range l.linkIdx {
				if i >= f.msg.NextLink {
					delete(l.linkIdx, id)
				}
			}
		}
		l.mu.Unlock()
		l.inst.p.count(why, len(f.items))
		s.failed(f, why)
		return
	}
	f.seq = l.nextSeq
	l.nextSeq++
	f.msg.Seq = f.seq
	now := l.inst.p.clock.Now()
	f.sent = now
	f.deadline = now.Add(l.inst.cfg.Timeout)
	l.queue = append(l.queue, f)
	armed := len(l.queue) == 1
	l.sendCh <- f // never blocks: at most window flights are queued
	if armed {
		l.deadline.Reset(f.deadline.Sub(now))
	}
	l.mu.Unlock()
}

func (l *lane) sender() {
	for {
		select {
		case f := <-l.sendCh:
			if err := l.st.Send(f.msg); err != nil {
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
	q := l.queue
	l.queue = nil
	l.deadline.Stop()
	l.linger.Stop()
	l.mu.Unlock()
	s := l.inst.p.sink
	for _, f := range q {
		l.inst.p.count(failUnavailable, len(f.items))
		s.failed(f, failUnavailable)
	}
	l.deliverMu.Unlock()
	// A flight still open is failed by the next flush (dead lane).
	l.flush(s)
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
	if len(l.queue) > 0 {
		l.deadline.Reset(l.queue[0].deadline.Sub(now))
	} else {
		l.deadline.Stop()
	}
	empty := len(l.queue) == 0
	waiting := l.open != nil && len(l.queue) == l.inst.cfg.Window-1
	l.mu.Unlock()
	l.inst.p.stats.observe(now.Sub(f.sent), len(f.items))
	s.answered(f, a)
	if waiting {
		l.flush(s) // the flight that waited for this slot
	}
	if empty && l.inst.draining.Load() {
		select {
		case l.inst.drainCh <- struct{}{}:
		default:
		}
	}
	// The plugin answered: the sender is done with f.msg (gRPC encodes a
	// message before it is sent), so f can carry the next flight. A flight
	// that timed out is left to the collector instead.
	l.mu.Lock()
	if len(l.free) < cap(l.sendCh)+2 {
		l.free = append(l.free, f)
	}
	l.mu.Unlock()
}

// newFlight returns an empty flight, reusing an answered one (l.mu held).
func (l *lane) newFlight() *flight {
	n := len(l.free)
	if n == 0 {
		return &flight{msg: new(pb.Batch), inst: l.inst}
	}
	f := l.free[n-1]
	l.free = l.free[:n-1]
	m := f.msg
	*m = pb.Batch{Records: m.Records[:0], Data: m.Data[:0]}
	clear(f.items)
	*f = flight{msg: m, items: f.items[:0], lens: f.lens[:0], inst: l.inst}
	return f
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
		l.flush(s) // a flight waiting for a slot
	}
}

// inFlight is how many flights wait for an answer.
func (l *lane) inFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.queue)
	if l.open != nil {
		n++
	}
	return n
}
