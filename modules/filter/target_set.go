package filter

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(SetTarget)) }

// SetTarget is filter.target.set: ipset's SET target, -j SET --add-set
// NAME FLAGS [--exist] [--timeout N] or --del-set NAME FLAGS: the
// packet's fields (FLAGS as -m set's) become an element added to (or
// deleted from) the set; the packet goes on (the next rule). The packet
// path only looks the element up (lock-free) and, for a change the set
// does not have yet, queues it without waiting (a full queue drops the
// change and counts set_queue_full); a goroutine per set applies the
// queued changes, many at once in one new snapshot, within microseconds.
// --exist renews the timeout of an element already there (in place, on
// the packet path); --timeout N gives added elements N seconds (default:
// the set's timeout).
type SetTarget struct {
	AddSet  string `yaml:"add_set"`
	DelSet  string `yaml:"del_set"`
	Exist   bool   `yaml:"exist"`
	Timeout string `yaml:"timeout"`

	m       SetMatch
	del     bool
	timeout time.Duration // -1: the set's default
	env     *provisionEnv
	full    *pipeline.Counter // filter: set_queue_full
}

// PipelineModule implements pipeline.Module.
func (*SetTarget) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.set", Summary: "ipset's SET target: add the packet's fields to a set or delete them (-j SET --add-set knock src --timeout 30)", New: func() pipeline.Module { return new(SetTarget) }}
}

// Options implements Target.
func (*SetTarget) Options() []Opt {
	return []Opt{{Name: "add-set", Args: 2}, {Name: "del-set", Args: 2}, {Name: "exist", Args: 0}, {Name: "timeout", Args: 1}}
}

func (t *SetTarget) setEnv(e *provisionEnv) { t.env = e; t.m.env = e }

// Provision finds the set.
func (t *SetTarget) Provision(ctx *pipeline.Context) error {
	switch {
	case t.AddSet != "" && t.DelSet != "", t.AddSet == "" && t.DelSet == "":
		return fmt.Errorf("give one of add_set and del_set (--add-set, --del-set)")
	case t.DelSet != "":
		t.del, t.m.MatchSet = true, t.DelSet
		if t.Exist || t.Timeout != "" {
			return fmt.Errorf("--exist and --timeout go with --add-set")
		}
	default:
		t.m.MatchSet = t.AddSet
	}
	if strings.HasPrefix(strings.TrimSpace(t.m.MatchSet), "!") {
		return fmt.Errorf("--add-set/--del-set cannot be inverted")
	}
	if err := t.m.Provision(ctx); err != nil {
		return fmt.Errorf("%s", strings.Replace(err.Error(), "--match-set", "--add-set/--del-set", -1))
	}
	t.timeout = -1
	if t.Timeout != "" {
		n, err := strconv.ParseUint(t.Timeout, 10, 32)
		if err != nil || n > 2147483 {
			return fmt.Errorf("timeout %q: seconds, 0..2147483", t.Timeout)
		}
		t.timeout = time.Duration(n) * time.Second
	}
	if t.m.set == nil { // a rule alone (CanonicalRule)
		return nil
	}
	if t.m.set.decl.isMap || t.m.set.decl.constant {
		return fmt.Errorf("%v: the SET target cannot change it", t.m.set.mapErr())
	}
	if t.timeout > 0 && t.m.set.decl.timeout == 0 {
		return fmt.Errorf("set %s has no timeout (declare it with timeout: N)", t.m.name)
	}
	if t.env != nil {
		t.env.setTargets = append(t.env.setTargets, t.m.set)
		if t.env.counters != nil {
			t.full = t.env.counters.Get("set_queue_full")
		}
	}
	return nil
}

