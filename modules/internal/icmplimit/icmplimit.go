// Package icmplimit is the ICMP rate limiter network.ipv4 and network.ipv6
// share, generic over the address type ([4]byte or [16]byte): a global token
// bucket with a randomised charge, and a bucket per destination in a
// fixed-size table. It is consulted on the error and echo paths only, never
// by forwarding, and never allocates.
//
// # The global bucket
//
// Linux (icmp_global_allow / icmp_global_consume in net/ipv4/icmp.c) lets a
// message through while credit remains and then charges it 0, 1 or 2
// credits at random (mean 1), so that an observer cannot count the credit
// left (CVE-2020-25705, the SAD DNS side channel). Its charges are a free
// random walk: over 10,000 messages the total strays by about ±80 from the
// count, so a flood gets a little more (or less) than the rate.
//
// We charge 0, 1 or 2 at random as well, but keep the running excess D (the
// tokens charged minus the messages sent) within [0, Jitter] by reflecting
// a step that would leave it (a reflected random walk). A message passes
// only while at least 2 tokens remain (1 with Jitter 0), so the bucket never
// goes below zero and, over any window, the messages sent are at most the
// tokens that came in — the burst plus rate × time — and at least that less
// Jitter+2. The credit stays hidden within Jitter tokens (default: the
// burst), the mean charge is one token, and the configured rate is never
// exceeded. A message that the per-destination bucket refuses costs no
// global token (Linux 6.12's order: check global, check the destination,
// then consume globally).
//
// # Per destination
//
// Linux's inet_peer_xrlim_allow: each destination earns one message per
// DestInterval (icmp_ratelimit, 1000 ms) up to DestBurst (6) messages in
// reserve; a new destination starts full. Destinations live in a fixed
// table of DestSlots entries, set-associative (DestWays per set) under a
// keyed hash: a new destination takes a free entry of its set, else one
// whose bucket has refilled (it remembers nothing a new entry would not),
// else the least recently used one. Memory is fixed; nothing is allocated
// per packet.
package icmplimit

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Config is the limiter's configuration in one generation.
type Config struct {
	Rate  float64 // global tokens per second; 0: no global limit
	Burst float64 // global bucket depth
	// Jitter bounds how far the randomised charge may run ahead of the
	// count of messages, in tokens; 0: every message costs exactly one.
	Jitter int
	// Mask: which message classes are limited (both buckets); bit i is
	// class i for classes 0..63 (IPv4: the ICMP type; IPv6: see the ipv6
	// module's mapping). Classes outside it pass freely.
	Mask uint64
	// DestInterval is the time a destination needs to earn one message;
	// 0: no per-destination limit.
	DestInterval time.Duration
	// DestBurst is how many messages a destination keeps in reserve.
	DestBurst int
}

// Limited reports whether messages of class bit go through the limiter.
func (c *Config) Limited(bit uint8) bool {
	return bit < 64 && c.Mask&(1<<bit) != 0
}

// The per-destination table: DestSlots entries in sets of DestWays.
const (
	DestWays  = 4
	DestSlots = 4096
	destSets  = DestSlots / DestWays
)

// Limiter is the ICMP rate limiter. It lives outside the generation
// (Context.Shared) so that a reload neither refills it nor forgets the
// destinations; rates and bursts come from the generation's Config at each
// call. It is safe for concurrent use.
type Limiter[A comparable] struct {
	mu     sync.Mutex
	hash   func(A, uint64) uint64
	key    uint64
	tokens float64
	last   time.Time
	excess int // tokens charged minus messages sent, within [0, Jitter]
	rng    *rand.Rand
	dests  [destSets][DestWays]destEntry[A]
}

type destEntry[A comparable] struct {
	addr   A
	used   bool
	credit time.Duration // earned time, at most DestBurst × DestInterval
	last   time.Time     // last time the entry was consulted
}

