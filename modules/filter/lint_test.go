package filter

import (
	"fmt"
	"strings"
	"testing"
)

// TestLintAll: shadowed rules, redundant rules (a later rule with the same
// verdict covers them and nothing between can match their packets, or
// their verdict is the policy and nothing after can) and user chains
// never reached — and not the near misses.
func TestLintAll(t *testing.T) {
	m := mustLoad(t, `filter:
  forward:
    policy: drop
    rules:
      - "-s 10.1.0.0/16 -p tcp --dport 22 -j ACCEPT"
      - "-p udp --dport 53 -j ACCEPT"
      - "-s 10.0.0.0/8 -p tcp --dport 1:1024 -j ACCEPT"
      - "-s 192.0.2.0/24 -j DROP"
      - "-s 198.51.100.0/24 -j DROP"
      - "-s 198.51.100.0/24 -m limit --limit 1/s -j DROP"
      - "-p tcp --dport 80 -j ACCEPT"
      - "-p tcp -j LOG"
      - "-p tcp --dport 443 -j ACCEPT"
      - "-p tcp --dport 443:444 -j ACCEPT"
      - "-j used"
  input:
    policy: drop
    rules: ["-s 203.0.113.0/24 -j DROP", "-s 10.0.0.0/8 -j ACCEPT", "-s 10.9.0.0/16 -p tcp --dport 9 -j ACCEPT"]
  used:
    rules: ["-p udp --dport 7 -j ACCEPT", "-j DROP"]
  lonely:
    rules: ["-j RETURN", "-j lonelier"]
  lonelier:
    rules: ["-j ACCEPT"]
`)
	var got []string
	for _, f := range m.LintAll() {
		got = append(got, fmt.Sprintf("%s %s/%d by %d", f.Kind, f.Chain, f.Rule, f.By))
		if f.Line == 0 || f.Col == 0 || f.Msg == "" {
			t.Errorf("finding without its place: %+v", f)
		}
	}
	// Exact expectations, each with why.
	exp := map[string]bool{
		"shadowed forward/6 by 5":   true, // the same /24 dropped before
		"shadowed lonely/2 by 1":    true, // after a RETURN
		"redundant forward/1 by 3":  true, // covered by rule 3 (both may hotdrop a short TCP header), rule 2 disjoint (udp)
		"redundant forward/9 by 10": true, // 443 ⊂ 443:444; not 7 (80: a LOG between matches tcp)
		"redundant input/1 by 0":    true, // DROP is the policy, rules 2 and 3 are disjoint (other sources)
		"shadowed input/3 by 2":     true, // rule 2 accepts all of 10/8 first
		// not forward/4: rule 7 (no source) may match its packets
		"unreached lonely/0 by 0":   true,
		"unreached lonelier/0 by 0": true,
	}
	for _, g := range got {
		if !exp[g] {
			t.Errorf("unexpected finding %s", g)
		}
		delete(exp, g)
	}
	for g := range exp {
		t.Errorf("missing finding %s", g)
	}
	var sb strings.Builder
	for _, f := range m.LintAll() {
		sb.WriteString(f.Msg + "\n")
	}
	if !strings.Contains(sb.String(), "user chain lonelier is never reached: only chains that are never reached jump or go to it") {
		t.Errorf("messages:\n%s", sb.String())
	}
}
