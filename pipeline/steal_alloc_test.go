//go:build !race

package pipeline_test

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestStealResumeZeroAllocs proves exactly that stealing and resuming
// allocate nothing per packet once warm: each 64-packet batch is stolen by
// a matcher two jumps deep (one flush), resumed with "match", stolen again
// by the rule's target, resumed with "accept" and forwarded; 12,800
// packets in one CountMallocs window must make no allocation.
func TestStealResumeZeroAllocs(t *testing.T) {
	st := newStealTable()
	r := stealNode(t, st, pipeline.Options{})
	a, b := r.Link(t, "a"), r.Link(t, "b")
	frames := make([][]byte, 64)
	for i := range frames {
		frames[i] = pt.UDP4("10.0.1.2", "10.0.2.2", uint16(1000+i), 2000, 64, []byte("resumed"))
	}
	match := make([]pipeline.Answer, len(frames))
	accept := make([]pipeline.Answer, len(frames))
	for i := range frames {
		match[i] = pipeline.MatchAnswer(true, false)
		accept[i] = pipeline.VerdictAnswer(pipeline.VerdictAccept, 0)
	}
	held := make([]*pipeline.Packet, 0, len(frames))
	out := make([]*pipeline.Packet, len(frames))
	run := func(batches int) {
		for i := 0; i < batches; i++ {
			a.InjectFrames(frames)
			held = st.m.Take(held[:0])
			if len(held) != len(frames) {
				t.Fatalf("matcher stole %d of %d", len(held), len(frames))
			}
			r.Stack.Resume(held, match)
			held = st.tgt.Take(held[:0])
			if len(held) != len(frames) {
				t.Fatalf("target stole %d of %d", len(held), len(frames))
			}
			r.Stack.Resume(held, accept)
			if k := b.Read(out); k != len(frames) {
				t.Fatalf("forwarded %d of %d (%s)", k, len(frames), r.DumpCounters())
			}
			pipeline.ReleaseBatch(out)
		}
	}
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	run(100)
	const batches = 200
	if m := pt.CountMallocs(func() { run(batches) }); m != 0 {
		t.Fatalf("%d mallocs over %d stolen and resumed packets, want 0", m, batches*len(frames))
	}
}
