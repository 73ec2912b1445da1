package filter

import (
	"net/netip"
	"sync"

	"github.com/rs/zerolog"

	"github.com/pipestack/pipestack/pipeline"
)

// defaultRingSize is how many log entries wait for the logger goroutine.
const defaultRingSize = 1024

// logEntry is one LOG line's fields, copied from the packet (no pointer
// into it).
type logEntry struct {
	t               *Log
	hook            pipeline.Hook
	in, out         pipeline.NICID
	inName, outName string
	src, dst        netip.Addr
	proto           uint8
	sport, dport    uint16
	length, mark    uint32
	fragment        bool
}

// logRing is the stack's bounded queue of log entries and the goroutine
// that writes them. A worker only copies an entry in under a short lock;
// a full ring drops the entry and counts log_dropped. The goroutine starts
// with the first entry (pipectl validate never starts it) and stops when
// the stack closes (io.Closer).
type logRing struct {
	log     zerolog.Logger
	mu      sync.Mutex
	buf     []logEntry
	head, n int
	wake    chan struct{}
	done    chan struct{}
	once    sync.Once
	closed  bool
	dropped *pipeline.Counter
	logged  *pipeline.Counter
}

func newLogRing(l zerolog.Logger, size int, cs *pipeline.CounterSet) *logRing {
	return &logRing{log: l, buf: make([]logEntry, size), wake: make(chan struct{}, 1), done: make(chan struct{}),
		dropped: cs.Get("log_dropped"), logged: cs.Get("logged")}
}

// put copies the packet's fields into the ring.
func (r *logRing) put(t *Log, pc *pipeline.PacketContext) {
	e := logEntry{t: t, hook: pc.Hook, in: pc.InNIC, out: pc.OutNIC, src: pc.Tuple.Src, dst: pc.Tuple.Dst,
		proto: uint8(pc.Tuple.Proto), sport: pc.Tuple.SrcPort, dport: pc.Tuple.DstPort, mark: pc.Pkt.Mark, fragment: pc.Fragment}
	e.inName, _ = nicName(pc, pc.InNIC)
	e.outName, _ = nicName(pc, pc.OutNIC)
	if l, ok := ipLength(pc); ok {
		e.length = l
	}
	r.mu.Lock()
	if r.closed || r.n == len(r.buf) {
		r.mu.Unlock()
		r.dropped.Inc()
		return
	}
	r.buf[(r.head+r.n)%len(r.buf)] = e
	r.n++
	// Under the lock: Close cannot close wake between the check of closed
	// and the send.
	r.once.Do(r.start)
	select {
	case r.wake <- struct{}{}:
	default:
	}
	r.mu.Unlock()
}

func (r *logRing) start() { go r.run() }

func (r *logRing) run() {
	defer close(r.done)
	for range r.wake {
		for {
			r.mu.Lock()
			if r.n == 0 {
				r.mu.Unlock()
				break
			}
			e := r.buf[r.head]
			r.buf[r.head] = logEntry{}
			r.head = (r.head + 1) % len(r.buf)
			r.n--
			r.mu.Unlock()
			r.write(&e)
		}
	}
}

func (r *logRing) write(e *logEntry) {
	ev := r.log.WithLevel(zerolog.Level(e.t.level))
	ev = ev.Str("prefix", e.t.LogPrefix).Str("hook", e.hook.String())
	if e.inName != "" {
		ev = ev.Str("in", e.inName)
	}
	if e.outName != "" {
		ev = ev.Str("out", e.outName)
	}
	ev = ev.Str("src", e.src.String()).Str("dst", e.dst.String()).Uint32("len", e.length).Str("proto", protoName(e.proto))
	if e.sport != 0 || e.dport != 0 {
		ev = ev.Uint16("spt", e.sport).Uint16("dpt", e.dport)
	}
	if e.mark != 0 {
		ev = ev.Uint32("mark", e.mark)
	}
	if e.fragment {
		ev = ev.Bool("fragment", true)
	}
	ev.Msg("filter log")
	r.logged.Inc()
}

// Close stops the goroutine once the entries queued are written.
func (r *logRing) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	started := true
	r.once.Do(func() { started = false })
	close(r.wake)
	if started {
		<-r.done
	}
	return nil
}

// nicName is the name of a NIC of the batch's generation (for a log line;
// matchers compare NIC IDs resolved at Provision).
func nicName(pc *pipeline.PacketContext, id pipeline.NICID) (string, bool) {
	if id == 0 || pc.Batch == nil || pc.Batch.Gen == nil {
		return "", false
	}
	nic, ok := pc.Batch.Gen.NIC(id)
	if !ok {
		return "", false
	}
	return nic.Name(), true
}
