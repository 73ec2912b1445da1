package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// The flowtable: a fast path for established flows, as nftables'
// flowtables (nf_flow_table). A rule offloads a flow (filter.target.
// flowoffload, iptables' -j FLOWOFFLOAD; filter.target.flow, nft's
// `flow add @ft`) in the FORWARD chain; from then on its packets leave
// from a hook function at Prerouting right after the conntrack lookup
// (priorityFlowtable): the flow's NAT applied, TTL or hop limit
// decremented, to the next hop cached in the flow (found again when the
// route tables change), past every chain (mangle, nat and filter from
// Prerouting to Postrouting). Conntrack has tracked the packet at −200
// (state machine, counters, timeout) and the links count it; the rules do
// not. A FIN, RST or SYN, an idle flow (the flowtable's timeout), the
// entry's end and a reload that changes the rules return a flow to the
// slow path; fragments, IPv4 options, IPv6 extension headers, TTL ≤ 1
// and packets over the out-link's MTU go the slow path one by one (which
// sends the ICMP error or fragments). See README.md, "Flowtables".

func init() {
	pipeline.RegisterModule(new(FlowOffload))
	pipeline.RegisterModule(new(FlowAdd))
}

// priorityFlowtable is the fast path's place at Prerouting: right after
// the conntrack lookup (−200), whose entry it needs, before mangle (−150),
// destination NAT (−100) and the filter (0).
const priorityFlowtable = pipeline.PriorityConntrack + 1

// FlowtableConfig declares a flowtable under netfilter.conntrack's
// flowtables: (nft's `flowtable ft { devices = { a, b } }`).
type FlowtableConfig struct {
	Name string `yaml:"name"`
	// Devices are the links whose flows it takes (both the in- and the
	// out-link must be among them); empty: every link.
	Devices []string `yaml:"devices"`
	// Timeout: an offloaded flow idle this long returns to the slow path
	// (nf_flowtable_tcp_timeout, _udp_timeout: 30 s).
	Timeout time.Duration `yaml:"timeout"`
}

// statusOffload marks an entry whose flow is in a flowtable, for the
// listing ([OFFLOAD], as conntrack-tools prints IPS_OFFLOAD); set and
// cleared with the slot's ref, under the entry's lock. A flow whose
// offload ends lazily (idle timeout, a reload: seen at its next packet)
// keeps the mark until then, as Linux's until its flowtable's gc runs.
const statusOffload uint32 = 1 << 24

// defaultFlowTimeout is Linux's nf_flowtable_{tcp,udp}_timeout.
const defaultFlowTimeout = 30 * time.Second

// flowShared is the flowtable's state in the stack's shared state: the
// per-entry slots (they outlive a reload, as the entries do), the rules'
// epoch, and the fast path of the generation being built (for the
// targets provisioned after netfilter.conntrack).
type flowShared struct {
	mu    sync.Mutex
	print uint64 // fingerprint of the rules the fast path skips
	epoch uint32 // bumped when print changes

	building atomic.Pointer[fastPath]
	slots    atomic.Pointer[flowSlots]
	ver      atomic.Uint32 // route snapshot versions
}

const flowSharedKey = "netfilter.conntrack/flowtable"

func sharedFlow(ctx *pipeline.Context) *flowShared {
	return ctx.Shared(flowSharedKey, func() any { return new(flowShared) }).(*flowShared)
}

// flowSlots are one slot per entry of table t.
type flowSlots struct {
	t     *Table
	slots []flowSlot
}

// flowSlot is an entry's offload state. ref is read without a lock (is
// the packet's flow offloaded?); the rest is guarded by the entry's lock.
// No pointers: the array is not scanned by the garbage collector.
type flowSlot struct {
	ref   atomic.Uint64 // the offloaded entry's Ref; 0: not offloaded
	pend  Ref           // offloaded in a batch still running: ref is set when it ends
	last  int64         // stack clock of the last fast-path packet
	epoch uint32        // the rules' epoch it was offloaded in
	ft    uint16        // its flowtable (index in the generation's list)
	dir   [2]flowHop
}

