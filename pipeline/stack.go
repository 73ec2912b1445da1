package pipeline

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Options configure a Stack.
type Options struct {
	// Logger for control-path events (never per packet). Default: none.
	Logger *zerolog.Logger
	// Clock drives timers and batch time. Default: SystemClock.
	Clock Clock
	// Pool is the packet pool given to modules. Default: DefaultPool.
	Pool *Pool
	// NUDDispatcher receives neighbor table events.
	NUDDispatcher NUDDispatcher
	// DrainTimeout bounds how long a reload waits for workers to leave the
	// old generation before it warns (it keeps waiting: stopping a
	// generation under a worker is never safe). Default 5 s.
	DrainTimeout time.Duration
	// ResumeTimeout is how long a packet stolen with a resume token (a
	// matcher's or target's steal, resume.go) may stay out: resumed later
	// (by the stack clock), it is dropped (stack.resume_stale). A reload
	// waits for the old generation's outstanding tokens this long at most
	// (wall time, as for workers) before it stops it; its tokens are then
	// stale too. Default 1 s.
	ResumeTimeout time.Duration
	// Seed, when not zero, seeds every random draw of the stack and its
	// modules (Stack.Rand): pipectl replay runs deterministically.
	Seed uint64
}

// Stack is a network stack built from pipeline files. Its long-lived parts
// (NICs and their links, neighbor tables, counters) survive reloads; all the
// rest lives in the current Generation.
type Stack struct {
	opts  Options
	log   zerolog.Logger
	clock Clock
	pool  *Pool

	gen atomic.Pointer[Generation]

	tracer tracerSlot // SetTracer (trace.go)
	tokens tokenPool  // free resume tokens (resume.go)
	rand   *Rand      // Options.Seed (rand.go)

	mu      sync.Mutex // serialises Apply/Close; guards the fields below
	nics    map[string]*NIC
	nicIDs  map[string]NICID
	lastNIC NICID
	seq     uint64
	closed  bool
	// building collects the files read while build runs (under mu, or
	// on a throwaway stack for Check).
	building *inputSet
	// buildingLinks is Context.LinkIDs of the generation being built.
	buildingLinks map[string]NICID

	counters counterRegistry

	batchMu sync.Mutex
	batches []*Batch

	// Link supervisor (linkstate.go).
	linkKick  atomic.Bool
	closing   atomic.Bool // Close began: no more supervisor passes
	linkWG    sync.WaitGroup
	linkTimer Timer // guarded by mu

	sharedMu sync.Mutex
	shared   map[string]any

	dynState // dynamic addresses and routes (dynamic.go)
}

// Shared returns the long-lived object under key, made by mk on first use
// (see Context.Shared). Objects that implement io.Closer are closed when
// the stack closes, after its links. Go code embedding the stack reaches a module's
// long-lived state through it (e.g. the UDP socket table).
func (s *Stack) Shared(key string, mk func() any) any {
	s.sharedMu.Lock()
	defer s.sharedMu.Unlock()
	if v, ok := s.shared[key]; ok {
		return v
	}
	if s.shared == nil {
		s.shared = map[string]any{}
	}
	v := mk()
	s.shared[key] = v
	return v
}

// SharedLookup returns the long-lived object under key if one was made
// (a listing such as `pipectl sockets` must not make a module's state).
func (s *Stack) SharedLookup(key string) (any, bool) {
	s.sharedMu.Lock()
	defer s.sharedMu.Unlock()
	v, ok := s.shared[key]
	return v, ok
}

