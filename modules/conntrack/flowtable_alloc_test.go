//go:build !race

package conntrack

import (
	"fmt"
	"testing"

	"github.com/pipestack/pipestack/pipelinetest"
)

// TestFlowOffloadZeroAllocs: an offloaded, masqueraded flow allocates
// nothing per packet on the fast path, out and back (exact count over
// 12,800 packets each way), and every counted packet took the fast path.
func TestFlowOffloadZeroAllocs(t *testing.T) {
	fr := newFlowRig(t, masqTable+"\n")
	p := fr.udpFlow(false)
	before := fr.ct("flow_fastpath")
	pipelinetest.ForwardZeroAllocs(t, fr.n, fr.a, fr.b, p.Bytes(), func(b []byte) error {
		if [4]byte(b[12:16]) != [4]byte{10, 0, 2, 1} {
			return fmt.Errorf("not masqueraded: from % x", b[12:16])
		}
		return nil
	}, nil)
	pipelinetest.ForwardZeroAllocs(t, fr.n, fr.b, fr.a, udp("10.0.2.2", "10.0.2.1", 53, 1234), func(b []byte) error {
		if [4]byte(b[16:20]) != [4]byte{10, 0, 1, 2} {
			return fmt.Errorf("reply not translated: to % x", b[16:20])
		}
		return nil
	}, nil)
	if got := fr.ct("flow_fastpath") - before; got != 2*300*64 {
		t.Fatalf("%d packets through the fast path, want %d (%s)", got, 2*300*64, fr.n.DumpCounters())
	}
}
