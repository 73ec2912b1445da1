package plugin

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"
	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
	"github.com/pipestack/pipestack/pipeline"
)

// pairLane starts impl in this process (sdk.TestPair, protocol version)
// as a version of a Plugin with one lane that hands its flights to s;
// both end with tb.
func pairLane(tb testing.TB, impl *sdk.Plugin, version, window, maxBatch int, timeout time.Duration, s sink) (*Plugin, *lane) {
	cl, stop, err := sdk.TestPair(tb.TempDir(), impl, version)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(stop)
	p := &Plugin{name: "test", clock: pipeline.SystemClock{}, sink: s, counters: new(pipeline.CounterSet)}
	p.cfgp.Store(&settings{Timeout: timeout, Window: window, MaxBatch: maxBatch, Lanes: 1, OnFailure: "accept", Restarts: 1})
	in, err := p.startInstance(func(context.Context) (*conn, error) { return &conn{client: cl}, nil }, []byte("{}"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(in.kill)
	return p, in.lanes[0]
}

// recordSink keeps the answers a lane hands over.
type recordSink struct {
	got chan []byte
	f   chan *flight
}

func (s *recordSink) answered(f *flight, a *pb.Answers) {
	s.got <- append([]byte(nil), a.Answers...)
	s.f <- f
}
func (s *recordSink) failed(_ *flight, why failure) { panic("failed: " + why.String()) }

// TestLaneEncodesBothVersions: what a lane encodes (IPv4 and IPv6, links,
// marks, tags, data) is what the SDK's Packet reads, in protocol versions
// 1 and 2, and a flight's dataLen is the data the plugin got.
func TestLaneEncodesBothVersions(t *testing.T) {
	for _, v := range sdk.ProtocolVersions {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			var bad []string
			impl := &sdk.Plugin{Needs: sdk.Needs{Data: sdk.DataPacket}, Target: judgeFunc(func(b *sdk.Batch, out *sdk.Results) {
				want := []struct {
					src, dst string
					dport    uint16
					plen     int
				}{{"10.0.0.1", "10.0.0.2", 80, 64}, {"2001:db8::1", "2001:db8::2", 53, 52}}
				if b.Len() != 2 {
					bad = append(bad, fmt.Sprintf("%d packets", b.Len()))
					return
				}
				for i, w := range want {
					p := b.Packet(i)
					if p.Src().String() != w.src || p.Dst().String() != w.dst || p.DstPort() != w.dport || p.SrcPort() != 1000 || p.Len() != w.plen ||
						len(p.Data()) != w.plen || p.Tag() != uint32(5+i) || p.Mark() != 9 || p.Hook() != sdk.Forward || p.Proto() != 17 || p.IPv6() != (i == 1) {
						bad = append(bad, fmt.Sprintf("packet %d: %v len %d data %d tag %d mark %d", i, p, p.Len(), len(p.Data()), p.Tag(), p.Mark()))
					}
					out.Answers[i] = sdk.Accept + sdk.Answer(i)
				}
			})}
			sink := &recordSink{got: make(chan []byte, 1), f: make(chan *flight, 1)}
			_, l := pairLane(t, impl, v, 1, 4, 10*time.Second, sink)
			pkt4 := benchPacket()
			pkt4.Mark = 9
			pkt6 := pipeline.NewPool(16).Get(64)
			raw6 := make([]byte, 52)
			raw6[0] = 0x60
			if !pkt6.SetData(raw6) {
				t.Fatal("ipv6 packet")
			}
			pkt6.SetNetworkHeader()
			pkt6.Mark = 9
			f := l.newFlight()
			l.add(f, &pipeline.PacketContext{Hook: pipeline.Forward, Pkt: pkt4,
				Tuple: pipeline.Tuple{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 1000, DstPort: 80, Proto: 17}}, sdk.KindTarget, 5)
			l.add(f, &pipeline.PacketContext{Hook: pipeline.Forward, Pkt: pkt6,
				Tuple: pipeline.Tuple{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), SrcPort: 1000, DstPort: 53, Proto: 17}}, sdk.KindTarget, 6)
			l.submit(f, sink)
			got := <-sink.got
			af := <-sink.f
			if len(bad) > 0 || string(got) != string([]byte{byte(sdk.Accept), byte(sdk.Drop)}) || af.dataLen(0) != 64 || af.dataLen(1) != 52 {
				t.Fatalf("%v, answers %v, data lengths %d %d", bad, got, af.dataLen(0), af.dataLen(1))
			}
		})
	}
}
