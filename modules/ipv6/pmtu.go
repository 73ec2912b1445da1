package ipv6

import (
	"sync"
	"sync/atomic"
	"time"
)

// pmtuCache holds the path MTUs learnt from Packet Too Big messages (RFC
// 8201), per destination, for the stack's own packets. It is long-lived
// (Context.Shared) and bounded; entries expire after path_mtu.timeout (the
// path may have grown again). Only local output reads it, and with no
// entry it costs one atomic load.
type pmtuCache struct {
	n  atomic.Int32
	mu sync.Mutex
	m  map[[16]byte]pmtuEntry
}

type pmtuEntry struct {
	mtu     int
	expires time.Time
}

func newPMTUCache() *pmtuCache { return &pmtuCache{m: map[[16]byte]pmtuEntry{}} }

// get returns the path MTU towards dst, if one was learnt and is current.
func (c *pmtuCache) get(dst [16]byte, now time.Time) (int, bool) {
	if c.n.Load() == 0 {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[dst]
	if !ok {
		return 0, false
	}
	if !now.Before(e.expires) {
		delete(c.m, dst)
		c.n.Store(int32(len(c.m)))
		return 0, false
	}
	return e.mtu, true
}

// update lowers the path MTU towards dst to mtu (a larger value than the
// one known is ignored until that one expires). It reports whether it
// changed anything. When the cache is full, expired entries go, else an
// arbitrary one.
func (c *pmtuCache) update(dst [16]byte, mtu int, now time.Time, timeout time.Duration, max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[dst]; ok && now.Before(e.expires) && e.mtu <= mtu {
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
	c.m[dst] = pmtuEntry{mtu: mtu, expires: now.Add(timeout)}
	c.n.Store(int32(len(c.m)))
	return true
}

// PathMTU is for tests and status: the path MTU learnt towards dst.
func (c *pmtuCache) PathMTU(dst [16]byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[dst].mtu
}
