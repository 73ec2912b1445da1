package pipeline_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

type always struct{}

func (always) Fields() pipeline.FieldSet                  { return pipeline.FieldOther }
func (always) Match(*pipeline.PacketContext) (bool, bool) { return true, false }
func (cont) Action(*pipeline.PacketContext) (pipeline.Verdict, int) {
	return pipeline.VerdictContinue, 0
}

type cont struct{}

type jumpTo struct {
	v  pipeline.Verdict
	to int
}

func (j jumpTo) Action(*pipeline.PacketContext) (pipeline.Verdict, int) { return j.v, j.to }
func (j jumpTo) JumpsTo() int                                           { return j.to }

// stealTable is a Forward table whose packets are stolen two jumps deep:
//
//	entry: e0 jump a; e1 (count)              policy accept
//	a:     a0 jump b; a1 (count)
//	b:     b0 [stealer, always] (count); b1 -> stealing target; b2 (count)
//	c:     c0 (count)                          (the answers' jump/goto target)
//
// counts[name] counts each rule's matches.
type stealTable struct {
	t       *pipeline.HookTable
	m, tgt  *filtertest.Stealer
	counts  map[string]*pipeline.Counter
	ordered []string
}

func newStealTable() *stealTable {
	st := &stealTable{m: new(filtertest.Stealer), tgt: new(filtertest.Stealer), counts: map[string]*pipeline.Counter{}}
	rule := func(name string, t pipeline.Target, ms ...pipeline.Matcher) pipeline.Rule {
		c := new(pipeline.Counter)
		st.counts[name] = c
		st.ordered = append(st.ordered, name)
		return pipeline.Rule{Matchers: ms, Target: t, Packets: c}
	}
	st.t = &pipeline.HookTable{Policy: pipeline.VerdictAccept, Chains: []pipeline.Chain{
		{Name: "entry", Rules: []pipeline.Rule{rule("e0", jumpTo{pipeline.VerdictJump, 1}), rule("e1", cont{})}},
		{Name: "a", Rules: []pipeline.Rule{rule("a0", jumpTo{pipeline.VerdictJump, 2}), rule("a1", cont{})}},
		{Name: "b", Rules: []pipeline.Rule{rule("b0", cont{}, st.m, always{}), rule("b1", st.tgt), rule("b2", cont{})}},
		{Name: "c", Rules: []pipeline.Rule{rule("c0", cont{})}},
	}}
	return st
}

// got lists the rules that counted, with their counts.
func (st *stealTable) got() string {
	s := ""
	for _, n := range st.ordered {
		if v := st.counts[n].Load(); v > 0 {
			s += fmt.Sprintf(" %s=%d", n, v)
		}
	}
	return s
}

func stealNode(t *testing.T, st *stealTable, opts pipeline.Options) *pt.Node {
	return pt.NewNodeWith(t, "router", routerYAML, opts, func(cfg *pipeline.Config) { cfg.Hooks[pipeline.Forward] = st.t })
}

