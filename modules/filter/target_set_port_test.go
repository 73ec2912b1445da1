package filter

import (
	"strconv"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// TestSetTargetPortSetExact: the SET target on a port set adds the port
// as an element of any protocol with ports (bitmap:port has no protocol);
// the packet path must then find that element as the one it would add,
// else every later packet queues the same add again (a snapshot rebuild
// per packet, a 65,536-entry table each time) and --exist never renews.
func TestSetTargetPortSetExact(t *testing.T) {
	clock := time.Unix(7000, 0)
	testNow = func() time.Time { return clock }
	defer func() { testNow = nil }()
	m := mustLoad(t, `sets:
  ports: {type: port, timeout: 30, elements: ["tcp:80"]}
filter:
  forward:
    rules:
      - "-j SET --add-set ports dst --exist"
`)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	set := m.sets["ports"]
	send := func(p pk) {
		p.hook = pipeline.Forward
		eval(m, p.ctx(t))
	}
	for _, p := range []pk{
		{proto: 17, src: "10.0.1.2", dst: "10.0.2.2", sport: 1, dport: 53},
		// tcp:80 is in the set: the port's any-protocol element is
		// still the one the target adds.
		{proto: 6, src: "10.0.1.2", dst: "10.0.2.2", sport: 1, dport: 80},
	} {
		send(p)
		waitApplied(t, set)
		q := set.app.queued.Load()
		clock = clock.Add(10 * time.Second)
		send(p)
		send(p)
		waitApplied(t, set)
		if n := set.app.queued.Load(); n != q {
			t.Errorf("port %d: %d more changes queued for an element the set has", p.dport, n-q)
		}
		for _, e := range set.Info(clock, true).Members {
			if e.Elem == strconv.Itoa(int(p.dport)) && e.Timeout != 30 {
				t.Errorf("--exist did not renew %s: timeout %d", e.Elem, e.Timeout)
			}
		}
	}
	if in := set.Info(clock, true); in.Entries != 3 {
		t.Fatalf("members %+v", in.Members)
	}
}

// TestSetTargetFullSetNoRebuild: adds the SET target queues for a full
// set (maxelem) change nothing, and so build no new snapshot (a full
// 1,048,576-element set rebuilt per queued packet kept the applier's
// core busy for nothing).
func TestSetTargetFullSetNoRebuild(t *testing.T) {
	clock := time.Unix(7000, 0)
	testNow = func() time.Time { return clock }
	defer func() { testNow = nil }()
	m := mustLoad(t, `sets:
  seen: {type: hash:ip, maxelem: 2}
filter:
  forward:
    rules:
      - "-j SET --add-set seen src"
`)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	set := m.sets["seen"]
	send := func(src string) {
		eval(m, pk{hook: pipeline.Forward, proto: 17, src: src, dst: "10.0.2.2", sport: 1, dport: 53}.ctx(t))
		waitApplied(t, set)
	}
	send("10.0.1.1")
	send("10.0.1.2")
	full := set.snap.Load()
	send("10.0.1.3")
	send("10.0.1.4")
	if set.snap.Load() != full {
		t.Error("a change that changed nothing built a new snapshot")
	}
	if in := set.Info(clock, true); in.Entries != 2 {
		t.Fatalf("members %+v", in.Members)
	}
}
