package plugin

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestTargetVerdicts: a plugin target drops what the plugin drops, the
// rest is forwarded, the mark and the rewrite the plugin returns are
// applied, and each packet crosses once (protocol versions 1 and 2).
func TestTargetVerdicts(t *testing.T) {
	for _, v := range sdk.ProtocolVersions {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) { testTargetVerdicts(t, v) })
	}
}

func testTargetVerdicts(t *testing.T, proto int) {
	f := &fake{proto: proto, needs: sdk.Needs{Data: sdk.DataPacket, SetMark: true}}
	var judged atomic.Int64
	f.judge = func(_ int, cfg map[string]any, b *sdk.Batch, out *sdk.Results) {
		block := uint16(cfg["block"].(float64))
		for i := range b.Len() {
			p := b.Packet(i)
			judged.Add(1)
			if p.Kind() != sdk.KindTarget || p.Hook() != sdk.Forward || p.InLink() != "a" || p.OutLink() != "b" || p.Proto() != 17 || len(p.Data()) != p.Len() {
				t.Errorf("packet %+v", p)
			}
			if p.DstPort() == block {
				out.Answers[i] = sdk.Drop
			} else {
				out.Answers[i] = sdk.Accept
				out.SetMark(i, 7)
			}
		}
	}
	f.install(t)
	n := newRouter(t, `  - {name: blk, path: /bin/true, timeout: 2s, config: {block: 53}}`)
	a, b := n.Link(t, "a"), n.Link(t, "b")
	var frames [][]byte
	for i := 0; i < 40; i++ {
		port := uint16(80)
		if i%2 == 0 {
			port = 53
		}
		frames = append(frames, udp(0, port, uint32(i)))
	}
	a.InjectFrames(frames)
	var got [][]byte
	waitFor(t, "20 forwarded", func() bool { got = append(got, pt.Drain(b)...); return len(got) >= 20 })
	time.Sleep(20 * time.Millisecond)
	got = append(got, pt.Drain(b)...)
	if len(got) != 20 || judged.Load() != 40 {
		t.Fatalf("forwarded %d (want 20), judged %d (want 40)", len(got), judged.Load())
	}
	for i, g := range got {
		if _, seq := seqOf(g); seq != uint32(2*i+1) {
			t.Fatalf("packet %d has seq %d: out of order or a blocked one passed", i, seq)
		}
	}
	st := Plugins(n.Stack)
	if len(st) != 1 || st[0].Packets != 40 || st[0].Batches == 0 || st[0].State != "running" || st[0].Version != "v1" {
		t.Fatalf("status %+v", st)
	}
	if c := n.Counter("plugin_blk", "verdict_drop_packets"); c != 20 {
		t.Fatalf("verdict_drop_packets %d", c)
	}
}

// TestTimeoutAppliesPolicy: a plugin slower than the deadline: every packet
// gets on_failure (drop) within the deadline, counted; the late answers are
// dropped and the packets are not judged twice.
func TestTimeoutAppliesPolicy(t *testing.T) {
	for _, policy := range []string{"drop", "accept"} {
		t.Run(policy, func(t *testing.T) {
			f := &fake{}
			release := make(chan struct{})
			f.judge = func(_ int, _ map[string]any, b *sdk.Batch, out *sdk.Results) {
				<-release
				for i := range out.Answers {
					out.Answers[i] = sdk.Accept
				}
			}
			f.install(t)
			defer close(release)
			n := newRouter(t, `  - {name: blk, path: /bin/true, timeout: 30ms, on_failure: `+policy+`}`)
			a, b := n.Link(t, "a"), n.Link(t, "b")
			start := time.Now()
			var frames [][]byte
			for i := 0; i < 10; i++ {
				frames = append(frames, udp(0, 80, uint32(i)))
			}
			a.InjectFrames(frames)
			waitFor(t, "policy applied", func() bool { return n.Counter("plugin_blk", "policy_"+policy+"_packets") == 10 })
			if d := time.Since(start); d < 30*time.Millisecond || d > 2*time.Second {
				t.Errorf("policy applied after %v (deadline 30ms)", d)
			}
			// The counter moves when the policy is decided; the accepted
			// packets are resumed and forwarded just after, so wait for them.
			got := 0
			if policy == "accept" {
				waitFor(t, "the accepted packets forwarded", func() bool { got += len(pt.Drain(b)); return got >= 10 })
			}
			if got += len(pt.Drain(b)); policy == "accept" && got != 10 || policy == "drop" && got != 0 {
				t.Fatalf("%s: %d forwarded", policy, got)
			}
			if n.Counter("plugin_blk", "timeouts") == 0 || n.Counter("plugin_blk", "timeout_packets") != 10 {
				t.Fatalf("timeouts %d, packets %d", n.Counter("plugin_blk", "timeouts"), n.Counter("plugin_blk", "timeout_packets"))
			}
		})
	}
}

