package filter

import (
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// waitApplied waits until the set's applier applied every queued change.
func waitApplied(t *testing.T, s *Set) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.app.applied.Load() != s.app.queued.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("applier: %d of %d changes applied", s.app.applied.Load(), s.app.queued.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSetTarget: -j SET --add-set puts the packet's fields into the set
// (with the set's or its own timeout, on the batch clock), --exist renews,
// --del-set takes them out; later packets see it; the rule goes on.
func TestSetTarget(t *testing.T) {
	clock := time.Unix(7000, 0)
	testNow = func() time.Time { return clock }
	defer func() { testNow = nil }()
	m := mustLoad(t, `sets:
  knocked: {type: hash:ip, timeout: 30}
  seen: {type: "addr . port", timeout: 60}
filter:
  forward:
    rules:
      - "-p udp --dport 7000 -j SET --add-set knocked src --timeout 10"
      - "-p udp --dport 7001 -j SET --del-set knocked src"
      - "-p tcp -j SET --add-set seen dst,dst --exist"
      - "-p udp --dport 7000 -j DROP"
      - "-p tcp --dport 22 -m set --match-set knocked src -j ACCEPT"
      - "-p tcp --dport 22 -j DROP"
`)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	send := func(p pk) pipeline.Verdict {
		p.hook = pipeline.Forward
		return eval(m, p.ctx(t))
	}
	ssh := pk{proto: 6, src: "10.0.1.2", dst: "10.0.2.2", sport: 999, dport: 22}
	if send(ssh) != pipeline.VerdictDrop {
		t.Fatal("ssh before the knock")
	}
	if send(pk{proto: 17, src: "10.0.1.2", dst: "10.0.2.2", dport: 7000}) != pipeline.VerdictDrop {
		t.Fatal("the SET target did not go on to the next rule")
	}
	knocked := m.sets["knocked"]
	waitApplied(t, knocked)
	if send(ssh) != pipeline.VerdictAccept {
		t.Fatalf("ssh after the knock: %+v", knocked.Info(clock, true))
	}
	if in := knocked.Info(clock, true); len(in.Members) != 1 || in.Members[0].Elem != "10.0.1.2" || in.Members[0].Timeout != 10 {
		t.Fatalf("members %+v", in.Members)
	}
	clock = clock.Add(11 * time.Second)
	if send(ssh) != pipeline.VerdictDrop {
		t.Fatal("the knock's 10 s timeout")
	}
	send(pk{proto: 17, src: "10.0.1.2", dst: "10.0.2.2", dport: 7000})
	waitApplied(t, knocked)
	send(pk{proto: 17, src: "10.0.1.2", dst: "10.0.2.2", dport: 7001})
	waitApplied(t, knocked)
	if send(ssh) != pipeline.VerdictDrop || knocked.Info(clock, false).Entries != 0 {
		t.Fatal("--del-set")
	}
	seen := m.sets["seen"]
	waitApplied(t, seen)
	in := seen.Info(clock, true)
	if len(in.Members) != 1 || in.Members[0].Elem != "10.0.2.2 . tcp:22" || in.Members[0].Timeout != 60 {
		t.Fatalf("seen %+v", in.Members)
	}
	clock = clock.Add(30 * time.Second)
	send(ssh) // --exist: renewed in place, no queue
	if in := seen.Info(clock, true); in.Members[0].Timeout != 60 {
		t.Fatalf("--exist did not renew: %+v", in.Members)
	}
	r := m.tables[0].chains[m.tables[0].byName["forward"]].rules[0]
	if r.text != "-p udp -m udp --dport 7000 -j SET --add-set knocked src --timeout 10" {
		t.Errorf("text %q", r.text)
	}
	for _, c := range []struct{ rule, want string }{
		{"-j SET --add-set knocked src --del-set knocked src", "give one of add_set and del_set"},
		{"-j SET --del-set knocked src --exist", "--exist and --timeout go with --add-set"},
		{"-j SET --add-set nope src", `set "nope" does not exist`},
		{"-j SET --add-set seen src", "has 2 dimension(s)"},
	} {
		_, err := load(t, "sets:\n  knocked: {type: hash:ip, timeout: 30}\n  seen: {type: \"addr . port\"}\nfilter:\n  forward:\n    rules: ["+quoteYAML(c.rule)+"]\n")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want …%s…", c.rule, err, c.want)
		}
	}
}

// TestSetTargetInStack: in a running stack the SET target's applier runs
// with the generation, keeps running across a reload that keeps the set
// (one applier, the set's), and stops when the stack closes.
func TestSetTargetInStack(t *testing.T) {
	pt.CheckGoroutines(t)
	cfg := strings.Replace(setsBase, "ELEMENTS", "", 1)
	cfg = strings.Replace(cfg, `rules: ["-m set --match-set blocked dst -j DROP"RULES]`,
		`rules: ["-p udp --dport 7000 -j SET --add-set blocked src", "-m set --match-set blocked src -j DROP"RULES]`, 1)
	clk := pt.NewManualClock()
	n := pt.NewNode(t, "r", strings.Replace(cfg, "RULES", "", 1), pipeline.Options{Clock: clk})
	a := n.Link(t, "a")
	drops := func() uint64 { return n.Counter("stack", "filter_drop_forward") }
	a.InjectFrames([][]byte{pt.UDP4("10.0.1.2", "10.0.2.2", 9, 7000, 64, nil)})
	set := StackSets(n.Stack)["blocked"]
	waitApplied(t, set)
	before := drops()
	a.InjectFrames([][]byte{pt.UDP4("10.0.1.2", "10.0.2.2", 9, 9, 64, nil)})
	if drops() != before+1 {
		t.Fatal("the added source is not dropped")
	}
	if err := n.Reload(strings.Replace(cfg, "RULES", `, "-p tcp -j ACCEPT"`, 1)); err != nil {
		t.Fatal(err)
	}
	if StackSets(n.Stack)["blocked"] != set || set.app.refs != 1 {
		t.Fatalf("after the reload: the same set %v, %d appliers' references", StackSets(n.Stack)["blocked"] == set, set.app.refs)
	}
	a.InjectFrames([][]byte{pt.UDP4("10.0.1.3", "10.0.2.2", 9, 7000, 64, nil)})
	waitApplied(t, set)
	if set.Info(clk.Now(), false).Entries != 2 {
		t.Fatal("the applier stopped with the old generation")
	}
	n.Stack.Close()
	if set.app.refs != 0 || set.applierCh.Load() != nil {
		t.Fatal("the applier outlived the stack")
	}
}
