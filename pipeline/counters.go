package pipeline

import (
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
)

// Counter is a monotonically increasing count. The packet path adds to
// counters once per batch where it can (count locally, add at the end).
type Counter struct{ v atomic.Uint64 }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Load reads the count.
func (c *Counter) Load() uint64 { return c.v.Load() }

// CounterSet is a named group of counters ("ipv4", "nic lan"). Counters are
// created at configuration time (Get) and live as long as the stack, so they
// carry over across reloads.
type CounterSet struct {
	name  string
	mu    sync.Mutex
	byKey map[string]*Counter
	order []string
}

// Name of the set.
func (s *CounterSet) Name() string { return s.name }

// Get returns the counter with this name, creating it on first use. Call it
// when building, not per packet.
func (s *CounterSet) Get(name string) *Counter {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.byKey[name]
	if !ok {
		c = new(Counter)
		s.byKey[name] = c
		s.order = append(s.order, name)
	}
	return c
}

// Snapshot returns the counters' values in creation order.
func (s *CounterSet) Snapshot() []CounterValue {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]CounterValue, 0, len(s.order))
	for _, k := range s.order {
		out = append(out, CounterValue{Name: k, Value: s.byKey[k].Load()})
	}
	return out
}

// CounterValue is one counter's name and value.
type CounterValue struct {
	Name  string `json:"name"`
	Value uint64 `json:"value"`
}

// counterRegistry holds the stack's counter sets by name.
type counterRegistry struct {
	mu   sync.Mutex
	sets map[string]*CounterSet
}

func (r *counterRegistry) set(name string) *CounterSet {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sets == nil {
		r.sets = map[string]*CounterSet{}
	}
	s, ok := r.sets[name]
	if !ok {
		s = &CounterSet{name: name, byKey: map[string]*Counter{}}
		r.sets[name] = s
	}
	return s
}

func (r *counterRegistry) all() []*CounterSet {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*CounterSet, 0, len(r.sets))
	for _, s := range r.sets {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// SetnsHint explains an EPERM from entering a network namespace: after
// pipectl run drops privileges, opening a link in another namespace (a
// reload that adds or reopens one) needs CAP_SYS_ADMIN kept.
func SetnsHint(err error) string {
	if errors.Is(err, syscall.EPERM) {
		return " (entering a network namespace needs CAP_SYS_ADMIN: add sys_admin to privileges: {keep: [...]} to reload such links)"
	}
	return ""
}