// TestTimeoutWithinResumeBound: a timeout: the stack's resume bound cannot
// hold (with the drain a replaced version gets) is refused at validation,
// at its line, naming the plugin and the largest deadline that fits.
func TestTimeoutWithinResumeBound(t *testing.T) {
	(&fake{judge: func(int, map[string]any, *sdk.Batch, *sdk.Results) {}}).install(t)
	opts := pipeline.Options{ResumeTimeout: 500 * time.Millisecond}
	for _, tc := range []struct{ decl, err string }{
		{"  - {name: blk, path: /bin/true, timeout: 2s, on_failure: accept}", "r.yaml:10:43: plugins (plugin blk): timeout 2s does not fit in the stack's resume bound (500ms)"},
		{"  - {name: blk, path: /bin/true, timeout: 451ms}", "r.yaml:10:43: plugins (plugin blk): timeout 451ms does not fit in the stack's resume bound (500ms): a reload drops the packets still waiting for the plugin's answer or its on_failure after that long, so the deadline (plus the 50ms a replaced version gets to drain) must be at most 450ms"},
		{"  - {name: blk, path: /bin/true, timeout: 450ms}", ""},
		{"  - {name: blk, path: /bin/true}", ""}, // the default deadline, 20ms
	} {
		cfg, err := pipeline.ParseConfig("r.yaml", []byte(routerConfig(tc.decl)))
		if err != nil {
			t.Fatal(err)
		}
		st := pipeline.New(opts)
		_, err = st.Apply(cfg)
		st.Close()
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.err)) {
			t.Errorf("%s:\n got %v\nwant %s", tc.decl, err, cmp.Or(tc.err, "no error"))
		}
	}
	// pipectl validate checks with the default bound, 1 s.
	cfg, _ := pipeline.ParseConfig("r.yaml", []byte(routerConfig("  - {name: blk, path: /bin/true, timeout: 1s}")))
	if err := pipeline.Check(cfg); err == nil || !strings.Contains(err.Error(), "at most 950ms") {
		t.Errorf("Check: %v", err)
	}
}

// TestPolicyAfterResumeBound: with window 1 and a plugin that answers
// nothing, flights wait for a slot one deadline after another, so the
// third's packets are older than the stack's resume bound when their
// deadline passes: on_failure accept still accepts them (they are not
// dropped as stack.resume_stale), in order.
func TestPolicyAfterResumeBound(t *testing.T) {
	f := &fake{}
	release := make(chan struct{})
	f.judge = func(_ int, _ map[string]any, b *sdk.Batch, out *sdk.Results) { <-release }
	f.install(t)
	defer close(release)
	const deadline = 100 * time.Millisecond
	clk := pipeline.NewManualClock(time.Unix(1e9, 0))
	n := pt.NewNode(t, "r", routerConfig(`  - {name: blk, path: /bin/true, window: 1, lanes: 1, timeout: 100ms, on_failure: accept}`),
		pipeline.Options{Clock: clk, ResumeTimeout: minResumeTimeout(deadline)})
	a, b := n.Link(t, "a"), n.Link(t, "b")
	for i := range 3 { // three batches: one flight sent, two wait
		a.InjectFrames([][]byte{udp(0, 80, uint32(i))})
	}
	for range 3 {
		clk.Advance(deadline) // the oldest flight fails; the next is sent
	}
	var got [][]byte
	waitFor(t, "three accepted", func() bool { got = append(got, pt.Drain(b)...); return len(got) >= 3 })
	for i, g := range got {
		if _, seq := seqOf(g); seq != uint32(i) {
			t.Fatalf("got seq %d at %d", seq, i)
		}
	}
	if n.Counter("stack", "resume_stale") != 0 || n.Counter("plugin_blk", "policy_accept_packets") != 3 || n.Counter("plugin_blk", "timeout_packets") != 3 {
		t.Fatalf("forwarded %d\n%s", len(got), n.DumpCounters())
	}
}

