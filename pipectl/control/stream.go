package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// Streaming commands. A streaming request (Request.Cmd "trace"; `conntrack
// -E` events later) is answered on its connection by a sequence of
// replies: each carries one event (Reply.Trace, …), and the last one has
// End set (why the stream ended: done, timeout, the client went away, the
// pipeline stopped), or Error. The client ends a stream early by closing
// the connection. A new streaming command is a StreamFunc in streams.

// TraceRequest asks for a live trace.
type TraceRequest struct {
	Count int `json:"count"` // packets to trace (1..MaxTraceCount)
	// Filter selects them (ParseTraceFilter); empty: every IP packet.
	Filter string `json:"filter,omitempty"`
	// TimeoutMS ends the trace after this long even if fewer packets came
	// (1 ms .. MaxTraceTimeout).
	TimeoutMS int64 `json:"timeout_ms"`
}

// TraceEvent is one traced packet at one hook: Packet numbers the traced
// packets from 1 (a packet's hooks share its number).
type TraceEvent struct {
	Packet int        `json:"packet"`
	Time   string     `json:"time"`
	Hook   HookRecord `json:"hook"`
}

// StreamEnd closes a stream.
type StreamEnd struct {
	// Reason: "done" (the count reached), "timeout", "canceled" (the
	// client or the pipeline went away).
	Reason  string `json:"reason"`
	Packets int    `json:"packets"`
	// Lost counts events dropped because the client read too slowly (a
	// worker never waits for the socket).
	Lost uint64 `json:"lost,omitempty"`
}

// Limits of a trace.
const (
	MaxTraceCount   = 10000
	MaxTraceTimeout = time.Hour
	traceQueue      = 1024
	// traceGrace is how long the tracer stays on after the last packet
	// was selected, for the hooks that packet has still to pass (they run
	// in the same batch, unless it waits for a neighbor).
	traceGrace = 100 * time.Millisecond
)

// StreamFunc serves one streaming request: it calls send for each event
// and returns the end (or an error) when done or when ctx ends.
type StreamFunc func(ctx context.Context, srv *Server, req *Request, send func(*Reply) error) (*StreamEnd, error)

var streams = map[string]StreamFunc{"trace": streamTrace, "conntrack-events": streamConntrackEvents}

// isStream reports whether cmd is a streaming command.
func isStream(cmd string) bool { _, ok := streams[cmd]; return ok }

// serveStream runs a streaming command on c. The stream also ends when the
// client closes the connection (a read returns) or the server closes.
func (srv *Server) serveStream(c net.Conn, req *Request, rest io.Reader) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv.mu.Lock()
	if srv.closing {
		srv.mu.Unlock()
		json.NewEncoder(c).Encode(Reply{Error: "the pipeline is stopping"})
		return
	}
	if srv.cancels == nil {
		srv.cancels = map[*context.CancelFunc]struct{}{}
	}
	key := &cancel
	srv.cancels[key] = struct{}{}
	srv.mu.Unlock()
	defer func() {
		srv.mu.Lock()
		delete(srv.cancels, key)
		srv.mu.Unlock()
	}()
	c.SetDeadline(time.Time{})
	go func() {
		io.Copy(io.Discard, rest) // returns when the client hangs up
		cancel()
	}()
	enc := json.NewEncoder(c)
	send := func(r *Reply) error {
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return enc.Encode(r)
	}
	end, err := streams[req.Cmd](ctx, srv, req, send)
	if err != nil {
		send(&Reply{Error: err.Error()})
		return
	}
	send(&Reply{End: end})
}

// tracing is set while a trace runs: one at a time per stack.
var tracing sync.Map // *pipeline.Stack → struct{}

