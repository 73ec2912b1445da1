package cli_test

import (
	"strings"
	"testing"
)

// TestValidateLintRedundantUnreached: --lint reports redundant rules and
// user chains nothing reaches, with file:line:col, and exits 1.
func TestValidateLintRedundantUnreached(t *testing.T) {
	file := tempPipeline(t, `name: lint2
modules: [network.ipv4]
links:
  - {name: lan, module: link.channel, framing: ip, addresses: [10.0.1.1/24]}
filter:
  filter:
    input:
      policy: drop
      rules:
        - "-s 203.0.113.0/24 -j DROP"
        - "-s 10.0.0.0/8 -j ACCEPT"
    forward:
      rules:
        - "-p udp --dport 53 -j DROP"
        - "-p tcp -j ACCEPT"
        - "-p udp --dport 50:60 -j DROP"
    spare:
      rules: ["-j DROP"]
  sets:
    idle: {type: hash:ip}
`)
	r := runMain(t, "validate", "--lint", file)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	for _, want := range []string{
		file + `:10:11: filter (table filter, chain input, rule 1): "-s 203.0.113.0/24 -j DROP" is redundant: no later rule can match what it matches, and the policy decides the same`,
		file + `:14:11: filter (table filter, chain forward, rule 1): "-p udp -m udp --dport 53 -j DROP" is redundant: rule 3 (line 16) matches every packet it could with the same verdict, and no rule between can match them`,
		file + `:15:11: filter (table filter, chain forward, rule 2): "-p tcp -j ACCEPT" is redundant: no later rule can match what it matches, and the policy decides the same`,
		file + `:17:5: filter (table filter, chain spare): user chain spare is never reached: no rule jumps or goes to it`,
		file + `:20:5: filter (sets): set idle is never used: no rule matches, maps or changes it`,
	} {
		if !strings.Contains(r.stdout, want+"\n") {
			t.Errorf("missing\n%s\nin\n%s", want, r.stdout)
		}
	}
	if n := strings.Count(r.stdout, "filter ("); n != 5 {
		t.Errorf("%d findings, want 5:\n%s", n, r.stdout)
	}
}

// TestValidateStatsSets: --stats prints each set with its line, its
// elements, the time its contents took to build and their memory.
func TestValidateStatsSets(t *testing.T) {
	file := tempPipeline(t, `name: st
modules: [network.ipv4]
links:
  - {name: lan, module: link.channel, framing: ip, addresses: [10.0.1.1/24]}
filter:
  sets:
    blocked: {type: hash:net, elements: [192.0.2.0/24, "198.51.100.1-198.51.100.9"]}
  maps:
    ports: {type: port, elements: {"22": accept}}
`)
	r := runMain(t, "validate", "--stats", file)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{file + ":7: set blocked (hash:net): 2 elements built in ", file + ":9: set ports (bitmap:port verdict map): 1 element built in "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("missing %q in\n%s", want, r.stdout)
		}
	}
}