// Action implements pipeline.Target: the packet goes on.
func (t *SetTarget) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	s := t.m.set
	sn := s.snap.Load()
	a, port, proto, ok := t.m.fields(pc, sn.typ)
	if !ok {
		return pipeline.VerdictContinue, 0
	}
	var now int64
	if sn.state || t.timeout > 0 || s.decl.timeout > 0 {
		now = nowNanos(pc)
	}
	e := sn.lookupExact(a, port, proto, now)
	switch {
	case t.del && e < 0, !t.del && e >= 0 && !t.Exist:
		return pipeline.VerdictContinue, 0
	case !t.del && e >= 0:
		// --exist: renew in place. In a set without timeout no element
		// has one (makeElem, Add): nothing to renew, and the element's
		// state (a cache miss in a large set) is not loaded.
		if s.decl.timeout > 0 {
			if st := sn.elems[e].st; st != nil {
				st.expires.Store(t.expiry(now))
			}
		}
		return pipeline.VerdictContinue, 0
	}
	if now == 0 {
		now = nowNanos(pc)
	}
	op := setOp{del: t.del, addr: a, port: port, proto: proto, expires: t.expiry(now), now: now}
	if !s.queue(op) && t.full != nil {
		t.full.Inc()
	}
	return pipeline.VerdictContinue, 0
}

func (t *SetTarget) expiry(now int64) int64 {
	to := t.timeout
	if to < 0 {
		to = t.m.set.decl.timeout
	}
	if to <= 0 {
		return 0
	}
	return now + int64(to)
}

// Spec implements Target.
func (t *SetTarget) Spec() string {
	s := t.m.Spec()
	flags := s[strings.Index(s, "--match-set")+len("--match-set"):]
	out := "-j SET --add-set" + flags
	if t.del {
		out = "-j SET --del-set" + flags
	}
	if t.Exist {
		out += " --exist"
	}
	if t.timeout >= 0 {
		out += " --timeout " + strconv.Itoa(int(t.timeout/time.Second))
	}
	return out
}

// Label implements Target.
func (*SetTarget) Label() string { return "SET" }

// nowNanos is the batch clock (now, match_misc.go).
func nowNanos(pc *pipeline.PacketContext) int64 { return now(pc) }

// fields are the packet's values for a set of type t (the address,
// port and protocol the flags name); ok false: the packet has no ports
// for a set with ports.
func (m *SetMatch) fields(pc *pipeline.PacketContext, t setType) (a netip.Addr, port uint16, proto uint8, ok bool) {
	a = pc.Tuple.Dst
	proto = uint8(pc.Tuple.Proto)
	if t != setPort && m.dirs[0] {
		a = pc.Tuple.Src
	}
	if t == setPort || t.dims() == 2 {
		if pc.Fragment || pc.L4Unknown || !hasPorts(proto) || pc.L4End-pc.L4Off < 4 {
			return a, 0, 0, false
		}
		if m.dirs[len(m.dirs)-1] {
			port = pc.Tuple.SrcPort
		} else {
			port = pc.Tuple.DstPort
		}
	}
	return a, port, proto, true
}

// lookupExact finds the element the SET target would add for these
// fields: the same key, not just one that holds them (a hash:net set's
// /32 of the address, not a wider prefix).
func (sn *setSnap) lookupExact(a netip.Addr, port uint16, proto uint8, now int64) int32 {
	if sn.typ == setPort {
		// The target adds the port for any protocol (applyOps): only the
		// any-protocol table can hold that element (a protocol's own
		// table, which lookup tries first, never does).
		for _, pt := range sn.ports {
			if pt.proto != 0 {
				continue
			}
			if e := pt.idx[port] - 1; e >= 0 && (!sn.state || !sn.elems[e].expired(now)) {
				if k := &sn.elems[e].key; k.plo == port && k.phi == port {
					return e
				}
			}
		}
		return -1
	}
	e := sn.lookup(a, port, proto, now)
	if e < 0 {
		return -1
	}
	k := &sn.elems[e].key
	switch sn.typ {
	case setNet, setNetPort:
		if int(k.bits) != a.BitLen() {
			return -1
		}
	}
	if sn.typ != setNet && sn.typ != setIP && (k.proto != proto || k.plo != port || k.phi != port) {
		return -1
	}
	return e
}

// setOp is one queued change of the SET target.
type setOp struct {
	del     bool
	addr    netip.Addr
	port    uint16
	proto   uint8
	expires int64
	now     int64 // the batch clock when queued
}