// TestLateAnswerApplied: a flight that waited for a window slot is
// answered after the stack's resume bound (but within its own deadline):
// the plugin's answer applies (accept, where on_failure is drop), it is
// not dropped as stack.resume_stale.
func TestLateAnswerApplied(t *testing.T) {
	f := &fake{}
	release, judging := make(chan struct{}), make(chan struct{}, 4)
	var once sync.Once
	f.judge = func(_ int, _ map[string]any, b *sdk.Batch, out *sdk.Results) {
		judging <- struct{}{}
		once.Do(func() { <-release }) // the first flight: answered after its deadline
		for i := range out.Answers {
			out.Answers[i] = sdk.Accept
		}
	}
	f.install(t)
	const deadline = 100 * time.Millisecond
	clk := pipeline.NewManualClock(time.Unix(1e9, 0))
	n := pt.NewNode(t, "r", routerConfig(`  - {name: blk, path: /bin/true, window: 1, lanes: 1, timeout: 100ms, on_failure: drop}`),
		pipeline.Options{Clock: clk, ResumeTimeout: minResumeTimeout(deadline)})
	a, b := n.Link(t, "a"), n.Link(t, "b")
	a.InjectFrames([][]byte{udp(0, 80, 0)}) // sent
	a.InjectFrames([][]byte{udp(0, 80, 1)}) // waits for the slot
	<-judging
	clk.Advance(deadline)          // the first fails (drop), the second is sent
	clk.Advance(deadline * 9 / 10) // older than the resume bound, within its deadline
	close(release)
	var got [][]byte
	waitFor(t, "the second answered", func() bool { got = append(got, pt.Drain(b)...); return len(got) >= 1 })
	time.Sleep(20 * time.Millisecond)
	if got = append(got, pt.Drain(b)...); len(got) != 1 || n.Counter("stack", "resume_stale") != 0 || n.Counter("plugin_blk", "policy_drop_packets") != 1 {
		t.Fatalf("forwarded %d\n%s", len(got), n.DumpCounters())
	}
	if _, seq := seqOf(got[0]); seq != 1 {
		t.Fatalf("forwarded seq %d", seq)
	}
	if st := Plugins(n.Stack)[0]; st.Late != 1 {
		t.Fatalf("late answers %d", st.Late)
	}
}

// TestWindowFull: with window 1 and a plugin that holds the first flight,
// a second flight waits for the slot (bounded: max_batch packets wait), a
// third gets the policy at once (window_full); the worker does not wait,
// and the waiting flight goes when the first is answered, in order.
func TestWindowFull(t *testing.T) {
	f := &fake{}
	release := make(chan struct{})
	var once sync.Once
	f.judge = func(_ int, _ map[string]any, b *sdk.Batch, out *sdk.Results) {
		once.Do(func() { <-release })
		for i := range out.Answers {
			out.Answers[i] = sdk.Accept
		}
	}
	f.install(t)
	n := newRouter(t, `  - {name: blk, path: /bin/true, window: 1, lanes: 1, max_batch: 4, timeout: 2s, on_failure: drop}`)
	a, b := n.Link(t, "a"), n.Link(t, "b")
	var frames [][]byte
	for i := 0; i < 12; i++ {
		frames = append(frames, udp(0, 80, uint32(i)))
	}
	start := time.Now()
	a.InjectFrames(frames) // three flights of 4: one sent, one waits, one refused
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the worker waited %v", d)
	}
	if c := n.Counter("plugin_blk", "window_full_packets"); c != 4 {
		t.Fatalf("window_full_packets %d, want 4", c)
	}
	close(release)
	var got [][]byte
	waitFor(t, "two flights answered", func() bool { got = append(got, pt.Drain(b)...); return len(got) == 8 })
	for i, g := range got {
		if _, seq := seqOf(g); seq != uint32(i) {
			t.Fatalf("got seq %d at %d", seq, i)
		}
	}
}

