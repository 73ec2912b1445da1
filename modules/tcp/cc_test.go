package tcp

import (
	"math"
	"testing"
	"time"
)

// CUBIC's window after a loss at W = 100 segments: down to 70, back at
// W_max at t = K = cbrt(100·0.3/0.4) ≈ 4.22 s, and growing beyond
// (RFC 9438 §4.2); RTT 100 ms (where the cubic curve, not the Reno-friendly
// estimate, leads), one ACK per segment.
func TestCubicCurve(t *testing.T) {
	var c cubic
	s := &CCState{MSS: 1000, CwndLimited: true} // the sender uses its whole window
	c.Init(s)
	s.Cwnd = 100 * 1000
	s.Ssthresh = 1 << 30
	c.OnCongestion(s, 0)
	if s.Cwnd != 70*1000 || s.Ssthresh != 70*1000 {
		t.Fatalf("after the loss: cwnd %d ssthresh %d", s.Cwnd, s.Ssthresh)
	}
	k := math.Cbrt(100 * (1 - cubicBeta) / cubicC)
	rtt := int64(100 * time.Millisecond)
	now := int64(time.Second)
	at := func(sec float64) {
		end := int64(time.Second) + int64(sec*1e9)
		for now < end {
			for i := 0; i < s.Cwnd/s.MSS; i++ {
				c.OnAck(s, s.MSS, rtt, now)
			}
			now += rtt
		}
	}
	at(k / 2)
	if w := s.Cwnd / 1000; w < 80 || w > 99 {
		t.Fatalf("cwnd %d segments halfway to K, want between 80 and 99 (concave)", w)
	}
	at(k)
	if w := s.Cwnd / 1000; w < 97 || w > 103 {
		t.Fatalf("cwnd %d segments at K, want about 100", w)
	}
	at(k + 4)
	if w := s.Cwnd / 1000; w < 104 {
		t.Fatalf("cwnd %d segments 4 s past K, want above 100 (convex)", w)
	}
	// An RTO: one segment, W_max with fast convergence (below the last).
	last := s.Cwnd
	c.OnRTO(s, now)
	if s.Cwnd != 1000 || s.Ssthresh != int(float64(last)*cubicBeta) {
		t.Fatalf("after RTO cwnd %d ssthresh %d", s.Cwnd, s.Ssthresh)
	}
}

// NewReno: slow start by up to two segments per ACK, then one segment per
// window.
func TestNewRenoGrowth(t *testing.T) {
	var r newReno
	s := &CCState{MSS: 1000, CwndLimited: true} // the sender uses its whole window
	r.Init(s)
	if s.Cwnd != 10000 {
		t.Fatal(s.Cwnd)
	}
	r.OnAck(s, 5000, 0, 0)
	if s.Cwnd != 12000 {
		t.Fatalf("slow start: %d", s.Cwnd)
	}
	s.InFlight = 12000
	r.OnCongestion(s, 0)
	if s.Ssthresh != 6000 || s.Cwnd != 6000 {
		t.Fatalf("loss: %d %d", s.Cwnd, s.Ssthresh)
	}
	for i := 0; i < 6; i++ {
		r.OnAck(s, 1000, 0, 0)
	}
	if s.Cwnd != 7000 {
		t.Fatalf("avoidance: %d after a window", s.Cwnd)
	}
}

// hsRounds runs n round trips of CUBIC's slow start at rtt: one ACK per
// segment of the window, each with an RTT sample; the first ACK of a
// round ends the previous one.
func hsRounds(c cubic, s *CCState, n int, rtt int64) {
	for r := 0; r < n; r++ {
		w := s.Cwnd / s.MSS
		for i := 0; i < w; i++ {
			s.RTT, s.NewRound = rtt, i == 0
			c.OnAck(s, s.MSS, rtt, 0)
		}
	}
}

// HyStart++ (RFC 9406): slow start doubles per round while the RTT
// stays; a round whose minimum RTT is RttThresh (max(4 ms, 20/8 ms))
// above the last one's enters Conservative Slow Start (a quarter of the
// growth), and five CSS rounds end in congestion avoidance with
// ssthresh = cwnd. An RTT back below the baseline returns to slow start.
func TestHyStartPlusPlus(t *testing.T) {
	const ms = int64(time.Millisecond)
	var c cubic
	s := &CCState{MSS: 1000, CwndLimited: true} // the sender uses its whole window
	c.Init(s)
	hsRounds(c, s, 3, 20*ms)
	if s.Cwnd != 80000 || s.Ssthresh != 1<<30 {
		t.Fatalf("slow start: cwnd %d ssthresh %d, want 80000 and infinite", s.Cwnd, s.Ssthresh)
	}
	hsRounds(c, s, 1, 23*ms) // +3 ms < 4 ms: still slow start
	if s.Cwnd != 160000 {
		t.Fatalf("cwnd %d, want 160000", s.Cwnd)
	}
	// +5 ms: CSS after the 8th sample of the round; the rest of the round
	// grows a quarter as fast.
	hsRounds(c, s, 1, 28*ms)
	if want := 160000 + 8000 + (160-8)*250; s.Cwnd != want {
		t.Fatalf("after the RTT rose cwnd %d, want %d", s.Cwnd, want)
	}
	// Four whole CSS rounds (×1.25 each), the fifth round's start ends
	// it: ssthresh = cwnd, the rest of that round is avoidance.
	w := s.Cwnd
	hsRounds(c, s, 5, 28*ms)
	if s.Ssthresh < w*24/10 || s.Ssthresh > w*25/10 || s.Cwnd-s.Ssthresh > 2*s.MSS {
		t.Fatalf("after CSS cwnd %d ssthresh %d (from %d, want ssthresh ≈ ×1.25⁴)", s.Cwnd, s.Ssthresh, w)
	}
	// Congestion avoidance now: far slower than slow start.
	w = s.Cwnd
	hsRounds(c, s, 1, 28*ms)
	if s.Cwnd > w+w/8 {
		t.Fatalf("cwnd %d after a round of avoidance from %d", s.Cwnd, w)
	}

	// Off (hystart: false): slow start goes on.
	off := cubic{noHyStart: true}
	s = &CCState{MSS: 1000, CwndLimited: true}
	off.Init(s)
	hsRounds(off, s, 3, 20*ms)
	hsRounds(off, s, 3, 40*ms)
	if s.Cwnd != 640000 {
		t.Fatalf("without HyStart++ cwnd %d, want 640000", s.Cwnd)
	}

	// A spurious rise: CSS, then the RTT falls below the baseline.
	s = &CCState{MSS: 1000, CwndLimited: true}
	c.Init(s)
	hsRounds(c, s, 2, 20*ms)
	hsRounds(c, s, 1, 30*ms)
	if s.Scratch[hsState] != hsCSS {
		t.Fatal("not in CSS")
	}
	hsRounds(c, s, 1, 20*ms)
	if s.Scratch[hsState] != hsSlowStart {
		t.Fatal("not back in slow start")
	}
}
