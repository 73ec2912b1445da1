package conntrack

import (
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// defragHook is the hook function at Prerouting, priority -400
// (NF_IP_PRI_CONNTRACK_DEFRAG): a fragment goes to its IP module's
// reassembly (the pipeline.Defragmenter service of network.ipv4 and
// network.ipv6, with its per-source-fair memory limits and timeout, and no
// ICMP); while its siblings are missing it is held (stolen), and the
// datagram it completes goes through the receive path again, whole, so
// that raw, conntrack and the rules see it with its ports. An IPv6
// datagram leaves cut to its largest fragment's size again, as Linux's
// nf_ct_frag6 (modules/ipv6/defrag.go). Datagrams to the stack's own
// addresses are reassembled here too, as Linux's nf_defrag does: left to
// local reassembly (after conntrack), a datagram took the state of its
// last fragment, INVALID for a non-first one, and an INPUT rule dropping
// INVALID dropped every fragmented datagram to the router.
type defragHook struct{}

// Action implements pipeline.Target.
func (defragHook) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	p := pc.Pkt
	b := pc.Batch
	if b == nil {
		return pipeline.VerdictAccept, 0
	}
	switch p.NetProto {
	case pipeline.IPv4ProtocolNumber:
		h := wire.IPv4(p.NetworkHeader())
		if len(h) < wire.IPv4MinimumSize || (!h.MoreFragments() && h.FragmentOffset() == 0) {
			return pipeline.VerdictAccept, 0
		}
	case pipeline.IPv6ProtocolNumber:
		h := p.NetworkHeader()
		if len(h) < wire.IPv6HeaderSize {
			return pipeline.VerdictAccept, 0
		}
		switch h[wire.IPv6NextHeaderOffset] {
		case wire.ProtocolFragment, wire.ProtocolHopByHop, wire.ProtocolRouting, wire.ProtocolDestOptions, wire.ProtocolAH:
			// A Fragment header may follow: Defragment walks the chain.
		default:
			return pipeline.VerdictAccept, 0
		}
	default:
		return pipeline.VerdictAccept, 0
	}
	ep := b.Gen.NetworkEndpoint(p.InNIC, p.NetProto)
	d, ok := ep.(pipeline.Defragmenter)
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
