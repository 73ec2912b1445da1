package cli_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// TestValidateStats: --stats prints, per filter chain with its line, what
// the rule compiler made of it: a long chain compiled (time, partitions,
// memory), a short one walked.
func TestValidateStats(t *testing.T) {
	var sb strings.Builder
	sb.WriteString("name: st\nmodules: [network.ipv4]\nlinks:\n  - {name: a, module: link.channel, framing: ip, addresses: [10.0.1.1/24]}\nfilter:\n  filter:\n    forward:\n      rules:\n")
	for k := 0; k < 200; k++ {
		fmt.Fprintf(&sb, "        - \"-p udp --dport %d -j ACCEPT\"\n", 1000+k)
	}
	sb.WriteString("    input:\n      rules: [\"-j ACCEPT\"]\n")
	file := tempPipeline(t, sb.String())
	r := runMain(t, "validate", "--stats", file)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		regexp.QuoteMeta(file+":7: table filter, chain forward: 201 rules compiled in ") + `[0-9.]+[µm]?s: 2 partitions, 402 entries \(2 on the always lists\), [0-9.]+ KiB`,
		regexp.QuoteMeta(file + ":209: table filter, chain input: 2 rules, walked rule by rule (compiled from 8)"),
	} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("no line matching %s in\n%s", want, r.stdout)
		}
	}
	if r := runMain(t, "validate", file); strings.Contains(r.stdout, "compiled") {
		t.Errorf("without --stats: %s", r.stdout)
	}
}
