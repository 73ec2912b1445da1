//go:build !race

package plugin

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestEncodeZeroAllocs: adding a stolen packet to its batch's flight (the
// record, the data it asked for, the link names) allocates nothing once a
// lane's flights are warm: 10,240 packets in flights of 256 reused as an
// answered flight is. (What a message costs on the wire — gRPC's encoding
// and send — is per batch, not per packet.)
func TestEncodeZeroAllocs(t *testing.T) {
	impl := &sdk.Plugin{Needs: sdk.Needs{Data: sdk.DataHeaders}, Target: judgeFunc(func(*sdk.Batch, *sdk.Results) {})}
	_, l := pairLane(t, impl, sdk.ProtocolVersion, 8, 256, time.Second, &countSink{})
	pool := pipeline.NewPool(16)
	pkt := pool.Get(64)
	pkt.SetNetworkHeader()
	pc := &pipeline.PacketContext{Hook: pipeline.Forward, InNIC: 1, OutNIC: 2, Pkt: pkt, L4Off: 20, L4End: 64,
		Tuple: pipeline.Tuple{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("2001:db8::2"), SrcPort: 1000, DstPort: 80, Proto: 17}}
	round := func() {
		f := l.newFlight()
		for k := 0; k < 256; k++ {
			l.add(f, pc, sdk.KindTarget, 3)
		}
		l.mu.Lock()
		l.free = append(l.free, f)
		l.mu.Unlock()
	}
	round() // warm: the flight's slices grow once
	if n := pt.CountMallocs(func() {
		for range 40 {
			round()
		}
	}); n != 0 {
		t.Fatalf("%d allocations adding 10,240 packets", n)
	}
}

// TestCachedFlowZeroAllocs: a router (with netfilter.conntrack) whose rule
// sends UDP to a plugin that allows caching forwards an established flow's
// packets judged from the verdict cache without allocating: 12,800
// packets, none of them crossing to the plugin.
func TestCachedFlowZeroAllocs(t *testing.T) {
	f := &fake{needs: sdk.Needs{CacheTTLMillis: 60000}}
	var judged [3]atomic.Int64
	judgeCounting(f, &judged)
	f.install(t)
	n := cacheRouter(t, `  - {name: blk, path: /bin/true, timeout: 2s}`, true, nil)
	frame := udp(0, 80, 1)
	forwardN(t, n, [][]byte{frame}, 1) // the first packet: judged, cached
	pt.ForwardZeroAllocs(t, n, n.Link(t, "a"), n.Link(t, "b"), frame, func([]byte) error { return nil }, nil)
	if judged[1].Load() != 1 {
		t.Fatalf("the plugin judged %d packets, want 1", judged[1].Load())
	}
	if h := Plugins(n.Stack)[0].CacheHitCount; h < 12800 {
		t.Fatalf("cache hits %d", h)
	}
}
