package filter

import (
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

const vmapSection = `maps:
  by_port:
    type: port
    counters: true
    elements: {"22": jump ssh, "tcp:80": accept, "1000-2000": drop, "1500": continue, "udp:53": goto dns}
  by_src: {type: hash:net, elements: ["10.0.9.0/24 : drop", "10.0.8.0/24 : return"]}
filter:
  forward:
    policy: accept
    rules:
      - "-j VMAP --vmap by_src src"
      - {proto: tcp, target: {vmap: {vmap: "by_port dst"}}}
      - {proto: udp, target: {vmap: {vmap: "by_port dst"}}}
      - "-p tcp --dport 1500 -j DROP"
      - "-p udp -j DROP"
  ssh:
    rules: ["-s 10.0.1.0/24 -j ACCEPT", "-j DROP"]
  dns:
    rules: ["-j RETURN"]
`

// TestVMap: a verdict map's element decides (accept, drop, continue to
// the next rule, jump and goto into user chains, return); the narrower
// element inside a range wins; a packet no element holds goes on; element
// counters count.
func TestVMap(t *testing.T) {
	m := mustLoad(t, vmapSection)
	cases := []struct {
		p    pk
		want pipeline.Verdict
	}{
		{pk{proto: 6, src: "192.0.2.1", dst: "10.0.2.2", dport: 80}, pipeline.VerdictAccept},
		{pk{proto: 17, src: "192.0.2.1", dst: "10.0.2.2", dport: 80}, pipeline.VerdictDrop}, // tcp:80 only: no element, rule 5
		{pk{proto: 6, src: "10.0.1.5", dst: "10.0.2.2", dport: 22}, pipeline.VerdictAccept}, // jump ssh: accepted there
		{pk{proto: 6, src: "192.0.2.1", dst: "10.0.2.2", dport: 22}, pipeline.VerdictDrop},  // ssh: not from 10.0.1.0/24
		{pk{proto: 6, src: "192.0.2.1", dst: "10.0.2.2", dport: 1200}, pipeline.VerdictDrop},
		{pk{proto: 6, src: "192.0.2.1", dst: "10.0.2.2", dport: 1500}, pipeline.VerdictDrop},  // continue → rule 4
		{pk{proto: 17, src: "192.0.2.1", dst: "10.0.2.2", dport: 53}, pipeline.VerdictAccept}, // goto dns: its RETURN is the policy, not rule 5
		{pk{proto: 6, src: "10.0.9.1", dst: "10.0.2.2", dport: 80}, pipeline.VerdictDrop},     // by_src drop
		{pk{proto: 6, src: "10.0.8.1", dst: "10.0.2.2", dport: 1200}, pipeline.VerdictAccept}, // by_src return: the policy
	}
	for i, c := range cases {
		pc := c.p.ctx(t)
		pc.Hook = pipeline.Forward
		if got := eval(m, pc); got != c.want {
			t.Errorf("case %d %+v: %v, want %v", i, c.p, got, c.want)
		}
	}
	in := m.sets["by_port"].Info(time.Now(), true)
	counts := map[string]uint64{}
	for _, e := range in.Members {
		counts[e.Elem+" : "+e.Verdict] = e.Packets
	}
	if counts["tcp:80 : accept"] != 1 || counts["22 : jump ssh"] != 2 || counts["1500 : continue"] != 1 || counts["udp:53 : goto dns"] != 1 {
		t.Errorf("element counters %v", counts)
	}
	r := m.tables[0].chains[m.tables[0].byName["forward"]].rules[1]
	if r.text != "-p tcp -j VMAP --vmap by_port dst" {
		t.Errorf("text %q", r.text)
	}
	if c := m.tables[0].chains[m.tables[0].byName["dns"]]; c.refs != 2 {
		t.Errorf("dns referenced %d times, want 2 (two rules use the map)", c.refs)
	}
	if _, err := m.sets["by_port"].Add("23 : accept", -1, time.Now()); err == nil || !strings.Contains(err.Error(), "verdict map") {
		t.Errorf("adding to a map: %v", err)
	}
}

// TestVMapErrors: what a broken map or VMAP rule says.
func TestVMapErrors(t *testing.T) {
	for _, c := range []struct{ sec, want string }{
		{"maps:\n  m: {type: port, elements: {\"22\": jump nochain}}\nfilter:\n  forward:\n    rules: [\"-j VMAP --vmap m dst\"]\n", `chain "nochain" does not exist in this table`},
		{"maps:\n  m: {type: port, elements: {\"22\": jump input}}\nfilter:\n  forward:\n    rules: [\"-j VMAP --vmap m dst\"]\n", `cannot jump to built-in chain input`},
		{"maps:\n  m: {type: port, elements: {\"22\": jump c}}\nfilter:\n  forward:\n    rules: [\"-j c\"]\n  c:\n    rules: [\"-j VMAP --vmap m dst\"]\n", `jumps loop: c -> c`},
		{"maps:\n  m: {type: port, elements: {\"22\": reject}}\nfilter:\n  forward:\n    rules: [\"-j VMAP --vmap m dst\"]\n", `verdict "reject": accept, drop`},
		{"sets:\n  m: {type: port, elements: [\"22\"]}\nfilter:\n  forward:\n    rules: [\"-j VMAP --vmap m dst\"]\n", `m is a set, not a verdict map`},
		{"maps:\n  m: {type: port, elements: {\"22\": accept}}\nsets:\n  m: {type: port}\nfilter:\n  forward:\n    rules: [\"-j DROP\"]\n", `a set or map of this name is declared already`},
		{"maps:\n  m: {type: port, elements: {\"22\": jump c}}\nfilter:\n  output:\n    rules: [\"-j VMAP --vmap m dst\"]\n  c:\n    rules: [\"-i lan -j DROP\"]\n", `Can't use -i with OUTPUT (chain c is reached from it)`},
	} {
		_, err := load(t, c.sec)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want …%s…", c.sec, err, c.want)
		}
	}
}
