package ipv4

import (
	"math/rand/v2"
	"sync"
	"time"
)

// rateConfig is the ICMP limiter's configuration in one generation.
type rateConfig struct {
	rate   float64 // tokens per second; 0: no global limit
	burst  float64
	jitter float64 // each message costs 1±jitter tokens, uniformly
	// mask: which ICMP types are limited (bit per type, types 0..31).
	mask uint32
	// per destination (0 rate: off).
	destRate  float64
	destBurst float64
}

// limited reports whether messages of this type and code go through the
// limiter. Fragmentation needed is never limited by the global bucket
// (like Linux: path MTU discovery must not black-hole); it still is by the
// per-destination one.
func (c *rateConfig) limited(typ uint8) bool {
	return typ < 32 && c.mask&(1<<typ) != 0
}

// destSlots is the size of the per-destination bucket table (a fixed array:
// a destination that collides with another takes its slot over, starting
// with a full bucket; the table never grows).
const destSlots = 1024

// icmpLimiter is the ICMP token bucket. It lives outside the generation
// (Context.Shared) so that a reload does not refill it; the rate and burst
// come from the generation's config at each call. It is only consulted on
// the error and echo paths, never by forwarding.
//
// The global bucket follows Linux's icmp_global_allow/icmp_global_consume
// (icmp_msgs_per_sec, icmp_msgs_burst) with its randomised cost: Linux
// charges 0, 1 or 2 credits at random so that an observer cannot count the
// credit left (CVE-2020-25705, the SAD DNS side channel). We charge a cost
// drawn uniformly from [1-jitter, 1+jitter] (jitter below 1), which keeps
// the mean at one token per message and still hides the exact credit, but
// also bounds the count: over a window of T seconds a flood gets between
// (burst+rate·T)/(1+jitter)-1 and (burst+rate·T)/(1-jitter) messages.
type icmpLimiter struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
	rng    *rand.Rand
	dests  [destSlots]destBucket
}

type destBucket struct {
	addr   [4]byte
	used   bool
	tokens float64
	last   time.Time
}

func newICMPLimiter(seed uint64) *icmpLimiter {
	if seed == 0 {
		seed = rand.Uint64()
	}
	return &icmpLimiter{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
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

// allow reports whether one ICMP message of type typ (code code) to dst may
// be sent at time now, and charges the buckets if so.
func (l *icmpLimiter) allow(c *rateConfig, now time.Time, typ, code uint8, dst [4]byte) bool {
	if !c.limited(typ) {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.destRate > 0 {
		h := (uint32(dst[0])<<24 | uint32(dst[1])<<16 | uint32(dst[2])<<8 | uint32(dst[3])) * 2654435761
		s := &l.dests[h>>(32-10)]
		fresh := !s.used || s.addr != dst
		if fresh {
			*s = destBucket{addr: dst, used: true}
		}
		refill(&s.tokens, &s.last, now, c.destRate, c.destBurst, fresh)
		if s.tokens < 1 {
			return false
		}
		s.tokens--
	}
	if c.rate <= 0 || (typ == 3 && code == 4) {
		return true
	}
	refill(&l.tokens, &l.last, now, c.rate, c.burst, false)
	cost := 1.0
	if c.jitter > 0 {
		cost += c.jitter * (2*l.rng.Float64() - 1)
	}
	if l.tokens < cost {
		return false
	}
	l.tokens -= cost
	return true
}
