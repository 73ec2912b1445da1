package tcp

import "github.com/pipestack/pipestack/pipeline"

func init() { pipeline.RegisterModule(new(NewRenoModule)) }

// NewRenoModule is tcp.cc.newreno: RFC 5681's slow start and congestion
// avoidance with appropriate byte counting (RFC 3465, L = 2 segments),
// RFC 6582's window on loss. It has no configuration.
type NewRenoModule struct{}

// PipelineModule implements pipeline.Module.
func (*NewRenoModule) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "tcp.cc.newreno",
		Summary: "TCP congestion control: NewReno (RFC 5681, RFC 6582)",
		New:     func() pipeline.Module { return new(NewRenoModule) },
	}
}

// CongestionControl implements CCModule.
func (*NewRenoModule) CongestionControl() CongestionControl { return newReno{} }

type newReno struct{}

func (newReno) Name() string { return "newreno" }

// initialWindow is RFC 6928's IW: 10 segments.
func initialWindow(mss int) int { return 10 * mss }

func (newReno) Init(s *CCState) {
	s.Cwnd = initialWindow(s.MSS)
	s.Ssthresh = 1 << 30
	s.Scratch[0] = 0 // bytes acked in congestion avoidance
}

func (newReno) OnAck(s *CCState, acked int, _, _ int64) {
	if !s.CwndLimited {
		return // application- or receiver-limited: the window is not what was used
	}
	if s.Cwnd < s.Ssthresh {
		// Slow start, RFC 3465: at most 2 segments per ACK.
		s.Cwnd += min(acked, 2*s.MSS)
		return
	}
	// Congestion avoidance: one MSS per window of acknowledged bytes.
	s.Scratch[0] += float64(acked)
	if s.Scratch[0] >= float64(s.Cwnd) {
		s.Scratch[0] -= float64(s.Cwnd)
		s.Cwnd += s.MSS
	}
}

func (newReno) OnCongestion(s *CCState, _ int64) {
	s.Ssthresh = max(s.InFlight/2, 2*s.MSS)
	s.Cwnd = s.Ssthresh
	s.Scratch[0] = 0
}

func (newReno) OnRecoveryEnd(s *CCState, _ int64) {}

func (newReno) OnRTO(s *CCState, _ int64) {
	s.Ssthresh = max(s.InFlight/2, 2*s.MSS)
	s.Cwnd = s.MSS
	s.Scratch[0] = 0
}

var _ CCModule = (*NewRenoModule)(nil)
