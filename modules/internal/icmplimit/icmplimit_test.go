package icmplimit

import (
	"testing"
	"time"
)

const bit = 3

var t0 = time.Unix(1000, 0)

func new4(seed uint64) *Limiter[[4]byte] { return New(seed, Hash4) }

// flood sends perMs messages every millisecond for d, all to dst (or to a
// new destination each when dst is nil), and counts those allowed.
func flood(l *Limiter[[4]byte], c *Config, start time.Time, d time.Duration, perMs int, dst *[4]byte) int {
	n := 0
	for ms := time.Duration(0); ms < d; ms += time.Millisecond {
		now := start.Add(ms)
		for i := 0; i < perMs; i++ {
			a := [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}
			if dst != nil {
				a = *dst
			}
			if l.Allow(c, now, bit, a, 0) {
				n++
			}
		}
	}
	return n
}

// A flood at 100× the rate for 10 seconds gets at most rate × 10 + burst
// messages, and at most jitter + 2 fewer. The old limiter let 1.6–1.9× the
// rate through (a message that could not pay its random cost was refused
// free of charge, so cheap draws won).
func TestGlobalNeverAboveRate(t *testing.T) {
	for _, jitter := range []int{0, 1, 10, 50} {
		for seed := uint64(1); seed <= 5; seed++ {
			c := &Config{Rate: 100, Burst: 50, Jitter: jitter, Mask: 1 << bit}
			l := new4(seed)
			got := flood(l, c, t0, 10*time.Second, 10, nil) // 10,000/s
			// Tokens that came in: the burst, then 9.999 s of refill.
			hi := 50 + 100*9.999
			lo := hi - float64(jitter) - 2
			if float64(got) > hi || float64(got) < lo {
				t.Errorf("jitter %d seed %d: %d messages, want within [%g, %g]", jitter, seed, got, lo, hi)
			}
		}
	}
}

// The charge is random: the number of messages a full bucket lets through
// varies, so an observer cannot count the credit left; it never exceeds
// the burst.
func TestGlobalHidesCredit(t *testing.T) {
	c := &Config{Rate: 1000, Burst: 50, Jitter: 50, Mask: 1 << bit}
	seen := map[int]bool{}
	for seed := uint64(1); seed <= 40; seed++ {
		l := new4(seed)
		n := flood(l, c, t0, time.Millisecond, 200, nil)
		if n > 50 || n < 50-52 {
			t.Fatalf("seed %d: %d messages from a full bucket of 50", seed, n)
		}
		// Then probes: the credit after each refill is hidden too.
		seen[n] = true
	}
	if len(seen) < 5 {
		t.Errorf("only %d different counts over 40 runs: %v", len(seen), seen)
	}
	c.Jitter = 0
	if n := flood(new4(1), c, t0, time.Millisecond, 200, nil); n != 50 {
		t.Errorf("jitter 0: %d messages, want exactly the burst", n)
	}
}

// Over a long flood the mean charge is one token.
func TestGlobalMeanCharge(t *testing.T) {
	c := &Config{Rate: 1000, Burst: 50, Jitter: 50, Mask: 1 << bit}
	got := flood(new4(7), c, t0, 60*time.Second, 3, nil)
	tokens := 50 + 1000*59.999
	if float64(got) < tokens-52 || float64(got) > tokens {
		t.Errorf("%d messages for %g tokens", got, tokens)
	}
}

// One destination gets at most its burst plus one message per interval.
func TestDestinationNeverAboveRate(t *testing.T) {
	c := &Config{Mask: 1 << bit, DestInterval: time.Second, DestBurst: 6}
	l := new4(1)
	dst := [4]byte{192, 0, 2, 1}
	if got := flood(l, c, t0, 10*time.Second, 10, &dst); got != 6+9 {
		t.Errorf("%d messages to one destination in 10 s at 1/s, burst 6: want 15", got)
	}
	// Another destination is not starved by it.
	if !l.Allow(c, t0.Add(10*time.Second), bit, [4]byte{192, 0, 2, 2}, 0) {
		t.Error("another destination was refused")
	}
	// destShift gives a destination 2^shift times the rate.
	l = new4(1)
	got := 0
	for ms := 0; ms < 10000; ms++ {
		if l.Allow(c, t0.Add(time.Duration(ms)*time.Millisecond), bit, dst, 2) {
			got++
		}
	}
	if got != 6+39 {
		t.Errorf("shift 2 (250 ms): %d messages in 10 s, want 45", got)
	}
}

