package conntrack

import (
	"testing"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
)

// TestDefragCountsOnce: a datagram reassembled at −400 goes on from
// Prerouting, not through the receive path again: network.ipv4 counts
// its two fragments received (rx) and the datagram forwarded once, and
// conntrack tracks it once (one new entry).
func TestDefragCountsOnce(t *testing.T) {
	rr := newRouterRig(t, "64")
	rx0 := rr.n.Counter("ipv4", "rx")
	big := filtertest.Packet{Proto: filtertest.UDP, Src: "10.0.1.2", Dst: "10.0.2.2", SrcPort: 7000, DstPort: 7001, Payload: 40}.Bytes()
	rr.a.InjectFrames(fragments4(big))
	buf := make([]*pipeline.Packet, 4)
	k := rr.b.Read(buf)
	if k != 1 || buf[0].Len() != len(big) {
		t.Fatalf("got %d packets, want the %d-byte datagram (%s)", k, len(big), rr.n.DumpCounters())
	}
	pipeline.ReleaseBatch(buf[:k])
	if rx := rr.n.Counter("ipv4", "rx") - rx0; rx != 2 {
		t.Errorf("ipv4 rx counted %d, want the 2 fragments (the datagram is not received again)", rx)
	}
	if f := rr.n.Counter("ipv4", "forwarded"); f != 1 {
		t.Errorf("ipv4 forwarded %d, want 1", f)
	}
	if n := rr.n.Counter("conntrack", "new"); n != 1 {
		t.Errorf("conntrack new %d, want 1", n)
	}
}
