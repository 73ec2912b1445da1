package pipeline

import (
	"sync"
	"time"
)

// Resume tokens: where a packet stolen inside a hook's tables re-enters
// them (the contract: registration.go, "Stealing inside a hook").
//
// A token records the generation whose tables the packet was in (pinned:
// Generation.pins), the hook, the priority slot (the table among the
// hook's), the chain and rule, the matcher (or -1: the target) and the
// jump stack, and the stack clock at the steal. It lives in the packet
// (Packet.tok) from the steal to the resume: a stolen packet carries its
// own place. Tokens come from a free list per stack with a small cache per
// batch, so stealing and resuming allocate nothing once warm.

// resumeToken is one stolen packet's place in its hook.
type resumeToken struct {
	gen         *Generation
	table       *HookTable // the table stolen in, at slot of gen's hook
	at          time.Time  // the batch clock at the steal
	hook        Hook
	slot        uint8 // the table's index in the hook's hookSet
	depth       uint8 // frames in stack
	matcher     int16 // the matcher that stole, or -1: the target
	chain, rule int32 // the rule stolen at
	stack       jumpStack
}

// tokenCache is how many tokens a batch keeps before it gives some back.
const tokenCache = 64

// tokenPool is a stack's free tokens.
type tokenPool struct {
	mu   sync.Mutex
	free []*resumeToken
}

// newToken returns a free token: from the batch's cache, else half a
// cache from the stack's pool, else fresh ones (a slab of tokenCache/2).
func (b *Batch) newToken() *resumeToken {
	if n := len(b.tokens); n > 0 {
		t := b.tokens[n-1]
		b.tokens = b.tokens[:n-1]
		return t
	}
	tp := &b.stack.tokens
	tp.mu.Lock()
	k := min(len(tp.free), tokenCache/2)
	b.tokens = append(b.tokens, tp.free[len(tp.free)-k:]...)
	clear(tp.free[len(tp.free)-k:])
	tp.free = tp.free[:len(tp.free)-k]
	tp.mu.Unlock()
	if len(b.tokens) == 0 {
		slab := make([]resumeToken, tokenCache/2)
		for i := range slab {
			b.tokens = append(b.tokens, &slab[i])
		}
	}
	n := len(b.tokens)
	t := b.tokens[n-1]
	b.tokens = b.tokens[:n-1]
	return t
}

// release unpins the token's generation and gives the token back to its
// stack's pool (a packet released or re-injected instead of resumed).
func (t *resumeToken) release() {
	g := t.gen
	*t = resumeToken{}
	if g == nil {
		return
	}
	g.pins.Add(-1)
	tp := &g.stack.tokens
	tp.mu.Lock()
	tp.free = append(tp.free, t)
	tp.mu.Unlock()
}

// putToken unpins and keeps the token in the batch's cache (half of a full
// cache goes back to the stack's pool).
func (b *Batch) putToken(t *resumeToken) {
	t.gen.pins.Add(-1)
	*t = resumeToken{}
	if len(b.tokens) >= tokenCache {
		tp := &b.stack.tokens
		tp.mu.Lock()
		tp.free = append(tp.free, b.tokens[tokenCache/2:]...)
		tp.mu.Unlock()
		clear(b.tokens[tokenCache/2:])
		b.tokens = b.tokens[:tokenCache/2]
	}
	b.tokens = append(b.tokens, t)
}

// dropToken spends p's token without resuming it (Reinject).
func (b *Batch) dropToken(p *Packet) {
	t := p.tok
	p.tok = nil
	b.putToken(t)
}

// steal ends an evaluation whose matcher (index matcher) or target
// (matcher -1) stole pc.Pkt at rule rule of chain chain, the frames below
// in st[:depth]: it leaves the packet's resume token (inside a batch; a
// table evaluated outside one steals without) and returns VerdictStolen.
// Out of the evaluation loop, so that it costs the loop nothing.
//
//go:noinline
func (t *HookTable) steal(pc *PacketContext, st *jumpStack, depth, chain, rule, matcher int) Verdict {
	pc.held = false
	b := pc.Batch
	if b == nil || b.stack == nil {
		return VerdictStolen
	}
	g := pc.gen
	if g == nil {
		g = b.Gen
	}
	tok := b.newToken()
	*tok = resumeToken{gen: g, table: t, at: b.Now, hook: pc.Hook, slot: pc.slot, depth: uint8(depth),
		matcher: int16(matcher), chain: int32(chain), rule: int32(rule)}
	copy(tok.stack[:depth], st[:depth])
	g.pins.Add(1)
	if old := pc.Pkt.tok; old != nil {
		b.putToken(old) // cannot be: a packet is stolen once at a time
	}
	pc.Pkt.tok = tok
	return VerdictStolen
}

