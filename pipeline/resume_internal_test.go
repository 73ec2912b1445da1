package pipeline

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// oracle is a matcher and a target whose answer for a packet is a fixed
// function of its id and the packet's mark: given in place (steal false)
// or by stealing and resuming with the same answer (steal true).
type oracle struct {
	id     int
	steal  *bool
	chains int // targets: jumps and gotos go to chains above chain
	chain  int
}

func (o *oracle) draw(mark uint32) uint64 {
	return rand.New(rand.NewPCG(uint64(o.id), uint64(mark))).Uint64()
}

func (o *oracle) answer(mark uint32) (bool, bool) {
	switch o.draw(mark) % 8 {
	case 0:
		return false, true // hotdrop
	case 1, 2, 3:
		return false, false
	}
	return true, false
}

func (o *oracle) verdict(mark uint32) (Verdict, int) {
	d := o.draw(mark)
	vs := []Verdict{VerdictContinue, VerdictContinue, VerdictAccept, VerdictDrop, VerdictReturn}
	if o.chain+1 < o.chains {
		vs = append(vs, VerdictJump, VerdictJump, VerdictJump, VerdictGoto)
	}
	v := vs[d%uint64(len(vs))]
	to := 0
	if v == VerdictJump || v == VerdictGoto {
		to = o.chain + 1 + int(d>>8)%(o.chains-o.chain-1)
	}
	return v, to
}

func (o *oracle) Fields() FieldSet { return FieldOther }

func (o *oracle) Match(pc *PacketContext) (bool, bool) {
	if *o.steal {
		return MatchStolen()
	}
	return o.answer(pc.Pkt.Mark)
}

func (o *oracle) Action(pc *PacketContext) (Verdict, int) {
	pc.Pkt.Mark = pc.Pkt.Mark*31 + uint32(o.id) // the path, in the mark
	if *o.steal {
		return pc.Steal()
	}
	return o.verdict(pc.Pkt.Mark)
}

// TestResumeAgreesWithInPlace: on random tables (jumps, gotos, returns,
// several matchers per rule), a packet whose matchers and targets steal
// it and are answered through resume tokens ends exactly as one whose
// matchers and targets answer in place: the same verdict, the same path
// (the mark each target folds its id into), the same rule counts.
func TestResumeAgreesWithInPlace(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	s := New(Options{})
	g := &Generation{stack: s}
	b := &Batch{stack: s, Gen: g}
	pkt := DefaultPool.Get(64)
	defer pkt.Release()
	pkt.SetData(make([]byte, 20))
	steal := new(bool)
	var total, deep int // steals, steals with two frames or more
	outcomes := map[Verdict]int{}
	for i := 0; i < 3000; i++ {
		n := 1 + r.IntN(6)
		tb := &HookTable{Policy: Verdict(1 + r.IntN(2))} // accept or drop
		id := 1
		for c := 0; c < n; c++ {
			var ch Chain
			for k := r.IntN(5); k > 0; k-- {
				var rl Rule
				for m := r.IntN(3); m > 0; m-- {
					rl.Matchers = append(rl.Matchers, &oracle{id: id, steal: steal})
					id++
				}
				rl.Target = &oracle{id: id, steal: steal, chains: n, chain: c}
				rl.Packets = new(Counter)
				id++
				ch.Rules = append(ch.Rules, rl)
			}
			tb.Chains = append(tb.Chains, ch)
		}
		counts := func(times uint64) string { // the rules' counts divided by times
			out := ""
			for _, ch := range tb.Chains {
				for _, rl := range ch.Rules {
					out += fmt.Sprintf("%d/%d ", rl.Packets.Load()/times, rl.Packets.Load()%times)
				}
			}
			return out
		}
		mark := r.Uint32()

		*steal = false
		pkt.Mark = mark
		want := tb.Evaluate(&PacketContext{Pkt: pkt, Batch: b, gen: g})
		wantMark, wantCounts := pkt.Mark, counts(1)

		*steal = true
		pkt.Mark = mark
		pc := &PacketContext{Pkt: pkt, Batch: b, gen: g}
		got := tb.Evaluate(pc)
		steals := 0
		for got == VerdictStolen {
			tok := pkt.tok
			if tok == nil || tok.table != tb || tok.gen != g {
				t.Fatalf("table %d: stolen without a token of this table", i)
			}
			steals++
			if tok.depth >= 2 {
				deep++
			}
			pkt.tok = nil
			rl := &tb.Chains[tok.chain].Rules[tok.rule]
			var ans Answer
			if tok.matcher >= 0 {
				ans = MatchAnswer(rl.Matchers[tok.matcher].(*oracle).answer(pkt.Mark))
			} else {
				ans = VerdictAnswer(rl.Target.(*oracle).verdict(pkt.Mark))
			}
			pc = &PacketContext{Pkt: pkt, Batch: b, gen: g}
			got = tok.table.resumeAt(pc, tok, ans)
			b.putToken(tok)
		}
		total += steals
		outcomes[got]++
		if got != want || pkt.Mark != wantMark {
			t.Fatalf("table %d (%d steals): resumed %v mark %d, in place %v mark %d", i, steals, got, pkt.Mark, want, wantMark)
		}
		// Each rule counted as much in both runs: twice its first count.
		if c := counts(2); c != wantCounts {
			t.Fatalf("table %d: counts after both runs %s, after the first %s", i, c, wantCounts)
		}
		if g.pins.Load() != 0 {
			t.Fatalf("table %d: %d pins left", i, g.pins.Load())
		}
	}
	if total < 3000 || deep < 100 || len(outcomes) != 2 {
		t.Fatalf("%d steals, %d two jumps deep, outcomes %v: the tables do not exercise resume", total, deep, outcomes)
	}
	t.Logf("%d steals, %d at depth ≥ 2, outcomes %v", total, deep, outcomes)
}
