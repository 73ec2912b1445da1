package filter

import (
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/pipestack/pipestack/pipeline"
)

// FuzzParseRule: no rule text makes the iptables-syntax parser, the module
// decoding or provisioning panic; a rule that loads has a canonical text
// that loads again as the same rule.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{
		"-p tcp --dport 22 -j ACCEPT",
		"-p tcp -s 192.0.2.0/24 ! --sport 1:1024 --tcp-flags SYN,ACK SYN -j DROP",
		"! -i wan+ -o lan -g chain",
		"-p udp -m multiport --dports 53,123:130 -m limit --limit 5/s --limit-burst 10 -j LOG --log-prefix 'x y'",
		"-6 -p ipv6-icmp --icmpv6-type neighbour-solicitation -j ACCEPT",
		"-p icmp --icmp-type 3/4 -m comment --comment \"hi\" -j REJECT --reject-with icmp-host-prohibited",
		"-m mark --mark 0x1/0xff -j MARK --set-xmark 0x2/0x3",
		"-m iprange --src-range 10.0.0.1-10.0.0.9 -m length --length 0:100 -m ttl --ttl-lt 3",
		"-m addrtype --dst-type LOCAL,BROADCAST -m pkttype ! --pkt-type unicast -j RETURN",
		"-p tcp --syn -j TCPMSS --clamp-mss-to-pmtu",
		"-f -j DROP", "", "!", "-p", "--dport 1", "'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		src, err := parseRule(s)
		if err != nil {
			return
		}
		r, err := buildRule(src, &yaml.Node{Line: 1, Column: 1}, "rule 1")
		if err != nil {
			return
		}
		if err := r.provision(&pipeline.Context{}, &provisionEnv{}); err != nil {
			return
		}
		if r.tgt != nil {
			if _, ok := r.tgt.(*Jump); ok {
				return // the chain need not exist here
			}
		}
		if r.text == "" {
			return // a rule that matches all and does nothing: {} in YAML
		}
		src2, err := parseRule(r.text)
		if err != nil {
			t.Fatalf("%q → canonical %q does not parse: %v", s, r.text, err)
		}
		r2, err := buildRule(src2, &yaml.Node{Line: 1, Column: 1}, "rule 1")
		if err != nil {
			t.Fatalf("%q → canonical %q does not build: %v", s, r.text, err)
		}
		if err := r2.provision(&pipeline.Context{}, &provisionEnv{}); err != nil {
			t.Fatalf("%q → canonical %q does not provision: %v", s, r.text, err)
		}
		if r2.text != r.text {
			t.Fatalf("%q → %q → %q: canonical text not stable", s, r.text, r2.text)
		}
	})
}
