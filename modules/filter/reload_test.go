package filter

import (
	"strings"
	"testing"

	_ "github.com/pipestack/pipestack/modules/ipv4"
	_ "github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

const reloadBase = `
name: r
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, framing: ip, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, framing: ip, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
filter:
  filter:
    forward:
      rules:
RULES`

// TestCountersAcrossReloads: the store holds one counter per rule of the
// running generation; a reload keeps unchanged rules' counters and drops
// the removed ones'; a failed reload changes nothing; closing the stack's
// generation releases them all.
func TestCountersAcrossReloads(t *testing.T) {
	cfg := func(rules ...string) string {
		var b strings.Builder
		for _, r := range rules {
			b.WriteString("        - " + r + "\n")
		}
		return strings.Replace(reloadBase, "RULES", b.String(), 1)
	}
	n := pt.NewNode(t, "r", cfg(`"-p udp --dport 1 -j ACCEPT"`, `"-p udp --dport 1 -j ACCEPT"`, `{id: x, proto: udp}`, `"-p udp --dport 2"`), pipeline.Options{})
	store := n.Stack.Shared(sharedCounters, func() any { t.Fatal("no store"); return nil }).(*counterStore)
	// 4 rules and the policies of input, forward and output.
	if got := store.len(); got != 7 {
		t.Fatalf("%d counters, want 7", got)
	}
	a := n.Link(t, "a")
	a.InjectFrames([][]byte{pt.UDP4("10.0.1.2", "10.0.2.2", 9, 2, 64, nil)})
	key := func(k string) *ruleCounter {
		store.mu.Lock()
		defer store.mu.Unlock()
		if e := store.m[k]; e != nil {
			return e.c
		}
		return nil
	}
	c2 := key("filter/forward/-p udp -m udp --dport 2#1")
	if p, _ := c2.load(); p != 1 {
		t.Fatalf("rule counted %d", p)
	}
	// The duplicate and the rule by id change; --dport 2 stays.
	if err := n.Reload(cfg(`"-p udp --dport 1 -j ACCEPT"`, `{id: x, proto: tcp}`, `"-p udp --dport 2"`)); err != nil {
		t.Fatal(err)
	}
	if got := store.len(); got != 6 {
		t.Errorf("%d counters after the reload, want 6 (the second duplicate gone)", got)
	}
	if key("filter/forward/-p udp -m udp --dport 2#1") != c2 || key("id/x") == nil || key("filter/forward/-p udp -m udp --dport 1 -j ACCEPT#2") != nil {
		t.Errorf("store after reload: %v", store.m)
	}
	if err := n.Reload(cfg(`"-p udp --dport 1 -j nochain"`)); err == nil {
		t.Fatal("broken reload passed")
	}
	if got := store.len(); got != 6 || key("filter/forward/-p udp -m udp --dport 2#1") != c2 {
		t.Errorf("a failed reload changed the store: %d", got)
	}
	if err := n.Reload(strings.Replace(reloadBase, "filter:\n  filter:\n    forward:\n      rules:\nRULES", "", 1)); err != nil {
		t.Fatal(err)
	}
	if got := store.len(); got != 0 {
		t.Errorf("%d counters without a filter, want 0", got)
	}
}
