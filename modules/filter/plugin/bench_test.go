package plugin

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"

	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"
	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
	"github.com/pipestack/pipestack/pipeline"
)

// The benchmarks compare, in one run and over the same transport
// (gRPC on a Unix socket as go-plugin sets it up, without TLS, client and
// server in this process), the bare stream — messages of n×64 bytes answered with n
// bytes, 8 in flight, nothing decoded — with our plugin path: packets
// added to a lane, encoded as a Batch (64-byte packets, DataPacket),
// decoded by the SDK, judged by a Matcher-like target, answered, and
// handed to the sink, 8 flights in flight. Reported: packets/s.
//
//	go test -run '^$' -bench 'BareStream|PluginPath' -benchtime 2s -count 6 ./modules/filter/plugin/

// rawCodec sends []byte messages as they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append((*v.(*[]byte))[:0], data...)
	return nil
}
func (rawCodec) Name() string { return "pipestack-raw" }

func init() { encoding.RegisterCodec(rawCodec{}) }

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
				out = append(out[:0], make([]byte, len(in)/64)...)
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
			srv := grpc.NewServer()
			bareEcho{}.GRPCServer(nil, srv)
			go srv.Serve(ln)
			defer srv.Stop()
			cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			st, err := cc.NewStream(context.Background(), &bareDesc.Streams[0], "/pipestack.bench.Bare/Echo", grpc.ForceCodec(rawCodec{}))
			if err != nil {
				b.Fatal(err)
			}
			msgs := (b.N + n - 1) / n
			window := make(chan struct{}, 8)
			done := make(chan struct{})
			go func() {
				var in []byte
				for i := 0; i < msgs; i++ {
					if err := st.RecvMsg(&in); err != nil {
						b.Error(err)
						break
					}
					<-window
				}
				close(done)
			}()
			msg := make([]byte, n*64)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < msgs; i++ {
				window <- struct{}{}
				if err := st.SendMsg(&msg); err != nil {
					b.Fatal(err)
				}
			}
			<-done
			b.ReportMetric(float64(msgs*n)/time.Since(start).Seconds(), "pkts/s")
		})
	}
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

func BenchmarkPluginPath(b *testing.B) {
	for _, n := range []int{64, 256} {
		b.Run(fmt.Sprintf("pkts%d", n), func(b *testing.B) {
			impl := &sdk.Plugin{Needs: sdk.Needs{Data: sdk.DataPacket}, Target: judgeFunc(func(pkts []*sdk.Packet, out []sdk.Result) {
				for i, p := range pkts {
					if p.DstPort == 53 {
						out[i] = sdk.Result{Answer: sdk.Drop}
					} else {
						out[i] = sdk.Result{Answer: sdk.Accept}
					}
				}
			})}
			cl, stop, err := sdk.TestPair(b.TempDir(), impl)
			if err != nil {
				b.Fatal(err)
			}
			defer stop()
			sink := &countSink{window: make(chan struct{}, 8)}
			p := &Plugin{name: "bench", clock: pipeline.SystemClock{}, sink: sink, counters: new(pipeline.CounterSet)}
			p.cfgp.Store(&settings{Timeout: 10 * time.Second, Window: 8, MaxBatch: n, Lanes: 1, OnFailure: "accept", Restarts: 1})
			in, err := p.startInstance(func(context.Context) (*conn, error) { return &conn{client: cl}, nil }, []byte("{}"), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer in.kill()
			l := in.lanes[0]
			pool := pipeline.NewPool(16)
			pkt := pool.Get(64)
			pkt.SetNetworkHeader()
			pcs := &pipeline.PacketContext{Hook: pipeline.Forward, InNIC: 0, OutNIC: 0, Pkt: pkt,
				Tuple: pipeline.Tuple{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 1000, DstPort: 80, Proto: 17}}
			msgs := (b.N + n - 1) / n
			sink.want = msgs * n
			sink.done = make(chan struct{})
			done := sink.done
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < msgs; i++ {
				sink.window <- struct{}{} // a worker would apply the policy; the benchmark waits
				f := l.newFlight()
				for k := 0; k < n; k++ {
					l.add(f, pcs, sdk.KindTarget, 0)
				}
				l.submit(f, sink)
			}
			<-done
			b.ReportMetric(float64(msgs*n)/time.Since(start).Seconds(), "pkts/s")
		})
	}
}
