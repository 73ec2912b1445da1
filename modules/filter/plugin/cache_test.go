package plugin

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/conntrack"
	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// cacheRouter is routerBase with netfilter.conntrack (ct) and a manual
// stack clock.
func cacheRouter(t *testing.T, plugins string, ct bool, clock pipeline.Clock) *pt.Node {
	t.Helper()
	cfg := routerConfig(plugins)
	if ct {
		cfg = strings.Replace(cfg, "modules: [network.ipv4]", "modules: [network.ipv4, netfilter.conntrack]", 1)
	}
	return pt.NewNode(t, "r", cfg, testOptions(clock))
}

// judgeCounting makes f accept everything but port 53 (dropped), counting
// the packets it judged per version.
func judgeCounting(f *fake, judged *[3]atomic.Int64) {
	f.judge = func(v int, _ map[string]any, b *sdk.Batch, out *sdk.Results) {
		for i := range b.Len() {
			p := b.Packet(i)
			judged[min(v, 2)].Add(1)
			if p.DstPort() == 53 {
				out.Answers[i] = sdk.Drop
			} else {
				out.Answers[i] = sdk.Accept
				out.SetMark(i, 9)
			}
		}
	}
}

func forwardN(t *testing.T, n *pt.Node, frames [][]byte, want int) [][]byte {
	t.Helper()
	a, b := n.Link(t, "a"), n.Link(t, "b")
	a.InjectFrames(frames)
	var got [][]byte
	waitFor(t, "forwarded", func() bool { got = append(got, pt.Drain(b)...); return len(got) >= want })
	time.Sleep(10 * time.Millisecond)
	got = append(got, pt.Drain(b)...)
	if len(got) != want {
		t.Fatalf("forwarded %d, want %d", len(got), want)
	}
	return got
}

// TestVerdictCache: with conntrack, a flow's first packet goes to the
// plugin, the next ones are judged from the cache (the plugin sees none of
// them; a cached drop still drops, in order); a replaced plugin starts
// with an empty cache; an answer expires after cache_ttl_ms on the stack
// clock; pipectl plugins shows the hit rate.
func TestVerdictCache(t *testing.T) {
	f := &fake{needs: sdk.Needs{Data: sdk.DataHeaders, SetMark: true, CacheTTLMillis: 1000}}
	var judged [3]atomic.Int64
	judgeCounting(f, &judged)
	f.install(t)
	clock := pipeline.NewManualClock(time.Unix(1e9, 0))
	decl := func(gen int) string {
		return `  - {name: blk, path: /bin/true, timeout: 2s, config: {gen: ` + string(rune('0'+gen)) + `}}`
	}
	n := cacheRouter(t, decl(1), true, clock)

	// One packet of flow 0 (port 80) and of flow 1 (port 53): judged.
	forwardN(t, n, [][]byte{udp(0, 80, 0), udp(1, 53, 0)}, 1)
	if judged[1].Load() != 2 {
		t.Fatalf("judged %d, want 2", judged[1].Load())
	}
	// 40 more of each: from the cache; flow 1's are dropped from it. (Had
	// they come in the first packets' batch they would have been sent too:
	// see TestVerdictCacheInFlightOrder.)
	var frames [][]byte
	for i := 1; i <= 40; i++ {
		frames = append(frames, udp(0, 80, uint32(i)), udp(1, 53, uint32(i)))
	}
	got := forwardN(t, n, frames, 40)
	for i, g := range got {
		if fl, seq := seqOf(g); fl != 0 || seq != uint32(i+1) {
			t.Fatalf("packet %d is flow %d seq %d", i, fl, seq)
		}
	}
	if judged[1].Load() != 2 {
		t.Fatalf("the plugin judged %d packets, want 2 (the rest from the cache)", judged[1].Load())
	}
	st := Plugins(n.Stack)[0]
	if st.CacheHitCount != 80 || st.CacheMissCount != 2 || st.CacheHits != "97.6%" {
		t.Fatalf("cache figures %+v", st)
	}
	if c := n.Counter("plugin_blk", "cache_hits"); c != 80 {
		t.Fatalf("cache_hits %d", c)
	}
	if c := n.Counter("plugin_blk", "verdict_drop_packets"); c != 41 {
		t.Fatalf("verdict_drop_packets %d, want 41", c)
	}

	// TTL: 999 ms later still cached, after 1 s judged again.
	clock.Advance(999 * time.Millisecond)
	forwardN(t, n, [][]byte{udp(0, 80, 41)}, 1)
	if judged[1].Load() != 2 {
		t.Fatalf("judged %d before the TTL", judged[1].Load())
	}
	clock.Advance(2 * time.Millisecond)
	forwardN(t, n, [][]byte{udp(0, 80, 42)}, 1)
	if judged[1].Load() != 3 {
		t.Fatalf("judged %d after the TTL, want 3", judged[1].Load())
	}

	// Replace: the new version judges the flow again (the cache is flushed).
	cfg := strings.Replace(routerConfig(decl(2)), "modules: [network.ipv4]", "modules: [network.ipv4, netfilter.conntrack]", 1)
	if err := n.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	forwardN(t, n, [][]byte{udp(0, 80, 43)}, 1)
	forwardN(t, n, [][]byte{udp(0, 80, 44)}, 1)
	if judged[2].Load() != 1 {
		t.Fatalf("the new version judged %d packets, want 1 (then the cache)", judged[2].Load())
	}
}

