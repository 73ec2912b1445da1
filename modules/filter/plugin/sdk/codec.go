package sdk

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
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
		return merge.Unmarshal(b, m)
	case *pb.Answers:
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
