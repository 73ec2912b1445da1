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
		regexp.QuoteMeta(file+":7: table filter, chain forward: 200 rules compiled in ") + `[0-9.]+[µm]?s: 2 partitions, 400 entries \(0 on the always lists\), [0-9.]+ KiB`,
		regexp.QuoteMeta(file + ":209: table filter, chain input: 1 rule, walked rule by rule (compiled from 8)"),
	} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("no line matching %s in\n%s", want, r.stdout)
		}
	}
	if r := runMain(t, "validate", file); strings.Contains(r.stdout, "compiled") {
		t.Errorf("without --stats: %s", r.stdout)
	}
}

// TestValidateLint: --lint reports exactly the rules an earlier rule that
// ends the chain covers (by port range, by prefix, by an inverted prefix
// and the family, by mark), with file:line, and exits 1; not a rule after
// a LOG (which does not end the chain), nor one outside the cover; and by
// TCP flags (--syn covers --syn --dport 80: the flags are a field).
func TestValidateLint(t *testing.T) {
	file := tempPipeline(t, `name: lint
modules: [network.ipv4]
links:
  - {name: lan, module: link.channel, framing: ip, addresses: [10.0.1.1/24]}
filter:
  filter:
    forward:
      rules:
        - "-s 10.0.0.0/8 -j DROP"
        - "-s 10.1.0.0/16 -p tcp --dport 22 -j ACCEPT"
        - "-p udp --dport 1000:2000 -j ACCEPT"
        - "-p udp --dport 1500 -j DROP"
        - "-p udp --dport 2000:2001 -j DROP"
        - "-i lan+ -j LOG"
        - "-i lan -p icmp -j DROP"
        - "! -d 192.0.2.0/24 -m mark --mark 1 -j ACCEPT"
        - "-d 198.51.100.7 -m mark --mark 1 -j DROP"
        - "-d 2001:db8::1 -m mark --mark 1 -j DROP"
        - "-p tcp --syn -j DROP"
        - "-p tcp --syn --dport 80 -j DROP"
`)
	r := runMain(t, "validate", "--lint", file)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	var got []string
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.Contains(l, "can never match") {
			got = append(got, l[len(file):strings.Index(l, ": filter")]+" "+l[strings.Index(l, "rule "):strings.Index(l, ")")])
		}
	}
	want := []string{":10:11 rule 2", ":12:11 rule 4", ":17:11 rule 9", ":20:11 rule 12"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("findings %q, want %q\n%s", got, want, r.stdout)
	}
	if !strings.Contains(r.stdout, `rule 4): "-p udp -m udp --dport 1500 -j DROP" can never match: rule 3 (line 11)`) {
		t.Errorf("no cover named:\n%s", r.stdout)
	}
}
