//go:build linux && !race

package tun

import (
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// TestTUNReadWriteZeroAllocs: 10,240 echo requests written to the kernel
// through the TUN device and 10,240 replies read back (the reader threads'
// work included) allocate nothing. Outside -race (CI's zero-allocation step).
func TestTUNReadWriteZeroAllocs(t *testing.T) {
	needRoot(t)
	pipelinetest.TraceMallocs(t) // on failure, say where they came from
	e, d, _, _ := loopback(t, 2)
	req := pipelinetest.Echo4("10.99.0.2", "10.99.0.1", 64, 1, 1, make([]byte, 56))
	pkts := make([]*pipeline.Packet, 64)
	want := uint64(0)
	round := func() bool {
		pingBatch(e, pkts, req)
		want += uint64(len(pkts))
		return waitCount(d, want, 5*time.Second)
	}
	for i := 0; i < 20; i++ { // warm the pool and the kernel
		if !round() {
			t.Fatalf("warm-up: %d replies of %d", d.n.Load(), want)
		}
	}
	// One window over all 10,240 round trips (no best-of-N): a real
	// allocation on either path shows as ≥ 160.
	ok := true
	m := pipelinetest.CountMallocs(func() {
		for i := 0; i < 160 && ok; i++ {
			ok = round()
		}
	})
	if !ok {
		t.Fatalf("%d replies of %d", d.n.Load(), want)
	}
	if m != 0 {
		t.Errorf("%d allocations over 10,240 packets each way, want 0; %s", m, pipelinetest.MallocStacks())
	}
}
