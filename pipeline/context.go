package pipeline

import (
	"github.com/rs/zerolog"
)

// Context is what a module sees while it is provisioned and opened: its ID,
// where it is configured, a logger, the clock and the stack's long-lived
// counters. It is valid for the module's lifetime.
type Context struct {
	// ModuleID is the module's ID (link.tun, network.ipv4).
	ModuleID string
	// Instance names this instance: the link name for a link module, the
	// module ID otherwise.
	Instance string
	// File, Line locate the module's config.
	File string
	Line int
	// Logger is the stack's logger with module=ID. Never log per packet.
	Logger zerolog.Logger
	// Clock is the stack's clock.
	Clock Clock
	// Pool is the packet pool links and protocols take buffers from.
	Pool *Pool
	// LinkMTU is the link's configured mtu (0: the device's own), for link
	// modules that set the device's MTU.
	LinkMTU int
	// LinkIDs maps the name of every link of the generation being built
	// to its NIC ID, known before any module is provisioned, so that a
	// module resolves link names once (the filter's -i/-o) instead of per
	// packet. Shared: do not modify it. A link added by a reload is in
	// the next generation's map.
	LinkIDs map[string]NICID
	// Config is the pipeline file the generation is built from (read
	// only): what a module checks against other sections (the filter
	// plugins check privileges: keeps setuid/setgid).
	Config *Config

	counters *counterRegistry
	stack    *Stack
	inputs   *inputSet // files read by ReadFile (the generation being built)
}

// Stack is the stack the module is built for: what a module uses to
// re-inject packets it stole (Stack.Reinject) or to run a batch from a timer
// (Stack.Do). Under pipectl validate it is a throwaway stack that runs
// nothing.
func (c *Context) Stack() *Stack { return c.stack }

// Shared returns the stack's long-lived object under key, made by mk the
// first time: state that must outlive a generation (socket tables,
// reassembly queues, rate-limit buckets) lives here, keyed by what it
// belongs to (e.g. "transport.udp/endpoints"), so that a reload finds it
// again.
func (c *Context) Shared(key string, mk func() any) any {
	if c.stack == nil {
		return mk()
	}
	return c.stack.Shared(key, mk)
}

// Counters returns the counter set with this name (e.g. "ipv4"). The set
// lives as long as the stack: a reloaded module that asks for the same name
// gets the same counters, so counts carry over.
func (c *Context) Counters(name string) *CounterSet {
	if c.counters == nil {
		c.counters = &counterRegistry{}
	}
	return c.counters.set(name)
}
