package filter

// dir4 is the lookup table of a large hash:net set's IPv4 intervals (a
// DIR table, as DPDK's rte_lpm and the literature's DIR-24-8 but with
// strides 16, 8, 8 and short sorted runs where a region holds few
// intervals): the first level has an entry per /16; an entry is a leaf
// (the region's value: a piece or an element, -1 none), a 256-entry block
// of the next 8 bits (a dense region: a block list's /32s side by side),
// or a run of at most dirRunMax interval starts searched in place (a
// region with a few). A lookup is one to three loads that depend on the
// address only through its bytes, and at most one short search (six
// steps within four cache lines): no search over the whole set, nothing
// that grows with the set's size.
//
// It is built with the snapshot (buildSnap: when the file is loaded and
// at every run-time change, never on the packet path) from the sorted
// interval starts and their values, and immutable then.
type dir4 struct {
	top  *[1 << 16]uint32
	blk  []uint32 // the blocks, 256 entries each
	runS []uint32 // the runs' starts: a run's first is its region's first address
	runV []int32  // their values
}

// An entry: the kind in the top two bits, the payload in the rest.
const (
	dirLeaf  = 0 << 30 // payload: value + 1 (0: none)
	dirBlock = 1 << 30 // payload: block number
	dirRun   = 2 << 30 // payload: offset<<6 | length-1
	dirKind  = 3 << 30
	dirLow   = 1<<30 - 1
	// dirRunMax bounds a run: a region with more starts gets a block
	// (the next 8 bits), a /24 with more a block of leaves. 64 starts
	// are four cache lines, searched in six steps; a block is 1 KB, so
	// that a block list's /24s of a few dozen starts each (/28s and /32s
	// side by side) cost 8 bytes a start in runs, not 40 in blocks.
	dirRunMax = 64
	// dirMinStarts: a set with fewer interval starts is searched in its
	// sorted array alone (the first level is 256 KB).
	dirMinStarts = 64
	// dirMaxStarts: a run's offset has 24 bits, and the runs hold at
	// most twice the starts (each run a region's first address and at
	// least one start); a set with more (a maxelem of millions of
	// ranges) is searched in its sorted array. Values (pieces, elements)
	// must be below dirLow (buildSnap).
	dirMaxStarts = 1 << 23
)

// get is the value of the interval that holds x. No allocation; x's bits
// choose the path, so an address outside every element costs as one in.
func (d *dir4) get(x uint32) int32 {
	e := d.top[x>>16]
	if e&dirKind == dirBlock {
		e = d.blk[(e&dirLow)<<8|x>>8&0xff]
		if e&dirKind == dirBlock {
			e = d.blk[(e&dirLow)<<8|x&0xff]
		}
	}
	if e&dirKind != dirRun {
		return int32(e&dirLow) - 1
	}
	off, n := int((e&dirLow)>>6), int(e&63)+1
	s := d.runS[off : off+n]
	// The last start ≤ x (s[0], the region's first, is): halve the
	// candidates each step, without a branch on the comparison.
	i := 0
	for n > 1 {
		h := n >> 1
		if s[i+h] <= x {
			i += h
		}
		n -= h
	}
	return d.runV[off+i]
}

// build makes the table of the intervals starting at starts (sorted,
// starts[0] == 0) with values vals.
func (d *dir4) build(starts []uint32, vals []int32) {
	d.top = new([1 << 16]uint32)
	i := 0 // the next start not yet placed
	v := int32(-1)
	for h := 0; h < 1<<16; h++ {
		base := uint32(h) << 16
		// The value at the region's first address: the last start ≤ it.
		for i < len(starts) && starts[i] <= base {
			v = vals[i]
			i++
		}
		j := i
		for j < len(starts) && starts[j]>>16 == uint32(h) {
			j++
		}
		d.top[h] = d.node(base, 16, v, starts[i:j], vals[i:j])
		if j > i {
			v = vals[j-1]
		}
		i = j
	}
}

// node is the entry of the region of 2^width addresses from base, whose
// first address has value v and whose other intervals start at ss (all
// > base, inside the region) with values vs.
func (d *dir4) node(base uint32, width uint, v int32, ss []uint32, vs []int32) uint32 {
	if len(ss) == 0 {
		return dirLeaf | uint32(v+1)
	}
	if len(ss)+1 <= dirRunMax {
		off := len(d.runS)
		d.runS = append(append(d.runS, base), ss...)
		d.runV = append(append(d.runV, v), vs...)
		return dirRun | uint32(off)<<6 | uint32(len(ss))
	}
	// A block of 256 regions of 2^(width-8) addresses. Filled after its
	// children are built: a child's block goes after it.
	b := len(d.blk) >> 8
	d.blk = append(d.blk, make([]uint32, 256)...)
	var ents [256]uint32
	cw := width - 8
	i := 0
	for c := 0; c < 256; c++ {
		cb := base + uint32(c)<<cw
		for i < len(ss) && ss[i] <= cb {
			v = vs[i]
			i++
		}
		j := i
		for j < len(ss) && (ss[j]-base)>>cw == uint32(c) {
			j++
		}
		if cw == 0 {
			ents[c] = dirLeaf | uint32(v+1) // j == i: one address has no start inside
		} else {
			ents[c] = d.node(cb, cw, v, ss[i:j], vs[i:j])
		}
		if j > i {
			v = vs[j-1]
		}
		i = j
	}
	copy(d.blk[b<<8:], ents[:])
	return dirBlock | uint32(b)
}

// bytes is the table's memory.
func (d *dir4) bytes() int {
	if d.top == nil {
		return 0
	}
	return 4 * (len(d.top) + len(d.blk) + len(d.runS) + len(d.runV))
}