// TestVerdictCacheInFlightOrder: packets of a flow that arrive while its
// first answer is on its way are sent to the plugin too, not judged from
// a cache that would let them overtake.
func TestVerdictCacheInFlightOrder(t *testing.T) {
	f := &fake{needs: sdk.Needs{CacheTTLMillis: 60000}}
	var judged [3]atomic.Int64
	release := make(chan struct{})
	f.judge = func(_ int, _ map[string]any, b *sdk.Batch, out *sdk.Results) {
		<-release
		for i := range b.Len() {
			judged[1].Add(1)
			out.Answers[i] = sdk.Accept
		}
	}
	f.install(t)
	n := cacheRouter(t, `  - {name: blk, path: /bin/true, timeout: 2s, lanes: 1}`, true, pipeline.NewManualClock(time.Unix(1e9, 0)))
	a := n.Link(t, "a")
	a.InjectFrames([][]byte{udp(0, 80, 0)})
	a.InjectFrames([][]byte{udp(0, 80, 1)})
	waitFor(t, "2 sent", func() bool { return Plugins(n.Stack)[0].CacheMissCount == 2 })
	close(release)
	got := forwardN(t, n, nil, 2)
	got = append(got, forwardN(t, n, [][]byte{udp(0, 80, 2)}, 1)...)
	for i, g := range got {
		if _, seq := seqOf(g); seq != uint32(i) {
			t.Fatalf("packet %d has seq %d", i, seq)
		}
	}
	if judged[1].Load() != 2 || Plugins(n.Stack)[0].CacheHitCount != 1 {
		t.Fatalf("judged %d, status %+v", judged[1].Load(), Plugins(n.Stack)[0])
	}
}

// TestVerdictCacheNeedsConntrack: without netfilter.conntrack the cache is
// off (every packet goes to the plugin) and pipectl plugins says why.
func TestVerdictCacheNeedsConntrack(t *testing.T) {
	f := &fake{needs: sdk.Needs{CacheTTLMillis: 1000}}
	var judged [3]atomic.Int64
	judgeCounting(f, &judged)
	f.install(t)
	n := cacheRouter(t, `  - {name: blk, path: /bin/true, timeout: 2s}`, false, nil)
	var frames [][]byte
	for i := range 10 {
		frames = append(frames, udp(0, 80, uint32(i)))
	}
	forwardN(t, n, frames, 10)
	st := Plugins(n.Stack)[0]
	if judged[1].Load() != 10 || st.CacheHits != "off (no netfilter.conntrack)" || st.CacheHitCount != 0 {
		t.Fatalf("judged %d, status %+v", judged[1].Load(), st)
	}
}

// TestVerdictCacheCountsUntracked: with the cache on, every packet the
// plugin judges is a miss, also one without a conntrack entry (NOTRACK
// here): the hit rate is the share of the plugin's questions the cache
// answered.
func TestVerdictCacheCountsUntracked(t *testing.T) {
	f := &fake{needs: sdk.Needs{Data: sdk.DataHeaders, CacheTTLMillis: 1000}}
	var judged [3]atomic.Int64
	judgeCounting(f, &judged)
	f.install(t)
	cfg := strings.Replace(routerConfig(`  - {name: blk, path: /bin/true, timeout: 2s}`), "modules: [network.ipv4]", "modules: [network.ipv4, netfilter.conntrack]", 1)
	cfg = strings.Replace(cfg, "filter:\n  filter:\n", "filter:\n  raw:\n    prerouting:\n      rules: [\"-p udp --dport 81 -j NOTRACK\"]\n  filter:\n", 1)
	n := pt.NewNode(t, "r", cfg, testOptions(pipeline.NewManualClock(time.Unix(1e9, 0))))
	forwardN(t, n, [][]byte{udp(0, 81, 0), udp(0, 81, 1), udp(0, 81, 2)}, 3) // untracked
	forwardN(t, n, [][]byte{udp(1, 80, 0)}, 1)                               // tracked: judged, cached
	forwardN(t, n, [][]byte{udp(1, 80, 1)}, 1)                               // from the cache
	st := Plugins(n.Stack)[0]
	if judged[1].Load() != 4 || st.CacheHitCount != 1 || st.CacheMissCount != 4 || st.CacheHits != "20.0%" {
		t.Fatalf("judged %d, cache figures %+v", judged[1].Load(), st)
	}
}
