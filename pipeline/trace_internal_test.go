package pipeline

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// coinMatcher matches when bit i of the packet's mark is set.
type coinMatcher struct{ bit uint }

func (coinMatcher) Fields() FieldSet { return FieldMark }
func (m coinMatcher) Match(pc *PacketContext) (bool, bool) {
	return pc.Pkt.Mark&(1<<m.bit) != 0, false
}

// fixedTarget returns a verdict (and chain); with set it also rewrites
// the packet's first byte and its mark's top bit, to show as a change.
type fixedTarget struct {
	v   Verdict
	to  int
	set bool
}

func (f fixedTarget) Action(pc *PacketContext) (Verdict, int) {
	if f.set {
		pc.Pkt.Data()[0] ^= 0xff
		pc.Pkt.Mark |= 1 << 31
	}
	return f.v, f.to
}

type traceJump struct{ fixedTarget }

// stealCoin steals when bit i of the mark is set; stealTarget steals.
type stealCoin struct{ bit uint }

func (stealCoin) Fields() FieldSet { return FieldMark }
func (m stealCoin) Match(pc *PacketContext) (bool, bool) {
	if pc.Pkt.Mark&(1<<m.bit) != 0 {
		return MatchStolen()
	}
	return false, false
}

type stealTarget struct{}

func (stealTarget) Action(pc *PacketContext) (Verdict, int) { return pc.Steal() }

func (j traceJump) JumpsTo() int { return j.to }

// randomTable makes a table whose jumps only go to higher chains (no loops).
func randomTable(r *rand.Rand) *HookTable {
	n := 1 + r.IntN(4)
	t := &HookTable{Policy: VerdictAccept}
	if r.IntN(2) == 0 {
		t.Policy = VerdictDrop
	}
	for c := 0; c < n; c++ {
		ch := Chain{Name: fmt.Sprintf("c%d", c)}
		for i := r.IntN(5); i > 0; i-- {
			var rl Rule
			if r.IntN(3) > 0 {
				rl.Matchers = []Matcher{coinMatcher{uint(r.IntN(8))}}
			}
			if r.IntN(12) == 0 {
				rl.Matchers = append(rl.Matchers, stealCoin{uint(r.IntN(8))})
			}
			vs := []Verdict{VerdictContinue, VerdictAccept, VerdictDrop, VerdictReturn}
			if c+1 < n {
				vs = append(vs, VerdictJump, VerdictGoto)
			}
			v := vs[r.IntN(len(vs))]
			tg := fixedTarget{v: v, set: r.IntN(4) == 0}
			if v == VerdictJump || v == VerdictGoto {
				tg.to = c + 1 + r.IntN(n-c-1)
			}
			rl.Target = tg
			if v == VerdictJump || v == VerdictGoto {
				rl.Target = traceJump{tg}
			}
			if r.IntN(15) == 0 {
				rl.Target = stealTarget{}
			}
			ch.Texts = append(ch.Texts, fmt.Sprintf("rule %d of c%d", len(ch.Rules)+1, c))
			ch.Rules = append(ch.Rules, rl)
		}
		t.Chains = append(t.Chains, ch)
	}
	if r.IntN(2) == 0 {
		// A counted policy with its text (the filter module's way).
		t.PolicyCount = new(policyCount)
		ch := &t.Chains[0]
		ch.Texts = append(ch.Texts, "the policy")
	}
	return t
}

type policyCount struct{ packets, bytes uint64 }

func (c *policyCount) CountPolicy(_ *Batch, packets, bytes uint64) {
	c.packets += packets
	c.bytes += bytes
}

// TestEvaluateTracedAgrees: the traced evaluation decides as Evaluate does,
// on random tables and packets, and records the deciding rule.
func TestEvaluateTracedAgrees(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pkt := DefaultPool.Get(64)
	defer pkt.Release()
	pkt.SetData(make([]byte, 20))
	for i := 0; i < 5000; i++ {
		tb := randomTable(r)
		if err := tb.Validate(); err != nil {
			t.Fatal(err)
		}
		mark := uint32(r.IntN(256))
		pkt.Mark = mark
		pkt.Data()[0] = 0
		want := tb.Evaluate(&PacketContext{Pkt: pkt})
		var counted uint64
		if c, ok := tb.PolicyCount.(*policyCount); ok {
			counted, c.packets = c.packets, 0
		}
		pkt.Mark = mark
		pkt.Data()[0] = 0
		var ht HookTrace
		got := tb.evaluateTraced(&PacketContext{Pkt: pkt}, "t", &ht)
		if got != want {
			t.Fatalf("table %d: traced %v, Evaluate %v", i, got, want)
		}
		if len(ht.Steps) == 0 {
			t.Fatalf("table %d: no step recorded", i)
		}
		last := ht.Steps[len(ht.Steps)-1]
		if c, ok := tb.PolicyCount.(*policyCount); ok {
			if c.packets != counted || (c.packets == 1) != (last.Rule == 0) {
				t.Fatalf("table %d: the policy counted %d traced, %d untraced, last step %+v", i, c.packets, counted, last)
			}
			if last.Rule == 0 && last.Text != "the policy" {
				t.Fatalf("table %d: policy step %+v without its text", i, last)
			}
		}
		if last.Verdict != got && !(last.Rule == 0 && last.Verdict == tb.Policy && got == tb.Policy) {
			t.Fatalf("table %d: last step %+v, verdict %v", i, last, got)
		}
		if last.Rule > 0 && last.Text != fmt.Sprintf("rule %d of %s", last.Rule, last.Chain) {
			t.Fatalf("table %d: step %+v has the wrong text", i, last)
		}
		for _, s := range ht.Steps {
			if s.MarkAfter&(1<<31) != 0 && s.MarkBefore&(1<<31) == 0 && (len(s.Changes) != 1 || s.Changes[0].Offset != 0) {
				t.Fatalf("table %d: a rewriting step %+v without its change", i, s)
			}
		}
	}
}

func TestDiffBytes(t *testing.T) {
	got := diffBytes([]byte{1, 2, 3}, []byte{1, 9, 3, 4})
	want := []ByteChange{{1, 2, 9}, {3, 0, 4}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("diffBytes = %v, want %v", got, want)
	}
}

// TestHookTableGate: a table whose gate does not match the packet passes
// it (accept) without running a rule, traced or not; when the gate
// matches, the rules decide.
func TestHookTableGate(t *testing.T) {
	tb := &HookTable{Chains: []Chain{{Name: "c", Rules: []Rule{{Target: verdictTarget(VerdictDrop)}}}}, Policy: VerdictAccept, Gate: coinMatcher{bit: 3}}
	if err := tb.Validate(); err != nil {
		t.Fatal(err)
	}
	pkt := DefaultPool.Get(64)
	defer pkt.Release()
	pkt.SetData(make([]byte, 20))
	for _, mark := range []uint32{0, 1 << 3} {
		pkt.Mark = mark
		want := VerdictAccept
		if mark != 0 {
			want = VerdictDrop
		}
		if got := tb.Evaluate(&PacketContext{Pkt: pkt}); got != want {
			t.Errorf("mark %#x: Evaluate %v, want %v", mark, got, want)
		}
		var ht HookTrace
		if got := tb.evaluateTraced(&PacketContext{Pkt: pkt}, "t", &ht); got != want {
			t.Errorf("mark %#x: traced %v, want %v", mark, got, want)
		}
	}
}
