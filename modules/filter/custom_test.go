package filter

import (
	"strings"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
)

func init() {
	pipeline.RegisterModule(new(oddPort))
	pipeline.RegisterModule(new(markTen))
}

// oddPort (filter.match.oddport, test only): --odd-dport matches an odd
// destination port; ! inverts.
type oddPort struct {
	OddDport string `yaml:"odd_dport"`
	inv      bool
}

func (*oddPort) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.oddport", Summary: "test only", New: func() pipeline.Module { return new(oddPort) }}
}
func (*oddPort) Options() []Opt { return []Opt{{Name: "odd-dport", Args: 0, Invert: true}} }
func (m *oddPort) Provision(*pipeline.Context) error {
	m.inv = strings.HasPrefix(m.OddDport, "!")
	return nil
}
func (*oddPort) Fields() pipeline.FieldSet              { return pipeline.FieldDstPort }
func (*oddPort) Constraint() []pipeline.FieldConstraint { return nil }
func (m *oddPort) Spec() string                         { return "-m oddport " + not(m.inv) + "--odd-dport" }
func (m *oddPort) Protocols() []uint8                   { return []uint8{17} }
func (m *oddPort) Match(pc *pipeline.PacketContext) (bool, bool) {
	return (pc.Tuple.DstPort%2 == 1) != m.inv, false
}

// markTen (filter.target.markten, test only): sets the mark to 10; mangle
// only.
type markTen struct{}

func (*markTen) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.markten", Summary: "test only", New: func() pipeline.Module { return new(markTen) }}
}
func (*markTen) Options() []Opt   { return nil }
func (*markTen) Spec() string     { return "-j MARKTEN" }
func (*markTen) Label() string    { return "MARKTEN" }
func (*markTen) Tables() []string { return []string{"mangle"} }
func (*markTen) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	pc.Pkt.Mark = 10
	return pipeline.VerdictContinue, 0
}

// TestCustomModules: rules name registered modules that are not built in,
// in both forms; their options come from Options(); their limits hold.
func TestCustomModules(t *testing.T) {
	m := mustLoad(t, `
filter:
  forward:
    rules:
      - "-p udp -m oddport --odd-dport -j DROP"
      - {proto: udp, oddport: {odd_dport: "!true"}, target: accept}
mangle:
  forward:
    rules:
      - "-j MARKTEN"
      - {target: markten}
`)
	for _, c := range []struct {
		dport uint16
		want  pipeline.Verdict
	}{{53, pipeline.VerdictDrop}, {54, pipeline.VerdictAccept}} {
		pc := pk{proto: 17, dport: c.dport, hook: pipeline.Forward}.ctx(t)
		if v := eval(m, pc); v != c.want || pc.Pkt.Mark != 10 {
			t.Errorf("dport %d: %v mark %d", c.dport, v, pc.Pkt.Mark)
		}
	}
	if got := m.tables[1].chains[m.tables[1].byName["forward"]].rules[0].text; got != "-p udp -m oddport --odd-dport -j DROP" {
		t.Errorf("canonical %q", got)
	}
	for rule, want := range map[string]string{
		`"-p udp -m oddport --odd-port -j DROP"`: `unknown option "--odd-port"`,
		`"-m oddport --odd-dport"`:               "oddport match: only valid with -p udp",
		`"-j MARKTEN"`:                           "MARKTEN target: only valid in mangle table, not filter",
		`"-m nosuch -j DROP"`:                    `unknown match "nosuch"`,
		`"-m base -j DROP"`:                      `unknown match "base"`,
		`{target: nosuch}`:                       `unknown target "nosuch"`,
	} {
		_, err := load(t, "filter:\n  forward:\n    rules:\n      - "+rule+"\n")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", rule, err, want)
		}
	}
	if _, err := load(t, "filter:\n  markten:\n    rules: []\n"); err == nil || !strings.Contains(err.Error(), "target's name") {
		t.Errorf("a chain named like a custom target: %v", err)
	}
}