// New returns a stack with no generation: it drops everything until Apply.
func New(opts Options) *Stack {
	s := &Stack{opts: opts, nics: map[string]*NIC{}, nicIDs: map[string]NICID{}}
	// Batches for as many goroutines as may run stack work at once (links'
	// readers, sockets' writers, timers) made now, and room for more in
	// the free list: the first time two of them overlapped (a timer's
	// batch beside a socket write) made a batch and grew the list in the
	// middle of steady traffic.
	s.batches = make([]*Batch, 0, 4*runtime.GOMAXPROCS(0)+16)
	for range 2*runtime.GOMAXPROCS(0) + 4 {
		s.batches = append(s.batches, &Batch{stack: s})
	}
	s.log = zerolog.Nop()
	if opts.Logger != nil {
		s.log = *opts.Logger
	}
	s.rand = newRand(opts.Seed)
	s.clock = opts.Clock
	if s.clock == nil {
		s.clock = SystemClock{}
	}
	s.pool = opts.Pool
	if s.pool == nil {
		s.pool = DefaultPool
	}
	if s.opts.DrainTimeout == 0 {
		s.opts.DrainTimeout = 5 * time.Second
	}
	if s.opts.ResumeTimeout == 0 {
		s.opts.ResumeTimeout = time.Second
	}
	return s
}

// Pool is the stack's packet pool.
func (s *Stack) Pool() *Pool { return s.pool }

// Clock is the stack's clock.
func (s *Stack) Clock() Clock { return s.clock }

func (s *Stack) counterSet(name string) *CounterSet { return s.counters.set(name) }

func (s *Stack) moduleContext(cfg *Config, id, instance string, line int) *Context {
	return &Context{
		ModuleID: id, Instance: instance, File: cfg.File, Line: line,
		Logger: s.log.With().Str("module", id).Logger(),
		Clock:  s.clock, Pool: s.pool, counters: &s.counters, stack: s,
		inputs: s.building, LinkIDs: s.buildingLinks, Config: cfg,
	}
}

// Check provisions and validates every module of cfg without opening any
// device or touching a running stack: what `pipectl validate` runs.
func Check(cfg *Config) error {
	s := New(Options{})
	g, err := s.build(cfg, false)
	if err != nil {
		return err
	}
	g.cleanup()
	return nil
}

// Apply makes cfg the running configuration: it builds and validates a whole
// new generation (opening new links, handing over kept ones), swaps it in,
// waits until every worker has left the old generation, then stops it and
// closes links the new one no longer has. A config with the same file bytes
// as the running one changes nothing. On error the running generation stays
// as it was. Files the modules read through Context.ReadFile count as part
// of the file: one that changed makes an unchanged file build anew.
func (s *Stack) Apply(cfg *Config) (changed bool, err error) {
	r, err := s.ApplyReport(cfg)
	return r.Changed, err
}

// ApplyReport says what Stack.Apply did: Changed, a new generation runs;
// Renewed, what modules renewed in place for an unchanged file (Refresher:
// a plugin whose binary alone changed, replaced without a new generation).
type ApplyReport struct {
	Changed bool
	Renewed []string
}

// ApplyReport is Apply, reporting what it renewed in place.
func (s *Stack) ApplyReport(cfg *Config) (ApplyReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ApplyReport{}, errors.New("stack is closed")
	}
	cur := s.gen.Load()
	if cur != nil && cur.cfg.hash != ([32]byte{}) && cur.cfg.hash == cfg.hash && cur.cfg.Hooks == cfg.Hooks && !cur.inputs.changed() {
		// Unchanged. A link whose device is gone is retried at once;
		// modules renew what they run outside the generation's inputs.
		s.retryDownLocked()
		var rep ApplyReport
		for _, mi := range cur.modules {
			if r, ok := mi.mod.(Refresher); ok {
				renewed, err := r.Refresh()
				rep.Renewed = append(rep.Renewed, renewed...)
				if err != nil {
					return rep, cur.cfg.errAt(mi.line, mi.col, mi.id, err)
				}
			}
		}
		return rep, nil
	}
	changed, err := s.applyLocked(cur, cfg)
	return ApplyReport{Changed: changed}, err
}

