package conntrack

import "github.com/pipestack/pipestack/pipeline"

// PacketDropped implements pipeline.PacketDropListener: the first packet of
// a flow was dropped (a FORWARD or INPUT policy, a rule, a plugin's
// verdict, a protocol check) before its entry was confirmed. The entry is
// marked so that early drop may free it — first, as it frees unreplied
// flows — since no packet of it is in flight any more. Left as it was, an
// unconfirmed entry is one early drop must never free (its packet may be
// on its way), so a flood of dropped first packets from outside — a scan,
// a SYN flood against a policy drop — would fill the table until the
// entries timed out (30 s to 2 min) and every new flow meanwhile would be
// refused (table_full_drops). Linux frees an unconfirmed conntrack with
// its dropped skb; it is kept here, unlisted (`pipectl conntrack -L`
// shows confirmed entries only), until early drop or its timeout frees it,
// so that a per-flow verdict (a plugin's cached drop) keeps its key.
func (m *Module) PacketDropped(p *pipeline.Packet) {
	if p.CTInfo != pipeline.CTNew || m.holder == nil {
		return
	}
	t := m.holder.t.Load()
	if t == nil {
		return
	}
	r := Ref(p.ConnTrack)
	e := t.Entry(r)
	if e == nil {
		return
	}
	e.mu.Lock()
	if e.Valid(r) && e.status.Load()&(StatusConfirmed|statusDropped) == 0 {
		e.status.Or(statusDropped)
		t.st.Unconfirmed.Inc()
	}
	e.mu.Unlock()
}

var _ pipeline.PacketDropListener = (*Module)(nil)
