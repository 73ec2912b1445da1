package filter

// Sets (ipset's and nftables' named sets): the filter section's sets:
// declares them, -m set --match-set NAME src|dst[,…] matches one with a
// single lookup, pipectl set add|del|list|flush changes their contents
// while the pipeline runs. A set's contents are an immutable snapshot
// swapped atomically (copy-on-write): the packet path loads one pointer
// and never locks; a change builds the next snapshot under the set's
// writer lock.

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// setType is what a set's elements are.
type setType uint8

const (
	setNet     setType = iota + 1 // hash:net: prefixes and address ranges, longest prefix
	setIP                         // hash:ip: addresses
	setPort                       // bitmap:port: ports and port ranges, [PROTO:]PORT
	setIPPort                     // hash:ip,port: ADDR . [PROTO:]PORT
	setNetPort                    // hash:net,port: PREFIX . [PROTO:]PORT
)

// setTypeNames: ipset's names first (the canonical one), then nftables'
// spellings of the same.
var setTypeNames = []struct {
	name string
	t    setType
}{
	{"hash:net", setNet}, {"hash:ip", setIP}, {"bitmap:port", setPort}, {"hash:ip,port", setIPPort}, {"hash:net,port", setNetPort},
	{"prefix", setNet}, {"net", setNet}, {"addr", setIP}, {"ip", setIP}, {"port", setPort}, {"hash:port", setPort},
	{"addr . port", setIPPort}, {"ip . port", setIPPort}, {"prefix . port", setNetPort}, {"net . port", setNetPort},
}

func parseSetType(s string) (setType, bool) {
	s = strings.Join(strings.Fields(strings.ToLower(s)), " ")
	for _, n := range setTypeNames {
		if n.name == s {
			return n.t, true
		}
	}
	return 0, false
}

func (t setType) String() string {
	for _, n := range setTypeNames {
		if n.t == t {
			return n.name
		}
	}
	return "?"
}

// dims is how many header fields an element names (--match-set flags).
func (t setType) dims() int {
	if t == setIPPort || t == setNetPort {
		return 2
	}
	return 1
}

// maxSetElements bounds a set (ipset's maxelem default is 65536; ours
// is larger by default so that a 100,000-entry block list fits).
const (
	defaultMaxElem = 1 << 20
	// maxExpanded bounds the entries the ranges of a set's elements
	// expand to in its lookup tables (addr . port, prefix . port).
	maxExpanded   = 4 * defaultMaxElem
	maxPortExpand = 65536 // ports one element of hash:ip,port may expand to
)

// elemKey is an element's value, 40 bytes without pointers: its
// canonical text (format) is made when a listing asks, two keys are the
// same element when they are equal.
type elemKey struct {
	lo, hi   u128   // setNet: a range (a prefix's first and last); setIP: lo = hi
	bits     int16  // setNet*: the prefix length, -1 for a range FROM-TO; setIP*: the address length
	v4       bool   // lo and hi are IPv4 addresses (types with an address)
	proto    uint8  // 0: any protocol with ports
	plo, phi uint16 // ports
}

// addrKey is the key of the addresses lo..hi (bits: the prefix length,
// -1 a range).
func addrKey(lo, hi netip.Addr, bits int) elemKey {
	return elemKey{lo: addrU128(lo), hi: addrU128(hi), bits: int16(bits), v4: lo.Is4()}
}

func (k *elemKey) loAddr() netip.Addr { return u128Addr(k.lo, k.v4) }
func (k *elemKey) hiAddr() netip.Addr { return u128Addr(k.hi, k.v4) }

// setElem is one element of a set: its value and the state that outlives
// snapshots (timeout, counters; nil for a set without either). A verdict
// map's verdicts are beside the elements (setSnap.vals).
type setElem struct {
	key elemKey
	st  *elemState
}

// elemState is an element's timeout and counters, shared by every
// snapshot the element is in.
type elemState struct {
	expires atomic.Int64 // stack clock, UnixNano; 0: never
	packets atomic.Uint64
	bytes   atomic.Uint64
}

// portProtos are the protocols whose packets have ports (ipset's
// hash:*,port takes tcp, udp, sctp, udplite; dccp too here).
var portProtos = map[string]uint8{"tcp": 6, "udp": 17, "sctp": 132, "udplite": 136, "dccp": 33}

func portProtoName(p uint8) string {
	for n, v := range portProtos {
		if v == p {
			return n
		}
	}
	return strconv.Itoa(int(p))
}

func hasPorts(p uint8) bool {
	switch p {
	case 6, 17, 132, 136, 33:
		return true
	}
	return false
}

// parseElemPort reads [PROTO:]PORT[-PORT] (also PORT:PORT after a proto
// is not accepted: the colon is the protocol's).
func parseElemPort(s string) (proto uint8, lo, hi uint16, err error) {
	if p, rest, ok := strings.Cut(s, ":"); ok {
		var known bool
		if proto, known = portProtos[strings.ToLower(p)]; !known {
			return 0, 0, 0, fmt.Errorf("%q: the protocol is one of tcp, udp, sctp, udplite, dccp", s)
		}
		s = rest
	}
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = parsePort(strings.TrimSpace(a)); err != nil {
		return 0, 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = parsePort(strings.TrimSpace(b)); err != nil {
			return 0, 0, 0, err
		}
		if hi < lo {
			return 0, 0, 0, fmt.Errorf("port range %q: the first port is greater than the second", s)
		}
	}
	return proto, lo, hi, nil
}

