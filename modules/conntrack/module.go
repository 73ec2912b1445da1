// Package conntrack is the netfilter.conntrack module: connection tracking
// as Linux's nf_conntrack does it, for the stateful matchers (-m conntrack
// --ctstate, -m state, connmark, connlimit, connbytes) and, later, NAT.
//
// With the module under modules:, every IP packet is tracked at Prerouting
// and Output (priority -200, after the raw table, whose NOTRACK target
// makes a packet UNTRACKED) and its entry confirmed at the end of
// Postrouting and Input. A packet's state (NEW, ESTABLISHED, RELATED,
// INVALID, UNTRACKED) and direction go with it (pipeline.Packet.CTInfo),
// with a reference to its entry (Packet.ConnTrack: index and generation,
// still safe when the packet is stolen and its entry freed meanwhile).
//
// The table (Table) is preallocated to its maximum (no allocation per new
// flow), hashed by both directions' keys into buckets that lookups walk
// without a lock (hash tags; the key is checked under the entry's lock),
// with a lock-free free list; when
// it is full, an entry that has not proved itself (unconfirmed, then
// unreplied, then closing TCP flows) in the buckets near the new flow's is
// dropped, as Linux's early_drop; when none is, the packet is dropped
// (table_full_drops). Timeouts run on a timer wheel driven by the stack
// clock. The table lives in the stack's shared state: reloads keep it.
//
// Protocols: TCP with Linux's state table and window tracking (be_liberal,
// loose), UDP (unreplied 30 s, assured stream 120 s), ICMP and ICMPv6
// (echo id as port; errors are RELATED to the flow they quote), and a
// generic protocol for the rest. See README.md.
package conntrack

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(Module)) }

// Module is netfilter.conntrack's configuration.
type Module struct {
	// Max is the table's size: at most this many tracked connections
	// (nf_conntrack_max; default 262144).
	Max int `yaml:"max"`
	// Buckets is the hash size (nf_conntrack_buckets, rounded up to a
	// power of two; default twice max: every entry is hashed by both
	// directions' keys, so a full table has one chain node per bucket —
	// Linux's default of max has two, and a lookup whose chain starts
	// with another flow's node waits for one more cache miss).
	Buckets int `yaml:"buckets"`
	// TCP configures the TCP tracker.
	TCP TCPOptions `yaml:"tcp"`
	// Timeouts override Linux's defaults.
	Timeouts TimeoutOptions `yaml:"timeouts"`
	// Flowtables declares the fast path's flowtables (flowtable.go).
	Flowtables []FlowtableConfig `yaml:"flowtables"`

	holder  *holder
	fast    *fastPath
	table   *Table
	tracker *Tracker
	entries []pipeline.HookEntry
}

// TCPOptions are the TCP tracker's switches.
type TCPOptions struct {
	// BeLiberal: out-of-window packets are not INVALID
	// (nf_conntrack_tcp_be_liberal; default false).
	BeLiberal bool `yaml:"be_liberal"`
	// Loose: pick up connections already under way (nf_conntrack_tcp_loose;
	// default true).
	Loose *bool `yaml:"loose"`
	// MaxRetrans: retransmissions before the retrans timeout applies
	// (default 3).
	MaxRetrans *int `yaml:"max_retrans"`
}

// TimeoutOptions are the timeouts (Go durations: 30s, 2m, 120h).
type TimeoutOptions struct {
	TCPSynSent     time.Duration `yaml:"tcp_syn_sent"`
	TCPSynRecv     time.Duration `yaml:"tcp_syn_recv"`
	TCPEstablished time.Duration `yaml:"tcp_established"`
	TCPFinWait     time.Duration `yaml:"tcp_fin_wait"`
	TCPCloseWait   time.Duration `yaml:"tcp_close_wait"`
	TCPLastAck     time.Duration `yaml:"tcp_last_ack"`
	TCPTimeWait    time.Duration `yaml:"tcp_time_wait"`
	TCPClose       time.Duration `yaml:"tcp_close"`
	TCPRetrans     time.Duration `yaml:"tcp_retrans"`
	TCPUnack       time.Duration `yaml:"tcp_unacknowledged"`
	UDP            time.Duration `yaml:"udp"`
	UDPStream      time.Duration `yaml:"udp_stream"`
	ICMP           time.Duration `yaml:"icmp"`
	Generic        time.Duration `yaml:"generic"`
}

// Defaults and bounds.
const (
	DefaultMax = 262144
	maxMax     = 1 << 26
)