// flowHop is a direction's cached forwarding decision.
type flowHop struct {
	ver     uint32 // routeSnap.ver it was found in; 0: none
	in, out pipeline.NICID
	mtu     uint32
	hop     [16]byte // next hop (IPv4 in the first 4 bytes)
}

// routeSnap names the route tables a flowHop was found in.
type routeSnap struct {
	st, dyn *pipeline.RouteTable
	ver     uint32
}

// flowtable is a declared flowtable, resolved.
type flowtable struct {
	name    string
	devs    []pipeline.NICID // nil: any link
	timeout int64
}

func (ft *flowtable) has(id pipeline.NICID) bool {
	return ft.devs == nil || slices.Contains(ft.devs, id)
}

type pendingFlow struct {
	i uint32
	r Ref
}

// maxPending bounds the flows waiting for their batch's end; past it a
// flow takes the fast path at once.
const maxPending = 4096

// fastPath is one generation's flowtables and fast-path hook.
type fastPath struct {
	sh     *flowShared
	t      *Table
	tables []flowtable
	epoch  uint32
	used   atomic.Bool // a FLOWOFFLOAD rule was made for this generation
	slots  []flowSlot  // set by HookTables when used
	snap   atomic.Pointer[routeSnap]
	cfg    *pipeline.Config // for the rules' fingerprint
	decl   []FlowtableConfig

	// pending are the flows offloaded by batches still running: a flow
	// takes the fast path once the batch that offloaded it has sent its
	// packets, so that a later packet of the same batch does not
	// overtake the ones on the slow path (FlushBatch).
	// Lock order: an entry's lock, then pendMu (offload); FlushBatch
	// takes flushMu, swaps the list under pendMu alone, then entry locks.
	pendMu         sync.Mutex
	pending, spare []pendingFlow
	flushMu        sync.Mutex

	offloaded, fast, slow, teardown *pipeline.Counter
}

// newFastPath resolves the flowtables and the rules' epoch for a
// generation with table t.
func newFastPath(ctx *pipeline.Context, t *Table, cfgs []FlowtableConfig) (*fastPath, error) {
	sh := sharedFlow(ctx)
	cs := ctx.Counters("conntrack")
	f := &fastPath{sh: sh, t: t, offloaded: cs.Get("flow_offloaded"), fast: cs.Get("flow_fastpath"),
		slow: cs.Get("flow_slowpath"), teardown: cs.Get("flow_teardown")}
	for i, c := range cfgs {
		if c.Name == "" {
			return nil, fmt.Errorf("flowtables[%d]: a name is needed", i)
		}
		if slices.ContainsFunc(f.tables, func(o flowtable) bool { return o.name == c.Name }) {
			return nil, fmt.Errorf("flowtable %s declared twice", c.Name)
		}
		ft := flowtable{name: c.Name, timeout: int64(defaultFlowTimeout)}
		if c.Timeout != 0 {
			if c.Timeout < time.Second || c.Timeout > 24*time.Hour {
				return nil, fmt.Errorf("flowtable %s: timeout %v out of range 1s..24h", c.Name, c.Timeout)
			}
			ft.timeout = int64(c.Timeout)
		}
		for _, d := range c.Devices {
			id, ok := ctx.LinkIDs[d]
			if !ok {
				return nil, fmt.Errorf("flowtable %s: no link %q", c.Name, d)
			}
			ft.devs = append(ft.devs, id)
		}
		if len(c.Devices) > 0 && ft.devs == nil {
			ft.devs = []pipeline.NICID{}
		}
		f.tables = append(f.tables, ft)
	}
	if len(f.tables) > 0xffff {
		return nil, errors.New("too many flowtables")
	}
	f.cfg, f.decl = ctx.Config, cfgs
	sh.building.Store(f)
	return f, nil
}

