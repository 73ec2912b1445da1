package pipeline

import (
	"math/rand/v2"
	"sync"
)

// Rand is the stack's source of the random draws protocols make (the ICMP
// limiters' hash seeds, IPv6 fragment identifications and the default
// stable secret, NUD's reachable time, router advertisement intervals,
// UDP's ephemeral port search). With Options.Seed zero it draws from the
// runtime's generator; with a seed, from one seeded generator behind a
// mutex, so that the same inputs in the same order (pipectl replay) draw
// the same numbers. The draws are on control paths and slow paths (a miss,
// a timer), never per forwarded packet. A nil *Rand draws from the
// runtime's generator.
type Rand struct {
	mu sync.Mutex
	r  *rand.Rand // nil: the runtime's
}

func newRand(seed uint64) *Rand {
	if seed == 0 {
		return &Rand{}
	}
	return &Rand{r: rand.New(rand.NewPCG(seed, seed^0x6a09e667f3bcc909))}
}

// Seeded reports whether the draws are deterministic (Options.Seed set).
func (r *Rand) Seeded() bool { return r != nil && r.r != nil }

// Uint64 draws 64 bits.
func (r *Rand) Uint64() uint64 {
	if !r.Seeded() {
		return rand.Uint64()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.r.Uint64()
}

// Uint32 draws 32 bits.
func (r *Rand) Uint32() uint32 { return uint32(r.Uint64() >> 32) }

// IntN draws from [0, n); n must be positive.
func (r *Rand) IntN(n int) int {
	if !r.Seeded() {
		return rand.IntN(n)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.r.IntN(n)
}

// Float32 draws from [0, 1).
func (r *Rand) Float32() float32 {
	if !r.Seeded() {
		return rand.Float32()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.r.Float32()
}

// Seed is a seed for a module's own generator (icmplimit.New): 0 (pick
// one at random) when the stack is not seeded, else a draw (never 0).
func (r *Rand) Seed() uint64 {
	if !r.Seeded() {
		return 0
	}
	return r.Uint64() | 1
}

// Rand is the stack's random source (Options.Seed).
func (s *Stack) Rand() *Rand { return s.rand }
