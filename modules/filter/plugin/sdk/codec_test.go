package sdk

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"

	"google.golang.org/protobuf/proto"

	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"
)

func codecSeeds() [][]byte {
	var out [][]byte
	for _, m := range []proto.Message{
		&pb.Batch{Seq: 7, Records: make([]byte, 2*RecordSize), Data: []byte("0123456789"), Links: []string{"a", "eth0"}, NextLink: 3},
		&pb.Batch{},
		&pb.Answers{Seq: 9, Answers: []byte{4, 5, 3}, SetMarkIdx: []uint32{0, 2}, Marks: []uint32{7, 1 << 31}, RewriteIdx: []uint32{1}, RewriteLens: []uint32{3}, RewriteData: []byte("abc")},
		&pb.Answers{},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzCodecDecode: whatever the fast decoders accept, they decode exactly
// as protobuf-go does (into reused storage); what they refuse is left to
// protobuf-go. Never a panic.
func FuzzCodecDecode(f *testing.F) {
	for _, s := range codecSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := &pb.Batch{Records: make([]byte, 0, 8), Data: []byte{1, 2}[:0]}
		if decodeBatch(b, m) {
			want := new(pb.Batch)
			if err := proto.Unmarshal(b, want); err != nil {
				t.Fatalf("decodeBatch accepted what protobuf-go refuses: %v", err)
			}
			if !proto.Equal(normBatch(m), normBatch(want)) {
				t.Fatalf("batch %v, protobuf-go %v", m, want)
			}
		}
		r := &pb.Batch{}
		if decodeBatchInto(b, r, true) {
			want := new(pb.Batch)
			if err := proto.Unmarshal(b, want); err != nil {
				t.Fatalf("decodeBatchInto accepted what protobuf-go refuses: %v", err)
			}
			if !proto.Equal(normBatch(r), normBatch(want)) {
				t.Fatalf("aliased batch %v, protobuf-go %v", r, want)
			}
		}
		a := &pb.Answers{}
		if decodeAnswers(b, a) {
			want := new(pb.Answers)
			if err := proto.Unmarshal(b, want); err != nil {
				t.Fatalf("decodeAnswers accepted what protobuf-go refuses: %v", err)
			}
			if !proto.Equal(normAnswers(a), normAnswers(want)) {
				t.Fatalf("answers %v, protobuf-go %v", a, want)
			}
		}
	})
}

// norm*: empty and nil slices are the same message.
func normBatch(m *pb.Batch) *pb.Batch {
	c := proto.Clone(m).(*pb.Batch)
	if len(c.Records) == 0 {
		c.Records = nil
	}
	if len(c.Data) == 0 {
		c.Data = nil
	}
	return c
}

func normAnswers(m *pb.Answers) *pb.Answers {
	c := proto.Clone(m).(*pb.Answers)
	if len(c.Answers) == 0 {
		c.Answers = nil
	}
	if len(c.RewriteData) == 0 {
		c.RewriteData = nil
	}
	return c
}

// TestCodecDecodeSeeds: the fast decoders take the messages protocol v1
// sends, reusing the storage they are given.
func TestCodecDecodeSeeds(t *testing.T) {
	s := codecSeeds()
	m := &pb.Batch{Records: make([]byte, 0, 256)}
	if !decodeBatch(s[0], m) || m.Seq != 7 || len(m.Records) != 2*RecordSize || string(m.Data) != "0123456789" || len(m.Links) != 2 || m.NextLink != 3 {
		t.Fatalf("batch %v", m)
	}
	if cap(m.Records) != 256 {
		t.Fatalf("records reallocated")
	}
	a := new(pb.Answers)
	if !decodeAnswers(s[2], a) || a.Seq != 9 || len(a.Answers) != 3 || len(a.Marks) != 2 || a.Marks[1] != 1<<31 || string(a.RewriteData) != "abc" {
		t.Fatalf("answers %v", a)
	}
	if decodeBatch([]byte{0x08}, new(pb.Batch)) {
		t.Fatal("a truncated varint was accepted")
	}
}

// TestEncodedBatchWire: what Codec sends for an EncodedBatch (its own
// buffers, no protobuf encoding) is a Batch protobuf-go decodes to the
// same fields, and a ReceivedBatch decodes it into views of one buffer.
func TestEncodedBatchWire(t *testing.T) {
	for _, e := range []*EncodedBatch{
		{},
		{Seq: 1, Records: make([]byte, RecordSize)},
		{Seq: 300, NextLink: 1, Links: []string{"lan", "wan"}, Records: bytes.Repeat([]byte{7}, 3*RecordSize), Data: []byte("some bytes")},
	} {
		bs, err := Codec{}.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		wire := bs.Materialize()
		want := &pb.Batch{Seq: e.Seq, NextLink: e.NextLink, Links: e.Links, Records: e.Records, Data: e.Data}
		got := new(pb.Batch)
		if err := proto.Unmarshal(wire, got); err != nil || !proto.Equal(normBatch(got), normBatch(want)) {
			t.Fatalf("wire %x decodes to %v (%v), want %v", wire, got, err, want)
		}
		if std, _ := proto.Marshal(want); !bytes.Equal(std, wire) {
			t.Errorf("wire %x, protobuf-go %x", wire, std)
		}
		var r ReceivedBatch
		for range 2 { // reused
			if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire[:len(wire)/2]), mem.SliceBuffer(wire[len(wire)/2:])}, &r); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(normBatch(&r.Batch), normBatch(want)) {
				t.Fatalf("received %v, want %v", &r.Batch, want)
			}
		}
	}
}
