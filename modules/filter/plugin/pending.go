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
// batch's flight for the running version; stealNone when no version runs
// (the caller applies the policy at once).
func (p *Plugin) steal(pc *pipeline.PacketContext, kind sdk.Kind, tag uint32) (stealResult, sdk.Answer) {
	in := p.cur.Load()
	if in == nil || in.dead.Load() || pc.Batch == nil {
		p.count(failUnavailable, 1)
		return stealNone, 0
	}
	pe := p.pendingFor(pc.Batch.Shard())
	tracked := false
	var ct, meta uint64
	if c := in.cache; c != nil && pc.Pkt.ConnTrack != 0 {
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
			pc.Batch.OnFinish(p) // the figures
			return stealJudged, a
		}
		pe.misses++
		tracked = r == cacheTracked
	}
	if pe.inst != in {
		if pe.inst != nil {
			pe.submit(p.sink) // built for a version replaced meanwhile
		}
		pe.inst = in
		pe.flights = make([]*flight, len(in.lanes))
	}
	li := in.laneIndex(&pc.Tuple)
	f := pe.flights[li]
	if f == nil {
		f = in.lanes[li].newFlight()
		pe.flights[li] = f
	}
	in.lanes[li].add(f, pc, kind, tag)
	if tracked {
		it := &f.items[len(f.items)-1]
		it.tracked, it.ct, it.cmeta = true, ct, meta
	}
	if len(f.items) >= in.cfg.MaxBatch {
		pe.full = append(pe.full, f)
		pe.flights[li] = nil
	}
	pc.Batch.OnFinish(p)
	return stealStolen, 0
}

// FlushBatch implements pipeline.BatchFlusher: the batch finished; its
// flights go to their lanes (one message per lane used), its cache
// figures to the counters.
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