func streamTrace(ctx context.Context, srv *Server, req *Request, send func(*Reply) error) (*StreamEnd, error) {
	tr := req.Trace
	if tr == nil {
		tr = &TraceRequest{}
	}
	if tr.Count < 1 || tr.Count > MaxTraceCount {
		return nil, fmt.Errorf("trace: count %d out of range 1..%d", tr.Count, MaxTraceCount)
	}
	timeout := time.Duration(tr.TimeoutMS) * time.Millisecond
	if timeout < time.Millisecond || timeout > MaxTraceTimeout {
		return nil, fmt.Errorf("trace: timeout %v out of range 1ms..%v", timeout, MaxTraceTimeout)
	}
	f, err := ParseTraceFilter(tr.Filter)
	if err != nil {
		return nil, err
	}
	if _, busy := tracing.LoadOrStore(srv.stack, struct{}{}); busy {
		return nil, errors.New("trace: another trace is running on this pipeline")
	}
	defer tracing.Delete(srv.stack)

	names := map[pipeline.NICID]string{}
	for _, n := range srv.stack.NICs() {
		names[n.ID()] = n.Name()
	}
	lt := &liveTracer{filter: f, count: tr.Count, events: make(chan TraceEvent, traceQueue), full: make(chan struct{}),
		seen: map[*pipeline.Packet]seenPacket{}, clock: srv.stack.Clock(),
		name: func(id pipeline.NICID) string {
			if s, ok := names[id]; ok {
				return s
			}
			return fmt.Sprintf("nic%d", id)
		}}
	srv.stack.SetTracer(lt)
	off := sync.OnceFunc(func() { srv.stack.SetTracer(nil) })
	defer off()

	end := &StreamEnd{}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var grace <-chan time.Time
	full := lt.full
	for {
		select {
		case ev := <-lt.events:
			if err := send(&Reply{Trace: &ev}); err != nil {
				end.Reason = "canceled"
				return end, nil
			}
			continue
		default:
		}
		select {
		case ev := <-lt.events:
			if err := send(&Reply{Trace: &ev}); err != nil {
				end.Reason = "canceled"
				return end, nil
			}
		case <-full:
			full = nil
			grace = time.After(traceGrace)
		case <-grace:
			end.Reason = "done"
		case <-deadline.C:
			end.Reason = "timeout"
		case <-ctx.Done():
			end.Reason = "canceled"
		}
		if end.Reason != "" {
			off()
			// What the workers queued before the tracer went away.
			for drained := false; !drained; {
				select {
				case ev := <-lt.events:
					if send(&Reply{Trace: &ev}) != nil {
						drained = true
					}
				default:
					drained = true
				}
			}
			end.Packets, end.Lost = lt.selected(), lt.lost.Load()
			return end, nil
		}
	}
}

// liveTracer is the Tracer of a live trace: it selects the first count
// packets that match the filter and queues their hook records for the
// stream, never blocking a worker.
type liveTracer struct {
	filter *TraceFilter
	name   func(pipeline.NICID) string
	clock  pipeline.Clock
	count  int
	events chan TraceEvent
	full   chan struct{} // closed when count packets were selected
	lost   atomic.Uint64

	mu   sync.Mutex
	n    int
	seen map[*pipeline.Packet]seenPacket
}

// seenPacket is a selected packet as last traced: a packet passes the
// hooks in their order (prerouting, input or forward, output, postrouting),
// so the same buffer at a later hook with the same tuple is the same
// packet; at the same or an earlier hook, a new one (the buffer was
// reused).
type seenPacket struct {
	num   int
	hook  pipeline.Hook
	tuple pipeline.Tuple
}

func (t *liveTracer) selected() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// Select implements pipeline.Tracer.
func (t *liveTracer) Select(pc *pipeline.PacketContext) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.seen[pc.Pkt]; ok && pc.Hook > s.hook && pc.Tuple == s.tuple {
		s.hook = pc.Hook
		t.seen[pc.Pkt] = s
		return true // a later hook of a selected packet
	}
	if t.n >= t.count || !t.filter.Match(pc, t.name) {
		delete(t.seen, pc.Pkt)
		return false
	}
	t.n++
	t.seen[pc.Pkt] = seenPacket{num: t.n, hook: pc.Hook, tuple: pc.Tuple}
	if t.n == t.count {
		close(t.full)
	}
	return true
}

// Trace implements pipeline.Tracer.
func (t *liveTracer) Trace(ht *pipeline.HookTrace) {
	ev := TraceEvent{Time: t.clock.Now().UTC().Format(time.RFC3339Nano), Hook: NewHookRecord(ht, t.name)}
	t.mu.Lock()
	key := ht.Pkt
	if s, ok := t.seen[key]; key != nil && ok {
		ev.Packet = s.num
	} else {
		// A stolen packet is not ours to look at: found by its tuple at
		// the hook it was selected at.
		for p, s := range t.seen {
			if s.hook == ht.Hook && s.tuple == ht.Tuple {
				key, ev.Packet = p, s.num
				break
			}
		}
	}
	if ht.Verdict != pipeline.VerdictAccept {
		delete(t.seen, key) // dropped or stolen: the buffer will be reused
	}
	t.mu.Unlock()
	select {
	case t.events <- ev:
	default:
		t.lost.Add(1)
	}
}

// Stream sends a streaming request to the socket at path and calls fn for
// each reply until the stream ends; it returns the end. A reply with an
// error ends it with that error. wait bounds the whole stream.
func Stream(path string, req Request, wait time.Duration, fn func(*Reply) error) (*StreamEnd, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no pipeline is running with control socket %s", path)
		}
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bufio.NewReader(c))
	for {
		var rep Reply
		if err := dec.Decode(&rep); err != nil {
			return nil, fmt.Errorf("reading the stream: %w", err)
		}
		if rep.Error != "" {
			return nil, errors.New(rep.Error)
		}
		if rep.End != nil {
			return rep.End, nil
		}
		if err := fn(&rep); err != nil {
			return nil, err
		}
	}
}