// parseElemAddrs reads an address, prefix or FROM-TO range for t.
func parseElemAddrs(t setType, s string) (k elemKey, err error) {
	if a, b, ok := strings.Cut(s, "-"); ok && (t == setNet || t == setNetPort) {
		lo, err1 := netip.ParseAddr(strings.TrimSpace(a))
		hi, err2 := netip.ParseAddr(strings.TrimSpace(b))
		if err1 != nil || err2 != nil || lo.Zone() != "" || hi.Zone() != "" {
			return k, fmt.Errorf("%q is not a range FROM-TO of addresses", s)
		}
		lo, hi = lo.Unmap(), hi.Unmap()
		if lo.Is4() != hi.Is4() {
			return k, fmt.Errorf("range %q mixes IPv4 and IPv6", s)
		}
		if hi.Less(lo) {
			return k, fmt.Errorf("range %q: FROM is greater than TO", s)
		}
		k = addrKey(lo, hi, -1)
		// A range that is a prefix is written as one.
		if p, ok := rangePrefix(lo, hi); ok {
			k.bits = int16(p.Bits())
		}
		return k, nil
	}
	if strings.Contains(s, "/") {
		if t == setIP || t == setIPPort {
			return k, fmt.Errorf("%q: a %s set holds addresses, not prefixes (use hash:net)", s, t)
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return k, fmt.Errorf("%q is not a prefix", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), min(p.Bits(), p.Addr().Unmap().BitLen())).Masked()
		if !p.Addr().Is4() && p.Addr().Is4In6() {
			return k, fmt.Errorf("%q is not a prefix", s)
		}
		return addrKey(p.Addr(), setLastAddr(p), p.Bits()), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return k, fmt.Errorf("%q is not an address", s)
	}
	a = a.Unmap()
	return addrKey(a, a, a.BitLen()), nil
}

// lastAddr is the last address of p (masked).
func setLastAddr(p netip.Prefix) netip.Addr {
	v := addrU128(p.Addr())
	host := p.Addr().BitLen() - p.Bits()
	v = v.or(onesLow(host))
	return u128Addr(v, p.Addr().Is4())
}

// rangePrefix: lo-hi is exactly one prefix.
func rangePrefix(lo, hi netip.Addr) (netip.Prefix, bool) {
	ps := rangePrefixes(addrU128(lo), addrU128(hi), lo.Is4())
	if len(ps) == 1 {
		return ps[0], true
	}
	return netip.Prefix{}, false
}

// elemOpts are an element's options after its value (ipset save's
// "timeout N packets N bytes N").
type elemOpts struct {
	timeout        time.Duration // 0: none given
	timeoutSet     bool
	packets, bytes uint64
}

// parseElement reads one element of a set of type t: its value (for
// two-field types ADDR . PORT, or ipset's ADDR,PORT) and optional
// "timeout SECONDS", "packets N", "bytes N". The text is canonical.
func parseElement(t setType, s string) (elemKey, string, elemOpts, error) {
	var o elemOpts
	fs := strings.Fields(s)
	// Options from the end: the value itself may contain " . ".
	for len(fs) >= 3 {
		name, val := strings.ToLower(fs[len(fs)-2]), fs[len(fs)-1]
		n, err := strconv.ParseUint(val, 10, 64)
		switch name {
		case "timeout":
			if err != nil || n > 2147483 {
				return elemKey{}, "", o, fmt.Errorf("timeout %q: seconds, 0..2147483", val)
			}
			o.timeout, o.timeoutSet = time.Duration(n)*time.Second, true
		case "packets":
			if err != nil {
				return elemKey{}, "", o, fmt.Errorf("packets %q is not a number", val)
			}
			o.packets = n
		case "bytes":
			if err != nil {
				return elemKey{}, "", o, fmt.Errorf("bytes %q is not a number", val)
			}
			o.bytes = n
		default:
			goto value
		}
		fs = fs[:len(fs)-2]
	}
value:
	v := strings.Join(fs, " ")
	if v == "" {
		return elemKey{}, "", o, errors.New("an empty element")
	}
	var k elemKey
	var err error
	switch t {
	case setNet, setIP:
		if k, err = parseElemAddrs(t, v); err != nil {
			return k, "", o, err
		}
	case setPort:
		if k.proto, k.plo, k.phi, err = parseElemPort(v); err != nil {
			return k, "", o, err
		}
	case setIPPort, setNetPort:
		a, p, ok := strings.Cut(v, " . ")
		if !ok {
			a, p, ok = strings.Cut(v, ",")
		}
		if !ok {
			return k, "", o, fmt.Errorf("%q: a %s element is ADDR . [PROTO:]PORT (or ADDR,[PROTO:]PORT)", v, t)
		}
		if k, err = parseElemAddrs(t, strings.TrimSpace(a)); err != nil {
			return k, "", o, err
		}
		if k.proto, k.plo, k.phi, err = parseElemPort(strings.TrimSpace(p)); err != nil {
			return k, "", o, err
		}
		if t == setIPPort && int(k.phi)-int(k.plo) >= maxPortExpand {
			return k, "", o, fmt.Errorf("%q: a port range of at most %d ports", v, maxPortExpand)
		}
	default:
		return k, "", o, errors.New("unknown set type")
	}
	return k, k.format(t), o, nil
}

// format is the element's canonical text.
func (k elemKey) format(t setType) string {
	var b strings.Builder
	if t != setPort {
		switch {
		case t == setIP || t == setIPPort:
			b.WriteString(k.loAddr().String())
		case k.bits >= 0:
			b.WriteString(netip.PrefixFrom(k.loAddr(), int(k.bits)).String())
		default:
			b.WriteString(k.loAddr().String() + "-" + k.hiAddr().String())
		}
	}
	if t == setNet || t == setIP {
		return b.String()
	}
	if t != setPort {
		b.WriteString(" . ")
	}
	if k.proto != 0 {
		b.WriteString(portProtoName(k.proto) + ":")
	}
	b.WriteString(strconv.Itoa(int(k.plo)))
	if k.phi != k.plo {
		b.WriteString("-" + strconv.Itoa(int(k.phi)))
	}
	return b.String()
}