// New returns a limiter; hash spreads destinations over the table under a
// secret key (Hash4, Hash16); seed 0 picks a random seed for the key and
// the charges.
func New[A comparable](seed uint64, hash func(A, uint64) uint64) *Limiter[A] {
	if seed == 0 {
		seed = rand.Uint64() | 1
	}
	l := &Limiter[A]{hash: hash, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	l.key = l.rng.Uint64()
	return l
}

// Allow reports whether one message of class bit to dst may be sent at
// time now, and charges the buckets if so. destShift divides the
// destination's interval by 2^destShift (IPv6 gives wider prefixes more, as
// Linux does). It never allocates.
func (l *Limiter[A]) Allow(c *Config, now time.Time, bit uint8, dst A, destShift uint) bool {
	if !c.Limited(bit) {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	global := c.Rate > 0
	if global && !l.globalAllow(c, now) {
		return false
	}
	if c.DestInterval > 0 && !l.destAllow(c, now, dst, destShift) {
		return false
	}
	if global {
		l.globalConsume(c)
	}
	return true
}

// globalAllow refills the global bucket and reports whether it can pay the
// largest charge.
func (l *Limiter[A]) globalAllow(c *Config, now time.Time) bool {
	if l.last.IsZero() {
		l.tokens, l.last = c.Burst, now
	} else if d := now.Sub(l.last); d > 0 {
		l.tokens = min(l.tokens+d.Seconds()*c.Rate, c.Burst)
		l.last = now
	}
	if l.tokens > c.Burst { // a reload lowered the burst
		l.tokens = c.Burst
	}
	need := 1.0
	if c.Jitter > 0 {
		need = 2
	}
	return l.tokens >= need
}

// globalConsume charges one message: 1 token ± 1 at random, the excess kept
// within [0, Jitter].
func (l *Limiter[A]) globalConsume(c *Config) {
	if c.Jitter <= 0 {
		l.tokens--
		l.excess = 0
		return
	}
	if l.excess > c.Jitter { // a reload lowered the jitter
		l.excess = c.Jitter
	}
	d := l.rng.IntN(3) - 1
	if e := l.excess + d; e < 0 || e > c.Jitter {
		d = -d
	}
	l.excess += d
	l.tokens -= float64(1 + d)
}

// destAllow consults and charges dst's bucket.
func (l *Limiter[A]) destAllow(c *Config, now time.Time, dst A, shift uint) bool {
	interval := c.DestInterval >> min(shift, 30)
	if interval <= 0 {
		return true
	}
	full := interval * time.Duration(max(c.DestBurst, 1))
	set := &l.dests[l.hash(dst, l.key)%destSets]
	var e *destEntry[A]
	victim, vrank := 0, 3
	for i := range set {
		s := &set[i]
		if s.used && s.addr == dst {
			e = s
			break
		}
		// Take a free entry, else a refilled one, else the least
		// recently used.
		rank := 2
		switch {
		case !s.used:
			rank = 0
		case s.credit+now.Sub(s.last) >= full:
			rank = 1
		}
		if rank < vrank || (rank == vrank && s.last.Before(set[victim].last)) {
			victim, vrank = i, rank
		}
	}
	if e == nil {
		e = &set[victim]
		*e = destEntry[A]{addr: dst, used: true, credit: full, last: now}
	} else if d := now.Sub(e.last); d > 0 {
		e.credit += d
		e.last = now
	}
	if e.credit > full {
		e.credit = full
	}
	if e.credit < interval {
		return false
	}
	e.credit -= interval
	return true
}

// Hash4 hashes an IPv4 address under key.
func Hash4(a [4]byte, key uint64) uint64 {
	return mix(uint64(a[0])<<24 | uint64(a[1])<<16 | uint64(a[2])<<8 | uint64(a[3]) ^ key)
}

// Hash16 hashes an IPv6 address under key.
func Hash16(a [16]byte, key uint64) uint64 {
	var hi, lo uint64
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(a[i])
		lo = lo<<8 | uint64(a[8+i])
	}
	return mix(mix(hi^key) ^ lo)
}

// mix is the splitmix64 finaliser.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
