// Package pmtu is the path MTU cache network.ipv4 (RFC 1191) and
// network.ipv6 (RFC 8201) keep for the stack's own packets: per
// destination, what ICMP "fragmentation needed" / Packet Too Big taught,
// bounded, with entries that expire (the path may have grown again). It is
// long-lived (Context.Shared) and only local output and the ICMP error path
// read it: with no entry a lookup costs one atomic load.
package pmtu

import (
	"sync"
	"sync/atomic"
	"time"
)

// Cache maps destinations (an address as bytes) to path MTUs.
type Cache[K comparable] struct {
	n  atomic.Int32
	mu sync.Mutex
	m  map[K]entry
}

type entry struct {
	mtu     int
	locked  bool
	expires time.Time
}

// New returns an empty cache.
func New[K comparable]() *Cache[K] { return &Cache[K]{m: map[K]entry{}} }

// Get returns the path MTU towards dst, if one was learnt and is current,
// and whether it is locked: learnt from a report below the protocol's
// minimum, so that the minimum is used without DF (Linux's mtu lock).
func (c *Cache[K]) Get(dst K, now time.Time) (mtu int, locked, ok bool) {
	if c.n.Load() == 0 {
		return 0, false, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[dst]
	if !ok {
		return 0, false, false
	}
	if !now.Before(e.expires) {
		delete(c.m, dst)
		c.n.Store(int32(len(c.m)))
		return 0, false, false
	}
	return e.mtu, e.locked, true
}

// Update lowers the path MTU towards dst to mtu (locked: see Get) until
// now+timeout; a value not below the one known is ignored until that one
// expires (path MTUs only go down, RFC 1191 §6.3, RFC 8201 §4). It
// reports whether it changed anything. When the cache holds max entries,
// the expired ones go, else an arbitrary one.
func (c *Cache[K]) Update(dst K, mtu int, locked bool, now time.Time, timeout time.Duration, max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[dst]; ok && now.Before(e.expires) && (e.mtu < mtu || e.mtu == mtu && (e.locked || !locked)) {
		return false
	}
	if _, ok := c.m[dst]; !ok && len(c.m) >= max {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < max {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[dst] = entry{mtu: mtu, locked: locked, expires: now.Add(timeout)}
	c.n.Store(int32(len(c.m)))
	return true
}

// PathMTU is for tests and status: the path MTU learnt towards dst (0:
// none), current or not.
func (c *Cache[K]) PathMTU(dst K) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[dst].mtu
}

// Len is how many entries the cache holds.
func (c *Cache[K]) Len() int { return int(c.n.Load()) }