// rulesPrint fingerprints what the fast path skips and what decides
// which flows it takes: every rule of the running rule sets but the raw
// table's (which runs before the fast path), in canonical form, with the
// chains' policies (pipeline.RuleLister: the filter), the flowtables and
// the tables set from Go. 0: unknown (every build is a change). Called
// once every module is provisioned (HookTables).
func rulesPrint(cfg *pipeline.Config, decl []FlowtableConfig) uint64 {
	if cfg == nil {
		return 0
	}
	h := fnv.New64a()
	for _, mc := range cfg.Modules {
		rl, ok := mc.Module.(pipeline.RuleLister)
		if !ok {
			continue
		}
		fmt.Fprintf(h, "module %s\n", mc.ID)
		for _, c := range rl.ListRules() {
			if c.Table == "raw" {
				continue
			}
			fmt.Fprintf(h, "%s %s %s %d\n", c.Table, c.Chain, c.Policy, c.References)
			for _, r := range c.Rules {
				fmt.Fprintf(h, "\t%s %s\n", r.ID, r.Rule)
			}
		}
	}
	fmt.Fprintf(h, "flowtables %v\n", decl)
	for i, t := range cfg.Hooks {
		fmt.Fprintf(h, "hook%d=%p;", i, t)
	}
	if s := h.Sum64(); s != 0 {
		return s
	}
	return 1
}

// hookEntry is the fast path's table, and its slots made, when a rule
// offloads flows in this generation.
func (f *fastPath) hookEntry() (pipeline.HookEntry, bool) {
	f.sh.building.CompareAndSwap(f, nil)
	if !f.used.Load() {
		return pipeline.HookEntry{}, false
	}
	p := rulesPrint(f.cfg, f.decl)
	f.sh.mu.Lock()
	if p != f.sh.print || p == 0 {
		f.sh.print = p
		f.sh.epoch++
		if f.sh.epoch == 0 {
			f.sh.epoch = 1
		}
	}
	f.epoch = f.sh.epoch
	s := f.sh.slots.Load()
	if s == nil || s.t != f.t {
		s = &flowSlots{t: f.t, slots: make([]flowSlot, f.t.Max())}
		f.sh.slots.Store(s)
	}
	f.sh.mu.Unlock()
	f.slots = s.slots
	f.pending, f.spare = make([]pendingFlow, 0, maxPending), make([]pendingFlow, 0, maxPending)
	return pipeline.HookEntry{Hook: pipeline.Prerouting, Priority: priorityFlowtable, Name: "flowtable", Table: pipeline.HookFunc("flowtable", f)}, true
}

// routes returns the snapshot of the route tables g's lookups read now.
func (f *fastPath) routes(g *pipeline.Generation) *routeSnap {
	st, dyn := g.RouteTables()
	if sn := f.snap.Load(); sn != nil && sn.st == st && sn.dyn == dyn {
		return sn
	}
	// Only when the routes changed (a link went down, a dynamic route):
	// one allocation, not per packet.
	v := f.sh.ver.Add(1)
	if v == 0 {
		v = f.sh.ver.Add(1)
	}
	sn := &routeSnap{st: st, dyn: dyn, ver: v}
	f.snap.Store(sn)
	return sn
}

// Action implements pipeline.Target: the fast path. A packet of an
// offloaded flow that it forwards is stolen (queued for its out-link past
// Postrouting); any other goes on along the slow path.
func (f *fastPath) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	r := Ref(pc.Pkt.ConnTrack)
	i, ok := r.index()
	if !ok || int(i) >= len(f.slots) || f.slots[i].ref.Load() != uint64(r) || pc.Batch == nil {
		return pipeline.VerdictAccept, 0
	}
	if f.forward(pc, i, r) {
		return pipeline.VerdictStolen, 0
	}
	f.slow.Inc()
	return pipeline.VerdictAccept, 0
}

