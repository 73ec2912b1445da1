package bench

// The set's cost against one rule as a ratio measured in one run (issue
// 12; bench/README.md, "Sets"). BenchmarkForwardFilterSets measures each
// chain on a router of its own, one after the other: on this shared
// 2-core machine the same chain costs 1.3–2.5× more in bursts of tens of
// milliseconds (other processes' memory traffic; the README says how that
// was found), so ratios of separate cases swing by ±40 %.
// BenchmarkFilterSetCost builds the routers it compares in one process
// and runs them interleaved in short chunks, each timed by the thread's
// own CPU clock, so that a burst hits every side of a round alike and the
// same-round ratio cancels it.

import (
	"runtime"
	"runtime/debug"
	"slices"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
)

// setCostChunk is how many batches one side runs before the next side's
// turn: 1,024 packets, ~0.1–0.3 ms.
const setCostChunk = 16

// setCostBaselines are the one-rule chains every paired round runs besides
// the set: the empty chain, the -d /32 rule of BenchmarkForwardFilterSets
// (no flow but flow 0 matches: the rule is tested, never taken) and a
// -d /21 that exactly half the flows match, as half match each set rule
// (the matched rule's counter and ACCEPT run for them).
var setCostBaselines = []struct{ name, rule string }{
	{"none", ""},
	{"d32", "-d 198.18.0.1/32 -j %s"},
	{"d21", halfRule},
}

// halfRule matches flows 2047…4094 (destinations 198.18.8.0…198.18.15.255
// of 198.18.0.1+i): 2,048 of the 4,096, as many as each set rule, checked
// by TestForwardFilterSetsApply.
const halfRule = "-d 198.18.8.0/21 -j %s"

// setCostSets are the sides measured against the baselines: the two
// 100,000-element sets, and a second -d /21 router (the control: its
// ratio to d21 is the method's own error, 1 when nothing else differs).
var setCostSets = []struct{ name, rule string }{
	{"prefix100k", "-m set --match-set nets dst -j %s"},
	{"addrport100k", "-m set --match-set ipport dst,dst -j %s"},
	{"control-d21", halfRule},
}

// setCostScenario is what a paired round compares: the baselines (none,
// the -d /32, the rule half the flows match; their names are the
// metrics'), the sides measured against them, the flows, and the files of
// the sets every router declares.
type setCostScenario struct {
	baselines, sets []struct{ name, rule string }
	flows           func() *flowSet
	files           func(tb testing.TB, dir string) (nets, ipport string)
}

// setCostConsecutive is BenchmarkFilterSetCost's: the filter flows
// (destinations 198.18.0.1+i) and the sets of BenchmarkForwardFilterSets.
var setCostConsecutive = setCostScenario{setCostBaselines, setCostSets, newFilterFlowSet, setFiles}

// setCostRouter is one router of a paired round.
type setCostRouter struct {
	in, out *channel.Endpoint
	fs      *flowSet
}

func newSetCostRouter(tb testing.TB, sc setCostScenario, rule string) setCostRouter {
	_, in, out := newPipestackRouterWith(tb, false, setSectionWith(tb, rule, "ACCEPT", sc.files), pipeline.Options{})
	return setCostRouter{in, out, sc.flows()}
}

// BenchmarkFilterSetCost: one op is one round in which each router (the
// empty chain, -d /32, -d /21, the set) forwards every one of the 4,096
// filter flows once, in chunks of 16 batches of 64 taken in turn (the
// order reversed every chunk). Metrics: each side's CPU ns per packet
// (the thread's CPU clock over its chunks, median over rounds), the
// median over rounds of the same-round ratios set/d32 and set/d21, of
// (set − none)/(d21 − none) (what the set rule adds against what the
// rule adds), and other-cpu-ns/pkt: the process's CPU time on other
// threads (the collector, idle routers, the runtime) per packet, which
// the per-side figures leave out and which must stay near 0. ns/op is the
// wall time of a round. The baselines' routers are built once per run of
// the benchmark (-count: once per count), the set's per sub-benchmark
// call; every router declares both sets, as in BenchmarkForwardFilterSets.
func BenchmarkFilterSetCost(b *testing.B) { benchSetCost(b, setCostConsecutive) }

