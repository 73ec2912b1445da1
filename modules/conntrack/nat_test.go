package conntrack

import (
	"net/netip"
	"testing"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
)

// TestAlterReplySNAT: what a MASQUERADE target will do on a flow's first
// packet — re-key the reply direction to the router's address and port —
// then the server's reply (to the router) is found as the flow's reply,
// and the un-NATed inverse is not.
func TestAlterReplySNAT(t *testing.T) {
	r := newRig(t, 16, DefaultTCP())
	pc := filtertest.ContextOf(t, udp("10.0.1.2", "10.0.2.2", 1000, 53), 0, pipeline.Prerouting, 1, 0)
	r.tr.Track(r.now(), pc)
	ref := Ref(pc.Pkt.ConnTrack)
	e := r.table.Entry(ref)
	e.Lock()
	reply := e.Tuple(1)
	e.Unlock()
	reply.Dst = [16]byte{}
	reply.SetAddrs(netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("10.0.2.1"))
	reply.DPort = 61000
	if r.table.TupleTaken(&reply) {
		t.Fatal("the new reply key is taken before it is set")
	}
	if !r.table.AlterReply(ref, reply) {
		t.Fatal("AlterReply refused")
	}
	if !r.table.TupleTaken(&reply) || e.Status()&StatusSrcNAT == 0 || e.Status()&StatusDstNAT != 0 {
		t.Fatalf("after AlterReply: taken %v status %#x", r.table.TupleTaken(&reply), e.Status())
	}
	if info, _ := r.udp("10.0.2.2", "10.0.2.1", 53, 61000); info != estR || Ref(r.last.Pkt.ConnTrack) != ref {
		t.Fatalf("reply to the NAT address: %#x", info)
	}
	// The un-NATed inverse is no flow's key any more; as a new flow its
	// own reply key would be the NATed flow's original one: a clash,
	// INVALID without a nat table (Linux drops it at confirmation); with
	// one it gets a null binding (TestNullBindingOnClash).
	if info, _ := r.udp("10.0.2.2", "10.0.1.2", 53, 1000); info != inval {
		t.Fatalf("the un-NATed inverse: %#x, want INVALID", info)
	}
	r.tr.Confirm(pc.Pkt)
	if r.table.AlterReply(ref, reply) {
		t.Fatal("AlterReply on a confirmed entry")
	}
}