// TestReplaceUnderTraffic: two workers send constant traffic while a reload
// changes the plugin's config: the new version starts, is configured and
// health-checked, takes the new batches; the old one answers what it held.
// No packet is lost, each is judged by exactly one version, and each
// flow's packets leave in order (the new version's answers wait until the
// old one handed back its own). The reload happens while a worker is in
// the middle of a batch that stole packets for the old version (stealHook
// holds it there): those packets are judged by the old version, which
// drains only once that batch flushed — none gets the failure policy.
func TestReplaceUnderTraffic(t *testing.T) {
	var armed, quiet atomic.Bool
	paused, release := make(chan struct{}), make(chan struct{})
	stealHook = func() {
		if armed.CompareAndSwap(true, false) {
			close(paused)
			<-release
		}
	}
	t.Cleanup(func() { stealHook = nil })
	f := &fake{}
	var mu sync.Mutex
	judgedBy := map[[2]uint32]int{} // (flow, seq) → version
	twice := 0
	f.needs = sdk.Needs{Data: sdk.DataPacket}
	f.judge = func(v int, _ map[string]any, b *sdk.Batch, out *sdk.Results) {
		mu.Lock()
		defer mu.Unlock()
		for i := range b.Len() {
			p := b.Packet(i)
			fl, seq := seqOf(p.Data())
			k := [2]uint32{uint32(fl), seq}
			if _, dup := judgedBy[k]; dup {
				twice++
			}
			judgedBy[k] = v
			out.Answers[i] = sdk.Accept
		}
	}
	f.install(t)
	// Nothing may get the failure policy, so the deadline must outlast a
	// round trip on a loaded machine: at load 44 under -race, 2 runs in 60
	// had one of 2.2 s (its answer came 1.5 ms after the deadline, seconds
	// after the reload). The stack's resume bound is the one that deadline
	// needs (minResumeTimeout); with a bound shorter than the deadline,
	// answers after 1 s were dropped as resume_stale (4 of 20 runs at load
	// 40 under -race, before Stack.ResumeLate and the check of the bound).
	const deadline = 5 * time.Second
	decl := func(c int) string {
		return fmt.Sprintf("  - {name: blk, path: /bin/true, timeout: %v, window: 64, config: {gen: %d}}", deadline, c)
	}
	n := pt.NewNode(t, "r", routerConfig(decl(1)), pipeline.Options{ResumeTimeout: minResumeTimeout(deadline)})
	a, b := n.Link(t, "a"), n.Link(t, "b")
	const workers, per = 2, 3000
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for s := 0; s < per; s += 20 {
				for quiet.Load() {
					time.Sleep(100 * time.Microsecond)
				}
				var frames [][]byte
				for k := s; k < s+20; k++ {
					frames = append(frames, udp(uint16(w), 80, uint32(k)))
				}
				a.InjectFrames(frames)
				time.Sleep(200 * time.Microsecond)
			}
		}(w)
	}
	var gmu sync.Mutex
	var got [][]byte
	count := func() int { gmu.Lock(); defer gmu.Unlock(); return len(got) }
	stop := make(chan struct{})
	drained := make(chan struct{})
	go func() { // b's queue is bounded: read it as a host would
		defer close(drained)
		for {
			select {
			case <-stop:
				return
			default:
			}
			d := pt.Drain(b)
			gmu.Lock()
			got = append(got, d...)
			gmu.Unlock()
			time.Sleep(100 * time.Microsecond)
		}
	}()
	waitFor(t, "traffic flowing", func() bool { return count() > 500 })
	armed.Store(true)
	<-paused // a worker holds a batch with packets stolen for v1, not yet flushed
	quiet.Store(true)
	// The reload replaces the plugin while it builds the new generation,
	// then waits for the workers to leave the old one (the held one too).
	reloaded := make(chan error, 1)
	go func() { reloaded <- n.Reload(routerConfig(decl(2))) }()
	waitFor(t, "v2 started", func() bool { return n.Counter("plugin_blk", "replaced") == 1 })
	time.Sleep(30 * time.Millisecond) // v1 has nothing in flight: it would be stopped
	close(release)
	quiet.Store(false)
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	pt.Eventually(t, 5*time.Second, func() bool { return count() >= workers*per }, "every packet forwarded: %d of %d\n%s", count(), workers*per, n.DumpCounters())
	time.Sleep(20 * time.Millisecond)
	close(stop)
	<-drained
	got = append(got, pt.Drain(b)...)
	if len(got) != workers*per {
		t.Fatalf("forwarded %d, sent %d\n%s", len(got), workers*per, n.DumpCounters())
	}
	next := make([]uint32, workers)
	for _, g := range got {
		fl, seq := seqOf(g)
		if seq != next[fl] {
			t.Fatalf("flow %d: seq %d after %d (lost or reordered)", fl, seq, next[fl])
		}
		next[fl]++
	}
	mu.Lock()
	defer mu.Unlock()
	byVersion := map[int]int{}
	for _, v := range judgedBy {
		byVersion[v]++
	}
	if twice != 0 || len(judgedBy) != workers*per || byVersion[1] == 0 || byVersion[2] == 0 {
		t.Fatalf("judged twice %d, judged %d of %d, by version %v", twice, len(judgedBy), workers*per, byVersion)
	}
	// Per flow, the old version judged a prefix and the new one the rest.
	for fl := 0; fl < workers; fl++ {
		seen2 := false
		for s := 0; s < per; s++ {
			v := judgedBy[[2]uint32{uint32(fl), uint32(s)}]
			if v == 2 {
				seen2 = true
			} else if seen2 {
				t.Fatalf("flow %d seq %d judged by v1 after v2 began", fl, s)
			}
		}
	}
	if c := n.Counter("plugin_blk", "policy_accept_packets"); c != 0 {
		t.Fatalf("%d packets got the failure policy\n%s", c, n.DumpCounters())
	}
	st := Plugins(n.Stack)[0]
	if st.Version != "v2" || n.Counter("plugin_blk", "replaced") != 1 {
		t.Fatalf("after replace: %+v, replaced %d", st, n.Counter("plugin_blk", "replaced"))
	}
	t.Logf("judged by version: %v", byVersion)
}

