package reasm_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/internal/reasm"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// A toy family: a fragment's data is its whole packet; datagram keys are
// numbers, and the source of key k is k/10.
type rig struct {
	r     *reasm.Reassembler[int, int, struct{}]
	c     reasm.Counters
	clock *pt.ManualClock
	lim   reasm.Limits
}

func newRig(t *testing.T, lim reasm.Limits) *rig {
	g := &rig{clock: pt.NewManualClock(), lim: lim}
	g.c = reasm.NewCounters(new(pipeline.Context).Counters("test"))
	g.r = reasm.New(reasm.Family[int, int, struct{}]{
		Source: func(k int) int { return k / 10 },
		Build: func(pool *pipeline.Pool, frags []reasm.Fragment[struct{}], end int) *pipeline.Packet {
			out := pool.Get(end)
			buf, _ := out.Append(end)
			for _, f := range frags {
				copy(buf[f.Off:], f.Pkt.Data())
			}
			return out
		},
	}, g.clock, nil, pipeline.DefaultPool, &g.c)
	t.Cleanup(func() { g.r.Close() })
	return g
}

func (g *rig) add(key, off int, data string, more bool) *pipeline.Packet {
	p := pipeline.DefaultPool.Get(len(data))
	b, _ := p.Append(len(data))
	copy(b, data)
	return g.r.Add(nil, g.clock.Now(), key, reasm.Fragment[struct{}]{Pkt: p, Off: off, End: off + len(data)}, more, &g.lim)
}

func TestReassemble(t *testing.T) {
	g := newRig(t, reasm.Limits{Timeout: time.Second, MaxMemory: 1 << 20, PerSource: 1 << 20})
	if g.add(1, 8, "ijklmnop", false) != nil {
		t.Fatal("one fragment completed a datagram")
	}
	if out := g.add(1, 0, "abcdefgh", true); out == nil || !bytes.Equal(out.Data(), []byte("abcdefghijklmnop")) {
		t.Fatalf("reassembled %v", out)
	} else {
		out.Release()
	}
	g.add(2, 8, "ijkl", false)
	g.add(2, 8, "ijkl", false) // duplicate
	out := g.add(2, 0, "abcdefgh", true)
	if out == nil || !bytes.Equal(out.Data(), []byte("abcdefghijkl")) {
		t.Fatalf("reassembled %v", out)
	}
	out.Release()
	g.add(3, 0, "abcdefgh", true)
	g.add(3, 4, "xxxxxxxx", false) // overlap: the datagram dies
	if g.add(3, 8, "ijkl", false) != nil || g.c.Overlap.Load() != 1 || g.c.Discarded.Load() != 1 || g.c.Duplicate.Load() != 1 {
		t.Errorf("overlap %d discarded %d duplicate %d", g.c.Overlap.Load(), g.c.Discarded.Load(), g.c.Duplicate.Load())
	}
	g.clock.Advance(2 * time.Second)
	if b, q := g.r.Memory(); b != 0 || q != 0 {
		t.Errorf("after the timeout: %d bytes in %d datagrams", b, q)
	}
}

// A source over its share evicts its own oldest datagram; at the global
// limit the biggest source pays, never the datagram of the fragment.
func TestFairness(t *testing.T) {
	g := newRig(t, reasm.Limits{Timeout: time.Minute, MaxMemory: 1 << 20, PerSource: 1 << 20})
	one := g.add(1, 0, "abcdefgh", true) // source 0: a legitimate datagram in progress
	if one != nil {
		t.Fatal("completed early")
	}
	mem, _ := g.r.Memory()
	g.lim.MaxMemory = 4 * mem
	for k := 10; k < 20; k++ { // source 1 floods
		g.add(k, 0, "abcdefgh", true)
	}
	if g.c.Evicted.Load() == 0 {
		t.Fatal("no eviction at the global limit")
	}
	out := g.add(1, 8, "ijkl", false)
	if out == nil {
		t.Fatalf("the smaller source's datagram was evicted (evicted %d)", g.c.Evicted.Load())
	}
	out.Release()
	g.lim.PerSource = 2 * mem
	for k := 20; k < 25; k++ {
		g.add(k, 0, "abcdefgh", true)
	}
	if g.c.SourceLimit.Load() == 0 {
		t.Error("no eviction at the source limit")
	}
}
