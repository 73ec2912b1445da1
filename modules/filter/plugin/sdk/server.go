package sdk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
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
}

func newServer(impl *Plugin) *server { return &server{impl: impl} }

// Configure implements pb.FilterPluginServer.
func (s *server) Configure(_ context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	resp := &pb.ConfigureResponse{Version: s.impl.Version, Matcher: s.impl.Matcher != nil, Target: s.impl.Target != nil}
	if req.ProtocolVersion != ProtocolVersion {
		resp.Error = fmt.Sprintf("protocol version %d, this plugin speaks %d", req.ProtocolVersion, ProtocolVersion)
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
	var j judgeState
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
	links   []string // the stream's link table (index 0: unknown)
	pkts    []Packet
	match   []*Packet
	target  []*Packet
	mAns    []Answer
	tRes    []Result
	answers []byte
}

// errBadBatch: the host sent a batch whose records or data disagree.
var errBadBatch = errors.New("malformed batch")

// RecordSize is the size of a packet's record in Batch.records.
const RecordSize = 72

// decode decodes in into j.pkts; records and data that disagree are an
// error.
func (j *judgeState) decode(in *pb.Batch) error {
	rec := in.Records
	if len(rec)%RecordSize != 0 {
		return errBadBatch
	}
	n := len(rec) / RecordSize
	if len(j.links) == 0 {
		j.links = append(j.links, "")
	}
	if len(in.Links) > 0 {
		if int(in.NextLink) != len(j.links) {
			return fmt.Errorf("%w: link table at %d, batch adds at %d", errBadBatch, len(j.links), in.NextLink)
		}
		j.links = append(j.links, in.Links...)
	}
	if cap(j.pkts) < n {
		j.pkts = make([]Packet, n)
	}
	j.pkts = j.pkts[:n]
	off := 0
	nl := uint32(len(j.links))
	le := binary.LittleEndian
	for i := 0; i < n; i++ {
		r := (*[RecordSize]byte)(rec[i*RecordSize:])
		m, ports, il, ol, dl := le.Uint32(r[4:]), le.Uint32(r[8:]), le.Uint32(r[12:]), le.Uint32(r[16:]), int(le.Uint32(r[28:]))
		if il >= nl || ol >= nl || dl < 0 || dl > len(in.Data)-off {
			return errBadBatch
		}
		// Field by field (a composite literal is built on the stack and
		// copied with wide loads: a store-forwarding stall per packet).
		p := &j.pkts[i]
		p.ID, p.Hook, p.Kind, p.Fragment = le.Uint32(r[0:]), Hook(m&7), Kind(m>>3&1), m&(1<<4) != 0
		p.SrcPort, p.DstPort, p.Proto = uint16(ports>>16), uint16(ports), uint8(m>>8)
		p.InLink, p.OutLink, p.Mark, p.Tag, p.Len = j.links[il], j.links[ol], le.Uint32(r[20:]), le.Uint32(r[24:]), int(le.Uint32(r[32:]))
		p.Src, p.Dst = addrOf(r[40:56], m&(1<<5) != 0), addrOf(r[56:72], m&(1<<5) != 0)
		p.Data = nil
		if dl > 0 {
			p.Data = in.Data[off : off+dl : off+dl]
		}
		off += dl
	}
	return nil
}

// addrOf reads a record's 16-byte address: IPv6 when v6 is set, else the
// IPv4 address it maps (netip's Unmap of AddrFrom16, without building the
// 16-byte array).
func addrOf(b []byte, v6 bool) netip.Addr {
	_ = b[15]
	if !v6 && binary.LittleEndian.Uint64(b) == 0 && binary.BigEndian.Uint32(b[8:]) == 0xffff {
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	a := netip.AddrFrom16([16]byte(b))
	if !v6 {
		a = a.Unmap()
	}
	return a
}

// judge answers one batch into out.
func (j *judgeState) judge(impl *Plugin, needs Needs, in *pb.Batch, out *pb.Answers) error {
	if err := j.decode(in); err != nil {
		return err
	}
	n := len(j.pkts)
	j.match, j.target = j.match[:0], j.target[:0]
	for i := range j.pkts {
		if j.pkts[i].Kind == KindTarget {
			j.target = append(j.target, &j.pkts[i])
		} else {
			j.match = append(j.match, &j.pkts[i])
		}
	}
	j.mAns = resize(j.mAns, len(j.match))
	j.tRes = resize(j.tRes, len(j.target))
	if len(j.match) > 0 {
		if impl.Matcher == nil {
			return errors.New("the host asked a matcher question of a plugin without a Matcher")
		}
		impl.Matcher.Match(j.match, j.mAns)
	}
	if len(j.target) > 0 {
		if impl.Target == nil {
			return errors.New("the host asked a target question of a plugin without a Target")
		}
		impl.Target.Action(j.target, j.tRes)
	}
	out.Seq = in.Seq
	j.answers = resize(j.answers, n)
	out.SetMarkIdx, out.Marks = out.SetMarkIdx[:0], out.Marks[:0]
	out.RewriteIdx, out.RewriteLens, out.RewriteData = out.RewriteIdx[:0], out.RewriteLens[:0], out.RewriteData[:0]
	mi, ti := 0, 0
	for i := range j.pkts {
		if j.pkts[i].Kind != KindTarget {
			a := j.mAns[mi]
			mi++
			if a > Hotdrop {
				a = NoMatch
			}
			j.answers[i] = byte(a)
			continue
		}
		r := &j.tRes[ti]
		ti++
		a := r.Answer
		if a < Continue || a > Drop {
			a = Continue
		}
		j.answers[i] = byte(a)
		if r.SetMark && needs.SetMark {
			out.SetMarkIdx = append(out.SetMarkIdx, uint32(i))
			out.Marks = append(out.Marks, r.Mark)
		}
		if r.Rewrite != nil && needs.Rewrite && len(r.Rewrite) == len(j.pkts[i].Data) {
			out.RewriteIdx = append(out.RewriteIdx, uint32(i))
			out.RewriteLens = append(out.RewriteLens, uint32(len(r.Rewrite)))
			out.RewriteData = append(out.RewriteData, r.Rewrite...)
		}
	}
	out.Answers = j.answers
	return nil
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}
