package plugin

import (
	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
	"github.com/pipestack/pipestack/pipeline"
)

// pending is one batch context's flights of one plugin, built while the
// batch's rules steal packets and submitted when it finishes: the core
// writes a packet's resume token after the steal returns, so no stolen
// packet may reach another goroutine before the batch's flush.
type pending struct {
	flights []*flight // open, one per lane index (nil: none)
	full    []*flight // split off at maxBatch, submitted with the rest
	inst    *instance // the version the open flights were built for
	// held: the batch holds inst (instance.open) from its first steal to
	// its flush. Every packet of one batch goes to the version it started
	// with, and a replaced version drains only once no batch holds it: a
	// packet stolen for a version replaced before its batch flushed is
	// still judged by that version (the new one's answers wait for it).
	held bool

	// The verdict cache's figures of this batch context (its goroutine's
	// alone), added to the plugin's counters when the batch finishes.
	hits, misses, drops uint64
}

// pendingFor returns the pending flights of a batch context (a Batch is
// used by one goroutine at a time, so its entry is too).
func (p *Plugin) pendingFor(shard int) *pending {
	if t := p.pend.Load(); t != nil && shard < len(*t) {
		if pe := (*t)[shard]; pe != nil {
			return pe
		}
	}
	p.pendMu.Lock()
	defer p.pendMu.Unlock()
	var cur []*pending
	if t := p.pend.Load(); t != nil {
		cur = *t
	}
	if shard < len(cur) && cur[shard] != nil {
		return cur[shard]
	}
	next := make([]*pending, max(len(cur), shard+1))
	copy(next, cur)
	pe := &pending{}
	next[shard] = pe
	p.pend.Store(&next)
	return pe
}

// stealResult is what steal did with a packet.
type stealResult uint8

const (
	stealNone   stealResult = iota // no running version: the caller applies the policy
	stealStolen                    // the packet waits for the plugin's answer
	stealJudged                    // judged from the verdict cache: the answer is returned
)

// steal judges pc's packet from the verdict cache, or adds it to its
// batch's flight for the version its batch holds; stealNone when no version
// runs (the caller applies the policy at once).
func (p *Plugin) steal(pc *pipeline.PacketContext, kind sdk.Kind, tag uint32) (stealResult, sdk.Answer) {
	if pc.Batch == nil {
		p.count(failUnavailable, 1)
		return stealNone, 0
	}
	pe := p.pendingFor(pc.Batch.Shard())
	in := pe.inst
	if !pe.held {
		if in = p.hold(pe, pc.Batch); in == nil {
			p.count(failUnavailable, 1)
			return stealNone, 0
		}
	}
	if in.dead.Load() {
		p.count(failUnavailable, 1)
		return stealNone, 0
	}
	tracked := false
	var ct, meta uint64
	if c := in.cache; c != nil {
		// Every packet of a cacheable question is a hit or a miss: a
		// miss is one the plugin judges (no entry yet, expired, the flow's
		// earlier packet still on its way, or no conntrack entry at all).
		if pc.Pkt.ConnTrack != 0 {
			ct, meta = pc.Pkt.ConnTrack, cacheMeta(pc, kind, tag)
			r, a, setMark, mark := c.lookup(ct, meta, pc.Batch.Now.UnixNano())
			if r == cacheHit {
				pe.hits++
				if (kind == sdk.KindTarget && a == sdk.Drop) || (kind == sdk.KindMatch && a == sdk.Hotdrop) {
					pe.drops++
				}
				if setMark && kind == sdk.KindTarget {
					pc.Pkt.Mark = mark
				}
				return stealJudged, a
			}
			tracked = r == cacheTracked
		}
		pe.misses++
	}
	li := in.laneIndex(&pc.Tuple)
	f := pe.flights[li]
	if f == nil {
		f = in.lanes[li].newFlight()
		pe.flights[li] = f
	}
	in.lanes[li].add(f, pc, kind, tag)
	if stealHook != nil {
		stealHook()
	}
	if tracked {
		it := &f.items[len(f.items)-1]
		it.tracked, it.ct, it.cmeta = true, ct, meta
	}
	if len(f.items) >= in.cfg.MaxBatch {
		pe.full = append(pe.full, f)
		pe.flights[li] = nil
	}
	return stealStolen, 0
}

// stealHook, when set (tests), runs after a packet joined its flight.
var stealHook func()

// hold makes the batch hold the running version until it flushes (nil:
// none runs). The version is counted (open) before draining is looked at,
// and a drain sets draining before it looks at open (both sequentially
// consistent): either the drain sees this batch, or this batch sees the
// drain and takes the version that replaced it.
func (p *Plugin) hold(pe *pending, b *pipeline.Batch) *instance {
	for range 8 {
		in := p.cur.Load()
		if in == nil {
			return nil
		}
		in.open.Add(1)
		if in.draining.Load() {
			in.open.Add(-1) // replaced (or stopped) meanwhile: cur moved on
			continue
		}
		if pe.inst != in {
			pe.inst = in
			if len(pe.flights) != len(in.lanes) {
				pe.flights = make([]*flight, len(in.lanes))
			}
		}
		pe.held = true
		b.OnFinish(p)
		return in
	}
	return nil
}

// FlushBatch implements pipeline.BatchFlusher: the batch finished; its
// flights go to their lanes (one message per lane used), its cache
// figures to the counters, and it lets go of its version.
func (p *Plugin) FlushBatch(b *pipeline.Batch) {
	pe := p.pendingFor(b.Shard())
	if pe.hits|pe.misses != 0 {
		p.cacheHits.Add(pe.hits)
		p.cacheMisses.Add(pe.misses)
		if pe.drops > 0 {
			p.counters.Get("verdict_drop_packets").Add(pe.drops)
		}
		pe.hits, pe.misses, pe.drops = 0, 0, 0
	}
	pe.submit(p.sink)
	if pe.held {
		pe.held = false
		pe.inst.open.Add(-1)
	}
}

// submit hands every flight to its lane.
func (pe *pending) submit(s sink) {
	for i, f := range pe.full {
		f.lane.submit(f, s)
		pe.full[i] = nil
	}
	pe.full = pe.full[:0]
	for i, f := range pe.flights {
		if f != nil {
			f.lane.submit(f, s)
			pe.flights[i] = nil
		}
	}
}

var _ pipeline.BatchFlusher = (*Plugin)(nil)
