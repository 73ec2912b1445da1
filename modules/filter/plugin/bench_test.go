package plugin

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"

	"github.com/pipestack/pipestack/modules/filter/plugin/internal/benchpb"
	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"
	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// The benchmarks compare, in one run and over the same transport
// (gRPC on a Unix socket as go-plugin sets it up, without TLS, client and
// server in this process), the bare stream with our plugin path, both
// with 64-byte packets, n packets per message, 8 messages in flight, the
// work per packet that any plugin needs on both:
//
//   - BareStream: the host copies each packet's 64 bytes (from a
//     pipeline.Packet's network header) into the message, which crosses
//     as it is (a raw codec, no protobuf); the plugin side reads each
//     packet's destination port and answers one byte (drop for 53, accept
//     otherwise); the host reads each answer byte.
//   - BareStreamProto: the literal baseline, go-plugin's defaults
//     and a protobuf message of repeated bytes (see bareProto).
//   - PluginPath: packets added to a lane (a 32-byte protocol 2 record
//     each and the 64 bytes, DataPacket; or the record alone; or protocol
//     1's 72-byte record), sent as a Batch, read by the SDK's Packet views,
//     judged by a Target by destination port, answered, and the flight
//     handed to the sink.
//
// Reported: packets/s, the CPU time a packet (both ends), and the round
// trip of a message (p50/p99 from the lane's figures, as `pipectl
// plugins` shows them): what batching adds to a packet's latency at this
// load. The README's Measured section has the command of its numbers.
//
//	go test -run '^$' -bench 'BareStream|PluginPath' -benchtime 1s -count 6 ./modules/filter/plugin/

// rawCodec sends []byte messages as they are (a CodecV2, as sdk.Codec: no
// copy on send, one copy on receive into the reused message, no
// allocation per message).
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p := v.(*[]byte)
	n := data.Len()
	if cap(*p) < n {
		*p = make([]byte, n)
	}
	*p = (*p)[:n]
	data.CopyTo(*p)
	return nil
}
func (rawCodec) Name() string { return "pipestack-raw" }

func init() { encoding.RegisterCodecV2(rawCodec{}) }

// bareEcho answers each message with one byte per 64 it got.
type bareEcho struct {
	goplugin.NetRPCUnsupportedPlugin
}

var bareDesc = grpc.ServiceDesc{
	ServiceName: "pipestack.bench.Bare",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Echo", ServerStreams: true, ClientStreams: true,
		Handler: func(_ any, st grpc.ServerStream) error {
			var in, out []byte
			for {
				if err := st.RecvMsg(&in); err != nil {
					return err
				}
				out = out[:0]
				for p := in; len(p) >= 64; p = p[64:] {
					a := byte(sdk.Accept)
					if binary.BigEndian.Uint16(p[22:]) == 53 { // IPv4 + UDP destination port
						a = byte(sdk.Drop)
					}
					out = append(out, a)
				}
				if err := st.SendMsg(&out); err != nil {
					return err
				}
			}
		},
	}},
}

func (bareEcho) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	s.RegisterService(&bareDesc, struct{}{})
	return nil
}

func (bareEcho) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return c, nil
}

func BenchmarkBareStream(b *testing.B) {
	for _, n := range []int{64, 256} {
		b.Run(fmt.Sprintf("pkts%d", n), func(b *testing.B) {
			sock := filepath.Join(b.TempDir(), "bare.sock")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				b.Fatal(err)
			}
			srv := grpc.NewServer(sdk.TransportServerOptions()...) // the plugin's buffer and window sizes
			bareEcho{}.GRPCServer(nil, srv)
			go srv.Serve(ln)
			defer srv.Stop()
			cc, err := grpc.NewClient("unix://"+sock, append(sdk.TransportDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			st, err := cc.NewStream(context.Background(), &bareDesc.Streams[0], "/pipestack.bench.Bare/Echo", grpc.ForceCodecV2(rawCodec{}))
			if err != nil {
				b.Fatal(err)
			}
			var in []byte
			pkt := benchPacket()
			// Messages are reused once answered, as our lanes reuse flights.
			bufs := make([][]byte, 8)
			windowed(b, n, func() (drops int, err error) {
				if err := st.RecvMsg(&in); err != nil {
					return 0, err
				}
				for _, a := range in {
					if a == byte(sdk.Drop) {
						drops++
					}
				}
				return drops, nil
			}, func(i int) error {
				msg := bufs[i%8][:0]
				for k := 0; k < n; k++ {
					msg = append(msg, pkt.NetworkHeader()...)
				}
				bufs[i%8] = msg
				return st.SendMsg(&msg)
			})
		})
	}
}

// bareProto is the literal baseline: go-plugin's gRPC defaults
// (its test connection: go-plugin's default server and dial options, gRPC's
// proto codec, default buffers and windows) and a plain protobuf message,
// one bytes field per packet, answered by one verdict per packet
// (internal/benchpb). The plugin side reads each packet's destination
// port, as BareStream's.
type bareProto struct {
	goplugin.NetRPCUnsupportedPlugin
	benchpb.UnimplementedBareServer
}

func (bareProto) Echo(st grpc.BidiStreamingServer[benchpb.Packets, benchpb.Verdicts]) error {
	out := new(benchpb.Verdicts)
	for {
		in, err := st.Recv()
		if err != nil {
			return err
		}
		out.Verdicts = out.Verdicts[:0]
		for _, p := range in.Packets {
			v := benchpb.Verdict_ACCEPT
			if len(p) >= 24 && binary.BigEndian.Uint16(p[22:]) == 53 {
				v = benchpb.Verdict_DROP
			}
			out.Verdicts = append(out.Verdicts, v)
		}
		if err := st.Send(out); err != nil {
			return err
		}
	}
}

func (b *bareProto) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	benchpb.RegisterBareServer(s, b)
	return nil
}

