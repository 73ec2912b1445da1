// Package customfilter is a worked example of filter modules written
// outside the filter package: a matcher, filter.match.prefixfile, that
// matches the source or destination address against a file of prefixes,
// and a target, filter.target.dscp, that sets the DSCP field and goes on
// with the next rule. A blank import of this package makes both usable in
// a pipeline file's filter: section, in iptables syntax
// ("-m prefixfile --src-file blocked.txt -j DROP", "-j DSCP --set-dscp-class EF")
// and in the YAML form; cmd/pipectl is pipectl with that one import. See
// README.md for the walk-through.
package customfilter

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/pipeline"
)

func init() {
	pipeline.RegisterModule(new(PrefixFile))
	pipeline.RegisterModule(new(DSCP))
}

// maxPrefixFile bounds the prefix file (a typo naming a huge file fails
// instead of eating memory).
const maxPrefixFile = 64 << 20

// PrefixFile is filter.match.prefixfile: --src-file FILE matches packets
// whose source address lies in one of FILE's prefixes, --dst-file FILE the
// destination; either may be inverted ("! --src-file FILE"; YAML
// src_file: "!FILE"). Given both, both must hold.
//
// The file has one prefix per line (10.0.0.0/8, 2001:db8::/32; a bare
// address is a /32 or /128; host bits are cleared, as -s does), blank
// lines and comments from '#' to the end of the line; IPv4 and IPv6 mixed.
// It is read at Provision, through Context.ReadFile: a relative path is
// from the pipeline file's directory, and a reload (pipectl reload, SIGHUP,
// Stack.Apply) reads it again, also when only the prefix file changed.
type PrefixFile struct {
	SrcFile string `yaml:"src_file"`
	DstFile string `yaml:"dst_file"`

	src, dst prefixSide
}

// prefixSide is one of --src-file, --dst-file once read.
type prefixSide struct {
	set  bool
	inv  bool
	path string // as written (for Spec)
	p    PrefixSet
}

// PipelineModule implements pipeline.Module.
func (*PrefixFile) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "filter.match.prefixfile",
		Summary: "source or destination in a file of prefixes (-m prefixfile --src-file blocked.txt), read at each load",
		New:     func() pipeline.Module { return new(PrefixFile) },
	}
}

// Options implements filter.Match: the iptables options and, through
// their names, the YAML keys (src-file → src_file).
func (*PrefixFile) Options() []filter.Opt {
	return []filter.Opt{{Name: "src-file", Args: 1, Invert: true}, {Name: "dst-file", Args: 1, Invert: true}}
}

// Provision reads the files. Errors name the file and line.
func (m *PrefixFile) Provision(ctx *pipeline.Context) error {
	if m.SrcFile == "" && m.DstFile == "" {
		return fmt.Errorf("give src_file or dst_file (--src-file, --dst-file)")
	}
	for _, s := range []struct {
		v    string
		side *prefixSide
	}{{m.SrcFile, &m.src}, {m.DstFile, &m.dst}} {
		if s.v == "" {
			continue
		}
		path, inv := strings.CutPrefix(s.v, "!")
		path = strings.TrimSpace(path)
		if path == "" {
			return fmt.Errorf("an empty file name")
		}
		data, err := readLimited(ctx, path)
		if err != nil {
			return err
		}
		set, err := ParsePrefixes(path, data)
		if err != nil {
			return err
		}
		*s.side = prefixSide{set: true, inv: inv, path: path, p: set}
	}
	return nil
}

func readLimited(ctx *pipeline.Context, path string) ([]byte, error) {
	data, err := ctx.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) > maxPrefixFile {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", path, len(data), maxPrefixFile)
	}
	return data, nil
}

// Fields implements pipeline.Matcher.
func (m *PrefixFile) Fields() pipeline.FieldSet {
	var f pipeline.FieldSet
	if m.src.set {
		f |= pipeline.FieldSrcAddr
	}
	if m.dst.set {
		f |= pipeline.FieldDstAddr
	}
	return f
}

// Match implements pipeline.Matcher: two binary searches over sorted
// arrays at most; no allocation.
func (m *PrefixFile) Match(pc *pipeline.PacketContext) (bool, bool) {
	if m.src.set && m.src.p.Contains(pc.Tuple.Src) == m.src.inv {
		return false, false
	}
	if m.dst.set && m.dst.p.Contains(pc.Tuple.Dst) == m.dst.inv {
		return false, false
	}
	return true, false
}

// Constraint implements pipeline.ConstraintDescriber: FieldConstraint has
// Prefixes, so the file's set is data a rule compiler can index (the
// merged prefixes: the same set, fewest entries).
func (m *PrefixFile) Constraint() []pipeline.FieldConstraint {
	var out []pipeline.FieldConstraint
	if m.src.set {
		out = append(out, pipeline.FieldConstraint{Field: pipeline.FieldSrcAddr, Prefixes: m.src.p.Prefixes(), Invert: m.src.inv})
	}
	if m.dst.set {
		out = append(out, pipeline.FieldConstraint{Field: pipeline.FieldDstAddr, Prefixes: m.dst.p.Prefixes(), Invert: m.dst.inv})
	}
	return out
}