// SharedKey is where the table lives in the stack's shared state.
const SharedKey = "netfilter.conntrack/table"

// holder is the shared slot of the stack's table: the matchers find the
// table through it, made or not.
type holder struct {
	mu sync.Mutex
	t  atomic.Pointer[Table]
	// natUsed: a nat table was configured (its gate made) in some
	// generation of the stack: a packet whose entry went on its way is
	// dropped by the NAT hooks rather than sent untranslated.
	natUsed atomic.Bool
}

// Close closes the table with the stack.
func (h *holder) Close() error {
	if t := h.t.Load(); t != nil {
		return t.Close()
	}
	return nil
}

// Holder returns the stack's table slot (made empty on first use).
func sharedHolder(ctx *pipeline.Context) *holder {
	return ctx.Shared(SharedKey, func() any { return new(holder) }).(*holder)
}

// StackTable returns the conntrack table of a running stack, or nil when
// no pipeline of it configured netfilter.conntrack (pipectl conntrack).
func StackTable(s *pipeline.Stack) *Table {
	h, _ := s.Shared(SharedKey, func() any { return new(holder) }).(*holder)
	if h == nil {
		return nil
	}
	return h.t.Load()
}

// PipelineModule implements pipeline.Module.
func (*Module) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "netfilter.conntrack",
		Summary: "connection tracking (Linux's nf_conntrack): states for -m conntrack/state, bounded preallocated table, TCP window tracking",
		New:     func() pipeline.Module { return new(Module) },
	}
}

// Provision fills the defaults and finds (or makes) the stack's table.
func (m *Module) Provision(ctx *pipeline.Context) error {
	if m.Max == 0 {
		m.Max = DefaultMax
	}
	if m.Max < 1 || m.Max > maxMax {
		return fmt.Errorf("max %d out of range 1..%d", m.Max, maxMax)
	}
	if m.Buckets < 0 || m.Buckets > maxMax {
		return fmt.Errorf("buckets %d out of range 1..%d", m.Buckets, maxMax)
	}
	if m.Buckets == 0 {
		m.Buckets = 2 * m.Max
	}
	tcp := DefaultTCP()
	tcp.BeLiberal = m.TCP.BeLiberal
	if m.TCP.Loose != nil {
		tcp.Loose = *m.TCP.Loose
	}
	if m.TCP.MaxRetrans != nil {
		if *m.TCP.MaxRetrans < 0 || *m.TCP.MaxRetrans > 255 {
			return fmt.Errorf("tcp.max_retrans %d out of range 0..255", *m.TCP.MaxRetrans)
		}
		tcp.MaxRetrans = uint8(*m.TCP.MaxRetrans)
	}
	to := DefaultTimeouts()
	o := &m.Timeouts
	for _, s := range []struct {
		name string
		v    time.Duration
		dst  *time.Duration
	}{
		{"tcp_syn_sent", o.TCPSynSent, &tcp.Timeouts[TCPSynSent]},
		{"tcp_syn_recv", o.TCPSynRecv, &tcp.Timeouts[TCPSynRecv]},
		{"tcp_established", o.TCPEstablished, &tcp.Timeouts[TCPEstablished]},
		{"tcp_fin_wait", o.TCPFinWait, &tcp.Timeouts[TCPFinWait]},
		{"tcp_close_wait", o.TCPCloseWait, &tcp.Timeouts[TCPCloseWait]},
		{"tcp_last_ack", o.TCPLastAck, &tcp.Timeouts[TCPLastAck]},
		{"tcp_time_wait", o.TCPTimeWait, &tcp.Timeouts[TCPTimeWait]},
		{"tcp_close", o.TCPClose, &tcp.Timeouts[TCPClose]},
		{"tcp_retrans", o.TCPRetrans, &tcp.Timeouts[tcpRetrans]},
		{"tcp_unacknowledged", o.TCPUnack, &tcp.Timeouts[tcpUnack]},
		{"udp", o.UDP, &to.UDPUnreplied},
		{"udp_stream", o.UDPStream, &to.UDPStream},
		{"icmp", o.ICMP, &to.ICMP},
		{"generic", o.Generic, &to.Generic},
	} {
		if s.v == 0 {
			continue
		}
		if s.v < time.Second || s.v > 365*24*time.Hour {
			return fmt.Errorf("timeouts.%s %v out of range 1s..8760h", s.name, s.v)
		}
		*s.dst = s.v
	}
	tcp.Timeouts[TCPSynSent2] = tcp.Timeouts[TCPSynSent]

	m.holder = sharedHolder(ctx)
	m.holder.mu.Lock()
	t := m.holder.t.Load()
	if t == nil || t.Max() != m.Max || t.Buckets() != roundPow2(m.Buckets) {
		// A new size is a new table: the entries are preallocated.
		old := t
		t = NewTable(m.Max, m.Buckets, ctx.Clock, ctx.Counters("conntrack"))
		m.holder.t.Store(t)
		if old != nil {
			defer old.Close() // the running generation still reads it; its timer only stops
		}
	}
	m.holder.mu.Unlock()
	m.table = t
	m.tracker = NewTracker(t, tcp, to)
	m.tracker.nat = &m.holder.natUsed
	track := &trackHook{tr: m.tracker, clock: ctx.Clock}
	confirm := &confirmHook{tr: m.tracker}
	nst := newNATStats(ctx.Counters("conntrack"))
	m.entries = []pipeline.HookEntry{
		{Hook: pipeline.Prerouting, Priority: pipeline.PriorityDefrag, Name: "conntrack defrag", Table: pipeline.HookFunc("defrag", defragHook{})},
		{Hook: pipeline.Prerouting, Priority: pipeline.PriorityConntrack, Name: "conntrack", Table: pipeline.HookFunc("conntrack", track), Prepare: t.prepare},
		{Hook: pipeline.Output, Priority: pipeline.PriorityConntrack, Name: "conntrack", Table: pipeline.HookFunc("conntrack", track)},
		// NAT's per-packet rewrite, right after the nat table's chains.
		{Hook: pipeline.Prerouting, Priority: pipeline.PriorityNATDst + 1, Name: "nat", Table: pipeline.HookFunc("nat", &natHook{h: m.holder, dst: true, st: nst})},
		{Hook: pipeline.Output, Priority: pipeline.PriorityNATDst + 1, Name: "nat", Table: pipeline.HookFunc("nat", &natHook{h: m.holder, dst: true, out: true, st: nst})},
		{Hook: pipeline.Postrouting, Priority: pipeline.PriorityNATSrc + 1, Name: "nat", Table: pipeline.HookFunc("nat", &natHook{h: m.holder, st: nst}), NoTuple: true},
		{Hook: pipeline.Input, Priority: pipeline.PriorityNATSrc + 1, Name: "nat", Table: pipeline.HookFunc("nat", &natHook{h: m.holder, st: nst}), NoTuple: true},
		{Hook: pipeline.Postrouting, Priority: pipeline.PriorityConntrackConfirm, Name: "conntrack confirm", Table: pipeline.HookFunc("confirm", confirm), NoTuple: true},
		{Hook: pipeline.Input, Priority: pipeline.PriorityConntrackConfirm, Name: "conntrack confirm", Table: pipeline.HookFunc("confirm", confirm), NoTuple: true},
	}
	fp, err := newFastPath(ctx, t, m.Flowtables)
	if err != nil {
		return err
	}
	m.fast = fp
	return nil
}

func roundPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// Validate checks the provisioned configuration.
func (m *Module) Validate() error {
	if m.tracker == nil {
		return errors.New("not provisioned")
	}
	return nil
}

// HookTables implements pipeline.HookModule.
func (m *Module) HookTables() []pipeline.HookEntry {
	if e, ok := m.fast.hookEntry(); ok {
		return append(slices.Clip(m.entries), e)
	}
	return m.entries
}

// Tracker is the module's tracker (tests, NAT).
func (m *Module) Tracker() *Tracker { return m.tracker }

// trackHook is the hook function at Prerouting and Output.
type trackHook struct {
	tr    *Tracker
	clock pipeline.Clock
}

// Action implements pipeline.Target.
func (h *trackHook) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	var now int64
	if pc.Batch != nil {
		now = pc.Batch.Now.UnixNano()
	} else {
		now = h.clock.Now().UnixNano()
	}
	return h.tr.Track(now, pc), 0
}

// confirmHook is the hook function at the end of Postrouting and Input.
type confirmHook struct{ tr *Tracker }

// Action implements pipeline.Target.
func (h *confirmHook) Action(pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	h.tr.Confirm(pc.Pkt)
	return pipeline.VerdictAccept, 0
}

var (
	_ pipeline.HookModule  = (*Module)(nil)
	_ pipeline.Provisioner = (*Module)(nil)
	_ pipeline.Validator   = (*Module)(nil)
	_ pipeline.Target      = (*trackHook)(nil)
	_ pipeline.Target      = (*confirmHook)(nil)
)
