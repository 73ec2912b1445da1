package pipelinetest

import (
	"sync"
	"sync/atomic"

	"github.com/pipestack/pipestack/pipeline"
)

// Stalled is a NetworkDispatcher whose deliveries wait until Resume: a
// link's reader stops in its first delivery, as a reader does that the
// stack cannot keep up with (to make the kernel drop, say). It counts the
// packets it is handed and releases them.
type Stalled struct {
	release chan struct{}
	once    sync.Once
	n       atomic.Uint64
}

// NewStalled returns a Stalled whose deliveries wait.
func NewStalled() *Stalled { return &Stalled{release: make(chan struct{})} }

// Resume lets the deliveries through, this one and the later ones; it may
// be called more than once (a test's Cleanup, say, as well).
func (s *Stalled) Resume() { s.once.Do(func() { close(s.release) }) }

// Delivered is the number of packets handed to s so far (counted once
// they are let through).
func (s *Stalled) Delivered() uint64 { return s.n.Load() }

// DeliverNetworkPackets waits for Resume, counts the batch's packets and
// releases them.
func (s *Stalled) DeliverNetworkPackets(pkts []*pipeline.Packet) {
	<-s.release
	for _, p := range pkts {
		if p != nil {
			s.n.Add(1)
		}
	}
	pipeline.ReleaseBatch(pkts)
}

// LinkCounter returns a link's own counter name (LinkCounters), and
// whether the link has one.
func LinkCounter(l pipeline.LinkCounterReader, name string) (uint64, bool) {
	for _, c := range l.LinkCounters() {
		if c.Name == name {
			return c.Value, true
		}
	}
	return 0, false
}

var _ pipeline.NetworkDispatcher = (*Stalled)(nil)