// TestResumeAnswers: a packet stolen by a matcher two jumps deep, and then
// by a target, resumes with each answer exactly where it was stolen: the
// rules that counted and the packet's fate are the ones that answer
// means.
func TestResumeAnswers(t *testing.T) {
	V := pipeline.VerdictAnswer
	for _, tc := range []struct {
		name       string
		matcher    pipeline.Answer
		target     *pipeline.Answer // nil: the matcher's answer ends it
		rules      string
		forwarded  bool
		filterDrop uint64
	}{
		{"no-match/continue", pipeline.MatchAnswer(false, false), ptr(V(pipeline.VerdictContinue, 0)), " e0=1 e1=1 a0=1 a1=1 b1=1 b2=1", true, 0},
		{"match/continue", pipeline.MatchAnswer(true, false), ptr(V(pipeline.VerdictContinue, 0)), " e0=1 e1=1 a0=1 a1=1 b0=1 b1=1 b2=1", true, 0},
		{"hotdrop", pipeline.MatchAnswer(false, true), nil, " e0=1 a0=1", false, 1},
		{"match/accept", pipeline.MatchAnswer(true, false), ptr(V(pipeline.VerdictAccept, 0)), " e0=1 a0=1 b0=1 b1=1", true, 0},
		{"match/drop", pipeline.MatchAnswer(true, false), ptr(V(pipeline.VerdictDrop, 0)), " e0=1 a0=1 b0=1 b1=1", false, 1},
		{"match/return", pipeline.MatchAnswer(true, false), ptr(V(pipeline.VerdictReturn, 0)), " e0=1 e1=1 a0=1 a1=1 b0=1 b1=1", true, 0},
		{"match/jump", pipeline.MatchAnswer(true, false), ptr(V(pipeline.VerdictJump, 3)), " e0=1 e1=1 a0=1 a1=1 b0=1 b1=1 b2=1 c0=1", true, 0},
		{"match/goto", pipeline.MatchAnswer(true, false), ptr(V(pipeline.VerdictGoto, 3)), " e0=1 e1=1 a0=1 a1=1 b0=1 b1=1 c0=1", true, 0},
		{"match/jump-nowhere", pipeline.MatchAnswer(true, false), ptr(V(pipeline.VerdictJump, 9)), " e0=1 a0=1 b0=1 b1=1", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStealTable()
			r := stealNode(t, st, pipeline.Options{})
			a, b := r.Link(t, "a"), r.Link(t, "b")
			a.InjectFrames([][]byte{pt.UDP4("10.0.1.2", "10.0.2.2", 1000, 2000, 64, []byte("resumed"))})
			pkts := st.m.Take(nil)
			if len(pkts) != 1 || b.Pending() != 0 {
				t.Fatalf("matcher stole %d, %d sent", len(pkts), b.Pending())
			}
			r.Stack.Resume(pkts, []pipeline.Answer{tc.matcher})
			if pkts[0] != nil {
				t.Errorf("Resume left its slot set")
			}
			if tc.target != nil {
				pkts = st.tgt.Take(nil)
				if len(pkts) != 1 {
					t.Fatalf("target stole %d", len(pkts))
				}
				r.Stack.Resume(pkts, []pipeline.Answer{*tc.target})
			}
			if got := st.got(); got != tc.rules {
				t.Errorf("rules counted%s, want%s", got, tc.rules)
			}
			sent := pt.Drain(b)
			if tc.forwarded != (len(sent) == 1) {
				t.Errorf("%d packets forwarded, want forwarded=%v", len(sent), tc.forwarded)
			}
			if tc.forwarded && len(sent) == 1 {
				pt.CheckIPv4(t, sent[0], pt.SrcAddr("10.0.1.2"), pt.DstAddr("10.0.2.2"), pt.TTL(63))
			}
			r.WantCounters(t, "stack", map[string]uint64{"filter_drop_forward": tc.filterDrop, "resume_stale": 0, "resume_bad_answer": 0})
			if n := r.Stack.Generation(); n == nil {
				t.Fatal("no generation")
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestResumeAcrossReload: a packet stolen in one rule set resumes in it
// after a reload installed another (one that would drop it): the old rules
// finish its traversal, and the reload waits for the token, then stops
// the old generation.
func TestResumeAcrossReload(t *testing.T) {
	st := newStealTable()
	r := stealNode(t, st, pipeline.Options{})
	a, b := r.Link(t, "a"), r.Link(t, "b")
	a.InjectFrames([][]byte{pt.UDP4("10.0.1.2", "10.0.2.2", 1000, 2000, 64, []byte("resumed"))})
	pkts := st.m.Take(nil)
	if len(pkts) != 1 {
		t.Fatalf("stole %d", len(pkts))
	}
	old := r.Stack.Generation()
	cfg, err := pipeline.ParseConfig("router.yaml", []byte(routerYAML))
	if err != nil {
		t.Fatal(err)
	}
	dropAll := new(pipeline.Counter)
	cfg.Hooks[pipeline.Forward] = &pipeline.HookTable{Policy: pipeline.VerdictDrop,
		Chains: []pipeline.Chain{{Name: "new", Rules: []pipeline.Rule{{Target: cont{}, Packets: dropAll}}}}}
	done := make(chan error, 1)
	go func() {
		_, err := r.Stack.Apply(cfg)
		done <- err
	}()
	pt.Eventually(t, 5*time.Second, func() bool { return r.Stack.Generation() != old }, "the new generation was not swapped in")
	select {
	case err := <-done:
		t.Fatalf("the reload returned (%v) with a token of the old generation out", err)
	case <-time.After(50 * time.Millisecond):
	}
	r.Stack.Resume(pkts, []pipeline.Answer{pipeline.MatchAnswer(true, false)})
	pkts = st.tgt.Take(nil)
	if len(pkts) != 1 {
		t.Fatalf("the old rule set's target stole %d", len(pkts))
	}
	r.Stack.Resume(pkts, []pipeline.Answer{pipeline.VerdictAnswer(pipeline.VerdictContinue, 0)})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, want := st.got(), " e0=1 e1=1 a0=1 a1=1 b0=1 b1=1 b2=1"; got != want {
		t.Errorf("old rules counted%s, want%s", got, want)
	}
	if dropAll.Load() != 0 {
		t.Errorf("the new rule set ran on the resumed packet")
	}
	if sent := pt.Drain(b); len(sent) != 1 {
		t.Errorf("%d forwarded, want 1", len(sent))
	}
	// The new rule set is in force for new packets.
	a.InjectFrames([][]byte{pt.UDP4("10.0.1.2", "10.0.2.2", 1000, 2000, 64, []byte("new"))})
	if dropAll.Load() != 1 || b.Pending() != 0 {
		t.Errorf("new packet: new rules %d, sent %d", dropAll.Load(), b.Pending())
	}
}

// TestResumeStale: a token older than ResumeTimeout resumes nowhere (the
// packet is dropped under resume_stale) unless resumed with ResumeLate (a
// stealer that bounds its holding itself); a reload gives up on an
// unanswered token after ResumeTimeout, and resuming it later drops it
// too, ResumeLate or not. A packet without a token is dropped under
// resume_no_token.
func TestResumeStale(t *testing.T) {
	clk := pt.NewManualClock()
	st := newStealTable()
	r := stealNode(t, st, pipeline.Options{Clock: clk, ResumeTimeout: 100 * time.Millisecond})
	if r.Stack.ResumeTimeout() != 100*time.Millisecond || pipeline.New(pipeline.Options{}).ResumeTimeout() != time.Second {
		t.Errorf("ResumeTimeout %v, default %v", r.Stack.ResumeTimeout(), pipeline.New(pipeline.Options{}).ResumeTimeout())
	}
	a, b := r.Link(t, "a"), r.Link(t, "b")
	frame := pt.UDP4("10.0.1.2", "10.0.2.2", 1000, 2000, 64, []byte("late"))
	match := []pipeline.Answer{pipeline.MatchAnswer(true, false)}
	a.InjectFrames([][]byte{frame})
	pkts := st.m.Take(nil)
	clk.Advance(101 * time.Millisecond)
	r.Stack.Resume(pkts, match)
	r.WantCounters(t, "stack", map[string]uint64{"resume_stale": 1})
	if b.Pending() != 0 || st.counts["b0"].Load() != 0 {
		t.Errorf("a stale packet went on")
	}

	// ResumeLate: as late, it goes on (b0 matches, b1's target steals it
	// again, and accepts it later still).
	a.InjectFrames([][]byte{frame})
	pkts = st.m.Take(nil)
	clk.Advance(time.Second)
	r.Stack.ResumeLate(pkts, match)
	if pkts = st.tgt.Take(nil); len(pkts) != 1 || st.counts["b0"].Load() != 1 {
		t.Fatalf("resumed with ResumeLate: rule b0 %d, stolen again %d", st.counts["b0"].Load(), len(pkts))
	}
	clk.Advance(time.Second)
	r.Stack.ResumeLate(pkts, []pipeline.Answer{pipeline.VerdictAnswer(pipeline.VerdictAccept, 0)})
	r.WantCounters(t, "stack", map[string]uint64{"resume_stale": 1})
	if got := len(pt.Drain(b)); got != 1 {
		t.Fatalf("accepted with ResumeLate: %d forwarded", got)
	}

	// Across a reload that times out.
	a.InjectFrames([][]byte{frame, frame})
	pkts = st.m.Take(nil)
	cfg, err := pipeline.ParseConfig("router.yaml", []byte(routerYAML))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := r.Stack.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 5*time.Second {
		t.Errorf("the reload waited %v for the token, want its ResumeTimeout (100ms)", d)
	}
	r.Stack.Resume(pkts[:1], match)
	r.Stack.ResumeLate(pkts[1:], match)
	r.WantCounters(t, "stack", map[string]uint64{"resume_stale": 3})
	if b.Pending() != 0 {
		t.Errorf("a packet of a stopped generation went on")
	}

	// Without a token.
	p := r.Stack.Pool().Get(64)
	p.SetData(frame)
	r.Stack.Resume([]*pipeline.Packet{p}, []pipeline.Answer{{}})
	r.WantCounters(t, "stack", map[string]uint64{"resume_no_token": 1})
}

// TestStealFlushOncePerBatch: many packets stolen in one batch give the
// stealer one flush with all of them; resumed in one call, all go on.
func TestStealFlushOncePerBatch(t *testing.T) {
	st := newStealTable()
	r := stealNode(t, st, pipeline.Options{})
	a, b := r.Link(t, "a"), r.Link(t, "b")
	frames := make([][]byte, 64)
	for i := range frames {
		frames[i] = pt.UDP4("10.0.1.2", "10.0.2.2", uint16(1000+i), 2000, 64, []byte("batch"))
	}
	a.InjectFrames(frames)
	if f, last := st.m.Flushes(); f != 1 || last != 64 {
		t.Fatalf("%d flushes, the last of %d packets, want 1 of 64", f, last)
	}
	pkts := st.m.Take(nil)
	answers := make([]pipeline.Answer, len(pkts))
	for i := range answers {
		answers[i] = pipeline.MatchAnswer(true, false)
	}
	r.Stack.Resume(pkts, answers)
	// The resume's batch stole them all again, at the target: one flush.
	if f, last := st.tgt.Flushes(); f != 1 || last != 64 {
		t.Fatalf("target: %d flushes, the last of %d packets, want 1 of 64", f, last)
	}
	pkts = st.tgt.Take(nil)
	for i := range answers {
		answers[i] = pipeline.VerdictAnswer(pipeline.VerdictAccept, 0)
	}
	r.Stack.Resume(pkts, answers)
	if n := len(pt.Drain(b)); n != 64 {
		t.Errorf("%d forwarded, want 64", n)
	}
}

// countPolicy counts CountPolicy calls and what they counted.
type countPolicy struct {
	mu                    sync.Mutex
	calls, packets, bytes uint64
}

func (c *countPolicy) CountPolicy(_ *pipeline.Batch, packets, bytes uint64) {
	c.mu.Lock()
	c.calls++
	c.packets += packets
	c.bytes += bytes
	c.mu.Unlock()
}

// TestEmptyTableCountsPolicyPerBatch: a table without rules decides a
// whole batch by its policy, counted in one call for the hook run; with a
// rule, per packet, one call each.
func TestEmptyTableCountsPolicyPerBatch(t *testing.T) {
	frames := make([][]byte, 64)
	for i := range frames {
		frames[i] = pt.UDP4("10.0.1.2", "10.0.2.2", uint16(1000+i), 2000, 64, []byte("empty"))
	}
	n, size := uint64(len(frames)), uint64(len(frames[0]))
	for _, withRule := range []bool{false, true} {
		t.Run(fmt.Sprintf("rule=%v", withRule), func(t *testing.T) {
			pol := new(countPolicy)
			tb := &pipeline.HookTable{Policy: pipeline.VerdictAccept, PolicyCount: pol, Chains: []pipeline.Chain{{Name: "a"}}}
			if withRule {
				tb.Chains[0].Rules = []pipeline.Rule{{Target: cont{}}}
			}
			r := pt.NewNodeWith(t, "router", routerYAML, pipeline.Options{}, func(cfg *pipeline.Config) { cfg.Hooks[pipeline.Forward] = tb })
			a, b := r.Link(t, "a"), r.Link(t, "b")
			a.InjectFrames(frames)
			want := uint64(1)
			if withRule {
				want = n
			}
			if sent := len(pt.Drain(b)); pol.calls != want || pol.packets != n || pol.bytes != n*size || sent != len(frames) {
				t.Errorf("%d calls, %d packets, %d bytes, %d sent; want %d, %d, %d, %d", pol.calls, pol.packets, pol.bytes, sent, want, n, n*size, n)
			}
		})
	}
}

type acceptT struct{}

func (acceptT) Action(*pipeline.PacketContext) (pipeline.Verdict, int) {
	return pipeline.VerdictAccept, 0
}

// TestResumeFromFlush: a stealer may resume its batch from its flush: the
// packets go on at once, in a batch of their own.
func TestResumeFromFlush(t *testing.T) {
	m := new(filtertest.Stealer)
	var s *pipeline.Stack
	var buf []*pipeline.Packet
	var ans []pipeline.Answer
	m.Flushed = func(*pipeline.Batch) {
		buf = m.Take(buf[:0])
		ans = ans[:0]
		for range buf {
			ans = append(ans, pipeline.MatchAnswer(true, false))
		}
		s.Resume(buf, ans)
	}
	c := new(pipeline.Counter)
	tb := &pipeline.HookTable{Policy: pipeline.VerdictDrop, Chains: []pipeline.Chain{{Name: "entry", Rules: []pipeline.Rule{
		{Matchers: []pipeline.Matcher{m, always{}}, Target: acceptT{}, Packets: c},
	}}}}
	r := pt.NewNodeWith(t, "router", routerYAML, pipeline.Options{}, func(cfg *pipeline.Config) { cfg.Hooks[pipeline.Forward] = tb })
	s = r.Stack
	a, b := r.Link(t, "a"), r.Link(t, "b")
	frames := make([][]byte, 16)
	for i := range frames {
		frames[i] = pt.UDP4("10.0.1.2", "10.0.2.2", uint16(1000+i), 2000, 64, []byte("now"))
	}
	a.InjectFrames(frames)
	if n := len(pt.Drain(b)); n != len(frames) || c.Load() != uint64(len(frames)) {
		t.Errorf("%d forwarded, rule counted %d, want %d", n, c.Load(), len(frames))
	}
}

// TestResumeBadAnswers: a target's steal answered "stolen", and a packet
// with no answer, are dropped under resume_bad_answer, their tokens given
// back (a reload then does not wait for them).
func TestResumeBadAnswers(t *testing.T) {
	st := newStealTable()
	r := stealNode(t, st, pipeline.Options{ResumeTimeout: time.Minute})
	a, b := r.Link(t, "a"), r.Link(t, "b")
	frames := [][]byte{
		pt.UDP4("10.0.1.2", "10.0.2.2", 1000, 2000, 64, []byte("one")),
		pt.UDP4("10.0.1.2", "10.0.2.2", 1001, 2000, 64, []byte("two")),
	}
	a.InjectFrames(frames)
	pkts := st.m.Take(nil)
	r.Stack.Resume(pkts, []pipeline.Answer{pipeline.MatchAnswer(true, false), pipeline.MatchAnswer(true, false)})
	pkts = st.tgt.Take(nil)
	if len(pkts) != 2 {
		t.Fatalf("target stole %d", len(pkts))
	}
	r.Stack.Resume(pkts, []pipeline.Answer{pipeline.VerdictAnswer(pipeline.VerdictStolen, 0)})
	r.WantCounters(t, "stack", map[string]uint64{"resume_bad_answer": 2})
	if b.Pending() != 0 {
		t.Errorf("%d sent", b.Pending())
	}
	cfg, err := pipeline.ParseConfig("router.yaml", []byte(routerYAML))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := r.Stack.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the reload waited %v: a token was not given back", d)
	}
}
