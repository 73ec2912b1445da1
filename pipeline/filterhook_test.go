package pipeline

import "testing"

type verdictTarget Verdict

func (v verdictTarget) Action(*PacketContext) (Verdict, int) { return Verdict(v), 0 }

type markTarget uint32

func (m markTarget) Action(pc *PacketContext) (Verdict, int) {
	pc.Pkt.Mark = pc.Pkt.Mark*10 + uint32(m)
	return VerdictContinue, 0
}

type gotoTarget int

func (g gotoTarget) Action(*PacketContext) (Verdict, int) { return VerdictGoto, int(g) }
func (g gotoTarget) JumpsTo() int                         { return int(g) }

type jumpTarget int

func (j jumpTarget) Action(*PacketContext) (Verdict, int) { return VerdictJump, int(j) }
func (j jumpTarget) JumpsTo() int                         { return int(j) }

func table(rules ...Target) *HookTable {
	t := &HookTable{Chains: []Chain{{Name: "c"}}, Policy: VerdictAccept}
	for _, r := range rules {
		t.Chains[0].Rules = append(t.Chains[0].Rules, Rule{Target: r})
	}
	return t
}

// TestComposeHooks: several tables at one hook run in priority order (ties
// in the order given, Config.Hooks first); an accept lets the next table
// run, a drop ends the hook; a hook with one table gets it alone.
func TestComposeHooks(t *testing.T) {
	goT := table(markTarget(1))
	raw := table(markTarget(2))
	mangle := table(markTarget(3), verdictTarget(VerdictAccept), markTarget(9))
	filter := table(markTarget(4), verdictTarget(VerdictDrop))
	last := table(markTarget(5))
	var fromGo [NumHooks]*HookTable
	fromGo[Forward] = goT
	hooks, err := composeHooks(fromGo, []HookEntry{
		{Hook: Forward, Priority: PriorityFilter, Name: "filter", Table: filter},
		{Hook: Forward, Priority: 10, Name: "last", Table: last},
		{Hook: Forward, Priority: PriorityMangle, Name: "mangle", Table: mangle},
		{Hook: Forward, Priority: PriorityRaw, Name: "raw", Table: raw},
		{Hook: Input, Priority: 0, Name: "only", Table: last},
	})
	if err != nil {
		t.Fatal(err)
	}
	if hi := hooks[Input]; hi == nil || len(hi.tables) != 1 || hi.tables[0] != last || hooks[Output] != nil {
		t.Errorf("a hook with one table must get it, one with none nil")
	}
	pkt := &Packet{}
	pc := &PacketContext{Pkt: pkt}
	if v := hooks[Forward].evaluate(pc, 0); v != VerdictDrop {
		t.Errorf("verdict %v, want drop", v)
	}
	// raw (2), mangle (3, accept: 9 skipped), Config.Hooks (1, priority 0
	// before the filter's), filter (4, drop: last never runs).
	if pkt.Mark != 2314 {
		t.Errorf("tables ran as %d, want 2314", pkt.Mark)
	}
	if _, err := composeHooks(fromGo, []HookEntry{{Hook: Forward, Name: "bad", Table: &HookTable{Chains: []Chain{{}}, Policy: VerdictReturn}}}); err == nil {
		t.Errorf("a bad table was composed")
	}
}

// TestEvaluateGoto: a goto continues without a frame; the end of the chain
// gone to returns to the frame below (here: the policy).
func TestEvaluateGoto(t *testing.T) {
	tb := &HookTable{Chains: []Chain{
		{Name: "entry", Rules: []Rule{{Target: jumpTarget(1)}, {Target: markTarget(7)}}},
		{Name: "a", Rules: []Rule{{Target: gotoTarget(2)}, {Target: markTarget(8)}}},
		{Name: "b", Rules: []Rule{{Target: markTarget(1)}, {Target: verdictTarget(VerdictReturn)}, {Target: markTarget(9)}}},
	}, Policy: VerdictDrop}
	if err := tb.Validate(); err != nil {
		t.Fatal(err)
	}
	pkt := &Packet{}
	if v := tb.Evaluate(&PacketContext{Pkt: pkt}); v != VerdictDrop {
		t.Errorf("verdict %v", v)
	}
	// b marks 1, returns past a (8 skipped) into entry, which marks 7.
	if pkt.Mark != 17 {
		t.Errorf("ran %d, want 17", pkt.Mark)
	}
	loop := &HookTable{Chains: []Chain{{Name: "x", Rules: []Rule{{Target: gotoTarget(0)}}}}, Policy: VerdictAccept}
	if loop.Validate() == nil {
		t.Errorf("a goto loop passed Validate")
	}
}
