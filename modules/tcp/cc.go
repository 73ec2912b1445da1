package tcp

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pipestack/pipestack/pipeline"
)

// CongestionControl is an algorithm, provided by a guest module of
// transport.tcp (ID tcp.cc.<name>, implementing CCModule). It is made
// once per generation and shared by the connections made while that
// generation runs; per-connection state lives in the CCState each
// connection owns (its Private field is the algorithm's). Every method is
// called with the connection's lock held, on the packet path: none may
// block, allocate per call or keep s.
//
// The connection does loss detection and recovery itself (RTO, fast
// retransmit, NewReno's partial ACKs); the algorithm decides the window:
// how it grows on ACKs and what it becomes on congestion.
type CongestionControl interface {
	// Name is the algorithm's name ("newreno").
	Name() string
	// Init sets the initial window of a new connection (RFC 6928: 10
	// segments) once its MSS is known.
	Init(s *CCState)
	// OnAck is called for an ACK that acknowledges acked new bytes
	// outside loss recovery; rtt is the sample it gave (0: none).
	OnAck(s *CCState, acked int, rttNS int64, nowNS int64)
	// OnCongestion is called when fast retransmit starts loss recovery:
	// it sets Ssthresh (and Cwnd, which the connection then inflates by
	// the three duplicate segments as RFC 6582 says).
	OnCongestion(s *CCState, nowNS int64)
	// OnRecoveryEnd is called when the ACK that ends recovery arrives;
	// the connection has already deflated Cwnd to Ssthresh.
	OnRecoveryEnd(s *CCState, nowNS int64)
	// OnRTO is called when the retransmission timer expires: it sets
	// Ssthresh, and Cwnd to the loss window (one segment).
	OnRTO(s *CCState, nowNS int64)
}

// CCUndoer is implemented by an algorithm that restores its own state
// when the connection undoes a reduction its retransmissions did not need
// (a DSACK or the timestamps showed them spurious): the connection has
// already put Cwnd and Ssthresh back (Linux's undo_cwnd).
type CCUndoer interface {
	OnUndo(s *CCState, nowNS int64)
}

// CCState is a connection's congestion state, in bytes.
type CCState struct {
	Cwnd, Ssthresh int
	MSS            int // the sender's maximum segment size
	// InFlight is the bytes sent and not yet acknowledged, as the
	// connection sees them when it calls the algorithm.
	InFlight int
	// Private is the algorithm's own state (a small struct, allocated in
	// Init at most once per connection).
	Private any
	// RTT is the round-trip sample the ACK given to OnAck produced (ns;
	// 0: none), and NewRound reports that the ACK acknowledged the highest
	// sequence sent when the previous round began (one round trip ended;
	// the next round ends at what is sent now). HyStart++ uses both.
	RTT      int64
	NewRound bool
	// CwndLimited reports that cwnd, not the application or the peer's
	// window, held the sender back in the last window of data (Linux's
	// tcp_is_cwnd_limited: in slow start, also while cwnd is below twice
	// the most that was in flight). An algorithm grows cwnd only then
	// (RFC 9438 §4.6's "other measures", RFC 7661): an application-limited
	// sender keeps the window it has used.
	CwndLimited bool
	// Scratch is room for an algorithm's per-connection numbers that
	// avoids an allocation.
	Scratch [12]float64
}

// CCModule is the role of a tcp.cc.<name> module.
type CCModule interface {
	pipeline.Module
	// CongestionControl returns the algorithm built by Provision.
	CongestionControl() CongestionControl
}

// loadCC decodes congestion_control: a name ("newreno", meaning
// tcp.cc.newreno) or a mapping {module: tcp.cc.<name>, …its keys};
// without one, tcp.cc.cubic (Linux's default).
func loadCC(ctx *pipeline.Context, n *yaml.Node) (CongestionControl, string, error) {
	id := "tcp.cc.cubic"
	rest := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	idNode := n
	switch n.Kind {
	case 0:
	case yaml.ScalarNode:
		id = "tcp.cc." + n.Value
	case yaml.MappingNode:
		idNode = nil
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "module" {
				idNode = n.Content[i+1]
				continue
			}
			rest.Content = append(rest.Content, n.Content[i], n.Content[i+1])
		}
		if idNode == nil {
			return nil, "", &pipeline.PosError{Line: n.Line, Col: n.Column, Msg: "congestion_control has no module: key (e.g. module: tcp.cc.newreno)"}
		}
		id = idNode.Value
	default:
		return nil, "", &pipeline.PosError{Line: n.Line, Col: n.Column, Msg: "congestion_control: a name (newreno) or a mapping {module: tcp.cc.…}"}
	}
	mi, ok := pipeline.LookupModule(id)
	var names []string
	for _, m := range pipeline.Modules("tcp.cc") {
		names = append(names, m.ID)
	}
	if !ok {
		return nil, "", &pipeline.PosError{Line: idNode.Line, Col: idNode.Column, Msg: fmt.Sprintf("congestion_control: unknown module %q (known: %s)", id, strings.Join(names, ", "))}
	}
	m, ok := mi.New().(CCModule)
	if !ok {
		return nil, "", &pipeline.PosError{Line: idNode.Line, Col: idNode.Column, Msg: fmt.Sprintf("congestion_control: %s is not a tcp.cc module", id)}
	}
	if err := pipeline.DecodeStrictWith(rest, m, "module"); err != nil {
		var pe *pipeline.PosError
		if errors.As(err, &pe) {
			return nil, "", &pipeline.PosError{Line: pe.Line, Col: pe.Col, Msg: "congestion_control " + id + ": " + pe.Msg}
		}
		return nil, "", fmt.Errorf("congestion_control %s: %w", id, err)
	}
	if p, ok := m.(pipeline.Provisioner); ok {
		c := *ctx
		c.ModuleID = id
		if err := p.Provision(&c); err != nil {
			return nil, "", fmt.Errorf("congestion_control %s: %w", id, err)
		}
	}
	if v, ok := m.(pipeline.Validator); ok {
		if err := v.Validate(); err != nil {
			return nil, "", fmt.Errorf("congestion_control %s: %w", id, err)
		}
	}
	cc := m.CongestionControl()
	if cc == nil {
		return nil, "", fmt.Errorf("congestion_control %s: no algorithm", id)
	}
	return cc, cc.Name(), nil
}
