package ipv6

import (
	"github.com/pipestack/pipestack/modules/internal/reasm"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// The defragmentation service (pipeline.Defragmenter) that conntrack calls
// at Prerouting, priority −400, as Linux's nf_defrag_ipv6: fragments are
// reassembled before raw, conntrack and the rules see them, in the same
// bounded, per-source-fair reassembler as local delivery (its limits and
// timeout) but in queues of their own (user userDefrag), and without any
// ICMPv6 (no time exceeded on a timeout, no parameter problem: a router's
// defragmentation is invisible). The datagram keeps the size of its largest
// fragment in PathMTU (at least 1280, as Linux's ip6_fragment): forwarding
// answers Packet Too Big only when that size exceeds the egress MTU, and
// transmit cuts the datagram to that size again (Fragment), as Linux's
// frag_max_size — an IPv6 router never fragments otherwise.

// Defragment implements pipeline.Defragmenter. A packet that is not a
// fragment (no Fragment header, an atomic fragment, RFC 6946) or whose
// extension headers cannot be walked is returned as it is, for the
// receive path to judge (Linux's nf_ct_frag6_gather leaves it too).
func (e *endpoint) Defragment(b *pipeline.Batch, pkt *pipeline.Packet) (*pipeline.Packet, bool) {
	h := wire.IPv6(pkt.Data())
	if err := h.Check(); err != nil {
		e.dropMalformed(b, pkt, err)
		return nil, false
	}
	if !isExtension(h.NextHeader()) {
		return pkt, true
	}
	x, err := h.WalkExtensions(e.p.cfg.maxExt)
	if err != nil || !x.IsFragment() {
		return pkt, true
	}
	pkt.Truncate(wire.IPv6HeaderSize + int(h.PayloadLength()))
	out := e.reassemble(b, pkt, &x, userDefrag)
	return out, out != nil
}

// defragDone records in a datagram the defragmentation service made the
// size of its largest fragment (header included), at least the minimum
// MTU: the size it leaves with (Packet.PathMTU).
func defragDone(k fragKey, out *pipeline.Packet, frags []reasm.Fragment[fragMeta]) {
	if k.user != userDefrag {
		return
	}
	m := wire.IPv6MinimumMTU
	for _, f := range frags {
		if n := wire.IPv6HeaderSize + int(wire.IPv6(f.Pkt.Data()).PayloadLength()); n > m {
			m = n
		}
	}
	out.PathMTU = uint16(min(m, 0xffff))
}

var _ pipeline.Defragmenter = (*endpoint)(nil)