// applyLocked builds and swaps in a new generation (s.mu held).
func (s *Stack) applyLocked(cur *Generation, cfg *Config) (changed bool, err error) {
	g, err := s.build(cfg, true)
	if err != nil {
		return false, err
	}
	s.seq++
	g.seq = s.seq

	// Long-lived state the new generation brings: NICs, endpoints reopened
	// under a new LinkKey, static neighbors.
	var fresh []*NIC
	var replaced []LinkEndpoint // endpoints of kept NICs that a reopened one replaces
	for _, ng := range g.nics {
		if ng == nil {
			continue
		}
		n := ng.nic
		if s.nics[n.name] != n {
			fresh = append(fresh, n)
		}
		var static []NeighborEntry
		for _, nc := range ng.cfg.Neighbors {
			static = append(static, NeighborEntry{Addr: nc.Addr, LinkAddr: nc.LinkAddr, State: NeighborStatic})
		}
		n.neigh.setStatic(static)
	}
	var gone []*NIC
	for name, n := range s.nics {
		if ng := g.nic(n.id); ng == nil || ng.nic != n {
			gone = append(gone, n)
			delete(s.nics, name)
		}
	}
	for _, n := range fresh {
		s.nics[n.name] = n
	}
	s.setMTUs(cur, g)
	// Reopened endpoints take their NIC's place (the old generation may
	// write to them while it drains: it is the same device).
	for _, ng := range g.nics {
		if ng == nil || ng.open == nil {
			continue
		}
		n := ng.nic
		old := n.bound.Load()
		n.bind(ng.open)
		ng.bound.Store(true)
		n.key, n.mod = ng.key, ng.cfg.ModuleID
		n.stMu.Lock()
		if old.port == nil { // it was down: a new key brought it back
			n.state = LinkState{Up: true, Since: s.clock.Now(), Downs: n.state.Downs}
			n.retry = linkRetry{}
		}
		n.stMu.Unlock()
		old.ep.Attach(nil)
		replaced = append(replaced, old.ep)
		s.log.Info().Str("link", n.name).Msg("link reopened (its driver settings changed); addresses, routes, neighbors and counters kept")
	}
	s.publishLinkRoutes(g)

	old := s.gen.Swap(g)
	for _, n := range gone {
		n.link().Attach(nil)
	}
	for _, n := range fresh {
		n.link().Attach(n.bound.Load().port)
	}
	if old != nil {
		s.drain(old, true)
		old.stop()
	}
	s.reloadAddrEvents(old, g, gone)
	for _, ep := range replaced {
		if err := ep.Close(); err != nil {
			s.log.Warn().Err(err).Msg("close of a replaced endpoint")
		}
	}
	for _, n := range gone {
		if err := n.link().Close(); err != nil {
			s.log.Warn().Err(err).Str("link", n.name).Msg("close")
		}
		n.neigh.close()
		s.forgetDynamic(n)
	}
	if len(gone) > 0 {
		s.publishLinkRoutes(g)
	}
	s.log.Info().Uint64("generation", g.seq).Int("links", len(s.nics)).Msg("pipeline applied")
	return true, nil
}

// setMTUs gives the devices of kept links the mtu the new generation
// configures when it changed (LinkMTUSetter), before g is published; the
// effective MTU (NetworkInterface.MTU) is the configured one capped by what
// the link then reports.
func (s *Stack) setMTUs(cur, g *Generation) {
	for _, ng := range g.nics {
		if ng == nil || ng.open != nil || ng.cfg.MTU == 0 || cur == nil {
			continue
		}
		prev := cur.nic(ng.nic.id)
		ep := ng.nic.link()
		if prev == nil || (prev.cfg.MTU == ng.cfg.MTU && ep.MTU() == ng.mtu) {
			continue
		}
		if ms, ok := ep.(LinkMTUSetter); ok && ep.MTU() != ng.cfg.MTU {
			if err := ms.SetMTU(ng.cfg.MTU); err != nil {
				s.log.Warn().Err(err).Str("link", ng.nic.name).Int("mtu", ng.cfg.MTU).Msg("set device mtu; the stack uses the smaller of the two")
			}
		}
		ng.mtu = min(ep.MTU(), ng.cfg.MTU)
	}
}