// benchSetCost is BenchmarkFilterSetCost over sc's flows, sets and
// baselines (sc.baselines[2].name names the half rule's metrics).
func benchSetCost(b *testing.B, sc setCostScenario) {
	var base []setCostRouter
	for _, c := range sc.baselines {
		base = append(base, newSetCostRouter(b, sc, c.rule))
	}
	half := sc.baselines[2].name
	for _, s := range sc.sets {
		b.Run("set="+s.name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			clock := func() time.Duration { d, _ := threadCPU(); return d }
			_, threadOK := threadCPU()
			if !threadOK {
				b.Log("no thread CPU clock here: chunks timed by the wall clock (counts other processes)")
				start := time.Now()
				clock = func() time.Duration { return time.Since(start) }
			}
			routers := append(base[:len(base):len(base)], newSetCostRouter(b, sc, s.rule))
			passes := make([]func(int), len(routers))
			for j, r := range routers {
				passes[j] = forwardPass(b, r.in, r.out, r.fs, func(d, want []byte) { checkForwarded(b, d, want) })
				r.fs.next = 0
				for range 2 * r.fs.warmBatches() {
					passes[j](batchSize)
				}
			}
			chunks := filterFlows / batchSize / setCostChunk // per pass over the flows
			if chunks*setCostChunk*batchSize != filterFlows {
				b.Fatalf("%d flows: not a multiple of %d batches of %d", filterFlows, setCostChunk, batchSize)
			}
			// The setup's garbage (the set router's two 100,000-element
			// sets, its files' text) collected and given back to the OS
			// now: after runtime.GC alone the background scavenger
			// returned it during the timed rounds, on another thread.
			debug.FreeOSMemory()
			ns := make([][]float64, len(routers)) // [router][round]: CPU ns per packet
			for j := range ns {
				ns[j] = make([]float64, 0, b.N)
			}
			cpu := make([]time.Duration, len(routers))
			round := func(record bool) {
				clear(cpu)
				t0 := clock()
				for k := range chunks {
					for i := range routers {
						j := i
						if k%2 == 1 {
							j = len(routers) - 1 - i
						}
						for range setCostChunk {
							passes[j](batchSize)
						}
						t1 := clock()
						cpu[j] += t1 - t0
						t0 = t1
					}
				}
				if record {
					for j := range routers {
						ns[j] = append(ns[j], float64(cpu[j].Nanoseconds())/float64(filterFlows))
					}
				}
			}
			round(false) // every router's lines warm after the collection
			b.ReportAllocs()
			p0, t0 := processCPU(), clock()
			b.ResetTimer()
			for range b.N {
				round(true)
			}
			b.StopTimer()
			other := processCPU() - p0 - (clock() - t0)
			none, d32, dh, set := ns[0], ns[1], ns[2], ns[3]
			for _, m := range []struct {
				unit string
				v    []float64
			}{{"none-ns/pkt", none}, {"d32-ns/pkt", d32}, {half + "-ns/pkt", dh}, {"set-ns/pkt", set}} {
				b.ReportMetric(median(m.v), m.unit)
			}
			div := func(x, y float64) float64 { return x / y }
			sub := func(x, y float64) float64 { return x - y }
			b.ReportMetric(median(perRound(set, d32, div)), "set/d32")
			b.ReportMetric(median(perRound(set, dh, div)), "set/"+half)
			b.ReportMetric(median(perRound(perRound(set, none, sub), perRound(dh, none, sub), div)), "set-extra/"+half+"-extra")
			if p0 > 0 && threadOK {
				b.ReportMetric(float64(other.Nanoseconds())/float64(b.N*len(routers)*filterFlows), "other-cpu-ns/pkt")
			}
		})
	}
}

// perRound is f over the rounds' pairs.
func perRound(a, b []float64, f func(a, b float64) float64) []float64 {
	r := make([]float64, len(a))
	for i := range a {
		r[i] = f(a[i], b[i])
	}
	return r
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