// TestReplaceFailureKeepsOld: a new version that fails Configure fails the
// reload with the plugin's error; the old version keeps judging.
func TestReplaceFailureKeepsOld(t *testing.T) {
	f := &fake{}
	f.judge = func(_ int, _ map[string]any, b *sdk.Batch, out *sdk.Results) {
		for i := range out.Answers {
			out.Answers[i] = sdk.Accept
		}
	}
	f.install(t)
	n := newRouter(t, `  - {name: blk, path: /bin/true, timeout: 2s, config: {gen: 1}}`)
	f.mu.Lock()
	f.failNext = true
	f.mu.Unlock()
	err := n.Reload(routerConfig(`  - {name: blk, path: /bin/true, timeout: 2s, config: {gen: 2}}`))
	if err == nil || !strings.Contains(err.Error(), "refused by the test") || !strings.Contains(err.Error(), "plugin blk") {
		t.Fatalf("reload: %v", err)
	}
	t.Log(err)
	a, b := n.Link(t, "a"), n.Link(t, "b")
	a.InjectFrames([][]byte{udp(0, 80, 1)})
	waitFor(t, "old version judges", func() bool { return len(pt.Drain(b)) == 1 })
	if st := Plugins(n.Stack)[0]; st.Version != "v1" || st.State != "running" {
		t.Fatalf("%+v", st)
	}
}

