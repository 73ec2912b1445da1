package sdk

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"
)

// Codec is gRPC's proto codec with one difference: a Batch or Answers
// decoded into a message that is reused keeps its repeated fields' storage
// (cut to zero length, then merged into). The wire format
// is protobuf's: a plugin in any language speaks it. Both sides use it
// (ServerOptions, DialOptions).
type Codec struct{}

// Name is "proto": the content type stays application/grpc+proto.
func (Codec) Name() string { return "proto" }

// Marshal encodes a protobuf message.
func (Codec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("codec: %T is not a protobuf message", v)
	}
	return proto.MarshalOptions{}.Marshal(m)
}

var merge = proto.UnmarshalOptions{Merge: true}

// Unmarshal decodes into v, reusing a Batch's or an Answers' columns.
func (Codec) Unmarshal(data []byte, v any) error {
	switch m := v.(type) {
	case *pb.Batch:
		*m = pb.Batch{Links: m.Links[:0]}
		return merge.Unmarshal(data, m)
	case *pb.Answers:
		*m = pb.Answers{SetMarkIdx: m.SetMarkIdx[:0], Marks: m.Marks[:0], RewriteIdx: m.RewriteIdx[:0], RewriteLens: m.RewriteLens[:0]}
		return merge.Unmarshal(data, m)
	case proto.Message:
		return proto.Unmarshal(data, m)
	}
	return fmt.Errorf("codec: %T is not a protobuf message", v)
}

// ServerOptions are the gRPC server options of a plugin (Serve uses them).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodec(Codec{})}
}

// DialOptions are the host's gRPC dial options for a plugin.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.ForceCodec(Codec{}))}
}
