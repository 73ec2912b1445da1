package tcp

import (
	"math"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(CubicModule)) }

// CubicModule is tcp.cc.cubic: RFC 9438's CUBIC (C = 0.4, β = 0.7, fast
// convergence, the Reno-friendly region), the first slow start ended by
// HyStart++ (RFC 9406) when the RTT grows (hystart: false turns it off).
// Choose it with congestion_control: cubic or {module: tcp.cc.cubic,
// hystart: false}.
type CubicModule struct {
	HyStart *bool `yaml:"hystart"`
}

// PipelineModule implements pipeline.Module.
func (*CubicModule) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "tcp.cc.cubic",
		Summary: "TCP congestion control: CUBIC (RFC 9438), the default of transport.tcp and of Linux",
		New:     func() pipeline.Module { return new(CubicModule) },
	}
}

// CongestionControl implements CCModule.
func (m *CubicModule) CongestionControl() CongestionControl {
	return cubic{noHyStart: m.HyStart != nil && !*m.HyStart}
}

const (
	cubicC    = 0.4
	cubicBeta = 0.7
	// cubicAlpha makes the Reno-friendly estimate grow as Reno's with
	// β = 0.7 (RFC 9438 §4.3).
	cubicAlpha = 3 * (1 - cubicBeta) / (1 + cubicBeta)
)

// Scratch slots of CCState.
const (
	cuWMax     = iota // W_max, segments
	cuK               // K, seconds
	cuEpoch           // start of the congestion avoidance epoch, ns (0: none)
	cuWEst            // W_est, segments
	cuWLastMax        // the previous W_max (fast convergence)
	cuFrac            // fractional bytes of growth carried over
	// HyStart++ (RFC 9406 §4.2)
	hsState     // hsSlowStart, hsCSS or hsDone
	hsLastMin   // lastRoundMinRTT, ns (0: none)
	hsCurMin    // currentRoundMinRTT, ns (0: none)
	hsSamples   // rttSampleCount
	hsBaseline  // cssBaselineMinRTT, ns
	hsCSSRounds // rounds spent in CSS
)

// HyStart++'s states and constants (RFC 9406 §4.3).
const (
	hsSlowStart = 0
	hsCSS       = 1
	hsDone      = 2

	hsMinRTTThresh   = 4e6  // ns
	hsMaxRTTThresh   = 16e6 // ns
	hsMinRTTDivisor  = 8
	hsNRTTSample     = 8
	hsCSSGrowthDiv   = 4
	hsCSSRoundsLimit = 5
	// hsL is RFC 9406's L for a sender that does not pace: slow start
	// (and CSS) grow by at most 8 segments per ACK, so a stretch ACK
	// (GRO, ACK thinning) counts what it acknowledges, as Linux's
	// tcp_slow_start does, where RFC 3465's L = 2 halves the growth.
	hsL = 8
)

type cubic struct{ noHyStart bool }

func (cubic) Name() string { return "cubic" }

func (c cubic) Init(s *CCState) {
	s.Cwnd = initialWindow(s.MSS)
	s.Ssthresh = 1 << 30
	s.Scratch = [12]float64{}
	if c.noHyStart {
		s.Scratch[hsState] = hsDone
	}
}

func (c cubic) OnAck(s *CCState, acked int, rttNS, nowNS int64) {
	if s.Cwnd < s.Ssthresh {
		if s.Scratch[hsState] != hsDone && c.hystart(s, acked) {
			return
		}
		if s.CwndLimited {
			s.Cwnd = min(s.Cwnd+min(acked, hsL*s.MSS), max(s.Ssthresh, s.Cwnd)) // to ssthresh at most (tcp_slow_start)
		}
		return
	}
	if !s.CwndLimited {
		return // application- or receiver-limited (RFC 9438 §4.6): no growth, no epoch
	}
	mss := float64(s.MSS)
	cwnd := float64(s.Cwnd) / mss
	sc := &s.Scratch
	if sc[cuEpoch] == 0 {
		sc[cuEpoch] = float64(nowNS)
		if cwnd < sc[cuWMax] {
			sc[cuK] = math.Cbrt((sc[cuWMax] - cwnd) / cubicC)
		} else {
			sc[cuK] = 0
			sc[cuWMax] = cwnd
		}
		sc[cuWEst] = cwnd
	}
	t := (float64(nowNS)-sc[cuEpoch])/1e9 + float64(rttNS)/1e9
	d := t - sc[cuK]
	target := cubicC*d*d*d + sc[cuWMax]
	target = min(max(target, cwnd), 1.5*cwnd)
	sc[cuWEst] += cubicAlpha * (float64(acked) / mss) / cwnd
	if sc[cuWEst] > target {
		target = sc[cuWEst]
	}
	sc[cuFrac] += (target - cwnd) / cwnd * float64(acked)
	if sc[cuFrac] >= 1 {
		inc := int(sc[cuFrac])
		s.Cwnd += inc
		sc[cuFrac] -= float64(inc)
	}
}

