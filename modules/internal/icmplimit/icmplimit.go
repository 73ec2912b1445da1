// Package icmplimit is the ICMP token bucket network.ipv4 and network.ipv6
// share: a global bucket with a randomised cost per message and optional
// per-destination buckets, generic over the address type ([4]byte or
// [16]byte). It is consulted on the error and echo paths only, never by
// forwarding.
package icmplimit

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Config is the limiter's configuration in one generation.
type Config struct {
	Rate   float64 // tokens per second; 0: no global limit
	Burst  float64
	Jitter float64 // each message costs 1±Jitter tokens, uniformly
	// Mask: which message types are limited; bit i is type i for types
	// 0..63 (IPv4: the ICMP type; IPv6: see the ipv6 module's mapping).
	Mask uint64
	// Per destination (0 rate: off).
	DestRate  float64
	DestBurst float64
}

// Limited reports whether messages of class bit go through the limiter.
func (c *Config) Limited(bit uint8) bool {
	return bit < 64 && c.Mask&(1<<bit) != 0
}

// destSlots is the size of the per-destination bucket table (a fixed array:
// a destination that collides with another takes its slot over, starting
// with a full bucket; the table never grows).
const destSlots = 1024

// Limiter is the ICMP token bucket. It lives outside the generation
// (Context.Shared) so that a reload does not refill it; the rate and burst
// come from the generation's config at each call.
//
// The global bucket follows Linux's icmp_global_allow/icmp_global_consume
// (icmp_msgs_per_sec, icmp_msgs_burst) with its randomised cost: Linux
// charges 0, 1 or 2 credits at random so that an observer cannot count the
// credit left (CVE-2020-25705, the SAD DNS side channel). We charge a cost
// drawn uniformly from [1-jitter, 1+jitter] (jitter below 1), which keeps
// the mean at one token per message and still hides the exact credit, but
// also bounds the count: over a window of T seconds a flood gets between
// (burst+rate·T)/(1+jitter)-1 and (burst+rate·T)/(1-jitter) messages.
type Limiter[A comparable] struct {
	mu     sync.Mutex
	hash   func(A) uint32
	tokens float64
	last   time.Time
	rng    *rand.Rand
	dests  [destSlots]destBucket[A]
}

type destBucket[A comparable] struct {
	addr   A
	used   bool
	tokens float64
	last   time.Time
}

// New returns a limiter; hash spreads destinations over the per-destination
// table; seed 0 picks a random one.
func New[A comparable](seed uint64, hash func(A) uint32) *Limiter[A] {
	if seed == 0 {
		seed = rand.Uint64()
	}
	return &Limiter[A]{hash: hash, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func refill(tokens *float64, last *time.Time, now time.Time, rate, burst float64, first bool) {
	if first || last.IsZero() {
		*tokens, *last = burst, now
		return
	}
	if d := now.Sub(*last); d > 0 {
		*tokens += d.Seconds() * rate
		if *tokens > burst {
			*tokens = burst
		}
		*last = now
	}
}

// Allow reports whether one message of class bit to dst may be sent at time
// now, and charges the buckets if so. exempt messages skip the global
// bucket (path MTU discovery must not black-hole: IPv4 fragmentation
// needed, IPv6 packet too big, as in Linux); the per-destination one still
// applies.
func (l *Limiter[A]) Allow(c *Config, now time.Time, bit uint8, exempt bool, dst A) bool {
	if !c.Limited(bit) {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.DestRate > 0 {
		h := l.hash(dst) * 2654435761
		s := &l.dests[h>>(32-10)]
		fresh := !s.used || s.addr != dst
		if fresh {
			*s = destBucket[A]{addr: dst, used: true}
		}
		refill(&s.tokens, &s.last, now, c.DestRate, c.DestBurst, fresh)
		if s.tokens < 1 {
			return false
		}
		s.tokens--
	}
	if c.Rate <= 0 || exempt {
		return true
	}
	refill(&l.tokens, &l.last, now, c.Rate, c.Burst, false)
	cost := 1.0
	if c.Jitter > 0 {
		cost += c.Jitter * (2*l.rng.Float64() - 1)
	}
	if l.tokens < cost {
		return false
	}
	l.tokens -= cost
	return true
}
