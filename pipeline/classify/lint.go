package classify

import "strings"

// Covers reports whether rule i matches every packet rule j can match, as
// far as the compiled form proves it: i's matchers are all Exact (and, if
// one of them refuses packets whose ports are not all there, so does one
// of j's), and wherever j's constraints hold i's do too, in each family j
// can match. False means "not proved", not "no". For lint: a rule covered
// by an earlier one whose target ends the chain can never match (shadowed).
func (x *Index) Covers(i, j int) bool {
	if i < 0 || j < 0 || i >= x.n || j >= x.n || x.irregular[i] && !x.irregular[j] {
		return false
	}
	some := false
	for _, fi := range []*famIndex{&x.v4, &x.v6} {
		if fi.never[j] {
			continue
		}
		some = true
		if fi.never[i] || !fi.exact[i] {
			return false
		}
		jt := fi.tests[fi.toff[j]:fi.toff[j+1]]
		for k := fi.toff[i]; k < fi.toff[i+1]; k++ {
			if !fi.holdsOver(&fi.tests[k], jt) {
				return false
			}
		}
	}
	return some
}

// holdsOver: test t holds wherever the tests jt all hold.
func (fi *famIndex) holdsOver(t *test, jt []test) bool {
	switch t.f {
	case fIn, fOut:
		for k := range jt {
			u := &jt[k]
			if u.f == t.f && !u.inv && namesWithin(u.names, t) {
				return true
			}
		}
		return false
	case fMark, fFlags:
		// j's values under the same mask (or t lets every value through).
		allowed := []ival{{u128{}, fieldMax(t.f, fi.v6)}}
		for k := range jt {
			if u := &jt[k]; u.f == t.f && u.mask == t.mask {
				allowed = intersect(allowed, u.cover(fi.v6))
			}
		}
		return subset(allowed, t.cover(fi.v6))
	}
	allowed := []ival{{u128{}, fieldMax(t.f, fi.v6)}}
	for k := range jt {
		if u := &jt[k]; u.f == t.f {
			allowed = intersect(allowed, u.cover(fi.v6))
		}
	}
	return subset(allowed, t.cover(fi.v6))
}

// namesWithin: every name j allows (names, not negated) satisfies t.
func namesWithin(names []string, t *test) bool {
	for _, n := range names {
		if strings.HasSuffix(n, "+") {
			// A prefix: within only a prefix of t's that it extends.
			p := n[:len(n)-1]
			ok := false
			for _, m := range t.names {
				if strings.HasSuffix(m, "+") && strings.HasPrefix(p, m[:len(m)-1]) {
					ok = true
				}
			}
			if t.inv || !ok {
				return false
			}
			continue
		}
		if nameIn(t.names, n) == t.inv {
			return false
		}
	}
	return true
}

// intersect is the values in both a and b (normalised).
func intersect(a, b []ival) []ival {
	var out []ival
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo, hi := a[i].lo, a[i].hi
		if lo.less(b[j].lo) {
			lo = b[j].lo
		}
		if b[j].hi.less(hi) {
			hi = b[j].hi
		}
		if !hi.less(lo) {
			out = append(out, ival{lo, hi})
		}
		if a[i].hi.less(b[j].hi) {
			i++
		} else {
			j++
		}
	}
	return out
}

// subset: every value of a is in b (both normalised).
func subset(a, b []ival) bool {
	j := 0
	for _, x := range a {
		for j < len(b) && b[j].hi.less(x.lo) {
			j++
		}
		if j == len(b) || x.lo.less(b[j].lo) || b[j].hi.less(x.hi) {
			return false
		}
	}
	return true
}

// Disjoint reports whether no packet whose headers are all there can make
// both rules i and j match, as far as the compiled form proves it: in each
// family one of them cannot match, or on one field the values i's tests
// let through and those j's do never meet. Port fields count only when
// neither rule has a matcher that refuses packets whose ports are not all
// there (for such a packet the ports prove nothing); link names and marks
// under different masks are not compared. False means "not proved".
// For lint: a rule between a redundant one and the rule that would
// decide in its place must be disjoint from it.
func (x *Index) Disjoint(i, j int) bool {
	if i < 0 || j < 0 || i >= x.n || j >= x.n {
		return false
	}
	ports := !x.irregular[i] && !x.irregular[j]
	for _, fi := range []*famIndex{&x.v4, &x.v6} {
		if fi.never[i] || fi.never[j] {
			continue
		}
		if !fi.disjoint(i, j, ports) {
			return false
		}
	}
	return true
}

func (fi *famIndex) disjoint(i, j int, ports bool) bool {
	it := fi.tests[fi.toff[i]:fi.toff[i+1]]
	jt := fi.tests[fi.toff[j]:fi.toff[j+1]]
	for f := field(0); f < numFields; f++ {
		switch f {
		case fIn, fOut:
			continue
		case fSport, fDport, fICMP, fFlags: // read from the transport header
			if !ports {
				continue
			}
		}
		a, aok := fi.allowed(it, f)
		b, bok := fi.allowed(jt, f)
		if aok && bok && len(intersect(a, b)) == 0 {
			return true
		}
	}
	return false
}

// allowed is the values of f that tests ts all let through (ok false: a
// mark or TCP flags test under a mask other than all ones, which this
// does not compare).
func (fi *famIndex) allowed(ts []test, f field) ([]ival, bool) {
	out := []ival{{u128{}, fieldMax(f, fi.v6)}}
	for k := range ts {
		t := &ts[k]
		if t.f != f {
			continue
		}
		if masked(f) && t.mask != ^uint32(0) {
			return nil, false
		}
		out = intersect(out, t.cover(fi.v6))
	}
	return out, true
}
