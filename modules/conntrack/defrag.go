package conntrack

import (
	"github.com/pipestack/pipestack/modules/ipv4"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// defragHook is the hook function at Prerouting, priority -400
// (NF_IP_PRI_CONNTRACK_DEFRAG): a forwarded IPv4 fragment goes to
// network.ipv4's reassembly (its Defragmenter service, with its
// per-source-fair memory limits and timeout); while its siblings are
// missing it is held (stolen), and the datagram it completes goes through
// the IPv4 receive path again, whole, so that raw, conntrack and the rules
// see it with its ports. Packets to the router's own addresses are left to
// local reassembly, as before. IPv6 has no such service yet: its
// fragments are not reassembled on the forwarding path, and conntrack
// marks non-first ones INVALID.
type defragHook struct{}

// Action implements pipeline.Target.
func (defragHook) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	p := pc.Pkt
	b := pc.Batch
	if b == nil || p.NetProto != pipeline.IPv4ProtocolNumber {
		return pipeline.VerdictAccept, 0
	}
	h := wire.IPv4(p.NetworkHeader())
	if len(h) < wire.IPv4MinimumSize || (!h.MoreFragments() && h.FragmentOffset() == 0) {
		return pipeline.VerdictAccept, 0
	}
	if _, _, local := b.Gen.IsLocal4(h.Dst()); local {
		return pipeline.VerdictAccept, 0
	}
	ep := b.Gen.NetworkEndpoint(p.InNIC, pipeline.IPv4ProtocolNumber)
	d, ok := ep.(ipv4.Defragmenter)
	if !ok {
		return pipeline.VerdictAccept, 0
	}
	if !p.RewindToNetwork() {
		return pipeline.VerdictAccept, 0
	}
	out, done := d.Defragment(b, p)
	if !done || out == nil {
		return pipeline.VerdictStolen, 0 // held for its siblings, or dropped (counted)
	}
	if out == p {
		return pipeline.VerdictAccept, 0
	}
	continueDatagram(b, ep, out) // defrag_resume.go
	return pipeline.VerdictStolen, 0
}

var _ pipeline.Target = defragHook{}
