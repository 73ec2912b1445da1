package sdk

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

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

// EncodedBatch is a Batch as the host builds it: it appends each packet's
// record and data to Records and Data (the send buffers themselves), and
// Codec sends them as they are — no copy into a protobuf encoding, only a
// few bytes of field headers (the wire format is protobuf's Batch). The
// slices must not change until the plugin answered the batch (gRPC writes
// them after Send returns).
type EncodedBatch struct {
	Seq      uint64
	NextLink uint32
	Links    []string
	Records  []byte
	Data     []byte
	hdr      []byte    // the field headers (scratch)
	alt      *pb.Batch // ProtoReflect's view
}

// ProtoReflect makes an EncodedBatch a proto.Message for a connection
// without Codec (gRPC's own proto codec then encodes a pb.Batch view of
// it, with a copy).
func (e *EncodedBatch) ProtoReflect() protoreflect.Message {
	if e.alt == nil {
		e.alt = new(pb.Batch)
	}
	e.alt.Seq, e.alt.NextLink, e.alt.Links, e.alt.Records, e.alt.Data = e.Seq, e.NextLink, e.Links, e.Records, e.Data
	return e.alt.ProtoReflect()
}

// buffers is e's wire encoding: header, records, header, data.
func (e *EncodedBatch) buffers() mem.BufferSlice {
	h := e.hdr[:0]
	if e.Seq != 0 {
		h = protowire.AppendTag(h, 1, protowire.VarintType)
		h = protowire.AppendVarint(h, e.Seq)
	}
	if len(e.Records) > 0 {
		h = protowire.AppendTag(h, 2, protowire.BytesType)
		h = protowire.AppendVarint(h, uint64(len(e.Records)))
	}
	k := len(h)
	if len(e.Data) > 0 {
		h = protowire.AppendTag(h, 3, protowire.BytesType)
		h = protowire.AppendVarint(h, uint64(len(e.Data)))
	}
	j := len(h)
	for _, l := range e.Links {
		h = protowire.AppendTag(h, 4, protowire.BytesType)
		h = protowire.AppendString(h, l)
	}
	if e.NextLink != 0 {
		h = protowire.AppendTag(h, 5, protowire.VarintType)
		h = protowire.AppendVarint(h, uint64(e.NextLink))
	}
	e.hdr = h
	bs := make(mem.BufferSlice, 0, 5)
	bs = append(bs, mem.SliceBuffer(h[:k]))
	if len(e.Records) > 0 {
		bs = append(bs, mem.SliceBuffer(e.Records))
	}
	if len(e.Data) > 0 {
		bs = append(bs, mem.SliceBuffer(h[k:j]), mem.SliceBuffer(e.Data))
	}
	if j < len(h) {
		bs = append(bs, mem.SliceBuffer(h[j:]))
	}
	return bs
}

// ReceivedBatch is a Batch as the plugin receives it: the message is
// copied once into buf (reused, grown, never cleared), and Batch's
// records and data are views of buf, valid until the next message.
type ReceivedBatch struct {
	Batch pb.Batch
	buf   []byte
}

// ProtoReflect makes a ReceivedBatch a proto.Message for a connection
// without Codec (gRPC's own proto codec then decodes into Batch).
func (r *ReceivedBatch) ProtoReflect() protoreflect.Message { return r.Batch.ProtoReflect() }

// Marshal encodes a protobuf message into a pooled buffer (an
// EncodedBatch: its own buffers).
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*EncodedBatch); ok {
		return e.buffers(), nil
	}
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

// Unmarshal decodes into v, reusing a Batch's or an Answers' storage (a
// ReceivedBatch: its buffer).
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*ReceivedBatch); ok {
		n := data.Len()
		if cap(r.buf) < n {
			r.buf = make([]byte, n, n+n/4)
		}
		r.buf = r.buf[:n]
		data.CopyTo(r.buf)
		m := &r.Batch
		*m = pb.Batch{Links: m.Links[:0]}
		if decodeBatchInto(r.buf, m, true) {
			return nil
		}
		*m = pb.Batch{}
		return proto.Unmarshal(r.buf, m)
	}
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

// Transport sizes of a plugin's connection (both ends). A message of 256
// packets with their bytes is 35 KB (up to 400 KB at 1500 bytes), and 8
// of them are in flight per stream: the socket's read and write buffers
// hold a whole message (one syscall, not three), and the HTTP/2 windows
// hold a stream's whole window of messages from the start (gRPC's default
// 64 KB window stalls the sender until its estimate grows).
const (
	ioBufferSize     = 256 << 10
	streamWindowSize = 4 << 20
	connWindowSize   = 16 << 20
)

// ServerOptions are the gRPC server options of a plugin (Serve uses them).
func ServerOptions() []grpc.ServerOption {
	return append(TransportServerOptions(), grpc.ForceServerCodecV2(Codec{}))
}

// DialOptions are the host's gRPC dial options for a plugin.
func DialOptions() []grpc.DialOption {
	return append(TransportDialOptions(), grpc.WithDefaultCallOptions(grpc.ForceCodecV2(Codec{})))
}

// TransportServerOptions are ServerOptions' buffer and window sizes alone
// (the benchmarks' bare stream uses them too).
func TransportServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ReadBufferSize(ioBufferSize), grpc.WriteBufferSize(ioBufferSize),
		grpc.InitialWindowSize(streamWindowSize), grpc.InitialConnWindowSize(connWindowSize)}
}

// TransportDialOptions are DialOptions' buffer and window sizes alone.
func TransportDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithReadBufferSize(ioBufferSize), grpc.WithWriteBufferSize(ioBufferSize),
		grpc.WithInitialWindowSize(streamWindowSize), grpc.WithInitialConnWindowSize(connWindowSize)}
}

// decodeBatch decodes a Batch's wire bytes into m, appending its bytes
// fields to the storage m keeps (protobuf-go's Unmarshal allocates a new
// slice for every bytes field: a Batch's records and data, each message).
// It handles the fields protocol v1 defines with their wire types; on
// anything else (an unknown field, a bad encoding) it returns false and
// the caller decodes with protobuf-go, which keeps unknown fields and
// reports errors.
func decodeBatch(b []byte, m *pb.Batch) bool { return decodeBatchInto(b, m, false) }

// decodeBatchInto is decodeBatch; alias: records and data are views of b
// (not copied).
func decodeBatchInto(b []byte, m *pb.Batch, alias bool) bool {
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
			switch {
			case num == 2 && alias:
				m.Records = v[:len(v):len(v)] // the last one wins
			case num == 3 && alias:
				m.Data = v[:len(v):len(v)]
			case num == 2:
				m.Records = append(m.Records[:0], v...)
			case num == 3:
				m.Data = append(m.Data[:0], v...)
			case num == 4:
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
