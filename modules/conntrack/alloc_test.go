//go:build !race

package conntrack

import (
	"encoding/binary"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// TestTrackedForwardZeroAllocs: forwarding a tracked flow through the
// stateful router allocates nothing (exact count over 12,800 packets).
func TestTrackedForwardZeroAllocs(t *testing.T) {
	rr := newRouterRig(t, "1024")
	pipelinetest.ForwardZeroAllocs(t, rr.n, rr.a, rr.b, udp("10.0.1.2", "10.0.2.2", 1234, 53), func([]byte) error { return nil }, nil)
	if rr.table().Count() != 1 {
		t.Fatalf("%d entries, want the one flow", rr.table().Count())
	}
}

// floodFrames makes n UDP frames a → b, each a new flow (ports vary).
func floodFrames(n int, base int) [][]byte {
	tmpl := udp("10.0.1.2", "10.0.2.2", 1, 1)
	out := make([][]byte, n)
	for i := range out {
		f := append([]byte(nil), tmpl...)
		v := base + i
		binary.BigEndian.PutUint16(f[20:], uint16(v))
		binary.BigEndian.PutUint16(f[22:], uint16(v>>16)+1)
		out[i] = f
	}
	return out
}

// TestNewFlowsZeroAllocs: every packet a new flow, the table full (early
// drop on each one after the first 1,024): still no allocation.
func TestNewFlowsZeroAllocs(t *testing.T) {
	rr := newRouterRig(t, "1024")
	frames := floodFrames(64*300, 0)
	buf := make([]*pipeline.Packet, 64)
	run := func(from, batches int) {
		for i := 0; i < batches; i++ {
			rr.a.InjectFrames(frames[(from+i)*64 : (from+i+1)*64])
			k := rr.b.Read(buf)
			if k != 64 {
				t.Fatalf("forwarded %d of 64 (%s)", k, rr.n.DumpCounters())
			}
			pipeline.ReleaseBatch(buf[:k])
		}
	}
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	run(0, 100)
	if m := pipelinetest.CountMallocs(func() { run(100, 200) }); m != 0 {
		t.Fatalf("%d mallocs over 12,800 new flows", m)
	}
	if got := rr.table().Count(); got != 1024 {
		t.Fatalf("%d entries, want the maximum 1024", got)
	}
	if rr.n.Counter("conntrack", "early_drop") == 0 {
		t.Fatal("no early drops at the maximum")
	}
}

// TestFloodHoldsTableAtMax: a million distinct tuples hold the table at
// its maximum, the heap stays flat, and an established TCP flow keeps
// passing throughout (it is assured: never early-dropped).
func TestFloodHoldsTableAtMax(t *testing.T) {
	const max = 65536
	rr := newRouterRig(t, "65536")
	if !rr.pass(rr.a, rr.b, rr.r.tcpBytes(cs(syn, 1000, 0, 0))) || !rr.pass(rr.b, rr.a, rr.r.tcpBytes(sc(syn|ack, 5000, 1001, 0))) ||
		!rr.pass(rr.a, rr.b, rr.r.tcpBytes(cs(ack, 1001, 5001, 0))) {
		t.Fatal("handshake")
	}
	est := rr.r.tcpBytes(sc(ack, 5001, 1001, 0))
	frames := floodFrames(1<<16, 0)
	buf := make([]*pipeline.Packet, 64)
	var before, after runtime.MemStats
	flood := func(round int) {
		for f := 0; f < len(frames); f += 64 {
			batch := frames[f : f+64]
			for _, b := range batch {
				binary.BigEndian.PutUint16(b[22:], uint16(round)+1)
			}
			rr.a.InjectFrames(batch)
			k := rr.b.Read(buf)
			pipeline.ReleaseBatch(buf[:k])
			if f%(64*64) == 0 && !rr.pass(rr.b, rr.a, est) {
				t.Fatalf("round %d: the established flow was dropped (%s)", round, rr.n.DumpCounters())
			}
		}
	}
	flood(0) // fill the table and the pools
	runtime.GC()
	runtime.ReadMemStats(&before)
	for round := 1; round < 16; round++ { // 15 × 65,536 + the first: 1,048,576 tuples
		flood(round)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := rr.table().Count(); got != max {
		t.Fatalf("%d entries, want %d", got, max)
	}
	if d := int64(after.HeapAlloc) - int64(before.HeapAlloc); d > 1<<20 {
		t.Fatalf("heap grew %d bytes over the flood (%d → %d)", d, before.HeapAlloc, after.HeapAlloc)
	}
	t.Logf("heap %d → %d bytes; early drops %d", before.HeapAlloc, after.HeapAlloc, rr.n.Counter("conntrack", "early_drop"))
}
