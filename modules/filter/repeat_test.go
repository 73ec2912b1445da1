package filter

import (
	"testing"

	"github.com/pipestack/pipestack/pipeline"
)

// TestRepeatedMatch: a -m NAME given twice is two instances, as in
// iptables (each takes the options after it; all must match), in both
// forms (a YAML list is one instance per item), with one canonical text
// that parses back to itself.
func TestRepeatedMatch(t *testing.T) {
	const ipt = `-p tcp -m multiport --dports 20:30,80 -m multiport --sports 1000:2000 -m comment --comment one -m comment --comment "two words" -j DROP`
	const yml = `{proto: tcp, multiport: [{dports: "20:30,80"}, {sports: "1000:2000"}], comment: [one, "two words"], target: drop}`
	const want = `-p tcp -m multiport --dports 20:30,80 -m multiport --sports 1000:2000 -m comment --comment "one" -m comment --comment "two words" -j DROP`
	m := mustLoad(t, "filter:\n  forward:\n    rules:\n      - "+quoteYAML(ipt)+"\n      - "+yml+"\n")
	rs := m.tables[0].chains[m.tables[0].byName["forward"]].rules
	for i, r := range rs[:2] {
		if r.text != want || len(r.ms) != 4 {
			t.Errorf("form %d: %d matchers, %q\nwant %q", i, len(r.ms), r.text, want)
		}
	}
	if rs[0].key == rs[1].key {
		t.Error("the two identical rules share a counter key")
	}
	if text, _, err := CanonicalRule(want); err != nil || text != want {
		t.Errorf("canonical text does not parse back: %q %v", text, err)
	}
	tcp := func(sport, dport uint16) pk { return pk{proto: 6, sport: sport, dport: dport, hook: pipeline.Forward} }
	for _, c := range []struct {
		p    pk
		drop bool
	}{{tcp(1500, 25), true}, {tcp(1500, 80), true}, {tcp(999, 25), false}, {tcp(1500, 81), false}} {
		if got := eval(m, c.p.ctx(t)) == pipeline.VerdictDrop; got != c.drop {
			t.Errorf("%d → %d: drop %v, want %v", c.p.sport, c.p.dport, got, c.drop)
		}
	}
	// An option given twice to one instance is still an error, as is an
	// empty list.
	for _, bad := range []string{
		quoteYAML(`-m comment --comment a --comment b`),
		`{comment: [], target: drop}`,
	} {
		if _, err := load(t, "filter:\n  forward:\n    rules:\n      - "+bad+"\n"); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
