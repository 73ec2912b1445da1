package plugin

import (
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
// never blocks: a full window (window flights sent and not answered) or a
// dead lane hands the flight to the sink's failure policy at once
// (counted: window_full, unavailable). Answers come back in order; the
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
	links   []string // names not yet announced
	dead    bool

	sendCh chan *flight
	ansCh  chan *pb.Answers
	kick   chan struct{}
	done   chan struct{} // closed when the stream broke or the lane stopped
	once   sync.Once
	timer  pipeline.Timer
}

func newLane(inst *instance, st pb.FilterPlugin_JudgeClient) *lane {
	w := inst.cfg.Window
	l := &lane{
		inst: inst, st: st, nextSeq: 1, linkIdx: map[pipeline.NICID]uint32{},
		sendCh: make(chan *flight, w), ansCh: make(chan *pb.Answers, w),
		kick: make(chan struct{}, 1), done: make(chan struct{}),
	}
	go l.sender()
	go l.receiver()
	go l.deliverer()
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
		f = l.inst.newFlight()
		l.open = f
		// Until the core tells a guest module its batch ended, a partly
		// filled flight goes after linger.
		p := l.inst.p
		p.clock.AfterFunc(p.lingerFor, func() { l.flushIf(f) })
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

// encode appends pc's columns to f's message (l.mu held).
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
	l.nextID++
	m.Ids = append(m.Ids, l.nextID)
	m.Meta = append(m.Meta, meta)
	m.Ports = append(m.Ports, uint32(t.SrcPort)<<16|uint32(t.DstPort))
	s, d := t.Src.As16(), t.Dst.As16()
	m.Addrs = append(append(m.Addrs, s[:]...), d[:]...)
	m.InLinks = append(m.InLinks, l.linkIndex(f, pc, pc.InNIC))
	m.OutLinks = append(m.OutLinks, l.linkIndex(f, pc, pc.OutNIC))
	m.Marks = append(m.Marks, pc.Pkt.Mark)
	m.Tags = append(m.Tags, tag)
	nh := pc.Pkt.NetworkHeader()
	data := l.inst.dataOf(pc, nh)
	m.DataLens = append(m.DataLens, uint32(len(data)))
	m.Data = append(m.Data, data...)
	m.PktLens = append(m.PktLens, uint32(len(nh)))
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
	l.open = nil
	why := failNone
	switch {
	case l.dead:
		why = failUnavailable
	case len(l.queue) >= l.inst.cfg.Window:
		why = failWindowFull
	}
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
	l.mu.Unlock()
	if armed {
		l.arm(f.deadline, now)
	}
}

// flushIf flushes the open flight if it is still f.
func (l *lane) flushIf(f *flight) {
	l.mu.Lock()
	same := l.open == f
	l.mu.Unlock()
	if same {
		l.flush(l.inst.p.sink)
	}
}

// arm sets the deadline timer (on the stack clock) to poke the deliverer.
func (l *lane) arm(at, now time.Time) {
	t := l.inst.p.clock.AfterFunc(at.Sub(now), func() {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	})
	l.mu.Lock()
	old := l.timer
	l.timer = t
	l.mu.Unlock()
	if old != nil {
		old.Stop()
	}
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
	for {
		a := new(pb.Answers)
		if err := l.st.RecvMsg(a); err != nil {
			l.inst.streamError(err)
			l.broken()
			return
		}
		select {
		case l.ansCh <- a:
		case <-l.done:
			return
		}
	}
}

// deliverer hands flights to the sink in order: answered, timed out, or
// failed when the lane breaks.
func (l *lane) deliverer() {
	s := l.inst.p.sink
	if g := l.inst.gate; g != nil {
		select {
		case <-g:
		case <-l.done:
		}
	}
	for {
		select {
		case a := <-l.ansCh:
			l.answer(s, a)
		case <-l.kick:
			l.expire(s)
		case <-l.done:
			l.mu.Lock()
			l.dead = true
			q := l.queue
			l.queue = nil
			if l.timer != nil {
				l.timer.Stop()
			}
			l.mu.Unlock()
			for _, f := range q {
				l.inst.p.count(failUnavailable, len(f.items))
				s.failed(f, failUnavailable)
			}
			l.inst.laneGone(l)
			return
		}
	}
}

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
	l.queue = l.queue[1:]
	next := time.Time{}
	if len(l.queue) > 0 {
		next = l.queue[0].deadline
	}
	l.mu.Unlock()
	now := l.inst.p.clock.Now()
	l.inst.p.stats.observe(now.Sub(f.sent), len(f.items))
	s.answered(f, a)
	if !next.IsZero() {
		l.arm(next, now)
	}
}

func (l *lane) expire(s sink) {
	now := l.inst.p.clock.Now()
	var late []*flight
	l.mu.Lock()
	for len(l.queue) > 0 && !now.Before(l.queue[0].deadline) {
		late = append(late, l.queue[0])
		l.queue = l.queue[1:]
	}
	next := time.Time{}
	if len(l.queue) > 0 {
		next = l.queue[0].deadline
	}
	l.mu.Unlock()
	for _, f := range late {
		l.inst.p.count(failTimeout, len(f.items))
		s.failed(f, failTimeout)
	}
	if len(late) > 0 {
		l.inst.timedOut()
	}
	if !next.IsZero() {
		l.arm(next, now)
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