// fastProto: the packet's transport header is there and says the flow
// stays offloaded (no FIN, RST or SYN); teardown: it ends the offload.
func fastProto(pc *pipeline.PacketContext) (ok, teardown bool) {
	l := l4(pc)
	switch uint8(pc.Tuple.Proto) {
	case wire.ProtocolTCP:
		if len(l) < 20 {
			return false, false
		}
		if l[13]&(wire.TCPFlagFin|wire.TCPFlagRst|wire.TCPFlagSyn) != 0 {
			return false, true
		}
		return true, false
	case wire.ProtocolUDP:
		return len(l) >= 8, false
	}
	return false, false
}

// forward is the fast path for a packet whose flow (entry i) is
// offloaded: true when it was queued for its out-link.
func (f *fastPath) forward(pc *pipeline.PacketContext, i uint32, r Ref) bool {
	p := pc.Pkt
	b := pc.Batch
	s := &f.slots[i]
	if st := p.CTInfo.State(); st != pipeline.CTEstablished && st != pipeline.CTNew || pc.Fragment || p.PktType != pipeline.PacketHost {
		return false
	}
	ok, down := fastProto(pc)
	if down {
		f.end(i, r)
		return false
	}
	if !ok {
		return false
	}
	nh := p.NetworkHeader()
	v6 := p.NetProto == pipeline.IPv6ProtocolNumber
	var size int
	if v6 {
		// No extension headers (a hop-by-hop option is the slow path's).
		if len(nh) < wire.IPv6HeaderSize || nh[6] != uint8(pc.Tuple.Proto) || nh[7] <= 1 {
			return false
		}
		size = wire.IPv6HeaderSize + int(binary.BigEndian.Uint16(nh[4:]))
	} else {
		if len(nh) < wire.IPv4MinimumSize || nh[0] != 0x45 || nh[8] <= 1 {
			return false // options, TTL exceeded
		}
		size = int(binary.BigEndian.Uint16(nh[2:]))
	}
	if p.GSO.Type != pipeline.GSONone && p.GSO.SegSize > 0 {
		size = int(p.GSO.HdrLen) + int(p.GSO.SegSize)
	}
	now := b.Now.UnixNano()
	sn := f.routes(b.Gen)
	dir := 0
	if p.CTInfo&pipeline.CTReply != 0 {
		dir = 1
	}
	e := &f.t.entries[i]
	e.mu.Lock()
	if !e.Valid(r) || s.ref.Load() != uint64(r) {
		e.mu.Unlock()
		return false
	}
	if s.epoch != f.epoch || int(s.ft) >= len(f.tables) || now-s.last > f.tables[s.ft].timeout {
		// The rules changed, or the flow idled past the timeout.
		s.ref.Store(0)
		e.status.And(^statusOffload)
		e.mu.Unlock()
		f.teardown.Inc()
		return false
	}
	status := e.status.Load()
	out := e.dir(1 - dir).tuple.Invert() // the packet as it leaves
	hp := &s.dir[dir]
	if hp.ver != sn.ver || hp.in != p.InNIC {
		if !f.findHop(b.Gen, sn, &f.tables[s.ft], p.InNIC, &out, hp) {
			e.mu.Unlock()
			return false
		}
	}
	hop := *hp
	s.last = now
	e.mu.Unlock()
	if size > int(hop.mtu) {
		return false // the slow path fragments or sends the ICMP error
	}
	if status&(StatusSrcNAT|StatusDstNAT) != 0 {
		dstNAT, srcNAT := StatusDstNAT, StatusSrcNAT
		if dir == 1 {
			dstNAT, srcNAT = StatusSrcNAT, StatusDstNAT
		}
		partial := p.GSO.NeedsCsum
		// manip only fails on headers too short, checked above; the
		// slow path would redo a half-done rewrite (it sets the same
		// values).
		if status&dstNAT != 0 && !manip(nh, pc.L4Off, pc.L4End, false, &out, true, partial) {
			return false
		}
		if status&srcNAT != 0 && !manip(nh, pc.L4Off, pc.L4End, false, &out, false, partial) {
			return false
		}
	}
	if v6 {
		wire.IPv6(nh).DecHopLimit()
	} else {
		wire.IPv4(nh).DecTTL()
	}
	p.OutNIC = hop.out
	if v6 {
		p.NextHop = netip.AddrFrom16(hop.hop)
	} else {
		p.NextHop = netip.AddrFrom4([4]byte(hop.hop[:4]))
	}
	b.OutputForwarded(p)
	f.fast.Inc()
	return true
}

