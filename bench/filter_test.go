package bench

import (
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// TestForwardFilterRulesApply checks, on both stacks, that the benchmarks'
// rules do what filter_scenario_test.go says, so that the benchmarks
// measure a walk over every rule: the 1,000 non-matching rules of each
// shape with policy drop forward nothing (none of them matches any flow),
// and with rule 1,000 turned into a DROP that matches every flow (policy
// accept) forward nothing either (the walk reaches the last rule and its
// matcher sees these packets). The -last variants' ACCEPT is proved by the
// benchmarks themselves: their policy drops, a packet lost fails them.
func TestForwardFilterRulesApply(t *testing.T) {
	for _, shape := range []string{"dst", "dport"} {
		noMatch := filterCase{name: shape + " no match, policy drop", filter: true,
			rules: filterShapeRules(shape, 1000, false), policyDrop: true}
		lastDrop := filterCase{name: shape + " last rule drops", filter: true, rules: filterShapeRules(shape, 1000, true)}
		lastDrop.rules[999].drop = true
		accept := filterCase{name: shape + " no match, policy accept", filter: true, rules: filterShapeRules(shape, 1000, false)}
		for _, tc := range []struct {
			c    filterCase
			want int
		}{{noMatch, 0}, {lastDrop, 0}, {accept, 4 * batchSize}} {
			t.Run(tc.c.name, func(t *testing.T) {
				in, out, fs, _ := setupFilterPipestack(t, tc.c, pipeline.Options{})
				buf := make([]*pipeline.Packet, batchSize)
				got := 0
				for range 4 {
					frames, _ := fs.batch(batchSize)
					in.InjectFrames(frames)
					n := out.Read(buf)
					got += n
					pipeline.ReleaseBatch(buf[:n])
				}
				if got != tc.want {
					t.Errorf("pipestack forwarded %d of %d packets, want %d", got, 4*batchSize, tc.want)
				}

				r := newGVisorFilterRouter(t, tc.c)
				fs = newFilterFlowSet()
				got = 0
				for range 4 {
					frames, _ := fs.batch(batchSize)
					for _, f := range frames {
						r.inject(f)
					}
					for p := r.out.Read(); p != nil; p = r.out.Read() {
						got++
						p.DecRef()
					}
				}
				if got != tc.want {
					t.Errorf("gVisor forwarded %d of %d packets, want %d", got, 4*batchSize, tc.want)
				}
			})
		}
	}
}

// TestForwardFilterZeroAllocs proves ours allocates nothing per packet with
// rules installed, exactly (as TestForwardFlowsZeroAllocs, whose counting
// it uses): 4,096 flows through 1,000 FORWARD rules of each shape (no match,
// and the last rule matching), and the empty chain, twice round every flow.
func TestForwardFilterZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	for _, name := range []string{"0rules", "dst/1000rules", "dst-last/1000rules", "dport/1000rules", "dport-last/1000rules"} {
		t.Run(name, func(t *testing.T) {
			clock := pipelinetest.NewManualClock()
			in, out, fs, check := setupFilterPipestack(t, findFilterCase(name), pipeline.Options{Clock: clock})
			clock.Advance(0)
			pass := forwardPass(t, in, out, fs, check)
			for range fs.warmBatches() {
				pass(batchSize)
			}
			runs := 2 * fs.warmBatches()
			if a := totalAllocs(runs, func() { pass(batchSize) }); a != 0 {
				t.Fatalf("%d allocations in %d batches of %d packets, want 0", a, runs, batchSize)
			}
		})
	}
}
