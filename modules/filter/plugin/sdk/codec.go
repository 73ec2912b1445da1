package sdk

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"
)

// Codec is gRPC's proto codec (a CodecV2: encoded into and decoded from
// gRPC's pooled buffers) with one difference: a Batch or Answers decoded
// into a message that is reused keeps its repeated fields' storage (cut to
// zero length, then merged into). The wire format is protobuf's: a plugin
// in any language speaks it. Both sides use it (ServerOptions, DialOptions).
type Codec struct{}

// Name is "proto": the content type stays application/grpc+proto.
func (Codec) Name() string { return "proto" }

// Marshal encodes a protobuf message into a pooled buffer.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("codec: %T is not a protobuf message", v)
	}
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true} // the size just computed
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if _, err := opts.MarshalAppend((*buf)[:0], m); err != nil {
		pool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

var merge = proto.UnmarshalOptions{Merge: true}

// Unmarshal decodes into v, reusing a Batch's or an Answers' storage.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	switch m := v.(type) {
	case *pb.Batch:
		*m = pb.Batch{Records: m.Records[:0], Data: m.Data[:0], Links: m.Links[:0]}
		if decodeBatch(b, m) {
			return nil
		}
		*m = pb.Batch{Records: m.Records[:0], Data: m.Data[:0], Links: m.Links[:0]}
		return merge.Unmarshal(b, m)
	case *pb.Answers:
		*m = pb.Answers{Answers: m.Answers[:0], SetMarkIdx: m.SetMarkIdx[:0], Marks: m.Marks[:0], RewriteIdx: m.RewriteIdx[:0], RewriteLens: m.RewriteLens[:0], RewriteData: m.RewriteData[:0]}
		if decodeAnswers(b, m) {
			return nil
		}
		*m = pb.Answers{Answers: m.Answers[:0], SetMarkIdx: m.SetMarkIdx[:0], Marks: m.Marks[:0], RewriteIdx: m.RewriteIdx[:0], RewriteLens: m.RewriteLens[:0], RewriteData: m.RewriteData[:0]}
		return merge.Unmarshal(b, m)
	case proto.Message:
		return proto.Unmarshal(b, m)
	}
	return fmt.Errorf("codec: %T is not a protobuf message", v)
}

// ServerOptions are the gRPC server options of a plugin (Serve uses them).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(Codec{})}
}

// DialOptions are the host's gRPC dial options for a plugin.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.ForceCodecV2(Codec{}))}
}

// decodeBatch decodes a Batch's wire bytes into m, appending its bytes
// fields to the storage m keeps (protobuf-go's Unmarshal allocates a new
// slice for every bytes field: a Batch's records and data, each message).
// It handles the fields protocol v1 defines with their wire types; on
// anything else (an unknown field, a bad encoding) it returns false and
// the caller decodes with protobuf-go, which keeps unknown fields and
// reports errors.
func decodeBatch(b []byte, m *pb.Batch) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case (num == 1 || num == 5) && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			if num == 1 {
				m.Seq = v
			} else {
				m.NextLink = uint32(v)
			}
			b = b[n:]
		case num >= 2 && num <= 4 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return false
			}
			switch num {
			case 2:
				m.Records = append(m.Records[:0], v...) // the last one wins
			case 3:
				m.Data = append(m.Data[:0], v...)
			case 4:
				if !utf8.Valid(v) {
					return false // protobuf-go reports it
				}
				m.Links = append(m.Links, string(v))
			}
			b = b[n:]
		default:
			return false
		}
	}
	return true
}

// decodeAnswers is decodeBatch for Answers (packed repeated uint32s).
func decodeAnswers(b []byte, m *pb.Answers) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			m.Seq = v
			b = b[n:]
		case num >= 2 && num <= 7 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return false
			}
			b = b[n:]
			var dst *[]uint32
			switch num {
			case 2:
				m.Answers = append(m.Answers[:0], v...)
				continue
			case 7:
				m.RewriteData = append(m.RewriteData[:0], v...)
				continue
			case 3:
				dst = &m.SetMarkIdx
			case 4:
				dst = &m.Marks
			case 5:
				dst = &m.RewriteIdx
			case 6:
				dst = &m.RewriteLens
			}
			for len(v) > 0 {
				x, k := protowire.ConsumeVarint(v)
				if k < 0 {
					return false
				}
				*dst = append(*dst, uint32(x))
				v = v[k:]
			}
		default:
			return false
		}
	}
	return true
}