// u128 is an address (or a port key) as a number; IPv4 in the low 32 bits.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }
func (a u128) or(b u128) u128   { return u128{a.hi | b.hi, a.lo | b.lo} }
func (a u128) and(b u128) u128  { return u128{a.hi & b.hi, a.lo & b.lo} }
func (a u128) not() u128        { return u128{^a.hi, ^a.lo} }
func (a u128) add1() u128 {
	lo := a.lo + 1
	hi := a.hi
	if lo == 0 {
		hi++
	}
	return u128{hi, lo}
}

// onesLow has the low n bits set.
func onesLow(n int) u128 {
	switch {
	case n <= 0:
		return u128{}
	case n < 64:
		return u128{0, 1<<uint(n) - 1}
	case n == 64:
		return u128{0, ^uint64(0)}
	case n < 128:
		return u128{1<<uint(n-64) - 1, ^uint64(0)}
	}
	return u128{^uint64(0), ^uint64(0)}
}

func addrU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var v u128
	for i := 0; i < 8; i++ {
		v.hi = v.hi<<8 | uint64(b[i])
		v.lo = v.lo<<8 | uint64(b[8+i])
	}
	return v
}

func u128Addr(v u128, v4 bool) netip.Addr {
	if v4 {
		x := uint32(v.lo)
		return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
	}
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[7-i] = byte(v.hi >> (8 * i))
		b[15-i] = byte(v.lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

// tz is the number of trailing zero bits of v (128 for 0).
func (a u128) tz() int {
	if a.lo != 0 {
		return bits.TrailingZeros64(a.lo)
	}
	if a.hi != 0 {
		return 64 + bits.TrailingZeros64(a.hi)
	}
	return 128
}

// rangePrefixes splits lo..hi into the fewest prefixes (as ipset does
// with a range added to a hash:net set).
func rangePrefixes(lo, hi u128, v4 bool) []netip.Prefix {
	width := 128
	if v4 {
		width = 32
	}
	var out []netip.Prefix
	for {
		// The largest block starting at lo that stays within hi.
		n := min(lo.tz(), width)
		for n > 0 && hi.less(lo.or(onesLow(n))) {
			n--
		}
		out = append(out, netip.PrefixFrom(u128Addr(lo, v4), width-n))
		end := lo.or(onesLow(n))
		if end == hi {
			return out
		}
		lo = end.add1()
	}
}

// setDecl is a set as the file declares it: what decides whether a reload
// keeps its run-time contents.
type setDecl struct {
	name     string
	line     int
	typ      setType
	timeout  time.Duration // default timeout of elements added at run time (0: none)
	counters bool
	maxElem  int
	// digest: of typ, options and the canonical element lines (with their
	// options) of the file: what "the file changed the set" compares. The
	// lines themselves are not kept.
	digest string
	isMap  bool // a verdict map (maps:): each element line is "KEY : VERDICT"
	// constant: the contents are the file's only (nft's flags constant):
	// no run-time change, so a small address set's elements are its
	// matcher's constraint for the classifier (maxConstraintPrefixes).
	constant bool
}

// Set is a named set of the filter: its declaration and its contents, a
// snapshot swapped atomically. The packet path only loads the snapshot;
// Add, Del and Flush (the control socket) build a new one under mu.
// A reload that keeps the declaration keeps the Set (run-time changes
// with it).
type Set struct {
	decl setDecl
	mu   sync.Mutex // writers
	snap atomic.Pointer[setSnap]
	// changed: contents differ from the file's (an add, del or flush ran).
	changed atomic.Bool
	// build is how long the file's contents took to build (validate --stats).
	build time.Duration
	// The SET target's queue and applier (target_set.go).
	app       setApplier
	applierCh atomic.Pointer[chan setOp]
}

// Name is the set's name.
func (s *Set) Name() string { return s.decl.name }

// Type is the set's type in ipset's spelling (hash:net, …).
func (s *Set) Type() string { return s.decl.typ.String() }

// newSet makes a set of decl's type filled with its declared elements
// (made by makeElem, in the file's order; vals: a verdict map's verdicts,
// one an element). An element given twice is the later line (its
// options). It takes elems and vals over.
func newSet(decl setDecl, elems []setElem, vals []string) (*Set, error) {
	start := time.Now()
	s := &Set{decl: decl}
	defer func() { s.build = time.Since(start) }()
	seen := make(map[elemKey]int, len(elems))
	out := elems[:0]
	for i := range elems {
		e := elems[i]
		if j, dup := seen[e.key]; dup {
			out[j] = e // the later line wins (its options)
			if vals != nil {
				vals[j] = vals[i]
			}
			continue
		}
		seen[e.key] = len(out)
		if vals != nil {
			vals[len(out)] = vals[i]
		}
		out = append(out, e)
	}
	if len(out) > decl.maxElem {
		return nil, fmt.Errorf("%d elements, more than maxelem %d", len(out), decl.maxElem)
	}
	// The elements were appended one by one: no spare capacity is kept.
	if cap(out) > len(out)+len(out)/16 {
		out = slices.Clone(out)
	}
	if vals != nil {
		vals = slices.Clip(vals[:len(out)])
	}
	sn, err := buildSnap(decl.typ, out)
	if err != nil {
		return nil, err
	}
	sn.vals = vals
	s.snap.Store(sn)
	return s, nil
}

// needsState: elements carry a state (a timeout or counters).
func (s *Set) needsState() bool { return s.decl.counters || s.decl.timeout > 0 }

// makeElem parses one element line, with its state; text is its
// canonical value, val a verdict map's verdict (canonical: accept, drop,
// return, continue, jump C, goto C).
func (s *Set) makeElem(line string, now time.Time) (e setElem, text, val string, o elemOpts, err error) {
	if s.decl.isMap {
		i := strings.LastIndex(line, " : ")
		if i < 0 {
			return e, "", "", o, fmt.Errorf("%q: a verdict map's element is KEY : VERDICT", line)
		}
		v, err := parseMapVerdict(line[i+3:])
		if err != nil {
			return e, "", "", o, err
		}
		line, val = line[:i], v
	}
	k, text, o, err := parseElement(s.decl.typ, line)
	if err != nil {
		return e, "", "", o, err
	}
	e = setElem{key: k}
	if o.timeoutSet && s.decl.timeout == 0 {
		return e, text, val, o, errors.New("timeout on an element of a set without timeout (declare the set with timeout: N, 0 for none by default)")
	}
	if (o.packets != 0 || o.bytes != 0) && !s.decl.counters {
		return e, text, val, o, errors.New("packets/bytes on an element of a set without counters")
	}
	if s.needsState() {
		e.st = new(elemState)
		e.st.packets.Store(o.packets)
		e.st.bytes.Store(o.bytes)
		if o.timeoutSet && o.timeout > 0 {
			e.st.expires.Store(now.Add(o.timeout).UnixNano())
		}
	}
	return e, text, val, o, nil
}

// SetElement is one element as a listing shows it.
type SetElement struct {
	Elem    string `json:"elem"`
	Verdict string `json:"verdict,omitempty"` // a verdict map's`
	Timeout int64  `json:"timeout,omitempty"` // seconds left (sets with timeout)
	Packets uint64 `json:"packets,omitempty"`
	Bytes   uint64 `json:"bytes,omitempty"`
}

// SetInfo describes a set (pipectl set list).
type SetInfo struct {
	Name     string       `json:"name"`
	Type     string       `json:"type"`
	Timeout  int64        `json:"timeout,omitempty"` // the default, seconds
	Counters bool         `json:"counters,omitempty"`
	MaxElem  int          `json:"maxelem"`
	Entries  int          `json:"entries"`
	Changed  bool         `json:"changed,omitempty"` // run-time changes since the file
	Map      bool         `json:"map,omitempty"`     // a verdict map
	Constant bool         `json:"constant,omitempty"`
	Members  []SetElement `json:"members,omitempty"`
}

// Info lists the set; with members, its live elements (expired ones are
// left out) in the set's order.
func (s *Set) Info(now time.Time, members bool) SetInfo {
	sn := s.snap.Load()
	in := SetInfo{Name: s.decl.name, Type: s.decl.typ.String(), Timeout: int64(s.decl.timeout / time.Second),
		Counters: s.decl.counters, MaxElem: s.decl.maxElem, Changed: s.changed.Load(), Map: s.decl.isMap, Constant: s.decl.constant}
	t := now.UnixNano()
	for i := range sn.elems {
		e := &sn.elems[i]
		if e.expired(t) {
			continue
		}
		in.Entries++
		if !members {
			continue
		}
		se := SetElement{Elem: e.key.format(sn.typ)}
		if sn.vals != nil {
			se.Verdict = sn.vals[i]
		}
		if e.st != nil {
			if x := e.st.expires.Load(); x != 0 {
				se.Timeout = (x - t + int64(time.Second) - 1) / int64(time.Second)
			}
			se.Packets, se.Bytes = e.st.packets.Load(), e.st.bytes.Load()
		}
		in.Members = append(in.Members, se)
	}
	return in
}

func (e *setElem) expired(now int64) bool {
	if e.st == nil {
		return false
	}
	x := e.st.expires.Load()
	return x != 0 && x <= now
}

// Add adds an element (ipset add, with -exist: an element already there
// gets the new timeout). timeout < 0: the set's default. It reports
// whether the element is new.
func (s *Set) Add(elem string, timeout time.Duration, now time.Time) (bool, error) {
	if s.decl.isMap || s.decl.constant {
		return false, s.mapErr()
	}
	if timeout >= 0 && s.decl.timeout == 0 && timeout != 0 {
		return false, fmt.Errorf("set %s has no timeout (declare it with timeout: N)", s.decl.name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, _, _, o, err := s.makeElem(elem, now)
	if err != nil {
		return false, err
	}
	if o.timeoutSet {
		return false, errors.New("give the timeout as timeout N after the element, once")
	}
	if s.decl.timeout > 0 {
		if timeout < 0 {
			timeout = s.decl.timeout
		}
		if timeout > 0 {
			e.st.expires.Store(now.Add(timeout).UnixNano())
		}
	}
	old := s.snap.Load()
	t := now.UnixNano()
	for i := range old.elems {
		if old.elems[i].key == e.key && !old.elems[i].expired(t) {
			if old.elems[i].st != nil {
				old.elems[i].st.expires.Store(e.st.expires.Load())
			}
			s.changed.Store(true)
			return false, nil
		}
	}
	elems := make([]setElem, 0, len(old.elems)+1)
	for i := range old.elems {
		if old.elems[i].key != e.key && !old.elems[i].expired(t) {
			elems = append(elems, old.elems[i])
		}
	}
	if len(elems) >= s.decl.maxElem {
		return false, fmt.Errorf("set %s is full (maxelem %d)", s.decl.name, s.decl.maxElem)
	}
	elems = append(elems, e)
	sn, err := buildSnap(s.decl.typ, elems)
	if err != nil {
		return false, err
	}
	s.snap.Store(sn)
	s.changed.Store(true)
	return true, nil
}

// Del removes an element; an element not there (or expired) is an error,
// as ipset's "Element cannot be deleted from the set: it's not added".
func (s *Set) Del(elem string, now time.Time) error {
	if s.decl.isMap || s.decl.constant {
		return s.mapErr()
	}
	k, text, _, err := parseElement(s.decl.typ, elem)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.snap.Load()
	t := now.UnixNano()
	found := false
	elems := make([]setElem, 0, len(old.elems))
	for i := range old.elems {
		switch {
		case old.elems[i].key == k:
			found = !old.elems[i].expired(t)
		case !old.elems[i].expired(t):
			elems = append(elems, old.elems[i])
		}
	}
	if !found {
		return fmt.Errorf("%s is not in set %s", text, s.decl.name)
	}
	sn, err := buildSnap(s.decl.typ, elems)
	if err != nil {
		return err
	}
	s.snap.Store(sn)
	s.changed.Store(true)
	return nil
}

// Flush empties the set and returns how many elements it had.
func (s *Set) Flush(now time.Time) (int, error) {
	if s.decl.isMap || s.decl.constant {
		return 0, s.mapErr()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.Info(now, false).Entries
	sn, _ := buildSnap(s.decl.typ, nil)
	s.snap.Store(sn)
	s.changed.Store(true)
	return n, nil
}

// mapErr: a verdict map's elements name chains of the tables that use it,
// resolved when the generation is built.
func (s *Set) mapErr() error {
	if s.decl.constant {
		return fmt.Errorf("set %s is constant: its elements change through the file (pipectl reload)", s.decl.name)
	}
	return fmt.Errorf("%s is a verdict map: its elements change through the file (pipectl reload)", s.decl.name)
}

// parseMapVerdict reads a verdict map's value (nftables' verdicts).
func parseMapVerdict(v string) (string, error) {
	fs := strings.Fields(strings.ToLower(v))
	switch {
	case len(fs) == 1 && (fs[0] == "accept" || fs[0] == "drop" || fs[0] == "return" || fs[0] == "continue"):
		return fs[0], nil
	case len(fs) == 2 && (fs[0] == "jump" || fs[0] == "goto"):
		return fs[0] + " " + strings.Fields(v)[1], nil
	}
	return "", fmt.Errorf("verdict %q: accept, drop, return, continue, jump CHAIN or goto CHAIN", strings.TrimSpace(v))
}

// Test reports whether elem (a value, as an element is written) is in the
// set, as a packet with those fields would find it (pipectl set test).
func (s *Set) Test(elem string, now time.Time) (bool, error) {
	k, _, _, err := parseElement(s.decl.typ, elem)
	if err != nil {
		return false, err
	}
	if k.lo != k.hi || k.plo != k.phi {
		return false, errors.New("test takes one address and one port")
	}
	proto := k.proto
	if proto == 0 {
		proto = 6
	}
	return s.snap.Load().lookup(k.loAddr(), k.plo, proto, now.UnixNano()) >= 0, nil
}

// setSnap is one immutable version of a set's contents and lookup
// structures.
type setSnap struct {
	typ   setType
	elems []setElem
	// vals: a verdict map's verdicts, one an element (nil for a set).
	vals []string
	// state: some element has a state (timeout or counters).
	state bool

	// setNet: elementary intervals (starts, sorted) and the piece found
	// there (-1: none); a piece's element and its enclosing piece (for an
	// element that expired: the next wider one decides).
	v4starts []uint32
	v4piece  []int32
	// v4dir: for a set of dirMinStarts starts or more, the DIR table of
	// these intervals (sets_dir.go); v4starts and v4piece are then
	// dropped.
	v4dir    dir4
	v6starts []u128
	v6piece  []int32
	pieces   []piece

	// setIP
	ip4 u64Table
	ip6 map[[16]byte]int32

	// setPort: per protocol (0: any) a table of 65536 element indexes+1.
	ports []portTable

	// setIPPort: addr<<32 | proto<<16 | port → element; v6 likewise.
	ipp4 u64Table
	ipp6 map[ipp6Key]int32
	// setNetPort: masked addr<<32 | bits<<24 | proto<<16 | port; the
	// prefix lengths present, longest first.
	np4     u64Table
	np6     map[np6Key]int32
	np4bits []uint8
	np6bits []uint8
	// anyProto, someProto: elements without / with a protocol exist.
	anyProto, someProto bool
	// shadowed (the types with ports): elements that lost a key of their
	// table to another (nested or overlapping ranges, a port given again
	// at run time): when the element that took the key expires, the
	// lookup looks among these for one that still holds the key (fallback).
	shadowed []int32
	lost     []bool // building: shadowed's members
}

// shade records that element e lost a key to another (buildSnap).
func (sn *setSnap) shade(e int32) {
	if sn.lost == nil {
		sn.lost = make([]bool, len(sn.elems))
	}
	if !sn.lost[e] {
		sn.lost[e] = true
		sn.shadowed = append(sn.shadowed, e)
	}
}

// fallback is a live shadowed element holding (a, port) with protocol
// key proto (0: the any-protocol elements), the most specific address
// first, then the narrowest port range (-1: none). Called only when the
// element a table names for the key expired.
func (sn *setSnap) fallback(a netip.Addr, port uint16, proto uint8, now int64) int32 {
	best := int32(-1)
	for _, e := range sn.shadowed {
		el := &sn.elems[e]
		k := &el.key
		if k.proto != proto || port < k.plo || port > k.phi || el.expired(now) {
			continue
		}
		switch sn.typ {
		case setIPPort:
			if k.v4 != a.Is4() || k.lo != addrU128(a) {
				continue
			}
		case setNetPort:
			if v := addrU128(a); k.v4 != a.Is4() || v.less(k.lo) || k.hi.less(v) {
				continue
			}
		}
		if best >= 0 {
			b := &sn.elems[best].key
			if k.bits < b.bits || k.bits == b.bits && int(k.phi)-int(k.plo) >= int(b.phi)-int(b.plo) {
				continue
			}
		}
		best = e
	}
	return best
}

type piece struct {
	elem   int32
	parent int32 // the enclosing piece, -1 none
}

type portTable struct {
	proto uint8
	idx   *[65536]int32 // element index + 1; 0: none
}

type ipp6Key struct {
	a     [16]byte
	proto uint8
	port  uint16
}

type np6Key struct {
	a     u128
	bits  uint8
	proto uint8
	port  uint16
}

// buildSnap makes the lookup structures of elems.
func buildSnap(t setType, elems []setElem) (*setSnap, error) {
	sn := &setSnap{typ: t, elems: elems}
	for i := range elems {
		if elems[i].st != nil {
			sn.state = true
		}
		if elems[i].key.proto == 0 {
			sn.anyProto = true
		} else {
			sn.someProto = true
		}
	}
	switch t {
	case setNet:
		sn.buildNet()
		if !sn.state {
			// Nothing expires: the intervals name the element, one load
			// less per lookup.
			for _, vs := range [][]int32{sn.v4piece, sn.v6piece} {
				for i, p := range vs {
					if p >= 0 {
						vs[i] = sn.pieces[p].elem
					}
				}
			}
		}
		if n := len(sn.v4starts); n >= dirMinStarts && n < dirMaxStarts && len(sn.pieces) < dirLow {
			sn.v4dir.build(sn.v4starts, sn.v4piece)
			sn.v4starts, sn.v4piece = nil, nil
		}
		if !sn.state {
			sn.pieces = nil // the intervals name the elements: no piece is looked at
		}
	case setIP:
		ip4 := map[uint64]int32{}
		sn.ip6 = map[[16]byte]int32{}
		for i := range elems {
			k := &elems[i].key
			if k.v4 {
				ip4[k.lo.lo] = int32(i)
			} else {
				sn.ip6[k.loAddr().As16()] = int32(i)
			}
		}
		sn.ip4 = newU64Table(ip4)
	case setPort:
		sn.buildPorts()
	case setIPPort:
		ipp4 := map[uint64]int32{}
		sn.ipp6 = map[ipp6Key]int32{}
		// Each port of a range is an entry (as ipset expands it): bound
		// them as setNetPort's, or maxelem elements of 65,536 ports each
		// would be 2^36 entries.
		total := 0
		for i := range elems {
			if total += int(elems[i].key.phi) - int(elems[i].key.plo) + 1; total > maxExpanded {
				return nil, fmt.Errorf("the set's port ranges expand to more than %d entries", maxExpanded)
			}
		}
		defer func() { sn.ipp4 = newU64Table(ipp4) }()
		for i := range elems {
			k := &elems[i].key
			for p := int(k.plo); p <= int(k.phi); p++ {
				if k.v4 {
					key := k.lo.lo<<32 | uint64(k.proto)<<16 | uint64(p)
					if o, ok := ipp4[key]; ok {
						sn.shade(o)
					}
					ipp4[key] = int32(i)
				} else {
					key := ipp6Key{k.loAddr().As16(), k.proto, uint16(p)}
					if o, ok := sn.ipp6[key]; ok {
						sn.shade(o)
					}
					sn.ipp6[key] = int32(i)
				}
			}
		}
	case setNetPort:
		np4 := map[uint64]int32{}
		sn.np6 = map[np6Key]int32{}
		defer func() { sn.np4 = newU64Table(np4) }()
		var b4, b6 [129]bool
		total := 0
		for i := range elems {
			k := &elems[i].key
			ps := []netip.Prefix{netip.PrefixFrom(k.loAddr(), int(k.bits))}
			if k.bits < 0 {
				ps = rangePrefixes(k.lo, k.hi, k.v4)
			}
			for _, p := range ps {
				a := addrU128(p.Addr())
				for port := int(k.plo); port <= int(k.phi); port++ {
					if total++; total > maxExpanded {
						return nil, fmt.Errorf("the set's ranges expand to more than %d entries", maxExpanded)
					}
					if p.Addr().Is4() {
						b4[p.Bits()] = true
						key := a.lo<<32 | uint64(p.Bits())<<24 | uint64(k.proto)<<16 | uint64(port)
						if o, ok := np4[key]; ok {
							sn.shade(o)
						}
						np4[key] = int32(i)
					} else {
						b6[p.Bits()] = true
						key := np6Key{a, uint8(p.Bits()), k.proto, uint16(port)}
						if o, ok := sn.np6[key]; ok {
							sn.shade(o)
						}
						sn.np6[key] = int32(i)
					}
				}
			}
		}
		for b := 128; b >= 0; b-- {
			if b4[b] {
				sn.np4bits = append(sn.np4bits, uint8(b))
			}
			if b6[b] {
				sn.np6bits = append(sn.np6bits, uint8(b))
			}
		}
	}
	sn.lost = nil
	return sn, nil
}

// buildNet makes the elementary intervals of a hash:net set: every element
// as prefixes (a range split as ipset splits it), sorted so that an
// enclosing prefix comes before those inside it; a sweep with a stack of
// open prefixes gives each interval its innermost piece (prefixes nest or
// are disjoint, never overlap in part).
func (sn *setSnap) buildNet() {
	type pfx struct {
		lo, hi u128
		bits   int
		elem   int32
		v4     bool
		width  u128 // of the element (the narrower element wins a tie)
	}
	var ps []pfx
	for i := range sn.elems {
		k := &sn.elems[i].key
		lo, hi := k.lo, k.hi
		w := u128{hi.hi - lo.hi, hi.lo - lo.lo}
		if hi.lo < lo.lo {
			w.hi--
		}
		if k.bits >= 0 {
			ps = append(ps, pfx{lo, hi, int(k.bits), int32(i), k.v4, w})
			continue
		}
		for _, p := range rangePrefixes(lo, hi, k.v4) {
			ps = append(ps, pfx{addrU128(p.Addr()), addrU128(setLastAddr(p)), p.Bits(), int32(i), k.v4, w})
		}
	}
	sort.Slice(ps, func(i, j int) bool {
		a, b := &ps[i], &ps[j]
		if a.v4 != b.v4 {
			return a.v4
		}
		if a.lo != b.lo {
			return a.lo.less(b.lo)
		}
		if a.bits != b.bits {
			return a.bits < b.bits
		}
		if a.width != b.width {
			return b.width.less(a.width) // the wider element first: the narrower, later, wins
		}
		return a.elem < b.elem
	})
	var phi []u128 // each piece's last address
	for fam := 0; fam < 2; fam++ {
		v4 := fam == 0
		var starts []u128
		var vals []int32
		emit := func(at u128, v int32) {
			if n := len(starts); n > 0 && starts[n-1] == at {
				vals[n-1] = v
				if n > 1 && vals[n-2] == v {
					starts, vals = starts[:n-1], vals[:n-1]
				}
				return
			}
			if n := len(vals); n > 0 && vals[n-1] == v {
				return
			}
			starts, vals = append(starts, at), append(vals, v)
		}
		var stack []int32 // open pieces, innermost last
		top := func() int32 {
			if len(stack) == 0 {
				return -1
			}
			return stack[len(stack)-1]
		}
		maxV := onesLow(32)
		if !v4 {
			maxV = onesLow(128)
		}
		// closeBefore ends the open pieces that end before lo (all: every
		// one); after each, the piece around it resumes.
		closeBefore := func(lo u128, all bool) {
			for len(stack) > 0 {
				hi := phi[top()]
				if !all && !hi.less(lo) {
					return
				}
				stack = stack[:len(stack)-1]
				if hi != maxV {
					emit(hi.add1(), top())
				}
			}
		}
		emit(u128{}, -1)
		for i := range ps {
			p := &ps[i]
			if p.v4 != v4 {
				continue
			}
			closeBefore(p.lo, false)
			// The same prefix again (another element) nests inside the
			// first: the later (narrower) element decides, the earlier
			// one when that expired.
			id := int32(len(sn.pieces))
			sn.pieces = append(sn.pieces, piece{elem: p.elem, parent: top()})
			phi = append(phi, p.hi)
			stack = append(stack, id)
			emit(p.lo, id)
		}
		closeBefore(u128{}, true)
		if v4 {
			sn.v4starts = make([]uint32, len(starts))
			for i, s := range starts {
				sn.v4starts[i] = uint32(s.lo)
			}
			sn.v4piece = vals
		} else {
			sn.v6starts, sn.v6piece = starts, vals
		}
	}
}

// buildPorts fills a table per protocol (0: any): wider elements first,
// so that a narrower one inside decides its ports.
func (sn *setSnap) buildPorts() {
	order := make([]int, len(sn.elems))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		ka, kb := &sn.elems[order[a]].key, &sn.elems[order[b]].key
		return int(ka.phi)-int(ka.plo) > int(kb.phi)-int(kb.plo)
	})
	for _, i := range order {
		k := &sn.elems[i].key
		var tab *[65536]int32
		for _, pt := range sn.ports {
			if pt.proto == k.proto {
				tab = pt.idx
			}
		}
		if tab == nil {
			tab = new([65536]int32)
			sn.ports = append(sn.ports, portTable{k.proto, tab})
		}
		for p := int(k.plo); p <= int(k.phi); p++ {
			if o := tab[p]; o != 0 {
				sn.shade(o - 1)
			}
			tab[p] = int32(i) + 1
		}
	}
	// The any-protocol table last: a protocol's own decides first.
	slices.SortStableFunc(sn.ports, func(a, b portTable) int {
		switch {
		case a.proto == b.proto:
			return 0
		case a.proto == 0:
			return 1
		case b.proto == 0:
			return -1
		}
		return int(a.proto) - int(b.proto)
	})
}

// lookup finds the element a packet's fields fall in (-1: none): a is
// the address (for the types with one), port and proto the port and its
// protocol (for those with ports). Expired elements do not count; in a
// hash:net set the next wider element that holds a then decides. It does
// not allocate.
func (sn *setSnap) lookup(a netip.Addr, port uint16, proto uint8, now int64) int32 {
	switch sn.typ {
	case setNet:
		var p int32 = -1
		if a.Is4() {
			x := uint32(addrU128(a).lo)
			if sn.v4dir.top != nil {
				p = sn.v4dir.get(x)
			} else {
				p = sn.v4piece[search4(sn.v4starts, x)]
			}
		} else {
			p = sn.v6piece[search6(sn.v6starts, addrU128(a))]
		}
		if !sn.state {
			return p // the element itself (buildNet: nothing expires)
		}
		for p >= 0 {
			e := sn.pieces[p].elem
			if !sn.state || !sn.elems[e].expired(now) {
				return e
			}
			p = sn.pieces[p].parent
		}
		return -1
	case setIP:
		var e int32
		var ok bool
		if a.Is4() {
			e, ok = sn.ip4.get(addrU128(a).lo)
		} else {
			e, ok = sn.ip6[a.As16()]
		}
		if ok && (!sn.state || !sn.elems[e].expired(now)) {
			return e
		}
	case setPort:
		for _, pt := range sn.ports {
			if pt.proto != proto && pt.proto != 0 {
				continue
			}
			if e := pt.idx[port] - 1; e >= 0 {
				if !sn.state || !sn.elems[e].expired(now) {
					return e
				}
				if e := sn.fallback(a, port, pt.proto, now); e >= 0 {
					return e
				}
			}
		}
	case setIPPort:
		if a.Is4() {
			k := addrU128(a).lo << 32
			if sn.someProto {
				if e, ok := sn.ipp4.get(k | uint64(proto)<<16 | uint64(port)); ok {
					if e = sn.live(e, a, port, proto, now); e >= 0 {
						return e
					}
				}
			}
			if sn.anyProto {
				if e, ok := sn.ipp4.get(k | uint64(port)); ok {
					if e = sn.live(e, a, port, 0, now); e >= 0 {
						return e
					}
				}
			}
			return -1
		}
		k := ipp6Key{a.As16(), proto, port}
		if sn.someProto {
			if e, ok := sn.ipp6[k]; ok {
				if e = sn.live(e, a, port, proto, now); e >= 0 {
					return e
				}
			}
		}
		if sn.anyProto {
			k.proto = 0
			if e, ok := sn.ipp6[k]; ok {
				if e = sn.live(e, a, port, 0, now); e >= 0 {
					return e
				}
			}
		}
	case setNetPort:
		v := addrU128(a)
		if a.Is4() {
			for _, b := range sn.np4bits {
				k := (v.lo&^(1<<(32-uint(b))-1))<<32 | uint64(b)<<24 | uint64(port)
				if sn.someProto {
					if e, ok := sn.np4.get(k | uint64(proto)<<16); ok {
						if e = sn.live(e, a, port, proto, now); e >= 0 {
							return e
						}
					}
				}
				if sn.anyProto {
					if e, ok := sn.np4.get(k); ok {
						if e = sn.live(e, a, port, 0, now); e >= 0 {
							return e
						}
					}
				}
			}
			return -1
		}
		for _, b := range sn.np6bits {
			k := np6Key{v.and(onesLow(128 - int(b)).not()), b, proto, port}
			if sn.someProto {
				if e, ok := sn.np6[k]; ok {
					if e = sn.live(e, a, port, proto, now); e >= 0 {
						return e
					}
				}
			}
			if sn.anyProto {
				k.proto = 0
				if e, ok := sn.np6[k]; ok {
					if e = sn.live(e, a, port, 0, now); e >= 0 {
						return e
					}
				}
			}
		}
	}
	return -1
}

// live is e when it has not expired, else a shadowed element that holds
// the same key (fallback), -1 none.
func (sn *setSnap) live(e int32, a netip.Addr, port uint16, proto uint8, now int64) int32 {
	if !sn.state || !sn.elems[e].expired(now) {
		return e
	}
	if len(sn.shadowed) == 0 {
		return -1
	}
	return sn.fallback(a, port, proto, now)
}

// search4 is the index of the last start ≤ x (starts[0] is 0).
func search4(starts []uint32, x uint32) int {
	lo, hi := 0, len(starts)
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if starts[m] <= x {
			lo = m
		} else {
			hi = m
		}
	}
	return lo
}

func search6(starts []u128, x u128) int {
	lo, hi := 0, len(starts)
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if !x.less(starts[m]) {
			lo = m
		} else {
			hi = m
		}
	}
	return lo
}

// u64Table is an open-addressing hash table from 64-bit keys to element
// indexes, built once per snapshot (at most half full): a lookup is a
// multiply and, mostly, one 16-byte slot — a Go map's groups and hashing
// cost about twice as much here (BenchmarkSetLookup).
type u64Table struct {
	slots []u64Slot
	shift uint8
}

type u64Slot struct {
	k uint64
	v int32 // element index + 1; 0: empty
}

func newU64Table(m map[uint64]int32) u64Table {
	n := 2
	for n < 2*len(m) {
		n <<= 1
	}
	t := u64Table{slots: make([]u64Slot, n), shift: uint8(64 - bits.TrailingZeros(uint(n)))}
	mask := uint64(n - 1)
	for k, v := range m {
		i := t.home(k)
		for t.slots[i].v != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = u64Slot{k, v + 1}
	}
	return t
}

// home is the slot a probe for k starts at (Fibonacci hashing on the top
// bits); build, get and the batch prefetch share it.
func (t *u64Table) home(k uint64) uint64 { return (k * 0x9e3779b97f4a7c15) >> t.shift }

func (t *u64Table) get(k uint64) (int32, bool) {
	if len(t.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.home(k); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.v == 0 {
			return 0, false
		}
		if s.k == k {
			return s.v - 1, true
		}
	}
}

// maxConstraintPrefixes bounds the prefixes a constant set's matcher
// describes to the classifier (more: none, the matcher is called).
const maxConstraintPrefixes = 256

// prefixes are a constant address set's elements as prefixes (ranges
// split), nil when it has more than maxConstraintPrefixes or is not an
// address set.
func (s *Set) prefixes() []netip.Prefix {
	if !s.decl.constant || s.decl.typ != setNet && s.decl.typ != setIP {
		return nil
	}
	var out []netip.Prefix
	for _, e := range s.snap.Load().elems {
		k := &e.key
		if k.bits >= 0 {
			out = append(out, netip.PrefixFrom(k.loAddr(), int(k.bits)))
		} else {
			out = append(out, rangePrefixes(k.lo, k.hi, k.v4)...)
		}
		if len(out) > maxConstraintPrefixes {
			return nil
		}
	}
	return out // nil for an empty set too: described as nothing
}

// SetStats is what pipectl validate --stats says of a set.
type SetStats struct {
	Name, Type string
	Line       int
	Elements   int
	Build      time.Duration // parsing and building the file's contents
	Bytes      int           // the lookup structures and elements, estimated
}

// bytes is the snapshot's memory: its slices' capacities, its maps
// estimated (48 bytes an entry), the elements' states (24 bytes each).
func (sn *setSnap) bytes() int {
	n := 4*(cap(sn.v4starts)+cap(sn.v4piece)+cap(sn.v6piece)) + sn.v4dir.bytes() +
		16*cap(sn.v6starts) + 8*cap(sn.pieces) + 16*(cap(sn.ip4.slots)+cap(sn.ipp4.slots)+cap(sn.np4.slots)) +
		48*(len(sn.ip6)+len(sn.ipp6)+len(sn.np6)) + 4*65536*len(sn.ports) +
		int(unsafe.Sizeof(setElem{}))*cap(sn.elems) + 16*cap(sn.vals) + 4*cap(sn.shadowed)
	for i := range sn.elems {
		if sn.elems[i].st != nil {
			n += int(unsafe.Sizeof(elemState{}))
		}
	}
	for _, v := range sn.vals {
		n += len(v)
	}
	return n
}

// SetStats reports every set and map of the section.
func (m *Module) SetStats() []SetStats {
	var out []SetStats
	for _, src := range m.setSrcs {
		s := m.sets[src.decl.name]
		if s == nil {
			continue
		}
		sn := s.snap.Load()
		typ := s.decl.typ.String()
		if s.decl.isMap {
			typ += " verdict map"
		}
		out = append(out, SetStats{Name: s.decl.name, Type: typ, Line: src.line, Elements: len(sn.elems), Build: s.build, Bytes: sn.bytes()})
	}
	return out
}