func (bareProto) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return benchpb.NewBareClient(c), nil
}

// BenchmarkBareStreamProto is the bare go-plugin gRPC stream as the issue
// states it: go-plugin's defaults, a protobuf message of repeated bytes
// (the host appends each packet's network header, protobuf copies it when
// it encodes), a repeated verdict answer the host reads, 8 messages in
// flight.
func BenchmarkBareStreamProto(b *testing.B) {
	// go-plugin's test connection logs at debug to hclog's default output,
	// which would split the benchmark's result lines.
	defer func(w io.Writer) { hclog.DefaultOutput = w }(hclog.DefaultOutput)
	hclog.DefaultOutput = io.Discard
	for _, n := range []int{64, 256} {
		b.Run(fmt.Sprintf("pkts%d", n), func(b *testing.B) {
			c, _ := goplugin.TestPluginGRPCConn(b, false, goplugin.PluginSet{"bare": &bareProto{}})
			defer c.Close()
			raw, err := c.Dispense("bare")
			if err != nil {
				b.Fatal(err)
			}
			st, err := raw.(benchpb.BareClient).Echo(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			pkt := benchPacket()
			bufs := make([]benchpb.Packets, 8) // reused once answered (gRPC encodes a message in Send)
			windowed(b, n, func() (drops int, err error) {
				in, err := st.Recv()
				if err != nil {
					return 0, err
				}
				for _, v := range in.Verdicts {
					if v == benchpb.Verdict_DROP {
						drops++
					}
				}
				return drops, nil
			}, func(i int) error {
				msg := &bufs[i%8]
				msg.Packets = msg.Packets[:0]
				for k := 0; k < n; k++ {
					msg.Packets = append(msg.Packets, pkt.NetworkHeader())
				}
				return st.Send(msg)
			})
		})
	}
}

// windowed runs a bare stream's benchmark: b.N packets in messages of n,
// send(i) sending message i with at most 8 unanswered, recv reading an
// answer (and counting its drops, of which there must be none) on another
// goroutine; it reports packets/s.
func windowed(b *testing.B, n int, recv func() (int, error), send func(i int) error) {
	msgs := (b.N + n - 1) / n
	window := make(chan struct{}, 8)
	done := make(chan struct{})
	drops := 0
	go func() {
		for i := 0; i < msgs; i++ {
			d, err := recv()
			if err != nil {
				b.Error(err)
				break
			}
			drops += d
			<-window
		}
		close(done)
	}()
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	for i := 0; i < msgs; i++ {
		window <- struct{}{}
		if err := send(i); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	reportRate(b, msgs*n, start, cpu)
	if drops != 0 {
		b.Fatalf("%d drops", drops)
	}
}

// reportRate reports pkts/s (wall clock) and cpu-ns/pkt: the CPU time both
// ends spent a packet, which other jobs on the machine do not inflate as
// they do the wall clock (they take the cores, not this work).
func reportRate(b *testing.B, pkts int, start time.Time, cpu time.Duration) {
	b.ReportMetric(float64(pkts)/time.Since(start).Seconds(), "pkts/s")
	b.ReportMetric(float64(cpuTime()-cpu)/float64(pkts), "cpu-ns/pkt")
}

// countSink counts what the plugin answered and hands the window back.
type countSink struct {
	mu     sync.Mutex
	n      int
	want   int
	done   chan struct{}
	window chan struct{}
}

func (s *countSink) answered(f *flight, _ *pb.Answers) { s.add(len(f.items)); <-s.window }
func (s *countSink) failed(f *flight, why failure)     { panic("failed: " + why.String()) }
func (s *countSink) add(k int) {
	s.mu.Lock()
	s.n += k
	if s.n >= s.want && s.done != nil {
		close(s.done)
		s.done = nil
	}
	s.mu.Unlock()
}

func (s *countSink) count() int { s.mu.Lock(); defer s.mu.Unlock(); return s.n }

// pathCase is one configuration of the plugin path: the protocol version
// and the bytes the plugin asks for.
type pathCase struct {
	name    string
	version int
	data    sdk.Data
}

// BenchmarkPluginPath: pkts (protocol 2, the record and the packet's 64
// bytes: DataPacket, what BareStream sends), fields (protocol 2, the
// record alone: DataNone, all a plugin that judges by port asks for) and
// v1 (protocol 1's 72-byte records and the 64 bytes, what the Python
// plugin speaks), each at 64 and 256 packets a message.
func BenchmarkPluginPath(b *testing.B) {
	benchPluginPath(b, 8, []pathCase{{"", 2, sdk.DataPacket}, {"fields-", 2, sdk.DataNone}, {"v1-", 1, sdk.DataPacket}})
}

// BenchmarkPluginRTT is BenchmarkPluginPath with one message in flight:
// the round trip of a message on an idle path (no queueing behind the
// window), the least batching adds to a packet's latency.
func BenchmarkPluginRTT(b *testing.B) { benchPluginPath(b, 1, []pathCase{{"", 2, sdk.DataPacket}}) }

func benchPluginPath(b *testing.B, window int, cases []pathCase) {
	for _, c := range cases {
		for _, n := range []int{64, 256} {
			b.Run(fmt.Sprintf("%spkts%d", c.name, n), func(b *testing.B) { benchPath(b, window, c, n) })
		}
	}
}

// dropDNS is the benchmarks' target: it drops what goes to port 53 and
// accepts the rest.
var dropDNS = judgeFunc(func(b *sdk.Batch, out *sdk.Results) {
	for i := range b.Len() {
		if b.Packet(i).DstPort() == 53 {
			out.Answers[i] = sdk.Drop
		} else {
			out.Answers[i] = sdk.Accept
		}
	}
})

func benchPath(b *testing.B, window int, c pathCase, n int) {
	impl := &sdk.Plugin{Needs: sdk.Needs{Data: c.data}, Target: dropDNS}
	sink := &countSink{window: make(chan struct{}, window)}
	p, l := pairLane(b, impl, c.version, window, n, 10*time.Second, sink)
	pkt := benchPacket()
	pcs := &pipeline.PacketContext{Hook: pipeline.Forward, InNIC: 0, OutNIC: 0, Pkt: pkt,
		Tuple: pipeline.Tuple{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 1000, DstPort: 80, Proto: 17}}
	msgs := (b.N + n - 1) / n
	sink.want = msgs * n
	sink.done = make(chan struct{})
	done := sink.done
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	for i := 0; i < msgs; i++ {
		sink.window <- struct{}{} // a worker would apply the policy; the benchmark waits
		f := l.newFlight()
		for k := 0; k < n; k++ {
			l.add(f, pcs, sdk.KindTarget, 0)
		}
		l.submit(f, sink)
	}
	<-done
	reportRate(b, msgs*n, start, cpu)
	b.ReportMetric(float64(p.stats.quantile(0.5).Microseconds()), "rtt-p50-µs")
	b.ReportMetric(float64(p.stats.quantile(0.99).Microseconds()), "rtt-p99-µs")
}

// benchPacket is a 64-byte IPv4/UDP packet (10.0.0.1:1000 → 10.0.0.2:80).
func benchPacket() *pipeline.Packet {
	pkt := pipeline.NewPool(16).Get(64)
	if !pkt.SetData(pt.UDP4("10.0.0.1", "10.0.0.2", 1000, 80, 64, make([]byte, 36))) || len(pkt.Data()) != 64 {
		panic("bench packet")
	}
	pkt.SetNetworkHeader()
	return pkt
}

// BenchmarkLaneAdd is the cost of adding one packet to a flight (its
// record and 64 bytes of data) without sending: flights of 256, reused.
//
//	go test -run '^$' -bench LaneAdd ./modules/filter/plugin/
func BenchmarkLaneAdd(b *testing.B) {
	impl := &sdk.Plugin{Needs: sdk.Needs{Data: sdk.DataPacket}, Target: judgeFunc(func(*sdk.Batch, *sdk.Results) {})}
	_, l := pairLane(b, impl, sdk.ProtocolVersion, 8, 256, time.Second, &countSink{})
	pc := &pipeline.PacketContext{Hook: pipeline.Forward, Pkt: benchPacket(),
		Tuple: pipeline.Tuple{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 1000, DstPort: 80, Proto: 17}}
	b.ResetTimer()
	for i := 0; i < b.N; i += 256 {
		f := l.newFlight()
		for k := 0; k < 256; k++ {
			l.add(f, pc, sdk.KindTarget, 0)
		}
		l.mu.Lock()
		l.free = append(l.free, f)
		l.mu.Unlock()
	}
}
