package conntrack

// The connection table's side of NAT (the nat table and its targets come
// next): a NAT target, on a connection's first packet, picks a binding,
// checks the reply key it implies is free (TupleTaken, Linux's
// nf_nat_used_tuple) and re-keys the entry's reply direction (AlterReply,
// nf_conntrack_alter_reply) before the entry is confirmed. Later packets
// are found by either key, and the direction (Packet.CTInfo) says which
// rewrite applies: original → the inverse of the reply key, reply → the
// inverse of the original key.

// TupleTaken reports whether a live entry has key k in either direction.
func (t *Table) TupleTaken(k *Key) bool {
	h := k.hash(t.seed)
	b := t.lockBucket(h)
	defer t.unlockBucket(h)
	return t.inBucket(b, k, h)
}

// AlterReply sets the reply key of the (unconfirmed) entry r refers to
// and re-hashes it, marking the entry source- and/or destination-NATed
// by how reply differs from the original key's inverse. False: the entry
// is gone or confirmed, or another live entry has the key already (the
// caller tries another binding).
func (t *Table) AlterReply(r Ref, reply Key) bool {
	e := t.Entry(r)
	if e == nil {
		return false
	}
	i, _ := r.index()
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.Valid(r) || e.status.Load()&StatusConfirmed != 0 {
		return false
	}
	hOld, hNew := e.tag[1].Load(), reply.hash(t.seed)
	bOld, bNew := t.lockPair(hOld, hNew)
	defer t.unlockPair(hOld, hNew)
	if t.inBucket(bNew, &reply, hNew) {
		return false
	}
	t.unlinkNode(bOld, i*2+1)
	inv := e.orig.tuple.Invert()
	e.reply.tuple = reply
	e.tag[1].Store(hNew)
	e.next[1].Store(bNew.head.Load())
	bNew.head.Store(i*2 + 2)
	var nat uint32
	if reply.Src != inv.Src || reply.SPort != inv.SPort {
		nat |= StatusDstNAT // the original destination was rewritten
	}
	if reply.Dst != inv.Dst || reply.DPort != inv.DPort {
		nat |= StatusSrcNAT // the original source was rewritten
	}
	if nat != 0 && !t.natted.Load() {
		t.natted.Store(true) // before the bits: natHook reads it first
	}
	e.status.Or(nat)
	e.status.And(^statusReplyPending)
	return true
}
