package conntrack

import (
	"sync"
	"time"
)

// The timer wheel: entries wait on the slot of the tick their expiry
// falls in (one timer for the table, not one per entry). A packet that
// extends an entry's life only stores the new expiry; when the slot comes
// round, an entry that is not due yet moves to the slot of its current
// expiry, one that is due is freed. Expiries beyond the wheel's span wait
// on its last slot and go round again. Lookups also treat an entry past
// its expiry as gone, so the wheel's granularity never lets a dead flow
// match.
const (
	wheelTick   = time.Second
	wheelSlots  = 1024
	wheelShards = 16 // by entry index: workers adding flows rarely share a lock
)

type wheel struct {
	shards [wheelShards]wheelShard
}

type wheelShard struct {
	mu    sync.Mutex
	last  int64 // the last tick processed
	slots [wheelSlots]uint32
	_     [64]byte
}

func (w *wheel) init(n int, now time.Time) {
	tk := now.UnixNano() / int64(wheelTick)
	for i := range w.shards {
		w.shards[i].last = tk
	}
}

// slotFor is the tick an entry expiring at exp waits for, after last.
func slotFor(exp, last int64) int64 {
	tk := (exp + int64(wheelTick) - 1) / int64(wheelTick)
	if tk <= last {
		tk = last + 1
	}
	if tk > last+wheelSlots-1 {
		tk = last + wheelSlots - 1
	}
	return tk
}

// link puts entry i on the slot of its expiry (shard locked).
func (s *wheelShard) link(t *Table, i uint32) {
	e := &t.entries[i]
	tk := slotFor(e.expires.Load(), s.last)
	slot := int32(tk % wheelSlots)
	e.wslot, e.wprev = slot, 0
	e.wnext.Store(s.slots[slot])
	if h := s.slots[slot]; h != 0 {
		t.entries[h-1].wprev = i + 1
	}
	s.slots[slot] = i + 1
	e.slotTick.Store(uint32(tk))
}

// unlink takes entry i off its slot (shard locked).
func (s *wheelShard) unlink(t *Table, i uint32) {
	e := &t.entries[i]
	if e.wslot < 0 {
		return
	}
	next := e.wnext.Load()
	if e.wprev != 0 {
		t.entries[e.wprev-1].wnext.Store(next)
	} else {
		s.slots[e.wslot] = next
	}
	if next != 0 {
		t.entries[next-1].wprev = e.wprev
	}
	e.wslot, e.wprev = -1, 0
	e.wnext.Store(0)
}

func (w *wheel) shard(i uint32) *wheelShard { return &w.shards[i%wheelShards] }

func (w *wheel) add(t *Table, i uint32) {
	s := w.shard(i)
	s.mu.Lock()
	s.link(t, i)
	s.mu.Unlock()
}

func (w *wheel) remove(t *Table, i uint32) {
	s := w.shard(i)
	s.mu.Lock()
	s.unlink(t, i)
	s.mu.Unlock()
}

// reschedule moves entry i to the slot of its current expiry.
func (w *wheel) reschedule(t *Table, i uint32) {
	s := w.shard(i)
	s.mu.Lock()
	if t.entries[i].wslot >= 0 {
		s.unlink(t, i)
		s.link(t, i)
	}
	s.mu.Unlock()
}

// advance processes every tick up to now.
func (w *wheel) advance(t *Table, now int64) {
	nowTick := now / int64(wheelTick)
	for si := range w.shards {
		s := &w.shards[si]
		s.mu.Lock()
		if nowTick-s.last > wheelSlots {
			s.last = nowTick - wheelSlots // every slot once
		}
		for s.last < nowTick {
			s.last++
			slot := s.last % wheelSlots
			for s.slots[slot] != 0 {
				i := s.slots[slot] - 1
				e := &t.entries[i]
				s.unlink(t, i)
				if e.expires.Load() > now {
					s.link(t, i) // not due: to its slot (never this one)
					continue
				}
				s.mu.Unlock()
				t.kill(i, t.st.Expired)
				s.mu.Lock()
			}
		}
		s.mu.Unlock()
	}
}