// findHop makes the forwarding decision the slow path would for the
// packet leaving as out from link in (network.ipv4's and network.ipv6's
// forward: forwarding on the in-link, not a local destination, the
// route, the out-link and its MTU) and caches it in hp. False: the slow
// path decides (it may drop or answer with an ICMP error).
func (f *fastPath) findHop(g *pipeline.Generation, sn *routeSnap, ft *flowtable, in pipeline.NICID, out *Key, hp *flowHop) bool {
	if !ft.has(in) || g.RouteRules() != nil {
		// Route tables chosen by mark (route_rules): a mark mangle would
		// set is not set on the fast path; the slow path routes.
		return false
	}
	ni, ok := g.NIC(in)
	if !ok || !ni.Forwarding(int(out.Family)) {
		return false
	}
	var rt *pipeline.Route
	if out.Family == 4 {
		d := [4]byte(out.Dst[:4])
		if _, _, local := g.IsLocal4(d); local || d[0] >= 224 {
			return false
		}
		rt = sn.st.Lookup4(d)
	} else {
		if _, local := g.IsLocal6(out.Dst); local || out.Dst[0] == 0xff || linkLocal6(&out.Src) || linkLocal6(&out.Dst) {
			return false
		}
		rt = g.LookupRoute6(out.Dst)
	}
	if rt == nil || !ft.has(rt.NIC) {
		return false
	}
	on, ok := g.NIC(rt.NIC)
	if !ok {
		return false
	}
	nh := rt.NextHop(out.DstAddr())
	*hp = flowHop{ver: sn.ver, in: in, out: rt.NIC, mtu: uint32(on.MTU()), hop: nh.As16()}
	if out.Family == 4 {
		a := nh.As4()
		hp.hop = [16]byte{}
		copy(hp.hop[:], a[:])
	}
	return true
}

func linkLocal6(a *[16]byte) bool { return a[0] == 0xfe && a[1]&0xc0 == 0x80 }

// end returns the flow of entry i to the slow path.
func (f *fastPath) end(i uint32, r Ref) {
	s := &f.slots[i]
	e := &f.t.entries[i]
	e.mu.Lock()
	if s.ref.Load() == uint64(r) || s.pend == r {
		s.ref.Store(0)
		s.pend = 0
		e.status.And(^statusOffload)
		f.teardown.Inc()
	}
	e.mu.Unlock()
}