// resumeAt goes on with pc's packet in table t where tok says it was
// stolen, with the stealer's answer: a matcher's (match: the rule's next
// matchers, then its target; no match: the next rule; hotdrop: drop) or a
// target's verdict, applied as if Action had returned it.
func (t *HookTable) resumeAt(pc *PacketContext, tok *resumeToken, ans Answer) Verdict {
	st := tok.stack
	depth, chain, rule := int(tok.depth), int(tok.chain), int(tok.rule)
	if tok.matcher < 0 {
		if ans.Verdict == VerdictStolen {
			return VerdictDrop // the stealer still has it, or thinks so
		}
		return t.run(pc, &st, depth, chain, rule+1, ans.Verdict, ans.Chain)
	}
	switch {
	case ans.Hotdrop:
		return VerdictDrop
	case !ans.Match:
		return t.run(pc, &st, depth, chain, rule+1, VerdictContinue, 0)
	}
	r := &t.Chains[chain].Rules[rule]
	for i := int(tok.matcher) + 1; i < len(r.Matchers); i++ {
		ok, hotdrop := r.Matchers[i].Match(pc)
		if hotdrop {
			if ok {
				return t.steal(pc, &st, depth, chain, rule, i)
			}
			return VerdictDrop
		}
		if !ok {
			return t.run(pc, &st, depth, chain, rule+1, VerdictContinue, 0)
		}
	}
	if r.Packets != nil {
		r.Packets.Inc()
	}
	v, to := r.Target.Action(pc)
	return t.run(pc, &st, depth, chain, rule+1, v, to)
}

// Answer is what a packet stolen inside a hook resumes with (Stack.Resume).
// For a matcher's steal Match and Hotdrop are what Match would have
// returned: match goes on with the rule's next matcher and then its
// target, no match with the next rule, hotdrop drops. For a target's steal
// Verdict and Chain are what Action would have returned (continue, accept,
// drop, return, jump or goto with the chain's index; stolen is refused).
type Answer struct {
	Match, Hotdrop bool
	Verdict        Verdict
	Chain          int
}

// MatchAnswer is a matcher's answer.
func MatchAnswer(matches, hotdrop bool) Answer { return Answer{Match: matches, Hotdrop: hotdrop} }

// VerdictAnswer is a target's answer.
func VerdictAnswer(v Verdict, chain int) Answer { return Answer{Verdict: v, Chain: chain} }

// Resume hands packets stolen inside a hook (MatchStolen or
// PacketContext.Steal) back with the stealers' answers, answers[i] for
// pkts[i]: each goes on in the generation and table its token names — the
// rule set it was stolen in, even after a reload — from where it was
// stolen; when that table accepts, the hook's later tables run, and when
// they accept, the packet goes on at ResumeAfter(hook) in the generation
// current now, as Reinject does. A drop ends it there (filter_drop_<hook>),
// a steal gives it to a stealer again. Like Reinject it runs on the
// calling goroutine, takes ownership of every packet and leaves every slot
// nil. A packet without a token (stolen otherwise, or resumed already) is
// dropped under stack.resume_no_token, one without an answer or answered
// "stolen" under resume_bad_answer, one whose token is older than
// Options.ResumeTimeout or names a generation already stopped under
// resume_stale. A resumed packet is not traced.
func (s *Stack) Resume(pkts []*Packet, answers []Answer) { s.resume(pkts, answers, false) }

// ResumeLate is Resume for a stealer that bounds how long it holds packets
// itself — an out-of-process plugin: its deadline, then its failure
// policy: a token older than Options.ResumeTimeout is resumed too, so
// that an answer or a fail-open policy that comes late (a loaded machine,
// a flight that waited for a window slot) is applied instead of turning
// into a drop under a bound the stealer's user does not set. A token whose
// generation stopped (a reload waited ResumeTimeout for it) still drops
// its packet under resume_stale: its rule set is gone.
func (s *Stack) ResumeLate(pkts []*Packet, answers []Answer) { s.resume(pkts, answers, true) }