// Spec implements filter.Match: the canonical text.
func (m *PrefixFile) Spec() string {
	parts := []string{"-m prefixfile"}
	for _, s := range []struct {
		opt  string
		side prefixSide
	}{{"--src-file", m.src}, {"--dst-file", m.dst}} {
		if !s.side.set {
			continue
		}
		p := s.opt + " " + quote(s.side.path)
		if s.side.inv {
			p = "! " + p
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

// quote quotes a file name with blanks or quotes so that the filter's
// tokenizer reads it back as one word.
func quote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\!") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// PrefixSet is a set of IPv4 and IPv6 prefixes as sorted, merged,
// non-overlapping address ranges: Contains is a binary search and
// allocates nothing.
type PrefixSet struct {
	v4 []range4
	v6 []range6
}

type range4 struct{ lo, hi uint32 }

// u128 is an IPv6 address as two big-endian halves.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func (a u128) next() (u128, bool) {
	if a.lo == ^uint64(0) {
		if a.hi == ^uint64(0) {
			return a, false
		}
		return u128{a.hi + 1, 0}, true
	}
	return u128{a.hi, a.lo + 1}, true
}

type range6 struct{ lo, hi u128 }

func u128Of(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// ParsePrefixes reads a prefix file's contents; name is for errors
// ("blocked.txt:3: …").
func ParsePrefixes(name string, data []byte) (PrefixSet, error) {
	var ps []netip.Prefix
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), 1<<16)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		p, err := parsePrefix(text)
		if err != nil {
			return PrefixSet{}, fmt.Errorf("%s:%d: %v", name, line, err)
		}
		ps = append(ps, p)
	}
	if err := sc.Err(); err != nil {
		return PrefixSet{}, fmt.Errorf("%s: %v", name, err)
	}
	return NewPrefixSet(ps), nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.ContainsAny(s, " \t") {
		return netip.Prefix{}, fmt.Errorf("%q: one prefix per line", s)
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a prefix", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q: write an IPv4-mapped prefix as IPv4", s)
	}
	return p.Masked(), nil
}

// NewPrefixSet makes the set of the given prefixes.
func NewPrefixSet(ps []netip.Prefix) PrefixSet {
	var s PrefixSet
	for _, p := range ps {
		p = p.Masked()
		if p.Addr().Is4() {
			lo := binary.BigEndian.Uint32(p.Addr().AsSlice())
			hi := lo | uint32(uint64(1)<<(32-p.Bits())-1)
			s.v4 = append(s.v4, range4{lo, hi})
		} else {
			lo := u128Of(p.Addr())
			hi := lo
			host := 128 - p.Bits()
			switch {
			case host >= 64:
				hi.lo = ^uint64(0)
				hi.hi |= uint64(1)<<(host-64) - 1
				if host == 128 {
					hi.hi = ^uint64(0)
				}
			default:
				hi.lo |= uint64(1)<<host - 1
			}
			s.v6 = append(s.v6, range6{lo, hi})
		}
	}
	sort.Slice(s.v4, func(i, j int) bool { return s.v4[i].lo < s.v4[j].lo })
	sort.Slice(s.v6, func(i, j int) bool { return s.v6[i].lo.less(s.v6[j].lo) })
	// Merge overlapping and adjacent ranges.
	var m4 []range4
	for _, r := range s.v4 {
		if n := len(m4); n > 0 && (r.lo <= m4[n-1].hi || m4[n-1].hi != ^uint32(0) && r.lo == m4[n-1].hi+1) {
			m4[n-1].hi = max(m4[n-1].hi, r.hi)
			continue
		}
		m4 = append(m4, r)
	}
	var m6 []range6
	for _, r := range s.v6 {
		if n := len(m6); n > 0 {
			last := &m6[n-1]
			// r.lo <= last.hi+1 (or last reaches the top): one range.
			if nx, ok := last.hi.next(); !ok || !nx.less(r.lo) {
				if last.hi.less(r.hi) {
					last.hi = r.hi
				}
				continue
			}
		}
		m6 = append(m6, r)
	}
	s.v4, s.v6 = m4, m6
	return s
}

// Len is the number of merged ranges (IPv4, IPv6).
func (s PrefixSet) Len() (v4, v6 int) { return len(s.v4), len(s.v6) }

// Contains reports whether a lies in one of the set's prefixes. An
// IPv4-mapped IPv6 address is not an IPv4 address here (the packet's
// family decides).
func (s *PrefixSet) Contains(a netip.Addr) bool {
	if a.Is4() {
		b := a.As4()
		x := binary.BigEndian.Uint32(b[:])
		// the first range whose hi is >= x
		lo, hi := 0, len(s.v4)
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if s.v4[mid].hi < x {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		return lo < len(s.v4) && s.v4[lo].lo <= x
	}
	if !a.Is6() {
		return false
	}
	x := u128Of(a)
	lo, hi := 0, len(s.v6)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if s.v6[mid].hi.less(x) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo < len(s.v6) && !x.less(s.v6[lo].lo)
}

// Prefixes is the set as the fewest prefixes that cover exactly its
// ranges (allocates: for describing, not for packets).
func (s PrefixSet) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, r := range s.v4 {
		var lo, hi [4]byte
		binary.BigEndian.PutUint32(lo[:], r.lo)
		binary.BigEndian.PutUint32(hi[:], r.hi)
		out = append(out, filter.RangePrefixes(netip.AddrFrom4(lo), netip.AddrFrom4(hi))...)
	}
	for _, r := range s.v6 {
		var lo, hi [16]byte
		binary.BigEndian.PutUint64(lo[:8], r.lo.hi)
		binary.BigEndian.PutUint64(lo[8:], r.lo.lo)
		binary.BigEndian.PutUint64(hi[:8], r.hi.hi)
		binary.BigEndian.PutUint64(hi[8:], r.hi.lo)
		out = append(out, filter.RangePrefixes(netip.AddrFrom16(lo), netip.AddrFrom16(hi))...)
	}
	return out
}

var (
	_ filter.Match                 = (*PrefixFile)(nil)
	_ pipeline.Provisioner         = (*PrefixFile)(nil)
	_ pipeline.ConstraintDescriber = (*PrefixFile)(nil)
)