// offload puts the flow of the packet pc describes in flowtable ft, as
// nft_flow_offload_eval: a confirmed TCP (ESTABLISHED, no FIN or RST in
// this packet) or UDP flow, not a fragment, both links in the flowtable.
func (f *fastPath) offload(pc *pipeline.PacketContext, ft uint16) {
	p := pc.Pkt
	r := Ref(p.ConnTrack)
	i, ok := r.index()
	if !ok || int(i) >= len(f.slots) || pc.Fragment || pc.Batch == nil {
		return
	}
	s := &f.slots[i]
	if s.ref.Load() == uint64(r) {
		return
	}
	if st := p.CTInfo.State(); st != pipeline.CTEstablished && st != pipeline.CTNew {
		return
	}
	if ok, _ := fastProto(pc); !ok {
		return
	}
	t := &f.tables[ft]
	if !t.has(p.InNIC) || !t.has(pc.OutNIC) {
		return
	}
	e := f.t.Entry(r)
	if e == nil || e.status.Load()&StatusConfirmed == 0 {
		return
	}
	e.mu.Lock()
	if !e.Valid(r) || e.orig.tuple.Proto == wire.ProtocolTCP && TCPState(e.tcp.state) != TCPEstablished {
		e.mu.Unlock()
		return
	}
	if s.pend == r {
		e.mu.Unlock()
		return // offloaded earlier in this batch
	}
	s.epoch, s.ft, s.last = f.epoch, ft, pc.Batch.Now.UnixNano()
	s.dir = [2]flowHop{}
	f.pendMu.Lock()
	if len(f.pending) < cap(f.pending) {
		s.pend = r
		f.pending = append(f.pending, pendingFlow{i, r})
		f.pendMu.Unlock()
		pc.Batch.OnFinish(f)
	} else {
		f.pendMu.Unlock()
		s.ref.Store(uint64(r))
		e.status.Or(statusOffload)
	}
	e.mu.Unlock()
	f.offloaded.Inc()
}

// FlushBatch implements pipeline.BatchFlusher: the flows offloaded in
// the batch that ends (and in any other running meanwhile) take the fast
// path from now on.
func (f *fastPath) FlushBatch(*pipeline.Batch) {
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.pendMu.Lock()
	list := f.pending
	f.pending = f.spare
	f.pendMu.Unlock()
	for _, p := range list {
		s := &f.slots[p.i]
		e := &f.t.entries[p.i]
		e.mu.Lock()
		if s.pend == p.r {
			s.pend = 0
			// A FIN or RST on the slow path meanwhile keeps it there.
			if e.Valid(p.r) && (e.orig.tuple.Proto != wire.ProtocolTCP || TCPState(e.tcp.state) == TCPEstablished) {
				s.ref.Store(uint64(p.r))
				e.status.Or(statusOffload)
			}
		}
		e.mu.Unlock()
	}
	f.spare = list[:0] // flushMu held: no other flusher has it
}

// offloaded reports whether the flow of r is in the fast path (tests): a
// slot whose entry was freed names a generation of it that no packet can
// carry any more.
func offloaded(s *pipeline.Stack, r Ref) bool {
	sh := s.Shared(flowSharedKey, func() any { return new(flowShared) }).(*flowShared)
	fs := sh.slots.Load()
	i, ok := r.index()
	return ok && fs != nil && int(i) < len(fs.slots) && fs.slots[i].ref.Load() == uint64(r) && fs.t.Entry(r) != nil
}

// offloadTarget is what FLOWOFFLOAD and flow add share.
type offloadTarget struct {
	fp *fastPath
	ft uint16
}

func (o *offloadTarget) provision(ctx *pipeline.Context, name, what string) error {
	name = strings.TrimPrefix(name, "@")
	if ctx.Stack() == nil {
		// A rule built alone for its canonical text (filter.CanonicalRule:
		// pipectl import), not for a pipeline: nothing to offload to.
		o.fp, o.ft = &fastPath{tables: []flowtable{{name: name}}}, 0
		return nil
	}
	fp := sharedFlow(ctx).building.Load()
	if fp == nil {
		return fmt.Errorf("%s needs connection tracking: add netfilter.conntrack under modules:", what)
	}
	switch {
	case name != "":
		i := slices.IndexFunc(fp.tables, func(t flowtable) bool { return t.name == name })
		if i < 0 {
			return fmt.Errorf("%s: no flowtable %q (declare it under netfilter.conntrack's flowtables:)", what, name)
		}
		o.ft = uint16(i)
	case len(fp.tables) == 0:
		// iptables' FLOWOFFLOAD: one implicit flowtable over every link.
		fp.tables = append(fp.tables, flowtable{name: "", timeout: int64(defaultFlowTimeout)})
		o.ft = 0
	case len(fp.tables) == 1:
		o.ft = 0
	default:
		return fmt.Errorf("%s: %d flowtables declared: name one", what, len(fp.tables))
	}
	o.fp = fp
	fp.used.Store(true)
	return nil
}

