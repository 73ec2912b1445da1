package conntrack

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"sync"

	"github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(ConnlimitMatch)) }

// ConnlimitMatch is filter.match.connlimit: --connlimit-above N or
// --connlimit-upto N connections per source (--connlimit-saddr, the
// default) or destination (--connlimit-daddr) prefix of --connlimit-mask
// bits (default the whole address), as xt_connlimit. The count is of live
// tracked connections (a TCP connection in TIME_WAIT or CLOSE no longer
// counts, as nf_conncount; nor does one whose first packet was dropped),
// the packet's own included. A packet without a
// tracked connection (INVALID, UNTRACKED) does not match.
//
// Each rule keeps its own fixed table of prefixes (allocated at load, no
// allocation per packet) with up to N+1 connections each — enough to
// decide either form; a prefix that finds no free slot (more busy prefixes
// than slots) is not limited (counted in connlimit_no_slot).
type ConnlimitMatch struct {
	Above string `yaml:"connlimit_above"`
	Upto  string `yaml:"connlimit_upto"`
	Mask  string `yaml:"connlimit_mask"`
	SAddr string `yaml:"connlimit_saddr"`
	DAddr string `yaml:"connlimit_daddr"`

	h      *holder
	limit  int
	above  bool
	bits   int // -1: the whole address
	dst    bool
	slots  []clSlot
	refs   []Ref
	cap    int
	noSlot *pipeline.Counter
}

type clSlot struct {
	mu   sync.Mutex
	used bool
	key  [16]byte
	fam  uint8
	n    int
}

const (
	clProbe     = 8
	clRefBudget = 1 << 22 // refs per rule, at most (32 MiB)
)

// PipelineModule implements pipeline.Module.
func (*ConnlimitMatch) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "filter.match.connlimit", Summary: "connections per source prefix (-m connlimit --connlimit-above 10 --connlimit-mask 24); needs netfilter.conntrack", New: func() pipeline.Module { return new(ConnlimitMatch) }}
}

// Options implements filter.Match.
func (*ConnlimitMatch) Options() []filter.Opt {
	return []filter.Opt{{Name: "connlimit-above", Args: 1}, {Name: "connlimit-upto", Args: 1}, {Name: "connlimit-mask", Args: 1},
		{Name: "connlimit-saddr", Args: 0}, {Name: "connlimit-daddr", Args: 0}}
}

