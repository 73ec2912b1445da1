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
