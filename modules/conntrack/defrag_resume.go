package conntrack

import (
	"sync/atomic"

	"github.com/pipestack/pipestack/pipeline"
)

// continueDatagram sends a datagram reassembled at −400 on from where its
// last fragment was: through the Prerouting hook again (raw, conntrack and
// the rules see it whole; the defragmentation is a no-op for it), then the
// IP endpoint's route decision and what follows (HookResumer) — not
// through the whole receive path, whose counters (rx) and header checks
// already counted and passed its fragments: a reassembled datagram is not
// received a second time (Linux's nf_defrag continues the same hook with
// the datagram). An endpoint that cannot resume gets it as received.
// The one-packet slice is a claimed slot of a fixed set: no allocation per
// datagram (a sync.Pool allocates when the goroutine moved to a P whose
// cache is empty).
func continueDatagram(b *pipeline.Batch, ep pipeline.NetworkEndpoint, out *pipeline.Packet) {
	var one *[1]*pipeline.Packet
	slot := -1
	for i := range oneSlots {
		if oneSlots[i].busy.CompareAndSwap(false, true) {
			slot, one = i, &oneSlots[i].pkts
			break
		}
	}
	if one == nil {
		one = new([1]*pipeline.Packet) // more datagrams in flight at once than slots
	}
	one[0] = out
	if hr, ok := ep.(pipeline.HookResumer); ok {
		b.RunHook(pipeline.Prerouting, one[:])
		hr.ResumeAfter(b, pipeline.Prerouting, one[:])
	} else {
		ep.HandlePackets(b, one[:])
	}
	one[0] = nil
	if slot >= 0 {
		oneSlots[slot].busy.Store(false)
	}
}

// oneSlots are continueDatagram's slices, one per datagram being
// continued (a worker continues one at a time; nesting adds none: the
// datagram is no fragment when Prerouting sees it again).
var oneSlots [64]struct {
	busy atomic.Bool
	pkts [1]*pipeline.Packet
	_    [48]byte // one cache line each: workers do not share them
}
