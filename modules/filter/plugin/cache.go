package plugin

import (
	"sync"
	"time"

	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
	"github.com/pipestack/pipestack/pipeline"
)

// This file is the per-flow verdict cache. A plugin that allows it
// (ConfigureResponse.cache_ttl_ms > 0) has its answers reused for later
// packets of the same flow: the key is the packet's conntrack entry
// (Packet.ConnTrack: index and generation, so a freed and reused entry
// never finds another flow's answer), its direction (CTReply) and the rule's
// question (kind, tag, hook). A hit judges the packet at its rule without
// stealing it: no round trip. The cache belongs to one version of the
// plugin (instance): a replaced or restarted plugin starts with an empty
// one. An answer expires ttl after the plugin gave it, on the stack clock
// (the batch's Now).
//
// Order: a flow's packet is judged from the cache only when none of that
// flow's packets (for that rule) is on its way to the plugin; otherwise it
// is stolen too and queued behind them. busy counts those in flight; it
// goes down once their answers have resumed them, so a cached packet never
// overtakes one of its flow still waiting.
//
// The table is direct-mapped (a flow whose slot another busy flow holds is
// simply not cached), fixed in size and preallocated: no allocation per
// packet. Each slot has its own lock (uncontended unless two workers judge
// the same slot at once).

// cacheSlots is the cache's size per plugin version (a power of two).
const cacheSlots = 1 << 14

type cslot struct {
	mu     sync.Mutex
	key    uint64 // Packet.ConnTrack (0: empty)
	meta   uint64 // question (cacheMeta)
	busy   int32  // packets of this key on their way to the plugin
	valid  bool   // answer holds a verdict until exp
	setMk  bool
	answer sdk.Answer
	mark   uint32
	exp    int64 // stack clock, UnixNano
}

type verdictCache struct {
	ttl   time.Duration
	slots []cslot
}

func newVerdictCache(ttl time.Duration) *verdictCache {
	return &verdictCache{ttl: ttl, slots: make([]cslot, cacheSlots)}
}

// cacheMeta is the rule's question and the packet's direction.
func cacheMeta(pc *pipeline.PacketContext, kind sdk.Kind, tag uint32) uint64 {
	return uint64(tag)<<32 | uint64(pc.Hook)<<16 | uint64(kind)<<8 | uint64(pc.Pkt.CTInfo&pipeline.CTReply)
}

func (c *verdictCache) slot(key, meta uint64) *cslot {
	h := (key ^ meta*0xff51afd7ed558ccd) * 0x9e3779b97f4a7c15
	return &c.slots[h>>(64-14)]
}

// cached is the outcome of a lookup.
type cached uint8

const (
	cacheMiss    cached = iota // steal, not tracked (slot held by another busy flow)
	cacheTracked               // steal; the answer fills the slot
	cacheHit                   // judged: answer, mark
)

// lookup returns a live answer for (key, meta) when nothing of the flow is
// in flight; otherwise the packet will be stolen and, when the slot could
// be claimed, counted as in flight (cacheTracked).
func (c *verdictCache) lookup(key, meta uint64, now int64) (r cached, a sdk.Answer, setMark bool, mark uint32) {
	s := c.slot(key, meta)
	s.mu.Lock()
	switch {
	case s.key == key && s.meta == meta:
		if s.busy == 0 && s.valid && now < s.exp {
			r, a, setMark, mark = cacheHit, s.answer, s.setMk, s.mark
		} else {
			s.busy++
			r = cacheTracked
		}
	case s.busy == 0:
		s.key, s.meta, s.busy, s.valid = key, meta, 1, false
		r = cacheTracked
	}
	s.mu.Unlock()
	return
}

// done records a tracked packet's answer (ok: the plugin's, to be kept
// until ttl from now) once the packet was resumed with it; !ok (the
// failure policy, a rewrite) keeps nothing.
func (c *verdictCache) done(key, meta uint64, ok bool, a sdk.Answer, setMark bool, mark uint32, now int64) {
	s := c.slot(key, meta)
	s.mu.Lock()
	if s.key == key && s.meta == meta {
		if s.busy > 0 {
			s.busy--
		}
		if ok {
			s.valid, s.answer, s.setMk, s.mark, s.exp = true, a, setMark, mark, now+int64(c.ttl)
		}
	}
	s.mu.Unlock()
}