// TestCrashRestartsWithinBudget: a plugin whose connection dies is
// restarted (with backoff); packets meanwhile get the policy; once the
// budget is spent the policy holds and the state says so.
func TestCrashRestartsWithinBudget(t *testing.T) {
	f := &fake{}
	f.judge = func(_ int, _ map[string]any, b *sdk.Batch, out *sdk.Results) {
		for i := range out.Answers {
			out.Answers[i] = sdk.Accept
		}
	}
	f.install(t)
	n := newRouter(t, `  - {name: blk, path: /bin/true, timeout: 2s, restarts: 2, on_failure: drop}`)
	a, b := n.Link(t, "a"), n.Link(t, "b")
	crash := func() {
		f.mu.Lock()
		c := f.closers[len(f.closers)-1]
		f.mu.Unlock()
		c()
	}
	for round := 1; round <= 3; round++ {
		crash()
		if round <= 2 {
			waitFor(t, "restarted", func() bool {
				f.mu.Lock()
				defer f.mu.Unlock()
				return f.started == round+1 && Plugins(n.Stack)[0].State == "running"
			})
			a.InjectFrames([][]byte{udp(0, 80, uint32(round))})
			waitFor(t, "judged after restart", func() bool { return len(pt.Drain(b)) == 1 })
		}
	}
	waitFor(t, "budget spent", func() bool { return Plugins(n.Stack)[0].State == "failed" })
	st := Plugins(n.Stack)[0]
	if st.Restarts != 2 || !strings.Contains(st.Reason, "budget") {
		t.Fatalf("%+v", st)
	}
	before := n.Counter("plugin_blk", "unavailable_packets")
	a.InjectFrames([][]byte{udp(0, 80, 9)})
	if got := len(pt.Drain(b)); got != 0 || n.Counter("plugin_blk", "unavailable_packets") != before+1 {
		t.Fatalf("with the budget spent: %d forwarded, unavailable %d→%d", got, before, n.Counter("plugin_blk", "unavailable_packets"))
	}
}

// matchFunc is a test plugin's matcher.
type matchFunc func(b *sdk.Batch, out []sdk.Answer)

func (f matchFunc) Match(b *sdk.Batch, out []sdk.Answer) { f(b, out) }

// TestResumeAtRule: a plugin matcher and a plugin target resume at their
// rule with the answer (resume tokens): a match goes on to the rule's
// target, no match to the next rule; a target's continue goes on to the
// next rule (which drops port 81), accept ends the chain (port 82 passes
// although a later rule would drop it).
func TestResumeAtRule(t *testing.T) {
	old := newLauncher
	t.Cleanup(func() { newLauncher = old })
	newLauncher = func(s *Section, d *decl) launcher {
		return func(context.Context) (*conn, error) {
			impl := &sdk.Plugin{
				Version: "v1",
				Matcher: matchFunc(func(b *sdk.Batch, out []sdk.Answer) {
					for i := range b.Len() {
						p := b.Packet(i)
						if p.DstPort() == 53 && p.Tag() == 7 {
							out[i] = sdk.Match
						}
					}
				}),
				Target: judgeFunc(func(b *sdk.Batch, out *sdk.Results) {
					for i := range b.Len() {
						p := b.Packet(i)
						switch p.DstPort() {
						case 82:
							out.Answers[i] = sdk.Accept
						default:
							out.Answers[i] = sdk.Continue
						}
					}
				}),
			}
			c, _ := goplugin.TestPluginGRPCConn(t, false, sdk.PluginSet(impl))
			raw, err := c.Dispense(sdk.PluginName)
			if err != nil {
				return nil, err
			}
			return &conn{client: raw.(*sdk.Client), close: func() { c.Close() }}, nil
		}
	}
	cfg := strings.Replace(routerConfig(`  - {name: blk, path: /bin/true, timeout: 2s}`), `        - "-p udp -j PLUGIN --name blk"
`, `        - "-p udp -m plugin --name blk --tag 7 -j DROP"
        - {proto: udp, target: {plugin: {name: blk}}}
        - "-p udp --dport 81 -j DROP"
        - "-p udp --dport 82 -j DROP"
`, 1)
	n := pt.NewNode(t, "r", cfg, testOptions(nil))
	a, b := n.Link(t, "a"), n.Link(t, "b")
	a.InjectFrames([][]byte{udp(0, 53, 1), udp(0, 80, 2), udp(0, 81, 3), udp(0, 82, 4)})
	var got [][]byte
	waitFor(t, "2 forwarded", func() bool { got = append(got, pt.Drain(b)...); return len(got) >= 2 })
	time.Sleep(20 * time.Millisecond)
	got = append(got, pt.Drain(b)...)
	var seqs []uint32
	for _, g := range got {
		_, s := seqOf(g)
		seqs = append(seqs, s)
	}
	slices.Sort(seqs) // four flows: order is kept per flow only
	if len(seqs) != 2 || seqs[0] != 2 || seqs[1] != 4 {
		t.Fatalf("forwarded seqs %v, want [2 4] (53 matched and dropped, 81 continued into its DROP, 82 accepted)\n%s", seqs, n.DumpCounters())
	}
}

