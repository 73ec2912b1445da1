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
	s := &CCState{MSS: 1000}
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
	s := &CCState{MSS: 1000}
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
