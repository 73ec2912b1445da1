package sdk

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"

	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"
)

// portBlocker matches packets to a configured port; as a target it drops
// them, sets mark 7 on the others and rewrites the first data byte of
// packets tagged 9.
type portBlocker struct{ port uint16 }

func (b *portBlocker) Match(pkts []*Packet, out []Answer) {
	for i, p := range pkts {
		if p.DstPort == b.port {
			out[i] = Match
		}
	}
}

func (b *portBlocker) Action(pkts []*Packet, out []Result) {
	for i, p := range pkts {
		switch {
		case p.DstPort == b.port:
			out[i] = Result{Answer: Drop}
		case p.Tag == 9:
			rw := append([]byte(nil), p.Data...)
			rw[0] ^= 0xff
			out[i] = Result{Answer: Accept, Rewrite: rw}
		default:
			out[i] = Result{Answer: Continue, SetMark: true, Mark: 7}
		}
	}
}

func newBlocker() *Plugin {
	b := &portBlocker{}
	return &Plugin{
		Version: "test-1",
		Configure: func(name string, cfg []byte) (Needs, error) {
			var c struct{ Port uint16 }
			if err := json.Unmarshal(cfg, &c); err != nil {
				return Needs{}, err
			}
			if c.Port == 0 {
				return Needs{}, errors.New("port: missing")
			}
			b.port = c.Port
			return Needs{Data: DataHeaders, Rewrite: true, SetMark: true}, nil
		},
		Matcher: b, Target: b,
	}
}

// testBatch builds a batch the way the host does (column per field).
type testPkt struct {
	kind          Kind
	src, dst      string
	sport, dport  uint16
	tag           uint32
	data          []byte
	inLink, outLk uint32
}

func testBatch(seq uint64, links []string, pkts ...testPkt) *pb.Batch {
	b := &pb.Batch{Seq: seq, Links: links, NextLink: 1}
	for i, p := range pkts {
		src, dst := netip.MustParseAddr(p.src), netip.MustParseAddr(p.dst)
		meta := uint32(Forward) | uint32(p.kind)<<3 | 17<<8
		if src.Is6() {
			meta |= 1 << 5
		}
		r := make([]byte, RecordSize)
		le := binary.LittleEndian
		for k, v := range []uint32{uint32(100 + i), meta, uint32(p.sport)<<16 | uint32(p.dport), p.inLink, p.outLk, 0, p.tag, uint32(len(p.data)), uint32(len(p.data))} {
			le.PutUint32(r[4*k:], v)
		}
		s16, d16 := src.As16(), dst.As16()
		copy(r[40:], s16[:])
		copy(r[56:], d16[:])
		b.Records = append(b.Records, r...)
		b.Data = append(b.Data, p.data...)
	}
	return b
}