// The applier: a bounded queue per set, drained by one goroutine while
// some running generation has a SET target on the set (refs).
const setQueueLen = 4096

type setApplier struct {
	mu   sync.Mutex
	refs int
	ch   chan setOp
	stop chan struct{}
	done chan struct{}
	// applied counts the ops applied (tests wait for it).
	applied atomic.Uint64
	queued  atomic.Uint64
}

// queue hands op to the applier without waiting; false: the queue is
// full (or no applier runs: pipectl validate).
func (s *Set) queue(op setOp) bool {
	ch := s.applierCh.Load()
	if ch == nil {
		return false
	}
	select {
	case *ch <- op:
		s.app.queued.Add(1)
		return true
	default:
		return false
	}
}

// startApplier starts (or refers to) the set's applier.
func (s *Set) startApplier() {
	a := &s.app
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refs++
	if a.refs > 1 {
		return
	}
	a.ch = make(chan setOp, setQueueLen)
	a.stop, a.done = make(chan struct{}), make(chan struct{})
	ch := a.ch
	s.applierCh.Store(&ch)
	go s.apply(a.ch, a.stop, a.done)
}

// stopApplier drops a reference; the last one stops the goroutine.
func (s *Set) stopApplier() {
	a := &s.app
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.refs == 0 {
		return
	}
	if a.refs--; a.refs > 0 {
		return
	}
	s.applierCh.Store(nil)
	close(a.stop)
	<-a.done
}

func (s *Set) apply(ch chan setOp, stop, done chan struct{}) {
	defer close(done)
	var ops []setOp
	for {
		select {
		case op := <-ch:
			ops = append(ops[:0], op)
		drain:
			for len(ops) < setQueueLen {
				select {
				case op := <-ch:
					ops = append(ops, op)
				default:
					break drain
				}
			}
			s.applyOps(ops)
			s.app.applied.Add(uint64(len(ops)))
		case <-stop:
			return
		}
	}
}

// applyOps makes the ops' elements and builds one snapshot for them all.
func (s *Set) applyOps(ops []setOp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.snap.Load()
	add := map[elemKey]setElem{}
	del := map[elemKey]bool{}
	var order []elemKey
	var now int64 // the latest batch clock: elements expired by then go
	for _, op := range ops {
		now = max(now, op.now)
		k := addrKey(op.addr, op.addr, op.addr.BitLen())
		k.proto, k.plo, k.phi = op.proto, op.port, op.port
		switch s.decl.typ {
		case setNet, setIP:
			k.proto, k.plo, k.phi = 0, 0, 0
		case setPort:
			k = elemKey{proto: 0, plo: op.port, phi: op.port}
		}
		if op.del {
			del[k] = true
			delete(add, k)
			continue
		}
		delete(del, k)
		e := setElem{key: k}
		if s.needsState() {
			e.st = new(elemState)
			e.st.expires.Store(op.expires)
		}
		if _, seen := add[k]; !seen {
			order = append(order, k)
		}
		add[k] = e
	}
	// changed: an element goes or comes. Else (renewals in place, adds
	// to a full set) the snapshot stays: no rebuild of a full set per
	// queued add.
	changed, renewed := false, false
	elems := make([]setElem, 0, len(old.elems)+len(add))
	for i := range old.elems {
		e := old.elems[i]
		if del[e.key] || e.expired(now) {
			changed = true
			continue
		}
		if n, ok := add[e.key]; ok {
			if e.st != nil && n.st != nil {
				e.st.expires.Store(n.st.expires.Load())
			}
			renewed = true
			delete(add, e.key)
		}
		elems = append(elems, e)
	}
	for _, k := range order {
		if e, ok := add[k]; ok && len(elems) < s.decl.maxElem {
			elems = append(elems, e)
			changed = true
		}
	}
	if !changed {
		if renewed {
			s.changed.Store(true)
		}
		return
	}
	sn, err := buildSnap(s.decl.typ, elems)
	if err != nil {
		return
	}
	s.snap.Store(sn)
	s.changed.Store(true)
}

var (
	_ Target               = (*SetTarget)(nil)
	_ pipeline.Provisioner = (*SetTarget)(nil)
)