// Provision parses the options and makes the table.
func (m *ConnlimitMatch) Provision(ctx *pipeline.Context) error {
	if (m.Above == "") == (m.Upto == "") {
		return fmt.Errorf("connlimit: give one of --connlimit-above, --connlimit-upto")
	}
	v := m.Above
	m.above = v != ""
	if !m.above {
		v = m.Upto
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 1<<20 {
		return fmt.Errorf("connlimit: bad limit %q (0..1048576)", v)
	}
	m.limit = n
	m.bits = -1
	if m.Mask != "" {
		b, err := strconv.Atoi(m.Mask)
		if err != nil || b < 0 || b > 128 {
			return fmt.Errorf("connlimit: bad mask %q (0..128)", m.Mask)
		}
		m.bits = b
	}
	if m.SAddr == "true" && m.DAddr == "true" {
		return fmt.Errorf("connlimit: --connlimit-saddr and --connlimit-daddr exclude each other")
	}
	m.dst = m.DAddr == "true"
	m.cap = n + 1
	nslots := 4096
	for nslots > 64 && nslots*m.cap > clRefBudget {
		nslots /= 2
	}
	if nslots*m.cap > clRefBudget {
		return fmt.Errorf("connlimit: limit %d too large", n)
	}
	m.slots = make([]clSlot, nslots)
	m.refs = make([]Ref, nslots*m.cap)
	m.h = sharedHolder(ctx)
	m.noSlot = ctx.Counters("conntrack").Get("connlimit_no_slot")
	return nil
}

// Fields implements pipeline.Matcher.
func (*ConnlimitMatch) Fields() pipeline.FieldSet { return pipeline.FieldOther }

// Constraint implements pipeline.ConstraintDescriber.
func (*ConnlimitMatch) Constraint() []pipeline.FieldConstraint { return nil }

// masked returns the address key for the packet's connection.
func (m *ConnlimitMatch) masked(a netip.Addr) ([16]byte, uint8) {
	fam, full := uint8(6), 128
	if a.Is4() {
		fam, full = 4, 32
	}
	b := m.bits
	if b < 0 || b > full {
		b = full
	}
	p, _ := a.Prefix(b)
	var k [16]byte
	if fam == 4 {
		x := p.Addr().As4()
		copy(k[:], x[:])
	} else {
		k = p.Addr().As16()
	}
	return k, fam
}

// live reports whether a connection still counts: it exists, is
// confirmed (a flow whose first packet a rule dropped is not a connection,
// as in Linux, where it never enters the table) and is not closed.
func (t *Table) live(r Ref) bool {
	e := t.Entry(r)
	if e == nil || e.Status()&StatusConfirmed == 0 {
		return false
	}
	if e.orig.tuple.Proto == 6 {
		s := e.tcp.stateAtomic()
		return s != TCPTimeWait && s != TCPClose
	}
	return true
}

// Match implements pipeline.Matcher.
func (m *ConnlimitMatch) Match(pc *pipeline.PacketContext) (bool, bool) {
	p := pc.Pkt
	if p.ConnTrack == 0 || m.h == nil {
		return false, false
	}
	t := m.h.t.Load()
	if t == nil || t.Entry(Ref(p.ConnTrack)) == nil {
		return false, false
	}
	// The connection's original source (or destination), whatever the
	// packet's direction.
	addr := pc.Tuple.Src
	if m.dst {
		addr = pc.Tuple.Dst
	}
	if p.CTInfo&pipeline.CTReply != 0 {
		addr = pc.Tuple.Dst
		if m.dst {
			addr = pc.Tuple.Src
		}
	}
	key, fam := m.masked(addr)
	h := uint64(fam)
	for i := 0; i < 16; i += 8 {
		hi, lo := bits.Mul64(h^binary.LittleEndian.Uint64(key[i:]), 0x9e3779b97f4a7c15)
		h = hi ^ lo
	}
	me := Ref(p.ConnTrack)
	count := -1
	for probe := 0; probe < clProbe && count < 0; probe++ {
		si := int((h + uint64(probe)) % uint64(len(m.slots)))
		s := &m.slots[si]
		refs := m.refs[si*m.cap : (si+1)*m.cap]
		s.mu.Lock()
		if s.used && (s.key != key || s.fam != fam) {
			// Another prefix's: reclaim it if none of its connections live.
			s.n = gc(t, refs[:s.n])
			if s.n > 0 {
				s.mu.Unlock()
				continue
			}
			s.used = false
		}
		if !s.used {
			s.used, s.key, s.fam, s.n = true, key, fam, 0
		}
		s.n = gc(t, refs[:s.n])
		found := false // the packet's own connection counts, confirmed or not
		for _, r := range refs[:s.n] {
			if r == me {
				found = true
				break
			}
		}
		count = s.n
		if !found {
			if s.n < m.cap {
				refs[s.n] = me
				s.n++
			}
			count++
		}
		s.mu.Unlock()
	}
	if count < 0 {
		m.noSlot.Inc()
		return false, false
	}
	if m.above {
		return count > m.limit, false
	}
	return count <= m.limit, false
}

// gc drops the connections that no longer count, in place.
func gc(t *Table, refs []Ref) int {
	k := 0
	for _, r := range refs {
		if t.live(r) {
			refs[k] = r
			k++
		}
	}
	return k
}

// Spec implements filter.Match (iptables-save's form).
func (m *ConnlimitMatch) Spec() string {
	op := "--connlimit-upto"
	if m.above {
		op = "--connlimit-above"
	}
	s := fmt.Sprintf("-m connlimit %s %d", op, m.limit)
	if m.bits >= 0 {
		s += fmt.Sprintf(" --connlimit-mask %d", m.bits)
	}
	if m.dst {
		return s + " --connlimit-daddr"
	}
	return s + " --connlimit-saddr"
}

var _ filter.Match = (*ConnlimitMatch)(nil)
