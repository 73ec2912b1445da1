//go:build !race

package pipelinetest_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

var sink *[32]byte

// TestZeroAllocsCounterExact: the counter sees every allocation, even a few
// small ones that fit in a P's cached span (which runtime/metrics does not
// see until the cache is refilled): one 32-byte allocation per 64-packet
// batch over 200 batches must count as at least 200.
func TestZeroAllocsCounterExact(t *testing.T) {
	const batches = 200
	work := make([]byte, 64)
	m := pt.CountMallocs(func() {
		for b := 0; b < batches; b++ {
			for i := range 64 { // the packets of a batch: no allocation
				work[i]++
			}
			sink = new([32]byte) // the injected allocation, once per batch
		}
	})
	if m < batches {
		t.Fatalf("counted %d allocations, want ≥ %d (one per batch)", m, batches)
	}
	if m > batches+8 {
		t.Errorf("counted %d allocations for %d made", m, batches)
	}
	if m := pt.CountMallocs(func() {
		for i := range work {
			work[i]++
		}
	}); m != 0 {
		t.Errorf("counted %d allocations for none made", m)
	}
}

// fakeTB records a failure instead of ending the test, so that a test can
// check that ForwardZeroAllocs fails.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	if f.failed == "" {
		f.failed = fmt.Sprintf(format, args...)
	}
}
func (f *fakeTB) Helper() {}

const routerYAML = `
name: router
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, queue: 4096, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, queue: 4096, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
`

// TestForwardZeroAllocsCatchesOnePerBatch: a forwarding path that
// allocates once per 64-packet batch (injected in the check, which runs on
// every forwarded packet) fails ForwardZeroAllocs, and the same path
// without the allocation passes.
func TestForwardZeroAllocsCatchesOnePerBatch(t *testing.T) {
	r := pt.NewNode(t, "router", routerYAML, pipeline.Options{})
	a, b := r.Link(t, "a"), r.Link(t, "b")
	pkt := pt.UDP4("10.0.1.2", "10.0.2.2", 1000, 2000, 64, make([]byte, 18))
	for _, inject := range []bool{false, true} {
		n := 0
		f := &fakeTB{TB: t}
		pt.ForwardZeroAllocs(f, r, a, b, pkt, func(d []byte) error {
			if n++; inject && n%64 == 0 {
				sink = new([32]byte)
			}
			if len(d) != len(pkt) {
				return errors.New("length changed")
			}
			return nil
		}, nil)
		switch {
		case inject && f.failed == "":
			t.Errorf("one allocation per batch passed ForwardZeroAllocs")
		case inject && !strings.Contains(f.failed, "mallocs"):
			t.Errorf("failed for another reason: %s", f.failed)
		case !inject && f.failed != "":
			t.Errorf("the clean path failed: %s", f.failed)
		default:
			t.Logf("inject=%v: %q", inject, f.failed)
		}
	}
}
