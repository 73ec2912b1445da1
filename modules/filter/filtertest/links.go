package filtertest

import (
	"strings"
	"testing"

	_ "github.com/pipestack/pipestack/modules/ipv4"         // network.ipv4
	_ "github.com/pipestack/pipestack/modules/ipv6"         // network.ipv6
	_ "github.com/pipestack/pipestack/modules/link/channel" // link.channel
	"github.com/pipestack/pipestack/pipeline"
)

// Links is a stack with in-memory links of the given names, for running a
// matcher or target with a PacketContext whose Batch knows the links (as
// at a real hook: -i/-o names, the generation's local addresses).
type Links struct {
	Stack *pipeline.Stack
	ids   map[string]pipeline.NICID
}

// NewLinks builds a stack with one link.channel link (IP framing) per name;
// addresses (optional, one per name, "" for none) are given to the links in
// order. The stack is closed when the test ends.
func NewLinks(t testing.TB, names []string, addresses ...string) *Links {
	t.Helper()
	var b strings.Builder
	b.WriteString("name: filtertest\nmodules: [network.ipv4, network.ipv6]\nlinks:\n")
	for i, n := range names {
		b.WriteString("  - {name: " + n + ", module: link.channel, framing: ip")
		if i < len(addresses) && addresses[i] != "" {
			b.WriteString(", addresses: [" + addresses[i] + "]")
		}
		b.WriteString("}\n")
	}
	cfg, err := pipeline.ParseConfig("filtertest.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("filtertest: %v", err)
	}
	s := pipeline.New(pipeline.Options{})
	t.Cleanup(func() { s.Close() })
	if _, err := s.Apply(cfg); err != nil {
		t.Fatalf("filtertest: %v", err)
	}
	l := &Links{Stack: s, ids: map[string]pipeline.NICID{}}
	for _, n := range names {
		nic, ok := s.NIC(n)
		if !ok {
			t.Fatalf("filtertest: no NIC %s", n)
		}
		l.ids[n] = nic.ID()
	}
	return l
}

// Module is filtertest.Module with the stack's links as the context's
// LinkIDs, as when a generation is built: a matcher that resolves link
// names (filter.match.base's in/out) sees these links.
func (l *Links) Module(t testing.TB, id, config string) pipeline.Module {
	t.Helper()
	return module(t, id, config, l.ids)
}

// ID is the NIC ID of a link ("" gives 0: no link).
func (l *Links) ID(t testing.TB, name string) pipeline.NICID {
	t.Helper()
	if name == "" {
		return 0
	}
	id, ok := l.ids[name]
	if !ok {
		t.Fatalf("filtertest: no link %q", name)
	}
	return id
}

// Run makes p's context at hook, received on link in and leaving through
// link out ("" where the hook does not know it), and calls f with it inside
// a batch of the stack's generation (pc.Batch set). pc is valid only
// during f.
func (l *Links) Run(t testing.TB, p Packet, hook pipeline.Hook, in, out string, f func(pc *pipeline.PacketContext)) {
	t.Helper()
	pc := Context(t, p, hook, l.ID(t, in), l.ID(t, out))
	if !l.Stack.Do(func(b *pipeline.Batch) {
		pc.Batch = b
		f(pc)
		pc.Batch = nil
	}) {
		t.Fatal("filtertest: the stack runs no generation")
	}
}
