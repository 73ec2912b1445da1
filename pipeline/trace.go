package pipeline

import "sync/atomic"

// HookTrace is one traced packet at one hook.
type HookTrace struct {
	Hook          Hook
	InNIC, OutNIC NICID
	Tuple         Tuple
	Pkt           *Packet // Data() at the network header, as the tables left it
	// Malformed: the network header did not parse; the packet is dropped
	// (counted as hook_malformed) without running a table.
	Malformed bool
	// Steps are the rules whose target ran, in order, across the tables
	// of the hook (by priority).
	Steps []TraceStep
	// Verdict is the hook's: VerdictAccept, VerdictDrop or VerdictStolen.
	Verdict Verdict
}

// TraceStep is one rule whose matchers matched and whose target ran (or a
// matcher's hotdrop or steal, or the table's policy).
type TraceStep struct {
	Table string // the HookEntry's name (raw, mangle, filter, Config.Hooks)
	Chain string
	// Rule is the rule's position in its chain, from 1; 0 for the table's
	// policy (Chain is then the entry chain).
	Rule int
	// Text is the rule's Chain.Texts entry (empty when the table's
	// builder gave none).
	Text    string
	Verdict Verdict
	// Hotdrop: a matcher of the rule dropped the packet (a truncated
	// transport header) before its target ran.
	Hotdrop bool
	// MarkBefore and MarkAfter are the packet's mark around the target.
	MarkBefore, MarkAfter uint32
	// Changes are the bytes of the packet (from the network header) the
	// target rewrote (TTL, DSCP, MSS, checksums…), at most maxTraceChanges.
	Changes []ByteChange
}

// ByteChange is one rewritten byte.
type ByteChange struct {
	Offset   int // from the network header
	Old, New byte
}

// maxTraceChanges bounds the bytes one step reports.
const maxTraceChanges = 64

type tracerRef struct{ t Tracer }

// SetTracer installs t (nil: none) for the batches that start from now on.
func (s *Stack) SetTracer(t Tracer) {
	if t == nil {
		s.tracer.Store(nil)
		return
	}
	s.tracer.Store(&tracerRef{t})
}

// tracerSlot is the Stack's tracer (a field of Stack).
type tracerSlot = atomic.Pointer[tracerRef]

// loadTracer is the tracer a starting batch uses.
func (s *Stack) loadTracer() Tracer {
	if r := s.tracer.Load(); r != nil {
		return r.t
	}
	return nil
}

// hookRun runs a hook's tables: runHook, or runHookTraced while the batch
// has a tracer (one nil check per hook run).
func (b *Batch) hookRun(hs *hookSet, h Hook, pkts []*Packet) {
	if b.tracer != nil {
		b.runHookTraced(b.tracer, hs, h, pkts)
		return
	}
	b.runHook(hs, h, pkts)
}

// runHookTraced is runHook with a tracer: selected packets go through the
// traced evaluation. (A stolen packet resumed later is not traced again.)
func (b *Batch) runHookTraced(tr Tracer, hs *hookSet, h Hook, pkts []*Packet) {
	pc := b.enterHook(pkts)
	if pc == nil {
		return
	}
	for _, f := range hs.prepare {
		f(b, h, pkts)
	}
	var ht *HookTrace // made at the first selected packet
	for i, p := range pkts {
		if hookSkips(h, p) {
			continue
		}
		*pc = PacketContext{Hook: h, InNIC: p.InNIC, OutNIC: p.OutNIC, Pkt: p, Batch: b, gen: b.Gen}
		parsed := ParseTuple(b, p, pc)
		if !tr.Select(pc) {
			if !parsed {
				pkts[i] = nil
				b.Drop(p, b.Gen.hookMalformed)
				continue
			}
			b.verdict(hs.evaluate(pc, 0), h, pkts, i)
			continue
		}
		if ht == nil {
			ht = new(HookTrace)
		}
		*ht = HookTrace{Hook: h, InNIC: p.InNIC, OutNIC: p.OutNIC, Tuple: pc.Tuple, Pkt: p, Steps: ht.Steps[:0]}
		if !parsed {
			ht.Malformed, ht.Verdict = true, VerdictDrop
			tr.Trace(ht)
			pkts[i] = nil
			b.Drop(p, b.Gen.hookMalformed)
			continue
		}
		ht.Verdict = VerdictAccept
		for s, e := range hs.entries {
			pc.slot = uint8(s)
			v := e.Table.evaluateTraced(pc, e.Name, ht)
			if v != VerdictAccept {
				ht.Verdict = v
				if v != VerdictStolen {
					ht.Verdict = VerdictDrop
				}
				break
			}
		}
		if ht.Verdict == VerdictStolen {
			ht.Pkt = nil // the stealer's already
		}
		tr.Trace(ht)
		b.verdict(ht.Verdict, h, pkts, i)
	}
	b.leaveHook(pc)
}

