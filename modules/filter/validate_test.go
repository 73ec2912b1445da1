package filter

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
)

// TestValidateErrors: invalid rule sets are refused as iptables refuses
// them, at the line of the rule.
func TestValidateErrors(t *testing.T) {
	cases := []struct{ sec, want string }{
		{"nat:\n  prerouting: {}\n", "1:1: the nat table needs connection tracking"},
		{"filtr: {}\n", `unknown field "filtr", did you mean "filter"?`},
		{"filter:\n  prerouting: {}\n", "prerouting is a built-in chain of tables raw, mangle, nat, not of table filter"},
		{"raw:\n  prerouting:\n    rules: [\"-j REJECT\"]\n", "3:13: table raw, chain prerouting, rule 1: REJECT target: only valid in filter table, not raw"},
		{"filter:\n  input:\n    rules: [\"-j NOTRACK\"]\n", "NOTRACK target: only valid in raw table, not filter"},
		{"filter:\n  input:\n    rules: [\"-j TTL --ttl-set 3\"]\n", "TTL target: only valid in mangle table"},
		{"mangle:\n  prerouting:\n    rules: [\"-p tcp -j REJECT\"]\n", "REJECT target: only valid in filter table, not mangle"},
		{"filter:\n  input:\n    rules: [\"--dport 22 -j ACCEPT\"]\n", `unknown option "--dport"`},
		{"filter:\n  input:\n    rules: [{dport: 22, target: accept}]\n", "dport needs proto: tcp or udp"},
		{"filter:\n  input:\n    rules: [{proto: icmp, dport: 22}]\n", "dport needs proto: tcp or udp"},
		{"filter:\n  input:\n    rules: [\"-m tcp --dport 22\"]\n", "tcp match: only valid with -p tcp"},
		{"filter:\n  input:\n    rules: [\"! -p tcp -m tcp --dport 22\"]\n", "tcp match: only valid with -p tcp"},
		{"filter:\n  input:\n    rules: [\"-m multiport --dports 1,2\"]\n", "multiport match: only valid with -p tcp|udp"},
		{"filter:\n  input:\n    rules: [\"-j nochain\"]\n", `chain "nochain" does not exist in table filter`},
		{"filter:\n  input:\n    rules: [\"-j from_lna\"]\n  from_lan: {}\n", `did you mean "from_lan"?`},
		{"filter:\n  input:\n    rules: [\"-j a\"]\n  a:\n    rules: [\"-j b\"]\n  b:\n    rules: [\"-g a\"]\n", "jumps loop: a -> b -> a"},
		{"filter:\n  a:\n    rules: [\"-j a\"]\n", "jumps loop: a -> a"},
		{"filter:\n  output:\n    rules: [\"-i lan -j DROP\"]\n", "Can't use -i with OUTPUT"},
		{"filter:\n  input:\n    rules: [\"-o lan -j DROP\"]\n", "Can't use -o with INPUT"},
		{"filter:\n  output:\n    rules: [\"-j c\"]\n  c:\n    rules: [\"-i lan -j DROP\"]\n", "Can't use -i with OUTPUT (chain c is reached from it)"},
		{"filter:\n  input:\n    rules: [\"-p tcp --dport 70000 -j ACCEPT\"]\n", `invalid port/service "70000"`},
		{"filter:\n  input:\n    rules: [\"-p tcp --dport 30:20 -j ACCEPT\"]\n", "invalid portrange (min > max)"},
		{"filter:\n  input:\n    rules: [\"-s 10.0.0.0/8 -d 2001:db8::1 -j ACCEPT\"]\n", "different families"},
		{"filter:\n  input:\n    rules: [\"-6 -s 10.0.0.0/8\"]\n", "base is IPv4 only but the rule is IPv6"},
		{"filter:\n  input:\n    rules: [\"-p icmp --icmp-type nosuch\"]\n", `invalid ICMP type "nosuch"`},
		{"filter:\n  input:\n    rules: [\"-p udp -j REJECT --reject-with tcp-reset\"]\n", "tcp-reset is only valid with -p tcp"},
		{"filter:\n  input:\n    rules: [\"-6 -j REJECT --reject-with icmp-host-prohibited\"]\n", "reject is IPv4 only but the rule is IPv6"},
		{"filter:\n  input:\n    rules: [\"-j REJECT --reject-with icmp-bogus\"]\n", `reject_with "icmp-bogus": unknown`},
		{"filter:\n  input:\n    policy: reject\n", `policy "reject" is not accept or drop`},
		{"filter:\n  mine:\n    policy: drop\n", "a user chain has no policy"},
		{"filter:\n  input:\n    rules: [{proto: tcp, dprot: 22}]\n", `unknown field "dprot", did you mean "dport"?`},
		{"filter:\n  input:\n    rules: [{target: acept}]\n", `unknown target "acept", did you mean "accept"?`},
		{"filter:\n  input:\n    rules: [{target: accept, jump: x}]\n", "a rule has one of target:, jump:, goto:"},
		{"filter:\n  input:\n    rules: [{limit: {limit: 5/s, limit_brust: 3}}]\n", `unknown field "limit_brust"`},
		{"filter:\n  input:\n    rules: [\"-m limit --limit 5/fortnight\"]\n", `bad rate unit "fortnight"`},
		{"filter:\n  input:\n    rules: [\"-p tcp --syn --tcp-flags SYN SYN\"]\n", "tcp_flags and syn together"},
		{"filter:\n  input:\n    rules: [\"-m nosuch\"]\n", "Couldn't load match `nosuch'"},
		{"filter:\n  input:\n    rules: [\"-p tcp ! ! --dport 1\"]\n", `multiple "!" flags not allowed`},
		{"filter:\n  input:\n    rules: [\"-p tcp --dport\"]\n", `option "--dport" requires an argument`},
		{"filter:\n  input:\n    rules: [\"-m comment ! --comment x\"]\n", `"!" not allowed before --comment`},
		{"filter:\n  input:\n    rules: [\"-m addrtype --dst-type BLACKHOLE\"]\n", "BLACKHOLE needs route types pipestack does not have"},
		{"mangle:\n  prerouting:\n    rules: [\"-p tcp --syn -j TCPMSS --clamp-mss-to-pmtu\"]\n", "path-MTU clamping only supported in FORWARD, OUTPUT and POSTROUTING"},
		{"mangle:\n  forward:\n    rules: [\"-p tcp -j TCPMSS --set-mss 1400\"]\n", "TCPMSS target: only works on TCP SYN packets"},
		{"filter:\n  input:\n    rules:\n      - {id: a, target: accept}\n      - {id: a, target: drop}\n", `id "a" is already the id of table filter, chain input, rule 1`},
		{"filter:\n  input:\n    rules: [\"-p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14:15,16\"]\n", "too many ports"},
		{"filter:\n  input:\n    rules: [\"-j input\"]\n", "cannot jump to built-in chain input"},
		{"filter:\n  input:\n    rules: [\"-p tcp 'unterminated\"]\n", "unterminated ' quote"},
		{"filter:\n  input:\n    rules: [{id: a, rule: \"-j ACCEPT\", proto: tcp}]\n", `unknown field "proto" (known: id, rule)`},
		{"filter:\n  input:\n    rules: [{id: a, rule: \"--bogus\"}]\n", `unknown option "--bogus"`},
	}
	for _, c := range cases {
		_, err := load(t, c.sec)
		if err == nil {
			t.Errorf("no error for\n%s(want %q)", c.sec, c.want)
			continue
		}
		msg := err.Error()
		if pe, ok := err.(*pipeline.PosError); ok && pe.Where != "" {
			msg = fmt.Sprintf("%d:%d: %s: %s", pe.Line, pe.Col, pe.Where, pe.Msg)
		}
		if !strings.Contains(msg, c.want) {
			t.Errorf("error %q\n  for\n%s  want it to contain %q", msg, c.sec, c.want)
		}
	}
}

// TestValidRuleSets: things iptables accepts are accepted.
func TestValidRuleSets(t *testing.T) {
	for _, sec := range []string{
		"filter:\n  input:\n    rules: [\"-j RETURN\"]\n", // return in a built-in chain: the policy
		"filter:\n  input:\n    rules: [\"-i lan+ -j ACCEPT\", \"-p tcp -m tcp --dport 22\"]\n",
		"filter:\n  forward:\n    rules: [\"-i lan -o wan -j ACCEPT\"]\n",
		"mangle:\n  forward:\n    rules: [\"-p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu\"]\n",
		"raw:\n  output:\n    rules: [\"-j NOTRACK\"]\n",
		"filter:\n  input:\n    rules: [\"-p ipv6-icmp --icmpv6-type echo-request -j ACCEPT\", \"-p icmp --icmp-type 3/4 -j ACCEPT\"]\n",
		"filter:\n  input:\n  output: {}\n",
		"filter:\n  forward:\n    rules: [\"-p tcp -j REJECT --reject-with icmp-admin-prohibited\", \"-6 -j REJECT --reject-with icmp6-adm-prohibited\"]\n",
	} {
		if _, err := load(t, sec); err != nil {
			t.Errorf("%v\n%s", err, sec)
		}
	}
}
