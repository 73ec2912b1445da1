//go:build !race

package conntrack

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// TestDefragForwardZeroAllocs: forwarding fragmented datagrams through the
// defragmentation at −400 (each one reassembled, tracked and forwarded
// whole) allocates nothing: exact count over 10,240 datagrams (20,480
// fragments).
func TestDefragForwardZeroAllocs(t *testing.T) {
	rr := newRouterRig(t, "1024")
	big := filtertest.Packet{Proto: filtertest.UDP, Src: "10.0.1.2", Dst: "10.0.2.2", SrcPort: 7000, DstPort: 7001, Payload: 40}.Bytes()
	// 32 datagrams per batch, one after the other with one IP ID (as
	// network.ipv4's TestReassemblyZeroAllocs: distinct IDs churn the
	// reassembly's queue map, whose occasional rehash allocates).
	frames := make([][]byte, 0, 64)
	for i := 0; i < 32; i++ {
		frames = append(frames, fragments4(big)...)
	}
	buf := make([]*pipeline.Packet, 64)
	run := func(batches int) {
		for i := 0; i < batches; i++ {
			rr.a.InjectFrames(frames)
			k := rr.b.Read(buf)
			if k != 32 {
				t.Fatalf("forwarded %d of 32 datagrams (%s)", k, rr.n.DumpCounters())
			}
			pipeline.ReleaseBatch(buf[:k])
		}
	}
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	// A long warm-up: the endpoint's interface assertions (Defragmenter,
	// HookResumer) fill the runtime's per-site type-assertion cache on a
	// random one of about 1,024 misses, allocating it then; 12,800
	// datagrams leave that to chance one time in ~250,000.
	run(400)
	if m := pipelinetest.CountMallocs(func() { run(320) }); m != 0 {
		t.Fatalf("%d mallocs over 10,240 reassembled datagrams", m)
	}
}