// TestRoundTripQuantiles: the round-trip histogram's p50 and p99 land in
// the buckets of the observed times (4 buckets per power of two: within
// 25 %).
func TestRoundTripQuantiles(t *testing.T) {
	var s stats
	for i := 0; i < 98; i++ {
		s.observe(100*time.Microsecond, 1)
	}
	s.observe(5*time.Millisecond, 1)
	s.observe(5*time.Millisecond, 1)
	p50, p99 := s.quantile(0.5), s.quantile(0.99)
	if p50 < 75*time.Microsecond || p50 > 125*time.Microsecond || p99 < 3750*time.Microsecond || p99 > 6250*time.Microsecond {
		t.Fatalf("p50 %v (want ~100µs), p99 %v (want ~5ms)", p50, p99)
	}
}

// TestReloadNewBinaryNoGeneration: a reload whose only change is the
// plugin's binary builds no new generation: the running one replaces the
// plugin make-before-break (pipeline.Refresher) and says so in the
// reload's answer; traffic judged across it loses nothing. A reload with
// nothing changed renews nothing; a new binary that fails to start fails
// the reload and the running version stays.
func TestReloadNewBinaryNoGeneration(t *testing.T) {
	f := &fake{}
	var mu sync.Mutex
	byVersion := map[int]int{}
	f.judge = func(v int, _ map[string]any, b *sdk.Batch, out *sdk.Results) {
		mu.Lock()
		byVersion[v] += b.Len()
		mu.Unlock()
		for i := range out.Answers {
			out.Answers[i] = sdk.Accept
		}
	}
	f.install(t)
	bin := filepath.Join(t.TempDir(), "blk")
	write := func(s string) {
		t.Helper()
		tmp := bin + ".new"
		if err := os.WriteFile(tmp, []byte("#!/bin/sh\n# "+s+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, bin); err != nil {
			t.Fatal(err)
		}
	}
	write("v1")
	text := routerConfig(`  - {name: blk, path: ` + bin + `, timeout: 2s}`)
	n := newRouter(t, `  - {name: blk, path: `+bin+`, timeout: 2s}`)
	apply := func() (pipeline.ApplyReport, error) {
		cfg, err := pipeline.ParseConfig("r.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return n.Stack.ApplyReport(cfg)
	}
	a, b := n.Link(t, "a"), n.Link(t, "b")
	sent := 0
	send := func(k int) {
		for range k {
			a.InjectFrames([][]byte{udp(0, 80, uint32(sent))})
			sent++
		}
	}
	send(50)
	gen := n.Stack.Generation().Seq()

	if rep, err := apply(); err != nil || rep.Changed || len(rep.Renewed) != 0 {
		t.Fatalf("unchanged reload: %+v, %v", rep, err)
	}
	write("v2")
	done := make(chan struct{})
	go func() { defer close(done); send(200) }() // traffic across the replacement
	rep, err := apply()
	<-done
	if err != nil || rep.Changed || len(rep.Renewed) != 1 || !strings.Contains(rep.Renewed[0], "plugin blk: new binary") || !strings.Contains(rep.Renewed[0], `version "v2"`) {
		t.Fatalf("binary-only reload: %+v, %v", rep, err)
	}
	if g := n.Stack.Generation().Seq(); g != gen {
		t.Fatalf("generation %d, was %d: a new generation was built", g, gen)
	}
	send(50)
	var got [][]byte
	waitFor(t, "all forwarded", func() bool { got = append(got, pt.Drain(b)...); return len(got) >= sent })
	for i, g := range got {
		if _, seq := seqOf(g); seq != uint32(i) {
			t.Fatalf("packet %d is seq %d (lost or reordered)", i, seq)
		}
	}
	mu.Lock()
	if byVersion[1]+byVersion[2] != sent || byVersion[2] < 50 {
		t.Fatalf("judged by version %v, sent %d", byVersion, sent)
	}
	mu.Unlock()
	if st := Plugins(n.Stack)[0]; st.Version != "v2" || n.Counter("plugin_blk", "replaced") != 1 || n.Counter("plugin_blk", "policy_accept_packets") != 0 {
		t.Fatalf("after: %+v\n%s", st, n.DumpCounters())
	}
	if rep, err := apply(); err != nil || len(rep.Renewed) != 0 {
		t.Fatalf("second reload renewed again: %+v, %v", rep, err)
	}

	// A new binary that fails: the reload fails, v2 stays, nothing renewed.
	f.mu.Lock()
	f.failNext = true
	f.mu.Unlock()
	write("v3")
	rep, err = apply()
	if err == nil || !strings.Contains(err.Error(), "new version not started, the running one stays") || len(rep.Renewed) != 0 {
		t.Fatalf("failing binary: %+v, %v", rep, err)
	}
	if st := Plugins(n.Stack)[0]; st.Version != "v2" || n.Stack.Generation().Seq() != gen {
		t.Fatalf("after a failed renewal: %+v", st)
	}
}

// TestTargetRewrite: a target that may rewrite (Needs.Rewrite) returns new
// bytes of the length it was sent; the forwarded packet carries them.
func TestTargetRewrite(t *testing.T) {
	for _, v := range sdk.ProtocolVersions {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) { testTargetRewrite(t, v) })
	}
}

