package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/pipestack/pipestack/modules/conntrack"
	"github.com/pipestack/pipestack/pipeline"
)

// ConntrackRequest is `pipectl conntrack`'s: Op is list (-L), count (-C),
// flush (-F), delete (-D, the entries Filter selects) or stats (-S);
// events (-E) is the streaming command "conntrack-events".
type ConntrackRequest struct {
	Op     string          `json:"op"`
	Filter ConntrackFilter `json:"filter"`
}

// ConntrackFilter selects entries by their original tuple (conntrack
// -p/-s/-d/--sport/--dport/-f/--mark); zero fields select everything.
type ConntrackFilter struct {
	Proto  int    `json:"proto,omitempty"` // 0: any
	Src    string `json:"src,omitempty"`   // address or prefix
	Dst    string `json:"dst,omitempty"`
	SPort  int    `json:"sport,omitempty"`
	DPort  int    `json:"dport,omitempty"`
	Family int    `json:"family,omitempty"` // 4 or 6; 0 both
	Mark   *int64 `json:"mark,omitempty"`
}

// ConntrackReply answers a conntrack request.
type ConntrackReply struct {
	Entries []string `json:"entries,omitempty"` // as conntrack -L prints them
	Count   int      `json:"count"`
	Max     int      `json:"max"`
	Deleted int      `json:"deleted,omitempty"`
	// Stats are the counters of set "conntrack" (new, early_drop, …).
	Stats []pipeline.CounterValue `json:"stats,omitempty"`
}

// ConntrackEvent is one -E line ("[NEW] tcp 6 …").
type ConntrackEvent struct {
	Type string `json:"type"`
	Line string `json:"line"`
}

type ctMatcher struct {
	f        ConntrackFilter
	src, dst netip.Prefix
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func newCTMatcher(f ConntrackFilter) (*ctMatcher, error) {
	m := &ctMatcher{f: f}
	var err error
	if f.Src != "" {
		if m.src, err = parsePrefixOrAddr(f.Src); err != nil {
			return nil, err
		}
	}
	if f.Dst != "" {
		if m.dst, err = parsePrefixOrAddr(f.Dst); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *ctMatcher) match(e *conntrack.Entry) bool {
	k := e.Tuple(0)
	f := &m.f
	switch {
	case f.Proto != 0 && int(k.Proto) != f.Proto,
		f.Family != 0 && int(k.Family) != f.Family,
		m.src.IsValid() && !m.src.Contains(k.SrcAddr()),
		m.dst.IsValid() && !m.dst.Contains(k.DstAddr()),
		f.SPort != 0 && int(k.SPort) != f.SPort,
		f.DPort != 0 && int(k.DPort) != f.DPort,
		f.Mark != nil && int64(e.Mark()) != *f.Mark:
		return false
	}
	return true
}

// Conntrack serves a conntrack request on the stack.
func Conntrack(s *pipeline.Stack, req *ConntrackRequest) (*ConntrackReply, error) {
	t := conntrack.StackTable(s)
	if t == nil {
		return nil, errors.New("conntrack: the pipeline has no netfilter.conntrack module")
	}
	m, err := newCTMatcher(req.Filter)
	if err != nil {
		return nil, err
	}
	rep := &ConntrackReply{Max: t.Max()}
	now := s.Clock().Now()
	switch req.Op {
	case "list":
		t.Each(func(_ conntrack.Ref, e *conntrack.Entry) bool {
			if m.match(e) {
				rep.Entries = append(rep.Entries, conntrack.Format(e, now))
			}
			return true
		})
	case "count":
	case "flush":
		rep.Deleted = t.Flush()
	case "delete":
		var refs []conntrack.Ref
		t.Each(func(r conntrack.Ref, e *conntrack.Entry) bool {
			if m.match(e) {
				refs = append(refs, r)
			}
			return true
		})
		for _, r := range refs {
			if t.Kill(r) {
				rep.Deleted++
			}
		}
	case "stats":
		for _, cs := range s.Counters() {
			if cs.Name() == "conntrack" {
				rep.Stats = cs.Snapshot()
			}
		}
	default:
		return nil, fmt.Errorf("conntrack: unknown op %q (list, count, flush, delete, stats)", req.Op)
	}
	rep.Count = t.Count()
	return rep, nil
}

// streamConntrackEvents is `pipectl conntrack -E`: entry events until the
// client goes away.
func streamConntrackEvents(ctx context.Context, srv *Server, req *Request, send func(*Reply) error) (*StreamEnd, error) {
	t := conntrack.StackTable(srv.stack)
	if t == nil {
		return nil, errors.New("conntrack: the pipeline has no netfilter.conntrack module")
	}
	f := ConntrackFilter{}
	if req.Conntrack != nil {
		f = req.Conntrack.Filter
	}
	if _, err := newCTMatcher(f); err != nil {
		return nil, err
	}
	events, lost, cancel, err := t.Subscribe(4096)
	if err != nil {
		return nil, err
	}
	defer cancel()
	end := &StreamEnd{}
	for {
		select {
		case ev := <-events:
			if err := send(&Reply{CTEvent: &ConntrackEvent{Type: ev.Type.String(), Line: ev.Line}}); err != nil {
				end.Reason = "canceled"
				end.Lost = lost()
				return end, nil
			}
			end.Packets++
		case <-ctx.Done():
			end.Reason = "canceled"
			end.Lost = lost()
			return end, nil
		}
	}
}

// CallRequest sends req to the socket at path and returns the reply (Call
// for requests with parameters).
func CallRequest(path string, req Request) (*Reply, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no pipeline is running with control socket %s", path)
		}
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, err
	}
	var rep Reply
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&rep); err != nil {
		return nil, fmt.Errorf("reading the reply: %w", err)
	}
	if rep.Error != "" {
		return &rep, errors.New(rep.Error)
	}
	return &rep, nil
}
