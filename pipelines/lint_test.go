package pipelines_test

import (
	"testing"

	"github.com/pipestack/pipestack/modules/filter"
)

// TestLintPipelines: no filter rule of the example pipelines can never
// match or is redundant, no user chain is unreached (`pipectl validate
// --lint pipelines/*.yaml` finds nothing; the
// filter module's Lint, which it prints, is tested to find shadowed rules
// by pipectl/cli's TestValidateLint).
func TestLintPipelines(t *testing.T) {
	files := glob(t, "*.yaml")
	linted := 0
	for _, f := range files {
		cfg, err := check(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, mc := range cfg.Modules {
			if l, ok := mc.Module.(interface{ LintAll() []filter.Finding }); ok {
				linted++
				for _, s := range l.LintAll() {
					t.Errorf("%s:%d: table %s, chain %s: %s", f, s.Line, s.Table, s.Chain, s.Msg)
				}
			}
		}
	}
	if linted == 0 {
		t.Fatal("no pipeline has a filter section: the test proves nothing")
	}
}