func testTargetRewrite(t *testing.T, proto int) {
	f := &fake{proto: proto, needs: sdk.Needs{Data: sdk.DataPacket, Rewrite: true}}
	f.judge = func(_ int, _ map[string]any, b *sdk.Batch, out *sdk.Results) {
		for i := range b.Len() {
			p := b.Packet(i)
			rw := append([]byte(nil), p.Data()...)
			rw[len(rw)-1] ^= 0xff // the payload's last byte (UDP checksums are not checked when forwarding)
			out.Answers[i] = sdk.Accept
			out.Rewrite(i, rw)
		}
	}
	f.install(t)
	n := newRouter(t, `  - {name: blk, path: /bin/true, timeout: 2s}`)
	a, b := n.Link(t, "a"), n.Link(t, "b")
	in := udp(0, 80, 7)
	a.InjectFrames([][]byte{in})
	var got [][]byte
	waitFor(t, "forwarded", func() bool { got = append(got, pt.Drain(b)...); return len(got) == 1 })
	if o := got[0]; len(o) != len(in) || o[len(o)-1] != in[len(in)-1]^0xff {
		t.Fatalf("forwarded % x, sent % x", o, in)
	}
	if c := n.Counter("plugin_blk", "bad_rewrites"); c != 0 {
		t.Fatalf("bad_rewrites %d", c)
	}
}

// TestWatchFollowsNewestDecl: reload: watch replaces the plugin with the
// declaration in force — a later generation's settings — not the one the
// plugin was first started with.
func TestWatchFollowsNewestDecl(t *testing.T) {
	old := watchEvery
	watchEvery = 20 * time.Millisecond
	t.Cleanup(func() { watchEvery = old })
	f := &fake{}
	f.judge = func(_ int, _ map[string]any, b *sdk.Batch, out *sdk.Results) {
		for i := range out.Answers {
			out.Answers[i] = sdk.Accept
		}
	}
	f.install(t)
	bin := filepath.Join(t.TempDir(), "blk")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(bin+".new", []byte("#!/bin/sh\n# "+s+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(bin+".new", bin); err != nil {
			t.Fatal(err)
		}
	}
	write("v1")
	decl := func(timeout string) string {
		return `  - {name: blk, path: ` + bin + `, reload: watch, timeout: ` + timeout + `}`
	}
	n := newRouter(t, decl("1s"))
	if err := n.Reload(routerConfig(decl("2s"))); err != nil { // settings changed: v2
		t.Fatal(err)
	}
	write("v3")
	waitFor(t, "watch replaced the binary", func() bool { return Plugins(n.Stack)[0].Version == "v3" })
	reg := n.Stack.Shared("filter.plugin/registry", nil).(*registry)
	reg.mu.Lock()
	p := reg.plugins["blk"]
	reg.mu.Unlock()
	if got := p.settings().Timeout; got != 2*time.Second {
		t.Fatalf("after reload: watch the timeout is %v, the declaration in force says 2s", got)
	}
}