// hystart is RFC 9406's HyStart++ for the first slow start: per round
// the minimum of at least N_RTT_SAMPLE RTT samples; a round whose minimum
// exceeds the last one's by RttThresh (1/8 of it, 4..16 ms) ends slow
// start into Conservative Slow Start (growth divided by 4), which returns
// to slow start if the RTT falls back below its baseline and ends in
// congestion avoidance (ssthresh = cwnd) after CSS_ROUNDS rounds. It
// reports whether it grew cwnd itself.
func (cubic) hystart(s *CCState, acked int) bool {
	sc := &s.Scratch
	if s.NewRound {
		sc[hsLastMin] = sc[hsCurMin]
		sc[hsCurMin] = 0
		sc[hsSamples] = 0
		if sc[hsState] == hsCSS {
			sc[hsCSSRounds]++
			if sc[hsCSSRounds] >= hsCSSRoundsLimit {
				sc[hsState] = hsDone
				s.Ssthresh = s.Cwnd
				return true
			}
		}
	}
	if s.RTT > 0 {
		if sc[hsCurMin] == 0 || float64(s.RTT) < sc[hsCurMin] {
			sc[hsCurMin] = float64(s.RTT)
		}
		sc[hsSamples]++
	}
	enough := sc[hsSamples] >= hsNRTTSample && sc[hsCurMin] != 0
	switch sc[hsState] {
	case hsSlowStart:
		if enough && sc[hsLastMin] != 0 {
			thresh := max(hsMinRTTThresh, min(sc[hsLastMin]/hsMinRTTDivisor, hsMaxRTTThresh))
			if sc[hsCurMin] >= sc[hsLastMin]+thresh {
				sc[hsState] = hsCSS
				sc[hsBaseline] = sc[hsCurMin]
				sc[hsCSSRounds] = 0
			}
		}
		return false
	case hsCSS:
		if enough && sc[hsCurMin] < sc[hsBaseline] {
			sc[hsState] = hsSlowStart // the RTT increase was spurious
			return false
		}
		if !s.CwndLimited {
			return true
		}
		sc[cuFrac] += float64(min(acked, hsL*s.MSS)) / hsCSSGrowthDiv
		if sc[cuFrac] >= 1 {
			inc := int(sc[cuFrac])
			s.Cwnd += inc
			sc[cuFrac] -= float64(inc)
		}
		return true
	}
	return false
}

// reduce is the multiplicative decrease, with fast convergence (RFC 9438
// §4.6, §4.7).
func (cubic) reduce(s *CCState) {
	sc := &s.Scratch
	cwnd := float64(s.Cwnd) / float64(s.MSS)
	if cwnd < sc[cuWLastMax] {
		sc[cuWLastMax] = cwnd
		sc[cuWMax] = cwnd * (1 + cubicBeta) / 2
	} else {
		sc[cuWLastMax] = cwnd
		sc[cuWMax] = cwnd
	}
	s.Ssthresh = max(int(float64(s.Cwnd)*cubicBeta), 2*s.MSS)
	sc[cuEpoch] = 0
	sc[cuFrac] = 0
	sc[hsState] = hsDone // HyStart++ is for the first slow start only
}

func (c cubic) OnCongestion(s *CCState, _ int64) {
	c.reduce(s)
	s.Cwnd = s.Ssthresh
}

func (cubic) OnRecoveryEnd(s *CCState, _ int64) { s.Scratch[cuEpoch] = 0 }

func (c cubic) OnRTO(s *CCState, _ int64) {
	c.reduce(s)
	s.Cwnd = s.MSS
}

var _ CCModule = (*CubicModule)(nil)
