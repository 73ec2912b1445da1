package filter

import (
	"sync"
	"sync/atomic"

	"github.com/pipestack/pipestack/pipeline"
)

const (
	sharedCounters = "filter/counters"
	sharedLog      = "filter/log"
)

// counterShards is how many shards a rule counter has (a power of two):
// a batch adds to the shard of its Batch.Shard, so that workers running
// at once rarely write the same cache line.
const counterShards = 8

// counterShard fills a cache line of its own (64 bytes; the counter is
// allocated alone, in a size class that keeps it 64-byte aligned).
type counterShard struct {
	packets atomic.Uint64
	bytes   atomic.Uint64
	_       [48]byte
}

// ruleCounter counts one rule's packets and bytes, sharded per worker.
type ruleCounter struct {
	s [counterShards]counterShard
}

func (c *ruleCounter) add(pc *pipeline.PacketContext) {
	i := 0
	if pc.Batch != nil {
		i = pc.Batch.Shard() & (counterShards - 1)
	}
	sh := &c.s[i]
	sh.packets.Add(1)
	sh.bytes.Add(uint64(pc.Pkt.Len()))
}

// CountPolicy implements pipeline.PolicyCounter: a built-in chain's policy
// counter, added to once per hook run when the chain is empty.
func (c *ruleCounter) CountPolicy(b *pipeline.Batch, packets, bytes uint64) {
	i := 0
	if b != nil {
		i = b.Shard() & (counterShards - 1)
	}
	sh := &c.s[i]
	sh.packets.Add(packets)
	sh.bytes.Add(bytes)
}

// load sums the shards.
func (c *ruleCounter) load() (packets, bytes uint64) {
	if c == nil {
		return 0, 0
	}
	for i := range c.s {
		packets += c.s[i].packets.Load()
		bytes += c.s[i].bytes.Load()
	}
	return packets, bytes
}

// counterStore holds the rule counters across generations: a reload that
// keeps a rule (same key) keeps its counter; a counter goes when the last
// generation holding its rule is cleaned up.
type counterStore struct {
	mu sync.Mutex
	m  map[string]*storeEntry
}

type storeEntry struct {
	c    *ruleCounter
	refs int
}

func newCounterStore() *counterStore { return &counterStore{m: map[string]*storeEntry{}} }

func (s *counterStore) acquire(key string) *ruleCounter {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[key]
	if e == nil {
		e = &storeEntry{c: new(ruleCounter)}
		s.m[key] = e
	}
	e.refs++
	return e.c
}

func (s *counterStore) release(keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if e := s.m[k]; e != nil {
			if e.refs--; e.refs <= 0 {
				delete(s.m, k)
			}
		}
	}
}

func (s *counterStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// counted is a rule's target with its counter: the rule matched.
type counted struct {
	c *ruleCounter
	t pipeline.Target
}

func (x *counted) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	x.c.add(pc)
	return x.t.Action(pc)
}

// countedJump is a jump or goto rule with its counter.
type countedJump struct {
	c  *ruleCounter
	to int
	v  pipeline.Verdict
}

func (x *countedJump) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	x.c.add(pc)
	return x.v, x.to
}

// JumpsTo implements pipeline.JumpTarget.
func (x *countedJump) JumpsTo() int { return x.to }

// continueTarget is the target of a rule without one: it counts.
type continueTarget struct{}

func (continueTarget) Action(*pipeline.PacketContext) (pipeline.Verdict, int) {
	return pipeline.VerdictContinue, 0
}

var (
	_ pipeline.JumpTarget    = (*countedJump)(nil)
	_ pipeline.PolicyCounter = (*ruleCounter)(nil)
	_ pipeline.Target        = (*counted)(nil)
)
