package pipelinetest

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// HookSpy is a filter installed at every hook (one table per hook, one rule
// whose target is the spy): it records every packet each hook sees and can
// steal packets at one hook, as an out-of-process filter does, for the test
// to re-inject (Stack.Reinject) or drop. Safe for concurrent use.
type HookSpy struct {
	mu     sync.Mutex
	seen   [pipeline.NumHooks][]Seen
	at     pipeline.Hook
	n      int
	match  func(*pipeline.PacketContext) bool
	stolen []*pipeline.Packet
	path   []Hop
}

// Hop is one hook run on one packet, with the NICs the hook saw, in the
// order the spy saw them (HookSpy.Path).
type Hop struct {
	Hook    pipeline.Hook
	In, Out pipeline.NICID // 0: none at this hook
	Seen    Seen
}

// Path returns every hook run the spy saw, at any hook, in order, on the
// packets for which keep (nil: all) is true: the hooks a packet passed, in
// the order it passed them, and the NICs each one saw.
func (s *HookSpy) Path(keep func(Seen) bool) []Hop {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Hop
	for _, h := range s.path {
		if keep == nil || keep(h.Seen) {
			out = append(out, h)
		}
	}
	return out
}

// Seen is what a hook saw of one packet.
type Seen struct {
	Len      int // the whole packet, from its network header
	NetProto pipeline.NetworkProtocolNumber
	Tuple    pipeline.Tuple
	Fragment bool  // a non-first fragment
	MF       bool  // a fragment with more to come (IPv4 MF, IPv6 M)
	ICMPType uint8 // for ICMP and ICMPv6: the message type
}

// NewHookSpy returns a spy that steals nothing.
func NewHookSpy() *HookSpy { return &HookSpy{at: pipeline.NumHooks} }

// StealAt makes the spy steal, at hook h, the next n packets for which
// match (nil: every packet) is true.
func (s *HookSpy) StealAt(h pipeline.Hook, n int, match func(*pipeline.PacketContext) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at, s.n, s.match = h, n, match
}

// Install puts the spy's tables at every hook of cfg.
func (s *HookSpy) Install(cfg *pipeline.Config) {
	for h := pipeline.Hook(0); h < pipeline.NumHooks; h++ {
		cfg.Hooks[h] = &pipeline.HookTable{
			Chains: []pipeline.Chain{{Name: h.String(), Rules: []pipeline.Rule{{Target: spyTarget{s, h}}}}},
			Policy: pipeline.VerdictAccept,
		}
	}
}

// Stolen returns the packets stolen so far; the spy forgets them and the
// caller owns them.
func (s *HookSpy) Stolen() []*pipeline.Packet {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.stolen
	s.stolen = nil
	return p
}

// Seen returns what hook h saw, in order, of the packets for which keep
// (nil: all) is true.
func (s *HookSpy) Seen(h pipeline.Hook, keep func(Seen) bool) []Seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Seen
	for _, x := range s.seen[h] {
		if keep == nil || keep(x) {
			out = append(out, x)
		}
	}
	return out
}

// Counts is how many packets for which keep (nil: all) is true each hook
// saw.
func (s *HookSpy) Counts(keep func(Seen) bool) [pipeline.NumHooks]int {
	var c [pipeline.NumHooks]int
	for h := range c {
		c[h] = len(s.Seen(pipeline.Hook(h), keep))
	}
	return c
}

// FormatCounts writes per-hook counts for test messages.
func FormatCounts(c [pipeline.NumHooks]int) string {
	var b strings.Builder
	for h, n := range c {
		fmt.Fprintf(&b, "%v:%d ", pipeline.Hook(h), n)
	}
	return strings.TrimSpace(b.String())
}

type spyTarget struct {
	s *HookSpy
	h pipeline.Hook
}

func (t spyTarget) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if pc.Hook != t.h {
		panic(fmt.Sprintf("table of %v ran at %v", t.h, pc.Hook))
	}
	x := seenOf(pc)
	s.seen[t.h] = append(s.seen[t.h], x)
	s.path = append(s.path, Hop{Hook: t.h, In: pc.InNIC, Out: pc.OutNIC, Seen: x})
	if t.h == s.at && s.n > 0 && (s.match == nil || s.match(pc)) {
		s.n--
		s.stolen = append(s.stolen, pc.Pkt)
		return pipeline.VerdictStolen, 0
	}
	return pipeline.VerdictAccept, 0
}

func seenOf(pc *pipeline.PacketContext) Seen {
	x := Seen{Len: pc.Pkt.Len(), NetProto: pc.Pkt.NetProto, Tuple: pc.Tuple, Fragment: pc.Fragment}
	nh := pc.Pkt.NetworkHeader()
	var l4 []byte
	switch pc.Pkt.NetProto {
	case pipeline.IPv4ProtocolNumber:
		h := wire.IPv4(nh)
		x.MF = h.MoreFragments()
		l4 = h.Payload()
	case pipeline.IPv6ProtocolNumber:
		h := wire.IPv6(nh)
		if e, err := h.WalkExtensions(64); err == nil {
			x.MF = e.Fragment && e.MoreFragments
			l4 = h[e.ProtocolOffset:]
		}
	}
	if (x.Tuple.Proto == pipeline.ICMPv4ProtocolNumber || x.Tuple.Proto == pipeline.ICMPv6ProtocolNumber) && !x.Fragment && len(l4) > 0 {
		x.ICMPType = l4[0]
	}
	return x
}

// NewNodeWith is NewNode with edit applied to the parsed configuration
// before it is applied (to install hook tables: HookSpy.Install).
func NewNodeWith(t testing.TB, name, config string, opts pipeline.Options, edit func(*pipeline.Config)) *Node {
	t.Helper()
	cfg, err := pipeline.ParseConfig(name+".yaml", []byte(config))
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	if edit != nil {
		edit(cfg)
	}
	s := pipeline.New(opts)
	t.Cleanup(func() { s.Close() })
	if _, err := s.Apply(cfg); err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	return &Node{Name: name, Stack: s}
}
