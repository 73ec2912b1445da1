package plugin

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestTargetVerdicts: a plugin target drops what the plugin drops, the
// rest is forwarded, the mark and the rewrite the plugin returns are
// applied, and each packet crosses once.
func TestTargetVerdicts(t *testing.T) {
	f := &fake{needs: sdk.Needs{Data: sdk.DataPacket, SetMark: true}}
	var judged atomic.Int64
	f.judge = func(_ int, cfg map[string]any, pkts []*sdk.Packet, out []sdk.Result) {
		block := uint16(cfg["block"].(float64))
		for i, p := range pkts {
			judged.Add(1)
			if p.Kind != sdk.KindTarget || p.Hook != sdk.Forward || p.InLink != "a" || p.OutLink != "b" || p.Proto != 17 || len(p.Data) != p.Len {
				t.Errorf("packet %+v", p)
			}
			if p.DstPort == block {
				out[i] = sdk.Result{Answer: sdk.Drop}
			} else {
				out[i] = sdk.Result{Answer: sdk.Accept, SetMark: true, Mark: 7}
			}
		}
	}
	f.install(t)
	n := newRouter(t, `  - {name: blk, path: /bin/true, config: {block: 53}}`)
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
			f.judge = func(_ int, _ map[string]any, pkts []*sdk.Packet, out []sdk.Result) {
				<-release
				for i := range out {
					out[i] = sdk.Result{Answer: sdk.Accept}
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
			if got := len(pt.Drain(b)); policy == "accept" && got != 10 || policy == "drop" && got != 0 {
				t.Fatalf("%s: %d forwarded", policy, got)
			}
			if n.Counter("plugin_blk", "timeouts") == 0 || n.Counter("plugin_blk", "timeout_packets") != 10 {
				t.Fatalf("timeouts %d, packets %d", n.Counter("plugin_blk", "timeouts"), n.Counter("plugin_blk", "timeout_packets"))
			}
		})
	}
}

// TestWindowFull: with window 1 and a plugin that holds the first flight,
// a second flight gets the policy at once (window_full) and the worker
// does not wait.
func TestWindowFull(t *testing.T) {
	f := &fake{}
	release := make(chan struct{})
	var once sync.Once
	f.judge = func(_ int, _ map[string]any, pkts []*sdk.Packet, out []sdk.Result) {
		once.Do(func() { <-release })
		for i := range out {
			out[i] = sdk.Result{Answer: sdk.Accept}
		}
	}
	f.install(t)
	n := newRouter(t, `  - {name: blk, path: /bin/true, window: 1, lanes: 1, max_batch: 4, timeout: 5s, on_failure: drop}`)
	a, b := n.Link(t, "a"), n.Link(t, "b")
	var frames [][]byte
	for i := 0; i < 8; i++ {
		frames = append(frames, udp(0, 80, uint32(i)))
	}
	start := time.Now()
	a.InjectFrames(frames) // two flights of 4: the second finds the window full
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the worker waited %v", d)
	}
	if c := n.Counter("plugin_blk", "window_full_packets"); c != 4 {
		t.Fatalf("window_full_packets %d, want 4", c)
	}
	close(release)
	var got [][]byte
	waitFor(t, "first flight answered", func() bool { got = append(got, pt.Drain(b)...); return len(got) == 4 })
	for i, g := range got {
		if _, seq := seqOf(g); seq != uint32(i) {
			t.Fatalf("got seq %d at %d", seq, i)
		}
	}
}
