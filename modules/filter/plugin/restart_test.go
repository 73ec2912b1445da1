package plugin

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestRestartLosesToReplace: a reload that replaces a crashed plugin while
// its restart is still starting wins. The version the restart brings up
// afterwards is stopped, not installed over the reload's (which would run
// the old config, leave the reload's process running with no traffic, and
// report the wrong version and PID).
func TestRestartLosesToReplace(t *testing.T) {
	f := &fake{}
	var judgedBy atomic.Int32 // the version that judged last
	f.judge = func(v int, _ map[string]any, _ *sdk.Batch, out *sdk.Results) {
		judgedBy.Store(int32(v))
		for i := range out.Answers {
			out.Answers[i] = sdk.Accept
		}
	}
	f.install(t)
	// The second start (the restart's) waits until the reload replaced
	// the plugin; its version's stop is recorded.
	inner := newLauncher
	var starts atomic.Int32
	var restartStopped atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	newLauncher = func(s *Section, d *decl) launcher {
		l := inner(s, d)
		return func(ctx context.Context) (*conn, error) {
			if starts.Add(1) != 2 {
				return l(ctx)
			}
			close(entered)
			<-release
			c, err := l(ctx)
			if err == nil {
				stop := c.close
				c.close = func() { restartStopped.Store(true); stop() }
			}
			return c, err
		}
	}
	n := newRouter(t, `  - {name: blk, path: /bin/true, timeout: 2s, config: {gen: 1}}`)
	f.mu.Lock()
	crash := f.closers[0]
	f.mu.Unlock()
	crash()
	<-entered // the restart is starting its version
	if err := n.Reload(routerConfig(`  - {name: blk, path: /bin/true, timeout: 2s, config: {gen: 2}}`)); err != nil {
		t.Fatal(err)
	}
	st := Plugins(n.Stack)[0]
	if st.State != "running" || st.Version != "v2" {
		t.Fatalf("after the reload: %+v", st)
	}
	close(release)
	waitFor(t, "the restart's version stopped", restartStopped.Load)
	if got := Plugins(n.Stack)[0]; got.State != "running" || got.Version != "v2" {
		t.Fatalf("the restart overrode the reload: %+v", got)
	}
	a, b := n.Link(t, "a"), n.Link(t, "b")
	a.InjectFrames([][]byte{udp(0, 80, 1)})
	waitFor(t, "judged", func() bool { return len(pt.Drain(b)) == 1 })
	if v := judgedBy.Load(); v != 2 {
		t.Fatalf("judged by version %d, want the reload's (2)", v)
	}
}

// TestReplaceWaitsForDelivery: a replaced version's last flight leaves its
// lane's queue before its packets are resumed. The new version's answers
// wait until that delivery ended (here held inside the resume, at a second
// plugin's rule), so a flow's packets stay in order across the switch.
func TestReplaceWaitsForDelivery(t *testing.T) {
	f := &fake{}
	f.judge = func(_ int, cfg map[string]any, _ *sdk.Batch, out *sdk.Results) {
		a := sdk.Continue // blk: on to the next rule
		if cfg["role"] == "hold" {
			a = sdk.Accept
		}
		for i := range out.Answers {
			out.Answers[i] = a
		}
	}
	f.install(t)
	var steals atomic.Int32
	inResume, release := make(chan struct{}), make(chan struct{})
	stealHook = func() {
		// The second steal: the first packet at hold's rule, resumed by
		// blk's first version on its lane's goroutine.
		if steals.Add(1) == 2 {
			close(inResume)
			<-release
		}
	}
	t.Cleanup(func() { stealHook = nil })
	cfg := strings.Replace(routerConfig("  - {name: blk, path: /bin/true, timeout: 2s, config: {role: blk}}\n  - {name: hold, path: /bin/true, timeout: 2s, config: {role: hold}}"),
		`        - "-p udp -j PLUGIN --name blk"`, "        - \"-p udp -j PLUGIN --name blk\"\n        - \"-p udp -j PLUGIN --name hold\"", 1)
	n := pt.NewNode(t, "r", cfg, testOptions(nil))
	reg := n.Stack.Shared("filter.plugin/registry", func() any { return nil }).(*registry)
	reg.mu.Lock()
	p := reg.plugins["blk"]
	reg.mu.Unlock()
	a, b := n.Link(t, "a"), n.Link(t, "b")
	a.InjectFrames([][]byte{udp(0, 80, 1)})
	<-inResume
	p.mu.Lock()
	launch, cfgJSON := p.launch, p.cfgJSON
	p.mu.Unlock()
	if err := p.Replace(launch, "v2", cfgJSON, nil); err != nil {
		t.Fatal(err)
	}
	a.InjectFrames([][]byte{udp(0, 80, 2)})
	select {
	case <-p.cur.Load().gate:
		t.Error("the new version's answers were let through while the old one still delivered")
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	var got [][]byte
	waitFor(t, "both forwarded", func() bool { got = append(got, pt.Drain(b)...); return len(got) == 2 })
	if _, s0 := seqOf(got[0]); s0 != 1 {
		t.Fatalf("seq %d went out first: reordered across the replacement", s0)
	}
}