// retryDownLocked makes every down link's next reopen attempt due now and
// wakes the supervisor (Stack.mu held).
func (s *Stack) retryDownLocked() {
	down := false
	for _, n := range s.nics {
		n.stMu.Lock()
		if n.isDownLocked() {
			n.retry.at = time.Time{}
			down = true
		}
		n.stMu.Unlock()
	}
	if down {
		s.kickLinks()
	}
}

// drain waits until no worker is inside g and, with pinned, until no
// resume token names it any more (resumed, released or gone stale) or
// ResumeTimeout passed; g is stale from then on, and drain returns once the
// resumes that entered it before have left.
func (s *Stack) drain(g *Generation, pinned bool) {
	start := time.Now()
	warned := false
	wait := func() {
		for g.refs.Load() != 0 {
			if !warned && time.Since(start) > s.opts.DrainTimeout {
				s.log.Warn().Uint64("generation", g.seq).Msg("workers slow to leave the old generation; still waiting")
				warned = true
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	wait()
	if pinned && g.pins.Load() > 0 {
		deadline := time.Now().Add(s.opts.ResumeTimeout)
		for g.pins.Load() > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Microsecond)
		}
		if n := g.pins.Load(); n > 0 {
			s.log.Warn().Uint64("generation", g.seq).Int64("stolen", n).Dur("resume_timeout", s.opts.ResumeTimeout).
				Msg("stolen packets not resumed in time; their resume is dropped (resume_stale)")
		}
	}
	// A resume loads stale after adding to refs: one that saw it unset
	// is counted in refs now.
	g.stale.Store(true)
	wait()
}

// Close stops the running generation and closes every link.
func (s *Stack) Close() error {
	defer s.linkWG.Wait() // a supervisor pass in flight sees closed and returns
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.closing.Store(true)
	if s.linkTimer != nil {
		s.linkTimer.Stop()
	}
	var errs []error
	for _, n := range s.nics {
		n.link().Attach(nil)
	}
	if old := s.gen.Swap(nil); old != nil {
		s.drain(old, false)
		old.stop()
	}
	for name, n := range s.nics {
		if err := n.link().Close(); err != nil {
			errs = append(errs, fmt.Errorf("link %s: %w", name, err))
		}
		delete(s.nics, name)
	}
	s.sharedMu.Lock()
	for key, v := range s.shared {
		if c, ok := v.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
			}
		}
	}
	s.shared = nil
	s.sharedMu.Unlock()
	return errors.Join(errs...)
}

// Generation returns the generation in force (nil before Apply or after
// Close).
func (s *Stack) Generation() *Generation { return s.gen.Load() }

// NIC returns the NIC with this link name.
func (s *Stack) NIC(name string) (*NIC, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.nics[name]
	return n, ok
}