func TestJudgeOverGRPC(t *testing.T) {
	c := TestClient(t, newBlocker())
	ctx := context.Background()
	if err := c.Health(ctx); err == nil {
		t.Fatal("healthy before Configure")
	}
	if _, err := c.Configure(ctx, "blk", []byte(`{}`), 256); err == nil || !strings.Contains(err.Error(), "port: missing") {
		t.Fatalf("Configure without port: %v", err)
	}
	resp, err := c.Configure(ctx, "blk", []byte(`{"port": 53}`), 256)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Version != "test-1" || resp.Data != pb.Data_DATA_HEADERS || !resp.Rewrite || !resp.SetMark || !resp.Matcher || !resp.Target {
		t.Fatalf("Configure answer %v", resp)
	}
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := c.Judge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in := testBatch(1, []string{"lan", "wan"},
		testPkt{kind: KindMatch, src: "10.0.0.1", dst: "10.0.0.2", sport: 1000, dport: 53, data: []byte{0x45, 1}, inLink: 1, outLk: 2},
		testPkt{kind: KindMatch, src: "2001:db8::1", dst: "2001:db8::2", sport: 1000, dport: 80, data: []byte{0x60}},
		testPkt{kind: KindTarget, src: "10.0.0.1", dst: "10.0.0.2", dport: 53},
		testPkt{kind: KindTarget, src: "10.0.0.1", dst: "10.0.0.2", dport: 54, data: []byte{1, 2}},
		testPkt{kind: KindTarget, src: "10.0.0.1", dst: "10.0.0.2", dport: 55, tag: 9, data: []byte{1, 2}},
	)
	if err := st.Send(in); err != nil {
		t.Fatal(err)
	}
	out, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{byte(Match), byte(NoMatch), byte(Drop), byte(Continue), byte(Accept)}
	if out.Seq != 1 || string(out.Answers) != string(want) {
		t.Fatalf("answers seq %d %v, want %v", out.Seq, out.Answers, want)
	}
	if !equal(out.SetMarkIdx, []uint32{3}) || !equal(out.Marks, []uint32{7}) {
		t.Fatalf("marks %v %v", out.SetMarkIdx, out.Marks)
	}
	if !equal(out.RewriteIdx, []uint32{4}) || !equal(out.RewriteLens, []uint32{2}) || string(out.RewriteData) != "\xfe\x02" {
		t.Fatalf("rewrites %v %v %x", out.RewriteIdx, out.RewriteLens, out.RewriteData)
	}
	// A second batch reuses the link table; a malformed one ends the stream.
	if err := st.Send(testBatch(2, nil, testPkt{kind: KindMatch, src: "10.0.0.1", dst: "10.0.0.2", dport: 53, inLink: 2})); err != nil {
		t.Fatal(err)
	}
	if out, err = st.Recv(); err != nil || out.Seq != 2 || string(out.Answers) != string([]byte{byte(Match)}) {
		t.Fatalf("batch 2: %v %v", out, err)
	}
	bad := testBatch(3, nil, testPkt{kind: KindMatch, src: "10.0.0.1", dst: "10.0.0.2", inLink: 7})
	if err := st.Send(bad); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err == nil || !strings.Contains(err.Error(), "malformed batch") {
		t.Fatalf("malformed batch answered: %v", err)
	}
}

func TestDecodeSeesFields(t *testing.T) {
	var j judgeState
	in := testBatch(1, []string{"lan"}, testPkt{kind: KindTarget, src: "10.0.0.1", dst: "2001:db8::2", sport: 7, dport: 9, tag: 3, data: []byte{1}, inLink: 1})
	if err := j.decode(in); err != nil {
		t.Fatal(err)
	}
	p := j.pkts[0]
	// IPv4 addresses arrive as ::ffff:a.b.c.d and are unmapped.
	if p.ID != 100 || p.Hook != Forward || p.Kind != KindTarget || p.SrcPort != 7 || p.DstPort != 9 || p.Proto != 17 || p.Tag != 3 || p.InLink != "lan" || p.OutLink != "" || len(p.Data) != 1 || p.Len != 1 {
		t.Fatalf("%+v", p)
	}
	for _, cut := range []func(*pb.Batch){
		func(b *pb.Batch) { b.Records = b.Records[:71] },
		func(b *pb.Batch) { b.Records[28] = 99 }, // data_len past the data
		func(b *pb.Batch) { b.Records[12] = 9 },  // in_link not in the table
		func(b *pb.Batch) { b.NextLink = 5 },
	} {
		var j judgeState
		b := testBatch(1, []string{"lan"}, testPkt{kind: KindTarget, src: "10.0.0.1", dst: "10.0.0.2", data: []byte{1}})
		cut(b)
		if err := j.decode(b); err == nil {
			t.Fatalf("decoded a malformed batch %v", b)
		}
	}
}

func equal(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzDecode: no batch from the wire makes decode panic, and a decoded
// packet's data lies within the batch's data.
func FuzzDecode(f *testing.F) {
	b := testBatch(1, []string{"lan"}, testPkt{kind: KindTarget, src: "10.0.0.1", dst: "10.0.0.2", data: []byte{1, 2, 3}, inLink: 1})
	f.Add(b.Records, b.Data, uint32(1), 1)
	f.Add(make([]byte, 144), []byte{}, uint32(0), 0)
	f.Fuzz(func(t *testing.T, rec, data []byte, next uint32, links int) {
		var j judgeState
		in := &pb.Batch{Records: rec, Data: data, NextLink: next}
		for i := 0; i < links%4; i++ {
			in.Links = append(in.Links, "l")
		}
		if err := j.decode(in); err != nil {
			return
		}
		total := 0
		for _, p := range j.pkts {
			total += len(p.Data)
		}
		if total > len(data) {
			t.Fatalf("decoded %d data bytes of %d", total, len(data))
		}
	})
}
