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

// slabRules is how many rule counters a slab holds (a power of two).
const slabRules = 512

// counterCell is one rule's packets and bytes in one shard: 16 bytes.
type counterCell struct {
	packets atomic.Uint64
	bytes   atomic.Uint64
}

// counterSlab holds the counters of slabRules rules, shard-major: the
// cells of one shard (one worker) for consecutive rules are neighbours, 4
// to a cache line, and the shards are 8 KB apart (a slab of 64 KB is
// page-aligned, so no cell straddles a line and two shards never share
// one). Rules the store gives out one after the other (a table's rules in
// order, on a fresh load) share lines and pages instead of each owning 512
// bytes of padded shards: at 10,000 rules the counters one worker touches
// are 160 KB, not 5 MB, which the caches and the TLB hold.
type counterSlab struct {
	s [counterShards][slabRules]counterCell
}

// ruleCounter counts one rule's packets and bytes, sharded per worker: a
// slot of a slab. The store hands out one per rule identity; the value is
// copied into the rule's target (counted), so counting is one load of the
// slab's address and one atomic add per field.
type ruleCounter struct {
	slab *counterSlab
	i    uint32
}

// newRuleCounter is a counter of its own (tests, benchmarks).
func newRuleCounter() *ruleCounter { return &ruleCounter{slab: new(counterSlab)} }

func (c ruleCounter) cell(b *pipeline.Batch) *counterCell {
	sh := 0
	if b != nil {
		sh = b.Shard() & (counterShards - 1)
	}
	return &c.slab.s[sh][c.i&(slabRules-1)]
}

func (c ruleCounter) add(pc *pipeline.PacketContext) {
	x := c.cell(pc.Batch)
	x.packets.Add(1)
	x.bytes.Add(uint64(pc.Pkt.Len()))
}

// CountPolicy implements pipeline.PolicyCounter: a built-in chain's policy
// counter, added to once per hook run when the chain is empty.
func (c *ruleCounter) CountPolicy(b *pipeline.Batch, packets, bytes uint64) {
	x := c.cell(b)
	x.packets.Add(packets)
	x.bytes.Add(bytes)
}

// load sums the shards.
func (c *ruleCounter) load() (packets, bytes uint64) {
	if c == nil || c.slab == nil {
		return 0, 0
	}
	for s := range c.slab.s {
		x := &c.slab.s[s][c.i&(slabRules-1)]
		packets += x.packets.Load()
		bytes += x.bytes.Load()
	}
	return packets, bytes
}

// zero clears every shard (a slot given out again).
func (c *ruleCounter) zero() {
	for s := range c.slab.s {
		x := &c.slab.s[s][c.i&(slabRules-1)]
		x.packets.Store(0)
		x.bytes.Store(0)
	}
}

// counterStore holds the rule counters across generations: a reload that
// keeps a rule (same key) keeps its counter; a counter goes when the last
// generation holding its rule is cleaned up (after the stack drained it:
// no worker adds to it any more), and its slot is zeroed and given to the
// next new rule. New slots are handed out in order, so the rules of a
// table, provisioned in order, have neighbouring counters.
type counterStore struct {
	mu    sync.Mutex
	m     map[string]*storeEntry
	slabs []*counterSlab
	used  int           // slots handed out of the slabs, ever
	free  []ruleCounter // slots given back
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
		e = &storeEntry{c: s.slot()}
		s.m[key] = e
	}
	e.refs++
	return e.c
}

// slot is a zeroed counter slot: the oldest given back (in the order
// they were given back: a table's rules in order), else the next of the
// slabs. (s.mu held.)
func (s *counterStore) slot() *ruleCounter {
	if len(s.free) > 0 {
		c := s.free[0]
		s.free = s.free[1:]
		c.zero()
		return &c
	}
	if s.used%slabRules == 0 {
		s.slabs = append(s.slabs, new(counterSlab))
	}
	c := &ruleCounter{slab: s.slabs[len(s.slabs)-1], i: uint32(s.used % slabRules)}
	s.used++
	return c
}

func (s *counterStore) release(keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if e := s.m[k]; e != nil {
			if e.refs--; e.refs <= 0 {
				delete(s.m, k)
				s.free = append(s.free, *e.c)
			}
		}
	}
}

func (s *counterStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// counted is a rule's target with its counter: the rule matched. A plain
// verdict (ACCEPT, DROP, RETURN) is kept in it (fixed) rather than called
// through its target, and a table's are made side by side (targetArena):
// a matched rule costs its counted (32 bytes, the counter's fields laid
// flat: one aligned line holds two) and its counter cell.
type counted struct {
	slab  *counterSlab
	i     uint32
	v     pipeline.Verdict
	fixed bool
	t     pipeline.Target
}

func (x *counted) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	ruleCounter{x.slab, x.i}.add(pc)
	if x.fixed {
		return x.v, 0
	}
	return x.t.Action(pc)
}

// countedJump is a jump or goto rule with its counter.
type countedJump struct {
	c  ruleCounter
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

// targetArena makes a table's counted targets in chunks (as fastArena its
// matchers), so that those of consecutive rules are neighbours.
type targetArena struct {
	c []counted
	j []countedJump
}

var (
	_ pipeline.JumpTarget    = (*countedJump)(nil)
	_ pipeline.PolicyCounter = (*ruleCounter)(nil)
	_ pipeline.Target        = (*counted)(nil)
)