// The buckets charge each other nothing: a message the destination refuses
// costs no global token, and one the global bucket refuses costs the
// destination nothing.
func TestBucketsIndependent(t *testing.T) {
	c := &Config{Rate: 10, Burst: 10, Mask: 1 << bit, DestInterval: time.Second, DestBurst: 2}
	l := new4(1)
	hot := [4]byte{192, 0, 2, 1}
	if got := flood(l, c, t0, time.Millisecond, 100, &hot); got != 2 {
		t.Fatalf("%d to one destination, want its burst 2", got)
	}
	// 98 refusals cost no global tokens: 8 remain for others.
	if got := flood(l, c, t0, time.Millisecond, 100, nil); got != 8 {
		t.Fatalf("%d to other destinations, want the 8 global tokens left", got)
	}
	// The global bucket is empty; a fresh destination is refused without
	// its bucket being charged.
	fresh := [4]byte{192, 0, 2, 99}
	for i := 0; i < 10; i++ {
		if l.Allow(c, t0, bit, fresh, 0) {
			t.Fatal("allowed with an empty global bucket")
		}
	}
	if got := flood(l, c, t0.Add(time.Second), time.Millisecond, 10, &fresh); got != 2 {
		t.Errorf("%d to the fresh destination once the global bucket refilled, want its full burst 2", got)
	}
}

// Classes outside the mask pass freely.
func TestMask(t *testing.T) {
	c := &Config{Rate: 1, Burst: 1, Mask: 1 << bit, DestInterval: time.Second, DestBurst: 1}
	l := new4(1)
	for i := 0; i < 100; i++ {
		if !l.Allow(c, t0, bit+1, [4]byte{1, 2, 3, 4}, 0) {
			t.Fatal("an unmasked class was limited")
		}
	}
	if !l.Allow(c, t0, bit, [4]byte{1, 2, 3, 4}, 0) || l.Allow(c, t0, bit, [4]byte{1, 2, 3, 4}, 0) {
		t.Error("masked class: want one message")
	}
}

// sameSet finds n addresses whose entries share one set of the table.
func sameSet(l *Limiter[[4]byte], n int) [][4]byte {
	var out [][4]byte
	want := uint64(0)
	for i := 0; len(out) < n; i++ {
		a := [4]byte{10, 1, byte(i >> 8), byte(i)}
		h := l.hash(a, l.key) % destSets
		if len(out) == 0 {
			want = h
		}
		if h == want {
			out = append(out, a)
		}
	}
	return out
}

// The table is fixed: a new destination in a full set takes a refilled
// entry before one still in debt, even if that one is older; then the
// least recently used.
func TestDestinationEviction(t *testing.T) {
	c := &Config{Mask: 1 << bit, DestInterval: time.Second, DestBurst: 6}
	l := new4(1)
	a := sameSet(l, DestWays+2)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// a[0] spends its burst at 0.5 s: in debt for 6 s.
	for i := 0; i < 10; i++ {
		l.Allow(c, at(500), bit, a[0], 0)
	}
	// a[1..3] send one each at 1 s: refilled from 2 s on.
	for i := 1; i < DestWays; i++ {
		l.Allow(c, at(1000+i), bit, a[i], 0)
	}
	// At 2.5 s a new destination takes a[1]'s entry, not a[0]'s (older,
	// but in debt).
	l.Allow(c, at(2500), bit, a[DestWays], 0)
	n := 0
	for i := 0; i < 10; i++ {
		if l.Allow(c, at(2500), bit, a[0], 0) {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("a[0] got %d messages at 2.5 s, want 2 (its debt was forgotten?)", n)
	}
	// With every entry in debt, the least recently used one goes.
	for i := 2; i <= DestWays; i++ {
		for j := 0; j < 10; j++ {
			l.Allow(c, at(2600+i), bit, a[i], 0)
		}
	}
	l.Allow(c, at(2700), bit, a[DestWays+1], 0) // evicts a[0] (used at 2.5 s)
	n = 0
	for i := 0; i < 10; i++ {
		if l.Allow(c, at(2800), bit, a[0], 0) {
			n++
		}
	}
	if n != 6 {
		t.Errorf("a[0] got %d after eviction, want a fresh burst of 6", n)
	}
}

// A burst lowered by a reload takes effect at once.
func TestReloadLowersBurst(t *testing.T) {
	l := new4(1)
	c := &Config{Rate: 1, Burst: 100, Mask: 1 << bit}
	l.Allow(c, t0, bit, [4]byte{}, 0)
	c = &Config{Rate: 1, Burst: 3, Mask: 1 << bit}
	if got := flood(l, c, t0, time.Millisecond, 100, nil); got != 3 {
		t.Errorf("%d after lowering the burst to 3", got)
	}
}

func TestHash16(t *testing.T) {
	a := [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}
	b := a
	b[15] = 2
	if Hash16(a, 1) == Hash16(b, 1) || Hash16(a, 1) == Hash16(a, 2) {
		t.Error("Hash16 ignores the address or the key")
	}
}
