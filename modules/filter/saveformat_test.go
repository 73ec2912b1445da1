package filter

import (
	"slices"
	"strings"
	"testing"
)

// CanonicalRule gives the text and family a rule of the section has.
func TestCanonicalRule(t *testing.T) {
	for _, c := range []struct {
		in, text string
		family   int
		err      string
	}{
		{in: "-s 192.0.2.1/32 -p tcp -m tcp --dport 22 -j ACCEPT", text: "-p tcp -s 192.0.2.1/32 -m tcp --dport 22 -j ACCEPT", family: 4},
		{in: "-6 -p tcp --dport ssh -j DROP", text: "-6 -p tcp -m tcp --dport 22 -j DROP", family: 6},
		{in: "-i lan+ -j from_lan", text: "-i lan+ -j from_lan", family: 0},
		{in: "-p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT", family: 6},
		{in: "-m comment --comment \"it\\'s\" -j RETURN", text: "-m comment --comment \"it's\" -j RETURN", family: 0},
		{in: "-m conntrack --ctstate NEW -j ACCEPT", err: "unknown match \"conntrack\""},
		{in: "-4 -s 2001:db8::1 -j DROP", err: "IPv6"},
	} {
		text, fam, err := CanonicalRule(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || fam != c.family || c.text != "" && text != c.text {
			t.Errorf("%q: %q, family %d, %v; want %q, family %d", c.in, text, fam, err, c.text, c.family)
		}
	}
	w, err := SplitRule(`-m comment --comment "a b" -j LOG --log-prefix 'x '`)
	if want := []string{"-m", "comment", "--comment", "a b", "-j", "LOG", "--log-prefix", "x "}; err != nil || !slices.Equal(w, want) {
		t.Errorf("SplitRule: %q, %v", w, err)
	}
	if w, _ := SplitRule(QuoteRuleWord(`say "no" \ `)); len(w) != 1 || w[0] != `say "no" \ ` {
		t.Errorf("QuoteRuleWord does not read back: %q", w)
	}
	if !IsMatchName("multiport") || IsMatchName("conntrack") || !IsTargetName("Reject") || IsTargetName("MASQUERADE") {
		t.Error("IsMatchName/IsTargetName")
	}
	if !slices.Equal(BuiltinChains("raw"), []string{"prerouting", "output"}) || !slices.Equal(BuiltinChains("nat"), []string{"prerouting", "input", "output", "postrouting"}) {
		t.Error("BuiltinChains")
	}
	if CheckChainName("filter", "input") == nil || CheckChainName("filter", "from_lan") != nil {
		t.Error("CheckChainName")
	}
}