// Action implements pipeline.Target: offload, then the next rule (a
// non-terminal statement, as nft's flow add and xt_FLOWOFFLOAD).
func (o *offloadTarget) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	o.fp.offload(pc, o.ft)
	return pipeline.VerdictContinue, 0
}

// Hooks implements the filter's hook check: FORWARD only.
func (*offloadTarget) Hooks() uint8 { return 1 << pipeline.Forward }

// Tables implements the filter's table check.
func (*offloadTarget) Tables() []string { return []string{"filter", "mangle"} }

// FlowOffload is filter.target.flowoffload, iptables' -j FLOWOFFLOAD
// [--flowtable NAME]: put the packet's flow in the flowtable (the only
// one declared, or without flowtables: an implicit one over every link).
type FlowOffload struct {
	Flowtable string `yaml:"flowtable"`
	offloadTarget
}

// PipelineModule implements pipeline.Module.
func (*FlowOffload) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.flowoffload", Summary: "FLOWOFFLOAD [--flowtable NAME]: the flow's later packets take the fast path past the chains (FORWARD); needs netfilter.conntrack", New: func() pipeline.Module { return new(FlowOffload) }}
}

// Options implements filter.Target.
func (*FlowOffload) Options() []filter.Opt { return []filter.Opt{{Name: "flowtable", Args: 1}} }

// Provision finds the flowtable.
func (t *FlowOffload) Provision(ctx *pipeline.Context) error {
	return t.provision(ctx, t.Flowtable, "FLOWOFFLOAD")
}

// Spec implements filter.Target.
func (t *FlowOffload) Spec() string {
	if n := t.fp.tables[t.ft].name; n != "" {
		return "-j FLOWOFFLOAD --flowtable " + n
	}
	return "-j FLOWOFFLOAD"
}

// Label implements filter.Target.
func (*FlowOffload) Label() string { return "FLOWOFFLOAD" }

// FlowAdd is filter.target.flow, nft's `flow add @ft`: -j FLOW --add @ft,
// {flow: {add: "@ft"}}.
type FlowAdd struct {
	Add string `yaml:"add"`
	offloadTarget
}

// PipelineModule implements pipeline.Module.
func (*FlowAdd) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.target.flow", Summary: "FLOW --add @FT (nft's flow add @ft): as FLOWOFFLOAD --flowtable FT", New: func() pipeline.Module { return new(FlowAdd) }}
}

// Options implements filter.Target.
func (*FlowAdd) Options() []filter.Opt { return []filter.Opt{{Name: "add", Args: 1}} }

// Provision finds the flowtable.
func (t *FlowAdd) Provision(ctx *pipeline.Context) error {
	if !strings.HasPrefix(t.Add, "@") || len(t.Add) < 2 {
		return fmt.Errorf("FLOW: --add @FLOWTABLE expected, got %q", t.Add)
	}
	return t.provision(ctx, t.Add, "FLOW")
}

// Spec implements filter.Target.
func (t *FlowAdd) Spec() string { return "-j FLOW --add @" + t.fp.tables[t.ft].name }

// Label implements filter.Target.
func (*FlowAdd) Label() string { return "FLOW" }

// Cleanup forgets the fast path of a generation that was not built.
func (m *Module) Cleanup() error {
	if m.fast != nil {
		m.fast.sh.building.CompareAndSwap(m.fast, nil)
	}
	return nil
}

var (
	_ pipeline.Target       = (*fastPath)(nil)
	_ pipeline.BatchFlusher = (*fastPath)(nil)
	_ filter.Target         = (*FlowOffload)(nil)
	_ filter.Target         = (*FlowAdd)(nil)
	_ pipeline.Provisioner  = (*FlowOffload)(nil)
	_ pipeline.Provisioner  = (*FlowAdd)(nil)
)
