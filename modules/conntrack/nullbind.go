package conntrack

import "github.com/pipestack/pipestack/pipeline"

// statusReplyPending: the entry's reply key clashed; only its original key
// is hashed until the null binding (a status bit after table.go's).
const statusReplyPending = statusDstNATDone << 1

// The null binding (Linux's nf_nat_alloc_null_binding). A new flow that no
// NAT rule binds may still clash with a NATed one: its reply key — the
// inverse of its original — is already another entry's (a masqueraded
// flow's original key, say, when the outside sends to the inside host
// directly with the inverse tuple). Linux then gives the new flow a
// binding that keeps its addresses but changes its source port (the
// "port" the source NAT may change: the ICMP id; nothing for a protocol
// without ports, whose packet is dropped), so that both flows' replies find
// their own entry. Here: the new entry is hashed by its original key only
// (statusReplyPending) and, at the source-NAT hook (Postrouting or Input,
// after the nat table's chains, whose SNAT or MASQUERADE would bind it
// instead), gets the first free port of Linux's class (1–511, 600–1023,
// 1024–65535) from a hash of its tuple, as a SNAT without a range does;
// no free one: the packet is dropped (nat_null_binding_drops). Before, the
// clash made the flow INVALID and, with a stateful policy, every packet of
// it was dropped.

// insertOriginal links the entry's original key only (its reply key is
// taken): false when the original key is taken too (another worker made
// the flow first).
func (t *Table) insertOriginal(i uint32, h0 uint64) bool {
	e := &t.entries[i]
	b := t.lockBucket(h0)
	defer t.unlockBucket(h0)
	if t.inBucket(b, &e.orig.tuple, h0) {
		return false
	}
	e.tag[0].Store(h0)
	e.tag[1].Store(e.reply.tuple.hash(t.seed)) // unlinked: AlterReply's and kill's unlink find nothing
	e.next[0].Store(b.head.Load())
	b.head.Store(i*2 + 1)
	return true
}

// nullBinding binds the source side of pc's pending entry to a free key.
func nullBinding(h *holder, pc *pipeline.PacketContext) bool {
	return setupNAT(h, pc, nil, nil, false)
}
