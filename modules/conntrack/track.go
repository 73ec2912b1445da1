package conntrack

import (
	"sync/atomic"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Timeouts are the non-TCP protocols' timeouts (Linux's defaults).
type Timeouts struct {
	UDPUnreplied, UDPStream, ICMP, Generic time.Duration
}

// DefaultTimeouts are Linux's: udp 30 s, udp_stream 120 s, icmp 30 s,
// generic 600 s.
func DefaultTimeouts() Timeouts {
	return Timeouts{UDPUnreplied: 30 * time.Second, UDPStream: 120 * time.Second, ICMP: 30 * time.Second, Generic: 600 * time.Second}
}

// udpStreamAfter is how long after its creation a replied UDP flow counts
// as a stream (assured, the longer timeout), as Linux's stream_ts.
const udpStreamAfter = 2 * time.Second

// Tracker tracks packets in a Table with one generation's settings.
type Tracker struct {
	t   *Table
	tcp TCPConfig
	to  Timeouts
	nat *atomic.Bool // a nat table is in use: null bindings on a clash (nullbind.go); nil: none
}

// NewTracker returns a tracker over t.
func NewTracker(t *Table, tcp TCPConfig, to Timeouts) *Tracker {
	return &Tracker{t: t, tcp: tcp, to: to}
}

// Table is the tracker's table.
func (tr *Tracker) Table() *Table { return tr.t }

// Track is nf_conntrack_in for the packet pc describes (its tuple parsed):
// it finds or creates the packet's entry, runs the protocol's state
// machine and sets pc.Pkt.ConnTrack and CTInfo. A packet that already has
// a state (NOTRACK, or tracked at an earlier hook) is left alone. The
// verdict is drop only when the table is full and nothing could be
// early-dropped (Linux drops then too); INVALID packets are accepted with
// CTInvalid, for the rules to decide.
func (tr *Tracker) Track(now int64, pc *pipeline.PacketContext) pipeline.Verdict {
	p := pc.Pkt
	if p.CTInfo != pipeline.CTNone {
		if p.CTInfo == pipeline.CTUntracked {
			tr.t.st.Untracked.Inc()
		}
		return pipeline.VerdictAccept
	}
	if pc.Fragment {
		return tr.invalid(p)
	}
	var k Key
	if pc.Tuple.Src.Is4() {
		k.Family = 4 // k is zero: four bytes each (SetAddrs clears all 32)
		*(*[4]byte)(k.Src[:4]), *(*[4]byte)(k.Dst[:4]) = pc.Tuple.Src.As4(), pc.Tuple.Dst.As4()
	} else {
		k.SetAddrs(pc.Tuple.Src, pc.Tuple.Dst)
	}
	k.Proto = uint8(pc.Tuple.Proto)
	b := l4(pc)
	var seg tcpSeg
	switch {
	case k.Proto == wire.ProtocolTCP:
		if !parseTCP(b, &seg) {
			return tr.invalid(p)
		}
		k.SPort, k.DPort = pc.Tuple.SrcPort, pc.Tuple.DstPort
	case hasPorts(k.Proto):
		if len(b) < 8 {
			return tr.invalid(p)
		}
		k.SPort, k.DPort = pc.Tuple.SrcPort, pc.Tuple.DstPort
	case k.Proto == wire.ProtocolICMP && k.Family == 4, k.Proto == wire.ProtocolICMPv6 && k.Family == 6:
		if !icmpKey(&k, b) {
			return tr.invalid(p)
		}
		v6 := k.Family == 6
		typ := b[0]
		if isICMPError(v6, typ) {
			return tr.related(p, v6, b[8:], now)
		}
		if v6 && icmp6NoTrack(typ) {
			p.CTInfo = pipeline.CTUntracked
			return pipeline.VerdictAccept
		}
		if !isICMPQuery(v6, typ) && !isReplyType(v6, typ) {
			return tr.invalid(p)
		}
	}
	h := k.hash(tr.t.seed)
	locked := false
	for try := 0; try < 4; try++ {
		var idx, gen uint32
		var dir int
		var ok bool
		if locked {
			idx, dir, gen, ok = tr.t.lookupLocked(&k, h, now)
		} else {
			idx, dir, gen, ok = tr.t.lookup(&k, h, now)
		}
		created := false
		if !ok {
			if k.Proto == wire.ProtocolICMP || k.Proto == wire.ProtocolICMPv6 {
				if !isICMPQuery(k.Family == 6, uint8(k.DPort>>8)) {
					return tr.invalid(p) // a reply without its request
				}
			}
			var v pipeline.Verdict
			idx, v, ok = tr.create(&k, h, &seg, now)
			if !ok {
				if v == pipeline.VerdictDrop {
					return v
				}
				if v == pipeline.VerdictContinue {
					continue // lost a race: look up again
				}
				return tr.invalid(p)
			}
			dir, gen, created = 0, tr.t.entries[idx].gen.Load(), true
		}
		switch tr.packet(p, &k, idx, dir, gen, &seg, now, created) {
		case pktDone:
			return pipeline.VerdictAccept
		case pktInvalid:
			return tr.invalid(p)
		case pktMismatch:
			locked = true // the lock-free walk found another flow's tag
		}
		// pktRetry: the entry went away or the flow was reopened.
	}
	return tr.invalid(p)
}

