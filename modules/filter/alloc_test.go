//go:build !race

package filter

import (
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestMatchersZeroAllocs: every matcher and the header-rewriting targets
// (the fuzz rule set) evaluate without allocating, on packets of both
// families that reach deep into the rules.
func TestMatchersZeroAllocs(t *testing.T) {
	testNICNames = map[pipeline.NICID]string{1: "lan"}
	defer func() { testNICNames = nil }()
	m := mustLoad(t, fuzzRules+`
  input:
    rules: ["-i lan+ -p tcp -j LOG --log-rate 1/hour --log-burst 1", "-i lan -j DROP"]
`)
	for _, p := range []pk{
		{proto: 6, src: "10.0.0.5", dst: "10.0.0.1", sport: 5, dport: 22, flags: 0x10, opts: []byte{2, 4, 5, 0xb4}, hook: pipeline.Forward},
		{proto: 17, src: "10.0.0.5", dst: "10.0.0.1", sport: 53, hook: pipeline.Forward},
		{proto: 1, src: "192.0.2.1", dst: "10.0.0.1", icmpType: 3, icmpCode: 2, hook: pipeline.Forward},
		{v6: true, proto: 58, src: "2001:db8::1", dst: "2001:db8::2", icmpType: 129, hook: pipeline.Forward},
		{v6: true, proto: 6, src: "2001:db9::1", dst: "2001:db8::2", flags: 2, opts: []byte{2, 4, 5, 0xb4}, hook: pipeline.Forward, ttl: 9},
		{proto: 6, src: "10.0.0.5", dst: "10.0.0.1", in: 1, hook: pipeline.Input},
	} {
		pc := p.ctx(t)
		eval(m, pc) // the LOG's ring goroutine starts here, once
		const runs = 10000
		if n := pt.CountMallocs(func() {
			for range runs {
				eval(m, pc)
			}
		}); n != 0 {
			t.Errorf("%+v: %d allocations in %d evaluations", p, n, runs)
		}
	}
}