// NICs returns the NICs, by ID.
func (s *Stack) NICs() []*NIC {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*NIC, 0, len(s.nics))
	for _, n := range s.nics {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// Link returns the link endpoint of the link with this name.
func (s *Stack) Link(name string) (LinkEndpoint, bool) {
	n, ok := s.NIC(name)
	if !ok {
		return nil, false
	}
	return n.link(), true
}

// Counters returns every counter set (protocols', the stack's), by name.
func (s *Stack) Counters() []*CounterSet { return s.counters.all() }

// Route looks up the route for a packet the stack sends to dst in the
// running generation and the stack's dynamic routes (Generation.LookupRoute:
// one of the stack's own addresses is reached through the loopback NIC).
func (s *Stack) Route(dst netip.Addr) (Route, bool) {
	g := s.gen.Load()
	if g == nil {
		return Route{}, false
	}
	r := g.LookupRoute(dst)
	if r == nil {
		return Route{}, false
	}
	return *r, true
}

// acquire returns a batch context inside the current generation, or nil
// when the stack runs none.
func (s *Stack) acquire() *Batch {
	var g *Generation
	for {
		g = s.gen.Load()
		if g == nil {
			return nil
		}
		g.refs.Add(1)
		if s.gen.Load() == g {
			break
		}
		g.refs.Add(-1)
	}
	s.batchMu.Lock()
	var b *Batch
	if n := len(s.batches); n > 0 {
		b = s.batches[n-1]
		s.batches = s.batches[:n-1]
	}
	s.batchMu.Unlock()
	if b == nil {
		b = &Batch{stack: s}
	}
	b.Gen = g
	b.Now = s.clock.Now()
	b.tracer = s.loadTracer()
	return b
}

// release flushes the batch's output and leaves its generation.
func (s *Stack) release(b *Batch) {
	b.finish()
	g := b.Gen
	b.Gen = nil
	s.batchMu.Lock()
	s.batches = append(s.batches, b)
	s.batchMu.Unlock()
	g.refs.Add(-1)
}

// Do runs fn inside a batch of the current generation and flushes what fn
// queued: how code outside the receive path (a socket's write, a timer, a
// test) sends packets. It returns false, without calling fn, when no
// generation runs.
func (s *Stack) Do(fn func(b *Batch)) bool {
	b := s.acquire()
	if b == nil {
		return false
	}
	fn(b)
	s.release(b)
	return true
}

func (s *Stack) deliver(n *NIC, pkts []*Packet) {
	var cnt, bytes uint64
	for _, p := range pkts {
		if p != nil {
			cnt++
			bytes += uint64(p.Len())
			p.InNIC = n.id
		}
	}
	n.Stats.RxPackets.Add(cnt)
	n.Stats.RxBytes.Add(bytes)
	b := s.acquire()
	if b == nil {
		n.Stats.RxDropped.Add(cnt)
		ReleaseBatch(pkts)
		return
	}
	ng := b.Gen.nic(n.id)
	if ng == nil || ng.nic != n {
		n.Stats.RxDropped.Add(cnt)
		ReleaseBatch(pkts)
		s.release(b)
		return
	}
	s.dispatch(b, ng, pkts)
	s.release(b)
}

// dispatch hands runs of packets of one network protocol to its endpoint.
func (s *Stack) dispatch(b *Batch, ng *nicGen, pkts []*Packet) {
	for i := 0; i < len(pkts); {
		p := pkts[i]
		if p == nil {
			i++
			continue
		}
		proto := p.NetProto
		j := i + 1
		for j < len(pkts) && (pkts[j] == nil || pkts[j].NetProto == proto) {
			j++
		}
		if ep := ng.endpoint(proto); ep != nil {
			ep.HandlePackets(b, pkts[i:j])
		} else {
			for k := i; k < j; k++ {
				if pkts[k] != nil {
					ng.nic.Stats.RxUnknownProtocol.Inc()
					b.Drop(pkts[k], nil)
					pkts[k] = nil
				}
			}
		}
		i = j
	}
}

// ResumePoint says where a stolen packet re-enters the stack: right after
// the stage it was stolen at, so that it passes every later stage once and
// no earlier one again (each hook runs once per packet, the receive
// counters count it once, fragmentation and resolution happen once).
//
// The path of a packet, by stages (the points after each in brackets):
//
//	received:   validation, Prerouting [AfterPrerouting], route decision, then
//	  forwarded:  checks (TTL, MTU), Forward [AfterForward]
//	  local:      reassembly, Input [AfterInput], delivery to the transport
//	originated: network header, Output [AfterOutput]
//	leaving (Batch.Output, per NIC): Postrouting [AfterPostrouting],
//	            fragmentation, neighbor resolution [AfterResolution],
//	            software GSO, the link
//
// A hook that steals a packet (a target returning VerdictStolen) hands it
// back at ResumeAfter(that hook), which continues exactly as if the hook
// had accepted it; neighbor resolution hands its queued packets back at
// ResumeAfterResolution. ResumeReceive starts from the beginning (every
// hook again): for packets that are new to the stack, not for one stolen
// at a hook.
//
// The filter's resume token extends this without changing it: a packet
// stolen inside a hook (by a rule of a chain of one of its priority slots)
// carries the hook and its position there (Stack.Resume; generation, priority slot,
// chain, rule, matcher, jump stack). Re-entering with a token first runs
// the rest of that hook from the position on, in the token's rule set, and
// then — when that accepts — goes on at ResumeAfter(hook) through the same
// code as Reinject; a drop or another steal ends there. So a token only
// adds "finish the hook"; what comes after a hook stays defined here.
type ResumePoint uint8

const (
	// ResumeReceive: as if just received on pkt.InNIC (Data() at the
	// network header): the whole receive path, Prerouting included.
	ResumeReceive ResumePoint = iota
	// ResumeAfterPrerouting: Prerouting done (Data() at the network
	// header, InNIC set): the route decision, then Forward or reassembly
	// and Input.
	ResumeAfterPrerouting
	// ResumeAfterInput: Input done on a packet addressed to the stack
	// (reassembled, Data() at the network header): delivery to ICMP or
	// the transport.
	ResumeAfterInput
	// ResumeAfterForward: Forward done (routed: TTL decremented, OutNIC
	// and NextHop set): queued for its NIC, Postrouting next.
	ResumeAfterForward
	// ResumeAfterOutput: Output done on a packet the stack originated
	// (OutNIC and NextHop set): queued for its NIC, Postrouting next.
	ResumeAfterOutput
	// ResumeAfterPostrouting: Postrouting done: fragmentation, neighbor
	// resolution, the link.
	ResumeAfterPostrouting
	// ResumeAfterResolution: RemoteLinkAddr set by neighbor resolution
	// (Postrouting and fragmentation done): software offloads and the
	// link.
	ResumeAfterResolution
)

// ResumeAfter is the point right after hook h: where a packet h stole goes
// on, as if h had accepted it. (For no hook it is a point Reinject drops
// at, counted as reinject_unsupported.)
func ResumeAfter(h Hook) ResumePoint {
	if h >= NumHooks {
		return resumeInvalid
	}
	return ResumeAfterPrerouting + ResumePoint(h)
}

const resumeInvalid ResumePoint = 255

// Hook returns the hook a point comes right after; ok is false for
// ResumeReceive and ResumeAfterResolution.
func (r ResumePoint) Hook() (h Hook, ok bool) {
	if r >= ResumeAfterPrerouting && r <= ResumeAfterPostrouting {
		return Hook(r - ResumeAfterPrerouting), true
	}
	return 0, false
}

var resumeNames = [...]string{"receive", "after-prerouting", "after-input", "after-forward", "after-output", "after-postrouting", "after-resolution"}

func (r ResumePoint) String() string {
	if int(r) < len(resumeNames) {
		return resumeNames[r]
	}
	return "resume?"
}

// Reinject hands stolen packets back to the stack at the given point (see
// ResumePoint) and runs them to completion on the calling goroutine, in
// the generation current now. It takes ownership of every packet; the
// slice stays the caller's (every slot is nil on return). Packets whose NIC
// is gone are dropped and counted (output_no_nic); so are packets at a
// hook point of a network protocol that cannot resume there
// (reinject_unsupported). A packet stolen with a resume token (inside a
// hook: Stack.Resume) may be re-injected instead: its token is spent and
// the rest of its hook does not run.
func (s *Stack) Reinject(at ResumePoint, pkts []*Packet) {
	b := s.acquire()
	if b == nil {
		ReleaseBatch(pkts)
		return
	}
	for _, p := range pkts {
		if p != nil && p.tok != nil {
			b.dropToken(p) // not resumed in its hook: the token is spent
		}
	}
	b.resume(at, pkts)
	s.release(b)
}

// DropStolen ends stolen packets that will not be re-injected, counting them
// under reason. Out-of-process filter plugins (upcoming) use it for their
// failure policy: packets held at a plugin that died or timed out end here
// when the policy is to drop them.
func (s *Stack) DropStolen(reason *Counter, pkts ...*Packet) {
	for _, p := range pkts {
		if p != nil {
			if reason != nil {
				reason.Inc()
			}
			p.Release()
		}
	}
}
