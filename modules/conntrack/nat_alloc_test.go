//go:build !race

package conntrack

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// TestNATForwardZeroAllocs: a masqueraded flow allocates nothing per
// packet, out (source rewritten) and back (destination rewritten), exact
// count over 12,800 packets each way.
func TestNATForwardZeroAllocs(t *testing.T) {
	nr := newNATRig(t, natRouter)
	pipelinetest.ForwardZeroAllocs(t, nr.n, nr.a, nr.b, udp("10.0.1.2", "10.0.2.2", 1234, 53), func(b []byte) error {
		if [4]byte(b[12:16]) != [4]byte{10, 0, 2, 1} { // no String: check runs in the counted window
			return fmt.Errorf("not masqueraded: from % x", b[12:16])
		}
		return nil
	}, nil)
	pipelinetest.ForwardZeroAllocs(t, nr.n, nr.b, nr.a, udp("10.0.2.2", "10.0.2.1", 53, 1234), func(b []byte) error {
		if [4]byte(b[16:20]) != [4]byte{10, 0, 1, 2} {
			return fmt.Errorf("reply not translated: to % x", b[16:20])
		}
		return nil
	}, nil)
}

// TestNATNewFlowsZeroAllocs: every packet a new masqueraded flow (the
// binding made and confirmed): no allocation. (The table is larger than
// the flood: at the maximum, early drop may free a batch's own
// unconfirmed entries, whose packets the NAT hook then drops.)
func TestNATNewFlowsZeroAllocs(t *testing.T) {
	nr := newNATRig(t, strings.Replace(natRouter, "max: 1024", "max: 32768", 1))
	frames := floodFrames(64*300, 2000) // source ports from 2000: each kept (below 1024 the 1..511 and 600..1023 pools run out)
	buf := make([]*pipeline.Packet, 64)
	run := func(from, batches int) {
		for i := 0; i < batches; i++ {
			nr.a.InjectFrames(frames[(from+i)*64 : (from+i+1)*64])
			k := nr.b.Read(buf)
			if k != 64 {
				t.Fatalf("forwarded %d of 64 (%s)", k, nr.n.DumpCounters())
			}
			if d := buf[0].Data(); [4]byte(d[12:16]) != [4]byte{10, 0, 2, 1} {
				t.Fatalf("not masqueraded: from % x", d[12:16])
			}
			pipeline.ReleaseBatch(buf[:k])
		}
	}
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	run(0, 100)
	if m := pipelinetest.CountMallocs(func() { run(100, 200) }); m != 0 {
		t.Fatalf("%d mallocs over 12,800 new NATed flows", m)
	}
}
