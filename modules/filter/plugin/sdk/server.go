package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"
)

// server is the plugin side of the service.
type server struct {
	pb.UnimplementedFilterPluginServer
	impl       *Plugin
	configured atomic.Bool
	needs      Needs
	maxBatch   int
	version    int // the protocol version the host configured
}

func newServer(impl *Plugin) *server { return &server{impl: impl} }

// Configure implements pb.FilterPluginServer.
func (s *server) Configure(_ context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	resp := &pb.ConfigureResponse{Version: s.impl.Version, Matcher: s.impl.Matcher != nil, Target: s.impl.Target != nil}
	if req.ProtocolVersion < 1 || req.ProtocolVersion > ProtocolVersion {
		resp.Error = fmt.Sprintf("protocol version %d, this plugin speaks 1 to %d", req.ProtocolVersion, ProtocolVersion)
		return resp, nil
	}
	if s.impl.Matcher == nil && s.impl.Target == nil {
		resp.Error = "the plugin implements neither a matcher nor a target"
		return resp, nil
	}
	needs := s.impl.Needs
	if s.impl.Configure != nil {
		var err error
		cfg := req.ConfigJson
		if len(cfg) == 0 {
			cfg = []byte("{}")
		}
		needs, err = s.impl.Configure(req.Name, cfg)
		if err != nil {
			resp.Error = err.Error()
			return resp, nil
		}
	}
	s.needs = needs
	s.version = int(req.ProtocolVersion)
	s.maxBatch = int(req.MaxBatch)
	if s.maxBatch <= 0 {
		s.maxBatch = 256
	}
	resp.Data = pb.Data(needs.Data)
	resp.MaxBytes = uint32(max(needs.MaxBytes, 0))
	resp.Rewrite = needs.Rewrite
	resp.SetMark = needs.SetMark
	resp.CacheTtlMs = needs.CacheTTLMillis
	s.configured.Store(true)
	return resp, nil
}

// Health implements pb.FilterPluginServer.
func (s *server) Health(context.Context, *pb.HealthRequest) (*pb.HealthResponse, error) {
	if !s.configured.Load() {
		return &pb.HealthResponse{Serving: false, Status: "not configured"}, nil
	}
	return &pb.HealthResponse{Serving: true, Status: "serving"}, nil
}

// Judge implements pb.FilterPluginServer: one Answers per Batch, in order.
func (s *server) Judge(st pb.FilterPlugin_JudgeServer) error {
	if !s.configured.Load() {
		return errors.New("Judge before Configure")
	}
	j := judgeState{version: s.version}
	in := new(ReceivedBatch) // Codec copies each message once into its buffer
	out := new(pb.Answers)
	for {
		if err := st.RecvMsg(in); err != nil {
			return err
		}
		if err := j.judge(s.impl, s.needs, &in.Batch, out); err != nil {
			return err
		}
		if err := st.Send(out); err != nil {
			return err
		}
	}
}

// judgeState is one stream's reusable state.
type judgeState struct {
	version int      // the protocol's (Configure's)
	links   []string // the stream's link table (index 0: unknown)
	all     Batch    // the message's packets
	match   Batch    // its matcher questions (all's storage)
	target  Batch    // its target questions
	mIdx    []uint32
	tIdx    []uint32
	mAns    []Answer
	res     Results
	answers []byte
	// A version 1 message converted to version 2's records.
	recs, data []byte
}

// errBadBatch: the host sent a batch whose records or data disagree.
var errBadBatch = errors.New("malformed batch")

// decode makes in the stream's Batches (j.all, split into j.match and
// j.target): the records are validated, not decoded; records and data
// that disagree are an error.
func (j *judgeState) decode(in *pb.Batch) error {
	if len(j.links) == 0 {
		j.links = append(j.links, "")
	}
	if len(in.Links) > 0 {
		if int(in.NextLink) != len(j.links) {
			return fmt.Errorf("%w: link table at %d, batch adds at %d", errBadBatch, len(j.links), in.NextLink)
		}
		j.links = append(j.links, in.Links...)
	}
	recs, data := in.Records, in.Data
	if j.version == 1 {
		var err error
		if j.recs, j.data, err = fromV1(recs, data, j.recs, j.data); err != nil {
			return err
		}
		recs, data = j.recs, j.data
	}
	targets, err := check(recs, data, len(j.links))
	if err != nil {
		return err
	}
	n := len(recs) / RecordSize
	j.all = Batch{recs: recs, data: data, links: j.links, n: n}
	j.match, j.target = j.all, j.all
	switch targets {
	case 0:
		j.target.n = 0
	case n:
		j.match.n = 0
	default: // both kinds: each Batch goes through its index
		j.mIdx, j.tIdx = j.mIdx[:0], j.tIdx[:0]
		for k := 0; k < n; k++ {
			if recs[k*RecordSize+12]>>3&1 == byte(KindTarget) {
				j.tIdx = append(j.tIdx, uint32(k))
			} else {
				j.mIdx = append(j.mIdx, uint32(k))
			}
		}
		j.match.idx, j.match.n = j.mIdx, len(j.mIdx)
		j.target.idx, j.target.n = j.tIdx, len(j.tIdx)
	}
	return nil
}

// judge answers one batch into out.
func (j *judgeState) judge(impl *Plugin, needs Needs, in *pb.Batch, out *pb.Answers) error {
	if err := j.decode(in); err != nil {
		return err
	}
	j.answers = resize(j.answers, j.all.n)
	out.Seq = in.Seq
	out.SetMarkIdx, out.Marks = out.SetMarkIdx[:0], out.Marks[:0]
	out.RewriteIdx, out.RewriteLens, out.RewriteData = out.RewriteIdx[:0], out.RewriteLens[:0], out.RewriteData[:0]
	if m := &j.match; m.n > 0 {
		if impl.Matcher == nil {
			return errors.New("the host asked a matcher question of a plugin without a Matcher")
		}
		j.mAns = resize(j.mAns, m.n)
		impl.Matcher.Match(m, j.mAns)
		for i, a := range j.mAns {
			if a > Hotdrop {
				a = NoMatch
			}
			j.answers[m.record(i)] = byte(a)
		}
	}
	if t := &j.target; t.n > 0 {
		if impl.Target == nil {
			return errors.New("the host asked a target question of a plugin without a Target")
		}
		r := &j.res
		r.reset(t)
		impl.Target.Action(t, r)
		for i, a := range r.Answers[:t.n] {
			if a < Continue || a > Drop {
				a = Continue
			}
			j.answers[t.record(i)] = byte(a)
		}
		if needs.SetMark {
			for i := 0; i+1 < len(r.marks); i += 2 {
				out.SetMarkIdx = append(out.SetMarkIdx, r.marks[i])
				out.Marks = append(out.Marks, r.marks[i+1])
			}
		}
		if needs.Rewrite {
			off := 0
			for i, k := range r.rwIdx {
				l := int(r.rwLens[i])
				if l == len(j.all.Packet(int(k)).Data()) {
					out.RewriteIdx = append(out.RewriteIdx, k)
					out.RewriteLens = append(out.RewriteLens, uint32(l))
					out.RewriteData = append(out.RewriteData, r.rwData[off:off+l]...)
				}
				off += l
			}
		}
	}
	out.Answers = j.answers
	return nil
}

// record is packet i's record index.
func (b *Batch) record(i int) int {
	if b.idx != nil {
		return int(b.idx[i])
	}
	return i
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}