// verdict applies a hook's verdict to pkts[i], as runHook does.
func (b *Batch) verdict(v Verdict, h Hook, pkts []*Packet, i int) {
	switch v {
	case VerdictAccept:
	case VerdictStolen:
		pkts[i] = nil
	default:
		p := pkts[i]
		pkts[i] = nil
		b.Drop(p, b.Gen.hookDrops[h])
	}
}

// evaluateTraced is Evaluate recording each rule whose target ran into ht.
// It must decide exactly as Evaluate does (TestEvaluateTracedAgrees),
// steals and their resume tokens included.
func (t *HookTable) evaluateTraced(pc *PacketContext, table string, ht *HookTrace) Verdict {
	if t.Gate != nil {
		if ok, _ := t.Gate.Match(pc); !ok {
			return VerdictAccept // the table does not run for this packet (as Evaluate)
		}
	}
	var st jumpStack
	var before []byte
	depth := 0
	chain, rule := t.Entry, 0
	// pkt, not pc.Pkt, after a target ran: a target that sends (REJECT's
	// ICMP error) runs the output hooks in the same batch, which reuse
	// the batch's PacketContext.
	pkt := pc.Pkt
	step := func(c, r int, v Verdict) *TraceStep {
		s := TraceStep{Table: table, Chain: t.Chains[c].Name, Rule: r + 1, Verdict: v, MarkBefore: pkt.Mark, MarkAfter: pkt.Mark}
		if r < 0 { // the policy: its text past the entry chain's rules
			r, s.Rule = len(t.Chains[c].Rules), 0
		}
		if r < len(t.Chains[c].Texts) {
			s.Text = t.Chains[c].Texts[r]
		}
		ht.Steps = append(ht.Steps, s)
		return &ht.Steps[len(ht.Steps)-1]
	}
	v, to := VerdictContinue, 0
	for {
		switch v {
		case VerdictContinue:
		case VerdictAccept, VerdictDrop:
			return v
		case VerdictStolen:
			if pc.held {
				return t.steal(pc, &st, depth, chain, rule-1, -1)
			}
			return v
		case VerdictReturn:
			rule = len(t.Chains[chain].Rules)
		case VerdictJump:
			if depth == len(st) || to < 0 || to >= len(t.Chains) {
				return VerdictDrop
			}
			st[depth] = jumpFrame{int32(chain), int32(rule)}
			depth++
			chain, rule = to, 0
		case VerdictGoto:
			if to < 0 || to >= len(t.Chains) {
				return VerdictDrop
			}
			chain, rule = to, 0
		default:
			return VerdictDrop
		}
	next:
		rules := t.Chains[chain].Rules
		if rule >= len(rules) {
			if depth == 0 {
				step(t.Entry, -1, t.Policy)
				if t.PolicyCount != nil {
					t.PolicyCount.CountPolicy(pc.Batch, 1, uint64(pc.Pkt.Len()))
				}
				return t.Policy
			}
			depth--
			chain, rule = int(st[depth].chain), int(st[depth].rule)
			goto next
		}
		r := &rules[rule]
		at := rule
		rule++
		for i, m := range r.Matchers {
			ok, hotdrop := m.Match(pc)
			if hotdrop {
				if ok {
					step(chain, at, VerdictStolen)
					return t.steal(pc, &st, depth, chain, at, i)
				}
				step(chain, at, VerdictDrop).Hotdrop = true
				return VerdictDrop
			}
			if !ok {
				goto next
			}
		}
		if r.Packets != nil {
			r.Packets.Inc()
		}
		before = append(before[:0], pkt.Data()...)
		mark := pkt.Mark
		v, to = r.Target.Action(pc)
		s := step(chain, at, v)
		s.MarkBefore = mark
		if v != VerdictStolen {
			s.Changes = diffBytes(before, pkt.Data())
		}
	}
}

// diffBytes lists the bytes that differ (a length change is reported as
// the bytes past the shorter one, old or new 0).
func diffBytes(a, b []byte) []ByteChange {
	var out []ByteChange
	n := max(len(a), len(b))
	for i := 0; i < n && len(out) < maxTraceChanges; i++ {
		var x, y byte
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y || (i >= len(a)) != (i >= len(b)) {
			out = append(out, ByteChange{Offset: i, Old: x, New: y})
		}
	}
	return out
}