// ResumeTimeout is Options.ResumeTimeout (its default filled in): how long
// a stolen packet stays resumable by Resume, and how long a reload waits
// for the old generation's tokens.
func (s *Stack) ResumeTimeout() time.Duration { return s.opts.ResumeTimeout }

func (s *Stack) resume(pkts []*Packet, answers []Answer, late bool) {
	b := s.acquire()
	if b == nil {
		ReleaseBatch(pkts)
		return
	}
	b.resumeTokens(pkts, answers, late)
	s.release(b)
}

// resumeTokens is Resume inside batch b (late: ResumeLate).
func (b *Batch) resumeTokens(pkts []*Packet, answers []Answer, late bool) {
	if cap(b.rhooks) < len(pkts) {
		b.rhooks = make([]Hook, len(pkts))
	}
	hooks := b.rhooks[:len(pkts)]
	var after [NumHooks]bool
	for i, p := range pkts {
		if p == nil {
			continue
		}
		tok := p.tok
		switch {
		case tok == nil:
			pkts[i] = nil
			b.Drop(p, b.Gen.resumeNoToken)
			continue
		case i >= len(answers) || tok.matcher < 0 && answers[i].Verdict == VerdictStolen:
			pkts[i] = nil
			b.dropToken(p)
			b.Drop(p, b.Gen.resumeBadAnswer)
			continue
		}
		h := tok.hook
		switch b.resumeOne(p, tok, answers[i], late) {
		case VerdictAccept:
			hooks[i], after[h] = h, true
		case VerdictStolen:
			pkts[i] = nil
		case VerdictDrop:
			pkts[i] = nil
			b.Drop(p, b.Gen.hookDrops[h])
		default: // dropped already
			pkts[i] = nil
		}
	}
	for h := Hook(0); h < NumHooks; h++ {
		if !after[h] {
			continue
		}
		run := b.rrun[:0]
		for i, p := range pkts {
			if p != nil && hooks[i] == h {
				run = append(run, p)
				pkts[i] = nil
			}
		}
		b.resume(ResumeAfter(h), run)
		b.rrun = run[:0]
	}
}

// resumeGone is resumeOne's verdict for a packet it dropped itself.
const resumeGone Verdict = 255

// resumeOne runs the rest of p's hook from its token: the token's table,
// then the hook's later ones, in the token's generation. It spends the
// token and returns the hook's verdict, or resumeGone when it dropped the
// packet (stale, malformed, nested too deep). late: the token's age is
// not looked at (ResumeLate), only whether its generation stopped.
func (b *Batch) resumeOne(p *Packet, tok *resumeToken, ans Answer, late bool) Verdict {
	g := tok.gen
	g.refs.Add(1) // before the stale check: drain (stack.go)
	defer g.refs.Add(-1)
	if g.stale.Load() || !late && b.Now.Sub(tok.at) > b.stack.opts.ResumeTimeout {
		b.dropToken(p)
		b.Drop(p, b.Gen.resumeStale)
		return resumeGone
	}
	one := [1]*Packet{p}
	pc := b.enterHook(one[:])
	if pc == nil {
		return resumeGone // dropped (filter_nested), its token with it
	}
	defer b.leaveHook(pc)
	*pc = PacketContext{Hook: tok.hook, InNIC: p.InNIC, OutNIC: p.OutNIC, Pkt: p, Batch: b, gen: g, slot: tok.slot}
	p.tok = nil // a steal in what follows leaves a new one
	defer b.putToken(tok)
	if !ParseTuple(b, p, pc) {
		b.Drop(p, b.Gen.hookMalformed)
		return resumeGone
	}
	switch v := tok.table.resumeAt(pc, tok, ans); v {
	case VerdictAccept:
		// The hook's later tables; none when the table was evaluated
		// on its own (not from the generation's hooks: a test).
		hs := g.hooks[tok.hook]
		if hs != nil && int(tok.slot) < len(hs.tables) && hs.tables[tok.slot] == tok.table {
			return hs.evaluate(pc, int(tok.slot)+1)
		}
		return v
	case VerdictStolen:
		return v
	}
	return VerdictDrop
}
