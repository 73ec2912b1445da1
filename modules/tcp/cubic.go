package tcp

import (
	"math"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(CubicModule)) }

// CubicModule is tcp.cc.cubic: RFC 9438's CUBIC (C = 0.4, β = 0.7, fast
// convergence, the Reno-friendly region), slow start as NewReno's (no
// HyStart yet). Choose it with congestion_control: cubic.
type CubicModule struct{}

// PipelineModule implements pipeline.Module.
func (*CubicModule) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "tcp.cc.cubic",
		Summary: "TCP congestion control: CUBIC (RFC 9438), Linux's default",
		New:     func() pipeline.Module { return new(CubicModule) },
	}
}

// CongestionControl implements CCModule.
func (*CubicModule) CongestionControl() CongestionControl { return cubic{} }

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
)

type cubic struct{}

func (cubic) Name() string { return "cubic" }

func (cubic) Init(s *CCState) {
	s.Cwnd = initialWindow(s.MSS)
	s.Ssthresh = 1 << 30
	s.Scratch = [8]float64{}
}

func (cubic) OnAck(s *CCState, acked int, rttNS, nowNS int64) {
	if s.Cwnd < s.Ssthresh {
		s.Cwnd += min(acked, 2*s.MSS)
		return
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
