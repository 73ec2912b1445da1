package filtertest

import (
	"sync"

	"github.com/pipestack/pipestack/pipeline"
)

// Stealer is a matcher and a target that steals the packets it sees (those
// Pick chooses), as
// an out-of-process filter does: as a matcher it answers
// pipeline.MatchStolen(), as a target it returns pc.Steal(); at each steal
// it registers for the batch's flush (Batch.OnFinish) and, at the flush,
// moves what the batch stole to what Take returns, counting the flushes.
// Resume the packets with Stack.Resume (their answers) or give them up
// with Stack.Reinject or Release. Put it in a pipeline.Rule (Config.Hooks)
// or wrap it in a filter.match/filter.target module of your own. Safe for
// concurrent use; it allocates nothing once its slices have grown. (It
// registers itself for the flush: a type embedding it reacts to flushes
// through Flushed, not by a FlushBatch of its own.)
type Stealer struct {
	// Pick, when not nil, chooses the packets to steal; the others match
	// (as a matcher) or continue (as a target).
	Pick func(pc *pipeline.PacketContext) bool
	// Flushed, when not nil, is called at the end of each flush, on the
	// worker's goroutine (it may Take and Resume the packets at once).
	Flushed func(b *pipeline.Batch)

	mu      sync.Mutex
	pending []*pipeline.Packet // stolen in the running batch
	stolen  []*pipeline.Packet // flushed
	flushes int
	last    int
}

// Fields implements pipeline.Matcher.
func (s *Stealer) Fields() pipeline.FieldSet { return pipeline.FieldOther }

// Match implements pipeline.Matcher.
func (s *Stealer) Match(pc *pipeline.PacketContext) (bool, bool) {
	if s.Pick != nil && !s.Pick(pc) {
		return true, false
	}
	s.keep(pc)
	return pipeline.MatchStolen()
}

// Action implements pipeline.Target.
func (s *Stealer) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	if s.Pick != nil && !s.Pick(pc) {
		return pipeline.VerdictContinue, 0
	}
	s.keep(pc)
	return pc.Steal()
}

func (s *Stealer) keep(pc *pipeline.PacketContext) {
	if pc.Batch != nil {
		pc.Batch.OnFinish(s)
	}
	s.mu.Lock()
	s.pending = append(s.pending, pc.Pkt)
	s.mu.Unlock()
}

// FlushBatch implements pipeline.BatchFlusher.
func (s *Stealer) FlushBatch(b *pipeline.Batch) {
	s.mu.Lock()
	s.flushes++
	s.last = len(s.pending)
	s.stolen = append(s.stolen, s.pending...)
	clear(s.pending)
	s.pending = s.pending[:0]
	s.mu.Unlock()
	if s.Flushed != nil {
		s.Flushed(b)
	}
}

// Flushes returns how many flushes there were and how many packets the
// last one handed over.
func (s *Stealer) Flushes() (flushes, last int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushes, s.last
}

// Take appends the flushed packets to buf and forgets them: the caller
// owns them.
func (s *Stealer) Take(buf []*pipeline.Packet) []*pipeline.Packet {
	s.mu.Lock()
	defer s.mu.Unlock()
	buf = append(buf, s.stolen...)
	clear(s.stolen)
	s.stolen = s.stolen[:0]
	return buf
}

var (
	_ pipeline.Matcher      = (*Stealer)(nil)
	_ pipeline.Target       = (*Stealer)(nil)
	_ pipeline.BatchFlusher = (*Stealer)(nil)
)
