//go:build !race

// The race detector changes allocation behaviour, so the exact zero-alloc
// proof runs only without -race.

package ipv4_test

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestReassemblyZeroAllocs proves exactly that reassembling a datagram (two
// fragments, defragment_forwarded, the datagram forwarded and cut to its
// fragments' sizes again) allocates
// nothing once warm: mallocs counted over 12,800 datagrams.
func TestReassemblyZeroAllocs(t *testing.T) {
	l := newLab(t, "{module: network.ipv4, reassembly: {defragment_forwarded: true}}")
	orig := bigUDP("10.0.1.2", "192.168.1.9", 5, 1000)
	frags := fragmentsOf(orig, 600)
	frames := make([][]byte, 0, 128)
	for i := 0; i < 64; i++ {
		frames = append(frames, frags...)
	}
	buf := make([]*pipeline.Packet, 128)
	run := func(batches int) {
		for i := 0; i < batches; i++ {
			l.a.InjectFrames(frames)
			k := l.c.Read(buf)
			if k != 64*len(frags) {
				t.Fatalf("forwarded %d fragments of 64 datagrams, want %d (%s)", k, 64*len(frags), l.r.DumpCounters())
			}
			for j, p := range buf[:k] {
				if len(p.Data()) > len(frags[0]) {
					t.Fatalf("fragment %d: %d bytes, larger than the %d-byte fragment it came in", j, len(p.Data()), len(frags[0]))
				}
			}
			pipeline.ReleaseBatch(buf[:k])
		}
	}
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	run(100)
	const batches = 200
	if m := pt.CountMallocs(func() { run(batches) }); m != 0 {
		t.Fatalf("%d mallocs over %d reassembled datagrams, want 0", m, batches*64)
	}
}
