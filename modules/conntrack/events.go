package conntrack

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// EventType is what happened to an entry (conntrack -E's [NEW], [DESTROY]).
type EventType uint8

// Event types.
const (
	EventNew EventType = iota + 1
	EventDestroy
)

func (t EventType) String() string {
	switch t {
	case EventNew:
		return "NEW"
	case EventDestroy:
		return "DESTROY"
	}
	return "?"
}

// Event is one entry event, formatted when it happened.
type Event struct {
	Type EventType
	Line string // the entry as conntrack -L prints it
}

// eventSink is the one listener's queue: events are formatted only while
// someone listens, and a full queue drops (counted) rather than making a
// worker wait.
type eventSink struct {
	ch   chan Event
	lost atomic.Uint64
	now  func() time.Time
}

func (s *eventSink) emit(t *Table, i uint32, typ EventType) {
	e := &t.entries[i]
	e.mu.Lock()
	line := formatEntry(e, s.now())
	e.mu.Unlock()
	select {
	case s.ch <- Event{Type: typ, Line: line}:
	default:
		s.lost.Add(1)
	}
}

// Subscribe starts the event stream (one listener at a time): events
// arrive on the channel until cancel is called; lost reports events
// dropped because the reader was slow.
func (t *Table) Subscribe(queue int) (events <-chan Event, lost func() uint64, cancel func(), err error) {
	s := &eventSink{ch: make(chan Event, queue), now: t.clock.Now}
	if !t.events.CompareAndSwap(nil, s) {
		return nil, nil, nil, errors.New("conntrack: another event listener is running")
	}
	return s.ch, s.lost.Load, func() { t.events.CompareAndSwap(s, nil) }, nil
}

// protoName is conntrack-tools' protocol column.
func protoName(p uint8) string {
	switch p {
	case wire.ProtocolTCP:
		return "tcp"
	case wire.ProtocolUDP:
		return "udp"
	case wire.ProtocolICMP:
		return "icmp"
	case wire.ProtocolICMPv6:
		return "icmpv6"
	case protoSCTP:
		return "sctp"
	case protoUDPLite:
		return "udplite"
	case protoDCCP:
		return "dccp"
	}
	return "unknown"
}

// Format prints e as conntrack -L does (lock e.mu):
//
//	tcp      6 431999 ESTABLISHED src=… dst=… sport=… dport=… src=… dst=… sport=… dport=… [ASSURED] mark=0 use=1
func Format(e *Entry, now time.Time) string { return formatEntry(e, now) }

func formatEntry(e *Entry, now time.Time) string {
	var b strings.Builder
	o, r := &e.orig.tuple, &e.reply.tuple
	left := (e.expires.Load() - now.UnixNano()) / int64(time.Second)
	if left < 0 {
		left = 0
	}
	fmt.Fprintf(&b, "%-8s %d %d ", protoName(o.Proto), o.Proto, left)
	st := e.status.Load()
	if o.Proto == wire.ProtocolTCP {
		b.WriteString(TCPState(e.tcp.state).String())
		b.WriteByte(' ')
	}
	b.WriteString(o.String())
	if st&StatusSeenReply == 0 {
		b.WriteString(" [UNREPLIED]")
	}
	b.WriteByte(' ')
	b.WriteString(r.String())
	if st&StatusAssured != 0 {
		b.WriteString(" [ASSURED]")
	}
	if st&statusOffload != 0 {
		b.WriteString(" [OFFLOAD]")
	}
	fmt.Fprintf(&b, " mark=%d use=1", e.mark.Load())
	return b.String()
}
