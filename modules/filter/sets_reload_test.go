package filter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

const setsBase = `
name: r
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, framing: ip, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, framing: ip, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
filter:
  sets:
    blocked: {type: hash:ip, timeout: 60, elements: [ELEMENTS]}
  filter:
    forward:
      rules: ["-m set --match-set blocked dst -j DROP"RULES]
`

// TestSetsAtRunTime: elements added and deleted at run time decide the
// next packet; a reload that leaves the set's declaration alone keeps
// them; one that changes its elements (in the file it reads too) replaces
// them and says so; a failed reload changes nothing; timeouts run on the
// stack clock.
func TestSetsAtRunTime(t *testing.T) {
	dir := t.TempDir()
	cfg := func(elems, rules string) string {
		s := strings.Replace(setsBase, "ELEMENTS", elems, 1)
		return strings.Replace(s, "RULES", rules, 1)
	}
	clk := pt.NewManualClock()
	n := pt.NewNode(t, filepath.Join(dir, "r"), cfg("10.0.2.7", ""), pipeline.Options{Clock: clk})
	a := n.Link(t, "a")
	drops := func() uint64 { return n.Counter("stack", "filter_drop_forward") }
	send := func(dst string) bool {
		before := drops()
		a.InjectFrames([][]byte{pt.UDP4("10.0.1.2", dst, 9, 2, 64, nil)})
		return drops() > before
	}
	if !send("10.0.2.7") || send("10.0.2.8") {
		t.Fatal("declared element")
	}
	sets := StackSets(n.Stack)
	if _, err := sets["blocked"].Add("10.0.2.8", -1, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := sets["blocked"].Add("10.0.2.9", 5*time.Second, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if !send("10.0.2.8") || !send("10.0.2.9") {
		t.Fatal("run-time adds not seen by the next packet")
	}
	clk.Advance(6 * time.Second)
	if send("10.0.2.9") || !send("10.0.2.8") {
		t.Fatal("timeout on the stack clock")
	}
	// A reload that changes a rule, not the set: the set is the same.
	if err := n.Reload(cfg("10.0.2.7", `, "-p tcp -j ACCEPT"`)); err != nil {
		t.Fatal(err)
	}
	if StackSets(n.Stack)["blocked"] != sets["blocked"] || !send("10.0.2.8") {
		t.Fatal("an unchanged set lost its run-time contents across a reload")
	}
	if notes := reloadNotes(n.Stack); len(notes) != 0 {
		t.Errorf("notes for an unchanged set: %q", notes)
	}
	// The same element written otherwise (an IPv4-mapped address) is the same set.
	if err := n.Reload(cfg(`"::ffff:10.0.2.7"`, `, "-p tcp -j ACCEPT", "-p udp -j ACCEPT"`)); err != nil {
		t.Fatal(err)
	}
	if StackSets(n.Stack)["blocked"] != sets["blocked"] || len(reloadNotes(n.Stack)) != 0 {
		t.Fatal("::ffff:10.0.2.7 for 10.0.2.7 made another set")
	}
	// A broken reload: nothing changes.
	if err := n.Reload(cfg("10.0.2.300", "")); err == nil || !strings.Contains(err.Error(), `element "10.0.2.300"`) {
		t.Fatalf("broken element: %v", err)
	}
	if !send("10.0.2.8") {
		t.Fatal("a failed reload changed the set")
	}
	// The file changes the set's elements: the file wins, and says so.
	if err := n.Reload(cfg("10.0.2.7, 10.0.2.10", "")); err != nil {
		t.Fatal(err)
	}
	if send("10.0.2.8") || !send("10.0.2.10") || !send("10.0.2.7") {
		t.Fatal("the file's elements did not replace the run-time ones")
	}
	notes := reloadNotes(n.Stack)
	if len(notes) != 1 || !strings.Contains(notes[0], "set blocked: the file changed its elements: the file's 2 elements replace the running set's 2 (its run-time changes are dropped)") {
		t.Errorf("notes %q", notes)
	}
	// Elements from a file: changing the file is a change of the set.
	file := filepath.Join(dir, "blocked.txt")
	if err := os.WriteFile(file, []byte("# block list\n10.0.2.11\nadd blocked 10.0.2.12 timeout 30\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withFile := strings.Replace(cfg("", ""), "elements: []", "file: blocked.txt", 1)
	if err := n.Reload(withFile); err != nil {
		t.Fatal(err)
	}
	sets = StackSets(n.Stack)
	sets["blocked"].Add("10.0.2.13", -1, clk.Now())
	if !send("10.0.2.11") || !send("10.0.2.12") || !send("10.0.2.13") || send("10.0.2.7") {
		t.Fatal("elements from the file")
	}
	if err := os.WriteFile(file, []byte("10.0.2.11\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.Reload(withFile); err != nil { // the same text, another file
		t.Fatal(err)
	}
	if send("10.0.2.13") || send("10.0.2.12") || !send("10.0.2.11") {
		t.Fatal("a changed element file did not replace the set")
	}
	if err := os.WriteFile(file, []byte("10.0.2.11\n10.0.0.0/8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := n.Reload(withFile)
	if err == nil || !strings.Contains(err.Error(), "(set blocked): blocked.txt line 2:") || !strings.Contains(err.Error(), "not prefixes") {
		t.Fatalf("a bad line in the file: %v", err)
	}
}

func reloadNotes(s *pipeline.Stack) []string {
	for _, mc := range s.Generation().Config().Modules {
		if m, ok := mc.Module.(*Module); ok {
			return m.ReloadNotes()
		}
	}
	return nil
}