func (tr *Tracker) invalid(p *pipeline.Packet) pipeline.Verdict {
	p.ConnTrack, p.CTInfo = 0, pipeline.CTInvalid
	tr.t.st.Invalid.Inc()
	return pipeline.VerdictAccept
}

// icmp6NoTrack: neighbor discovery and MLD are not tracked (Linux's
// noct_valid_new).
func icmp6NoTrack(t uint8) bool {
	switch t {
	case 130, 131, 132, 133, 134, 135, 136, 143:
		return true
	}
	return false
}

// related handles an ICMP error: the quoted packet's flow, found by the
// inverse of the quoted key (the direction this error travels in), makes
// the error RELATED; no entry: INVALID.
func (tr *Tracker) related(p *pipeline.Packet, v6 bool, quoted []byte, now int64) pipeline.Verdict {
	inner, ok := quotedKey(v6, quoted)
	if !ok {
		return tr.invalid(p)
	}
	inv := inner.Invert()
	idx, dir, gen, ok := tr.t.lookupLocked(&inv, inv.hash(tr.t.seed), now)
	if !ok {
		return tr.invalid(p)
	}
	info := pipeline.CTRelated
	if dir == 1 {
		info |= pipeline.CTReply
	}
	p.ConnTrack, p.CTInfo = uint64(makeRef(idx, gen)), info
	tr.t.st.Related.Inc()
	return pipeline.VerdictAccept
}

// create allocates and inserts the entry of a flow's first packet.
// Verdict drop: the table is full; continue: another worker inserted the
// flow first; accept with !ok: the packet cannot start a flow (INVALID).
func (tr *Tracker) create(k *Key, h uint64, seg *tcpSeg, now int64) (uint32, pipeline.Verdict, bool) {
	t := tr.t
	i, ok := t.alloc(h)
	if !ok {
		return 0, pipeline.VerdictDrop, false
	}
	e := &t.entries[i]
	e.mu.Lock()
	e.orig, e.reply.tuple = side{tuple: *k}, k.Invert()
	e.reply.packets, e.reply.bytes = 0, 0
	e.mark.Store(0)
	e.masq.Store(0)
	e.created = now
	e.tcp = tcpState{}
	if k.Proto == wire.ProtocolTCP && !tcpNew(&e.tcp, seg, &tr.tcp) {
		e.mu.Unlock()
		t.release(i)
		return 0, pipeline.VerdictAccept, false
	}
	e.expires.Store(now + int64(tr.initialTimeout(k.Proto)))
	status := uint32(statusLive)
	if !t.insert(i, h, e.reply.tuple.hash(t.seed)) {
		if tr.nat == nil || !tr.nat.Load() || !t.insertOriginal(i, h) {
			e.mu.Unlock()
			t.release(i)
			t.st.Clash.Inc()
			return 0, pipeline.VerdictContinue, false
		}
		status |= statusReplyPending // a NATed flow has its reply key (nullbind.go)
	}
	// On the wheel before it is live: a kill (which needs it live) then
	// always finds it there, and no entry is ever linked twice.
	t.wheel.add(t, i)
	e.status.Store(status)
	e.mu.Unlock()
	t.st.New.Inc()
	return i, pipeline.VerdictAccept, true
}

func (tr *Tracker) initialTimeout(proto uint8) time.Duration {
	switch proto {
	case wire.ProtocolTCP:
		return tr.tcp.Timeouts[TCPSynSent]
	case wire.ProtocolUDP, protoUDPLite:
		return tr.to.UDPUnreplied
	case wire.ProtocolICMP, wire.ProtocolICMPv6:
		return tr.to.ICMP
	}
	return tr.to.Generic
}

type pktResult int

const (
	pktDone pktResult = iota
	pktInvalid
	pktRetry
	pktMismatch
)

