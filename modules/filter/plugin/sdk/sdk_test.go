package sdk

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"
)

// portBlocker matches packets to a configured port; as a target it drops
// them, sets mark 7 on the others and rewrites the first data byte of
// packets tagged 9.
type portBlocker struct{ port uint16 }

func (blk *portBlocker) Match(b *Batch, out []Answer) {
	for i := range b.Len() {
		p := b.Packet(i)
		if p.DstPort() == blk.port {
			out[i] = Match
		}
	}
}

func (blk *portBlocker) Action(b *Batch, out *Results) {
	for i := range b.Len() {
		p := b.Packet(i)
		switch {
		case p.DstPort() == blk.port:
			out.Answers[i] = Drop
		case p.Tag() == 9:
			rw := append([]byte(nil), p.Data()...)
			rw[0] ^= 0xff
			out.Answers[i] = Accept
			out.Rewrite(i, rw)
		default:
			out.Answers[i] = Continue
			out.SetMark(i, 7)
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

// testBatch builds a batch the way the host does, in protocol version v.
type testPkt struct {
	kind          Kind
	src, dst      string
	sport, dport  uint16
	tag           uint32
	data          []byte
	inLink, outLk uint32
}

func testBatch(v int, seq uint64, links []string, pkts ...testPkt) *pb.Batch {
	b := &pb.Batch{Seq: seq, Links: links, NextLink: 1}
	le := binary.LittleEndian
	for i, p := range pkts {
		src, dst := netip.MustParseAddr(p.src), netip.MustParseAddr(p.dst)
		v6 := src.Is6() || dst.Is6()
		plen := uint32(len(p.data) + 20)
		if v == 1 {
			meta := uint32(Forward) | uint32(p.kind)<<3 | 17<<8
			if v6 {
				meta |= 1 << 5
			}
			r := make([]byte, RecordSizeV1)
			for k, v := range []uint32{uint32(100 + i), meta, uint32(p.sport)<<16 | uint32(p.dport), p.inLink, p.outLk, 0, p.tag, uint32(len(p.data)), plen} {
				le.PutUint32(r[4*k:], v)
			}
			s16, d16 := src.As16(), dst.As16()
			copy(r[40:], s16[:])
			copy(r[56:], d16[:])
			b.Records = append(b.Records, r...)
			b.Data = append(b.Data, p.data...)
			continue
		}
		meta := uint32(Forward) | uint32(p.kind)<<3 | 17<<6 | plen<<14
		r := make([]byte, RecordSize)
		if v6 {
			meta |= 1 << 5
			s16, d16 := src.As16(), dst.As16()
			b.Data = append(append(b.Data, s16[:]...), d16[:]...)
		} else {
			s4, d4 := src.As4(), dst.As4()
			copy(r[0:], s4[:])
			copy(r[4:], d4[:])
		}
		b.Data = append(b.Data, p.data...)
		for k, v := range []uint32{uint32(p.sport)<<16 | uint32(p.dport), meta, p.inLink | p.outLk<<16, 0, p.tag, uint32(len(b.Data))} {
			le.PutUint32(r[8+4*k:], v)
		}
		b.Records = append(b.Records, r...)
	}
	return b
}

func TestJudgeOverGRPC(t *testing.T) {
	for _, v := range ProtocolVersions {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) { testJudgeOverGRPC(t, v) })
	}
}

func testJudgeOverGRPC(t *testing.T, v int) {
	c := TestClientOf(t, newBlocker(), v)
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
	in := testBatch(v, 1, []string{"lan", "wan"},
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
	if err := st.Send(testBatch(v, 2, nil, testPkt{kind: KindMatch, src: "10.0.0.1", dst: "10.0.0.2", dport: 53, inLink: 2})); err != nil {
		t.Fatal(err)
	}
	if out, err = st.Recv(); err != nil || out.Seq != 2 || string(out.Answers) != string([]byte{byte(Match)}) {
		t.Fatalf("batch 2: %v %v", out, err)
	}
	bad := testBatch(v, 3, nil, testPkt{kind: KindMatch, src: "10.0.0.1", dst: "10.0.0.2", inLink: 7})
	if err := st.Send(bad); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err == nil || !strings.Contains(err.Error(), "malformed batch") {
		t.Fatalf("malformed batch answered: %v", err)
	}
}

func TestDecodeSeesFields(t *testing.T) {
	for _, v := range ProtocolVersions {
		j := judgeState{version: v}
		in := testBatch(v, 1, []string{"lan"},
			testPkt{kind: KindTarget, src: "10.0.0.1", dst: "10.0.0.3", sport: 7, dport: 9, tag: 3, data: []byte{1}, inLink: 1},
			testPkt{kind: KindTarget, src: "2001:db8::1", dst: "2001:db8::2", sport: 8, dport: 10, data: []byte{2, 3}, outLk: 1})
		if err := j.decode(in); err != nil {
			t.Fatal(err)
		}
		p := j.target.Packet(0)
		// Version 1's IPv4 addresses arrive as ::ffff:a.b.c.d and are unmapped.
		if p.ID() != 0 || p.Hook() != Forward || p.Kind() != KindTarget || p.SrcPort() != 7 || p.DstPort() != 9 || p.Proto() != 17 || p.Tag() != 3 ||
			p.InLink() != "lan" || p.OutLink() != "" || string(p.Data()) != "\x01" || p.Len() != 21 || p.IPv6() ||
			p.Src() != netip.MustParseAddr("10.0.0.1") || p.Dst() != netip.MustParseAddr("10.0.0.3") || j.match.Len() != 0 || j.target.Len() != 2 {
			t.Fatalf("v%d: %v %v", v, p, p.Data())
		}
		p = j.target.Packet(1)
		if p.ID() != 1 || !p.IPv6() || p.Src() != netip.MustParseAddr("2001:db8::1") || p.Dst() != netip.MustParseAddr("2001:db8::2") ||
			string(p.Data()) != "\x02\x03" || p.InLink() != "" || p.OutLink() != "lan" || p.SrcPort() != 8 || p.DstPort() != 10 || p.Len() != 22 {
			t.Fatalf("v%d: %v %v", v, p, p.Data())
		}
		rs := RecordSize
		if v == 1 {
			rs = RecordSizeV1
		}
		for _, cut := range []func(*pb.Batch){
			func(b *pb.Batch) { b.Records = b.Records[:rs-1] },
			func(b *pb.Batch) { b.Records[28] = 99 },               // data past the data
			func(b *pb.Batch) { b.Records[12]++; b.Records[16]++ }, // in_link not in the table
			func(b *pb.Batch) { b.NextLink = 5 },
		} {
			j := judgeState{version: v}
			b := testBatch(v, 1, []string{"lan"}, testPkt{kind: KindTarget, src: "10.0.0.1", dst: "10.0.0.2", data: []byte{1}, inLink: 1})
			cut(b)
			if err := j.decode(b); err == nil {
				t.Fatalf("v%d: decoded a malformed batch %v", v, b)
			}
		}
	}
}

// TestDecodeMixedKinds: a message with matcher and target questions is
// split, each Batch reading its own records, and the answers go back to
// their places.
func TestDecodeMixedKinds(t *testing.T) {
	j := judgeState{version: ProtocolVersion}
	in := testBatch(ProtocolVersion, 4, nil,
		testPkt{kind: KindTarget, src: "10.0.0.1", dst: "10.0.0.2", dport: 1},
		testPkt{kind: KindMatch, src: "10.0.0.1", dst: "10.0.0.2", dport: 2},
		testPkt{kind: KindTarget, src: "10.0.0.1", dst: "10.0.0.2", dport: 3})
	out := new(pb.Answers)
	impl := &Plugin{
		Matcher: matchFunc(func(b *Batch, out []Answer) {
			if b.Len() != 1 || b.Packet(0).DstPort() != 2 || b.Packet(0).ID() != 1 {
				t.Errorf("matcher got %d: %v", b.Len(), b.Packet(0))
			}
			out[0] = Match
		}),
		Target: targetFunc(func(b *Batch, out *Results) {
			if b.Len() != 2 || b.Packet(0).DstPort() != 1 || b.Packet(1).DstPort() != 3 {
				t.Errorf("target got %d", b.Len())
			}
			out.Answers[1] = Drop
			out.SetMark(1, 5)
		}),
	}
	if err := j.judge(impl, Needs{SetMark: true}, in, out); err != nil {
		t.Fatal(err)
	}
	if string(out.Answers) != string([]byte{byte(Continue), byte(Match), byte(Drop)}) || !equal(out.SetMarkIdx, []uint32{2}) || !equal(out.Marks, []uint32{5}) {
		t.Fatalf("answers %v marks %v %v", out.Answers, out.SetMarkIdx, out.Marks)
	}
}

type matchFunc func(b *Batch, out []Answer)

func (f matchFunc) Match(b *Batch, out []Answer) { f(b, out) }

type targetFunc func(b *Batch, out *Results)

func (f targetFunc) Action(b *Batch, out *Results) { f(b, out) }

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

// FuzzDecode: no batch from the wire makes decode or a Packet's methods
// panic (either version), and a decoded packet's data lies within the
// batch's data.
func FuzzDecode(f *testing.F) {
	for _, v := range ProtocolVersions {
		b := testBatch(v, 1, []string{"lan"}, testPkt{kind: KindTarget, src: "10.0.0.1", dst: "10.0.0.2", data: []byte{1, 2, 3}, inLink: 1},
			testPkt{kind: KindMatch, src: "2001:db8::1", dst: "2001:db8::2", data: []byte{4}})
		f.Add(b.Records, b.Data, uint32(1), 1, v == 1)
	}
	f.Add(make([]byte, 144), []byte{}, uint32(0), 0, true)
	f.Add(make([]byte, 64), []byte{}, uint32(0), 0, false)
	f.Fuzz(func(t *testing.T, rec, data []byte, next uint32, links int, v1 bool) {
		j := judgeState{version: 2}
		if v1 {
			j.version = 1
		}
		in := &pb.Batch{Records: rec, Data: data, NextLink: next}
		for i := 0; i < links%4; i++ {
			in.Links = append(in.Links, "l")
		}
		if err := j.decode(in); err != nil {
			return
		}
		total := 0
		for _, b := range []*Batch{&j.match, &j.target} {
			for i := range b.Len() {
				p := b.Packet(i)
				_ = p.String() + p.InLink() + p.OutLink()
				_, _, _, _ = p.Len(), p.Mark(), p.Fragment(), p.Kind()
				total += len(p.Data())
			}
		}
		if j.version == 2 && total > len(data) {
			t.Fatalf("decoded %d data bytes of %d", total, len(data))
		}
	})
}
