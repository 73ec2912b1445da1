package filter_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

func ExampleRuleSet() {
	rs := filter.NewRuleSet()
	rs.Table("filter").Chain("forward", filter.Drop).
		Append("-p tcp --dport 22 -j ACCEPT").
		AppendID("dns", "-p udp --dport 53 -j ACCEPT").
		AppendYAML("{proto: icmp, icmp_type: echo-request, target: accept}")
	if _, err := rs.Module(); err != nil {
		fmt.Println(err)
	}
	fmt.Print(rs.YAML())
	// Output:
	// filter:
	//   forward:
	//     policy: drop
	//     rules:
	//       - -p tcp --dport 22 -j ACCEPT
	//       - {id: dns, rule: -p udp --dport 53 -j ACCEPT}
	//       - {proto: icmp, icmp_type: echo-request, target: accept}
}

const goLinks = `
name: embedded
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, framing: ip, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, framing: ip, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
`

// TestRuleSetFiltersTraffic: a program installs rules built in Go, traffic
// is filtered by them, and Stack.Apply of another rule set replaces them.
func TestRuleSetFiltersTraffic(t *testing.T) {
	build := func(port string) *pipeline.Config {
		cfg, err := pipeline.ParseConfig("embedded.yaml", []byte(goLinks))
		if err != nil {
			t.Fatal(err)
		}
		rs := filter.NewRuleSet()
		rs.Table("filter").Chain("forward", filter.Drop).Append("-p udp --dport " + port + " -j ACCEPT")
		if err := rs.Install(cfg); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	s := pipeline.New(pipeline.Options{})
	t.Cleanup(func() { s.Close() })
	if _, err := s.Apply(build("53")); err != nil {
		t.Fatal(err)
	}
	n := &pt.Node{Name: "embedded", Stack: s}
	send := func(dport uint16) int {
		n.Link(t, "a").InjectFrames([][]byte{filtertest.Packet{Src: "10.0.1.2", Dst: "10.0.2.2", DstPort: dport}.Bytes()})
		return len(pt.Drain(n.Link(t, "b")))
	}
	if send(53) != 1 || send(54) != 0 {
		t.Fatal("the Go rules do not filter")
	}
	changed, err := s.Apply(build("54"))
	if err != nil || !changed {
		t.Fatalf("apply: %v %v", changed, err)
	}
	if send(53) != 0 || send(54) != 1 {
		t.Error("the replaced rules still run")
	}
	// The same validation as the file: errors name table, chain, rule.
	rs := filter.NewRuleSet()
	rs.Table("filter").Chain("forward").Append("-p tcp --dport 22 -j nochain")
	cfg, _ := pipeline.ParseConfig("embedded.yaml", []byte(goLinks))
	if err := rs.Install(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(cfg); err == nil || !strings.Contains(err.Error(), "table filter, chain forward, rule 1") || !strings.Contains(err.Error(), `chain "nochain" does not exist`) {
		t.Errorf("bad rule: %v", err)
	}
	if send(54) != 1 {
		t.Error("a failed Apply changed the rules")
	}
	rs = filter.NewRuleSet()
	rs.Table("nat")
	if _, err := rs.Module(); err == nil {
		t.Error("a nat table passed")
	}
}

// TestRuleSetSameAsFile: the rule set and the file's section give the
// same rules (canonical text).
func TestRuleSetSameAsFile(t *testing.T) {
	rs := filter.NewRuleSet()
	rs.Table("filter").Chain("input", filter.Drop).Append("-p tcp --dport 22 -j ACCEPT")
	cfg, _ := pipeline.ParseConfig("embedded.yaml", []byte(goLinks))
	rs.Install(cfg)
	file, err := pipeline.ParseConfig("f.yaml", []byte(goLinks+"filter:\n  filter:\n    input:\n      policy: drop\n      rules: [\"-p tcp --dport 22 -j ACCEPT\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	list := func(cfg *pipeline.Config) string {
		s := pipeline.New(pipeline.Options{})
		defer s.Close()
		if _, err := s.Apply(cfg); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, mc := range cfg.Modules {
			if l, ok := mc.Module.(pipeline.RuleLister); ok {
				for _, c := range l.ListRules() {
					fmt.Fprintf(&b, "%s %s %s;", c.Table, c.Chain, c.Policy)
					for _, r := range c.Rules {
						b.WriteString(r.Rule + ";")
					}
				}
			}
		}
		return b.String()
	}
	if a, b := list(cfg), list(file); a != b || !strings.Contains(a, "filter INPUT DROP;-p tcp -m tcp --dport 22 -j ACCEPT;") {
		t.Errorf("rule set %q\nfile     %q", a, b)
	}
}