// packet runs the protocol on entry idx for a packet in direction dir.
func (tr *Tracker) packet(p *pipeline.Packet, k *Key, idx uint32, dir int, gen uint32, seg *tcpSeg, now int64, created bool) pktResult {
	t := tr.t
	e := &t.entries[idx]
	ref := makeRef(idx, gen)
	e.mu.Lock()
	if !e.Valid(ref) {
		e.mu.Unlock()
		return pktRetry
	}
	s := e.dir(dir)
	if !s.tuple.equal(k) {
		e.mu.Unlock()
		return pktMismatch
	}
	st := e.status.Load()
	seenReply, assured := st&StatusSeenReply != 0, st&StatusAssured != 0
	timeout := time.Duration(-1)
	assure := false
	switch proto := k.Proto; { // the direction's key, checked: no read of the other line
	case proto == wire.ProtocolTCP:
		res, to, as := tcpPacket(&e.tcp, dir, seg, &tr.tcp, seenReply, assured)
		switch res {
		case tcpInvalid:
			e.mu.Unlock()
			if created {
				t.kill(idx, nil)
			}
			return pktInvalid
		case tcpReopen:
			e.mu.Unlock()
			t.kill(idx, t.st.Deleted)
			return pktRetry
		case tcpKill:
			// Linux's nf_ct_kill: the flow is over for every later
			// packet, but the packet that ended it (an RST answering a
			// SYN) keeps its entry — Linux's nf_ct_kill_acct leaves the
			// ct on the skb — and is still NATed at −99/101: a reset
			// answering a masqueraded SYN must reach the client (freed
			// here, it was dropped as nat_stale_drops). So the entry is
			// due now: a lookup from now on frees it and finds no flow,
			// the wheel frees it at its next tick; counted as deleted.
			s.packets++
			s.bytes += uint64(p.Len())
			if e.status.Load()&statusKilled == 0 {
				e.status.Or(statusKilled)
				t.st.Deleted.Inc()
			}
			t.setTimeout(idx, now, 0)
			e.mu.Unlock()
			p.ConnTrack, p.CTInfo = uint64(ref), tr.info(dir, seenReply)
			return pktDone
		case tcpOK:
			timeout = to
		}
		assure = as
	case proto == wire.ProtocolUDP || proto == protoUDPLite:
		if seenReply || dir == 1 {
			timeout = tr.to.UDPUnreplied
			if now-e.created > int64(udpStreamAfter) {
				timeout = tr.to.UDPStream
				assure = !assured
			}
		} else {
			timeout = tr.to.UDPUnreplied
		}
	case proto == wire.ProtocolICMP || proto == wire.ProtocolICMPv6:
		timeout = tr.to.ICMP
	default:
		timeout = tr.to.Generic
		if seenReply || dir == 1 {
			assure = !assured // Linux's generic: assured once replied
		}
	}
	s.packets++
	s.bytes += uint64(p.Len())
	if dir == 1 && !seenReply {
		e.status.Or(StatusSeenReply)
	}
	if assure {
		e.status.Or(StatusAssured)
	}
	if timeout >= 0 {
		t.setTimeout(idx, now, timeout) // under the lock: the entry cannot be reused meanwhile
	}
	e.mu.Unlock()
	p.ConnTrack, p.CTInfo = uint64(ref), tr.info(dir, seenReply)
	return pktDone
}

// info is the packet's state: a reply is ESTABLISHED, an original-
// direction packet too once a reply was seen, else NEW.
func (tr *Tracker) info(dir int, seenReply bool) pipeline.CTInfo {
	switch {
	case dir == 1:
		return pipeline.CTEstablished | pipeline.CTReply
	case seenReply:
		return pipeline.CTEstablished
	}
	return pipeline.CTNew
}

// Confirm marks the entry of a packet that passed every hook confirmed
// (netfilter's confirm at the last priority of Postrouting and Input):
// only confirmed entries are listed, and unconfirmed ones (their first
// packet was dropped by a rule) are the first to be early-dropped.
func (tr *Tracker) Confirm(p *pipeline.Packet) {
	if p.ConnTrack == 0 || p.CTInfo.State() != pipeline.CTNew {
		return
	}
	e := tr.t.Entry(Ref(p.ConnTrack))
	if e == nil || e.status.Load()&StatusConfirmed != 0 {
		return
	}
	if old := e.status.Or(StatusConfirmed); old&StatusConfirmed == 0 {
		tr.t.st.Confirmed.Inc()
		if sink := tr.t.events.Load(); sink != nil {
			i, _ := Ref(p.ConnTrack).index()
			sink.emit(tr.t, i, EventNew)
		}
	}
}
