package conntrack

import (
	"sync"

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
// The one-packet slice comes from a pool: no allocation per datagram.
func continueDatagram(b *pipeline.Batch, ep pipeline.NetworkEndpoint, out *pipeline.Packet) {
	one := onePool.Get().(*[1]*pipeline.Packet)
	one[0] = out
	if hr, ok := ep.(pipeline.HookResumer); ok {
		b.RunHook(pipeline.Prerouting, one[:])
		hr.ResumeAfter(b, pipeline.Prerouting, one[:])
	} else {
		ep.HandlePackets(b, one[:])
	}
	one[0] = nil
	onePool.Put(one)
}

var onePool = sync.Pool{New: func() any { return new([1]*pipeline.Packet) }}
