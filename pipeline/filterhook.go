package pipeline

import (
	"fmt"
	"math"
	"sort"
)

// HookModule is a module that installs filter tables at the hooks (the
// filter module: raw, mangle and filter tables). build collects the tables
// of every provisioned HookModule, with Config.Hooks (set from Go, priority
// 0), and installs at each hook one table that runs them in priority order.
type HookModule interface {
	Module
	// HookTables returns the tables built by Provision; each is
	// immutable from then on and must pass HookTable.Validate.
	HookTables() []HookEntry
}

// HookEntry is one table at one hook. Tables at one hook run in ascending
// Priority (netfilter's numbers: raw -300, mangle -150, filter 0; ties in
// the order given, Config.Hooks first): an accept ends that table only, the
// next one still runs; a drop or a steal ends the hook.
type HookEntry struct {
	Hook     Hook
	Priority int
	Name     string // the table's name, for messages (raw, mangle, filter)
	Table    *HookTable
	// Prepare, when set, runs once per hook run over the run's packets
	// (some slots may be nil, some not IP: it skips them), before any
	// table at the hook sees one of them — not for a packet resumed into
	// the hook, nor when the hook's tables have no rules. It may read the
	// packets and its module's state, and must change neither nor decide
	// anything: it is for work whose result Table's per-packet run then
	// finds warm — conntrack touches the flow-table lines of the whole
	// batch so that their cache misses overlap, instead of waiting for
	// them one packet after the other. The packets it sees may still be
	// dropped, stolen or changed by earlier tables: its work is a hint.
	Prepare func(b *Batch, h Hook, pkts []*Packet)
	// NoTuple: Table reads nothing ParseTuple fills (the tuple, Src4,
	// Dst4, Fragment, L4Off, L4End, FragOff, L4Unknown), or parses it
	// itself when it needs it (ParseTuple, when pc.L4End is 0). At a hook
	// where every table says so (conntrack's confirmation and NAT rewrite
	// at Postrouting) the hook run parses nothing: the PacketContext's
	// tuple fields are zero, and a malformed header is not dropped there.
	NoTuple bool
}

// Netfilter's table priorities.
const (
	PriorityRaw    = -300
	PriorityMangle = -150
	PriorityFilter = 0

	// The hook functions' (modules/conntrack; NAT): defragmentation
	// before raw, tracking after it, NAT around the filter, and the
	// confirmation of a new entry after everything else.
	PriorityDefrag           = -400
	PriorityConntrack        = -200
	PriorityNATDst           = -100
	PriorityNATSrc           = 100
	PriorityConntrackConfirm = math.MaxInt32
)

// HookFunc is the table of a module that installs a function at a hook
// rather than rules (conntrack, defragmentation, NAT): one rule without
// matchers whose target is fn, policy accept. fn's Accept or Continue lets
// the next table at the hook run; Drop and Stolen end the hook, as for
// any table. Give it as a HookEntry's Table, unchanged (Evaluate calls fn
// directly, without the rule loop).
func HookFunc(name string, fn Target) *HookTable {
	return &HookTable{Chains: []Chain{{Name: name, Rules: []Rule{{Target: fn}}}}, Policy: VerdictAccept, fn: fn}
}

// hookSet is what runs at one hook: its tables in priority order (Config.Hooks
// first among equal priorities). Each table is a priority slot; a resume
// token names its slot.
type hookSet struct {
	entries []HookEntry // the tables with their names, for a Tracer
	tables  []*HookTable
	// trivial: no table has a rule in its entry chain: each policy
	// decides the whole batch (Batch.runTrivial).
	trivial bool
	// prepare are the entries' Prepare functions, in priority order.
	prepare []func(*Batch, Hook, []*Packet)
	// noTuple: every entry is NoTuple: the hook run does not parse.
	noTuple bool
}

// maxHookSlots bounds the tables at one hook (a token keeps the slot in a
// byte).
const maxHookSlots = 255

// composeHooks makes the set of tables run at each hook from Config.Hooks
// and the modules' entries: nil where there is none.
func composeHooks(fromGo [NumHooks]*HookTable, entries []HookEntry) ([NumHooks]*hookSet, error) {
	var out [NumHooks]*hookSet
	var per [NumHooks][]HookEntry
	for h, t := range fromGo {
		if t != nil {
			per[h] = append(per[h], HookEntry{Hook: Hook(h), Name: "Config.Hooks", Table: t})
		}
	}
	for _, e := range entries {
		if e.Hook >= NumHooks || e.Table == nil {
			return out, fmt.Errorf("table %s: bad hook %d", e.Name, e.Hook)
		}
		if err := e.Table.Validate(); err != nil {
			return out, fmt.Errorf("table %s at %s: %w", e.Name, e.Hook, err)
		}
		per[e.Hook] = append(per[e.Hook], e)
	}
	for h := range per {
		es := per[h]
		if len(es) == 0 {
			continue
		}
		if len(es) > maxHookSlots {
			return out, fmt.Errorf("%d tables at %s, at most %d", len(es), Hook(h), maxHookSlots)
		}
		sort.SliceStable(es, func(i, j int) bool { return es[i].Priority < es[j].Priority })
		hs := &hookSet{entries: es, trivial: true, noTuple: true}
		for _, e := range es {
			hs.noTuple = hs.noTuple && e.NoTuple
			hs.tables = append(hs.tables, e.Table)
			if e.Prepare != nil {
				hs.prepare = append(hs.prepare, e.Prepare)
			}
			if len(e.Table.Chains[e.Table.Entry].Rules) > 0 {
				hs.trivial = false
			}
		}
		out[h] = hs
	}
	return out, nil
}

// evaluate runs the tables from slot from on: an accept lets the next
// table run, a drop (or any other verdict) ends the hook, as does a steal.
func (hs *hookSet) evaluate(pc *PacketContext, from int) Verdict {
	for s := from; s < len(hs.tables); s++ {
		pc.slot = uint8(s)
		switch v := hs.tables[s].Evaluate(pc); v {
		case VerdictAccept:
		case VerdictStolen:
			return v
		default:
			return VerdictDrop
		}
	}
	return VerdictAccept
}

// RuleLister is implemented by a module whose rules `pipectl rules` lists
// with their counters (the filter module).
type RuleLister interface {
	ListRules() []ChainListing
}

// ChainListing is one chain as `iptables -L -v -n` shows it.
type ChainListing struct {
	Table, Chain string
	// Policy is "ACCEPT" or "DROP" for a built-in chain, "" for a user
	// chain (then References counts the rules that jump or go to it).
	Policy                     string
	PolicyPackets, PolicyBytes uint64 // what the policy decided
	References                 int
	Rules                      []RuleListing
}

// RuleListing is one rule with its counters.
type RuleListing struct {
	Num            int // from 1, as --line-numbers
	Packets, Bytes uint64
	Target         string // ACCEPT, DROP, a chain name, REJECT…
	Prot           string // "all", "tcp", "!udp"…
	In, Out        string // "*" for any
	Source, Dest   string // "0.0.0.0/0" or "::/0" for any
	Options        string // the rest, as iptables prints it
	Rule           string // the canonical rule text
	ID             string
}

// clearTuple zeroes what ParseTuple fills (a hook run that does not parse:
// hookSet.noTuple).
func (pc *PacketContext) clearTuple() {
	pc.Tuple, pc.Src4, pc.Dst4 = Tuple{}, 0, 0
	pc.Fragment, pc.L4Off, pc.L4End, pc.FragOff, pc.L4Unknown = false, 0, 0, 0, false
}
