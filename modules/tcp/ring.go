package tcp

// ring is a byte ring buffer that grows (doubling, up to a bound) as it
// fills. n bytes from head are its contents; bytes may also be written
// beyond n (writeAt: out-of-order data) and taken in later (extend). Once
// it has grown to its working size it never allocates.
type ring struct {
	buf  []byte
	head int
	n    int
	m    *memAcct // the stack's account of ring storage (nil: none)
}

// reserve makes room for end bytes from head (contents and anything
// written beyond them), growing to at most limit. It reports whether end
// fits.
func (r *ring) reserve(end, limit int) bool {
	if end <= len(r.buf) {
		return true
	}
	if end > limit {
		return false
	}
	size := max(len(r.buf)*2, 4096)
	for size < end {
		size *= 2
	}
	size = min(size, limit)
	if !r.m.charge(size-len(r.buf), size) {
		return false
	}
	nb := make([]byte, size)
	// Copy the whole old capacity in logical order: bytes written beyond
	// n (out-of-order data) move with the contents.
	if len(r.buf) > 0 {
		k := copy(nb, r.buf[r.head:])
		copy(nb[k:], r.buf[:r.head])
	}
	r.buf, r.head = nb, 0
	return true
}

// writeAt copies p to offset off from head (off may be beyond n). The
// caller has reserved off+len(p).
func (r *ring) writeAt(off int, p []byte) {
	size := len(r.buf)
	pos := (r.head + off) % size
	k := copy(r.buf[pos:], p)
	if k < len(p) {
		copy(r.buf, p[k:])
	}
}

// extend takes k bytes written at n.. into the contents.
func (r *ring) extend(k int) { r.n += k }

// write appends p (reserved by the caller).
func (r *ring) write(p []byte) {
	r.writeAt(r.n, p)
	r.n += len(p)
}

// peek copies bytes from offset off of the contents into p, without
// consuming them, and returns how many.
func (r *ring) peek(off int, p []byte) int {
	if off >= r.n {
		return 0
	}
	want := min(len(p), r.n-off)
	size := len(r.buf)
	pos := (r.head + off) % size
	k := copy(p[:want], r.buf[pos:])
	if k < want {
		copy(p[k:want], r.buf[:want-k])
	}
	return want
}

// discard consumes k bytes of the contents. The head moves even when the
// ring empties: bytes written beyond the contents keep their place.
func (r *ring) discard(k int) {
	k = min(k, r.n)
	if k == 0 {
		return
	}
	r.head = (r.head + k) % len(r.buf)
	r.n -= k
}

// read consumes up to len(p) bytes into p.
func (r *ring) read(p []byte) int {
	k := r.peek(0, p)
	r.discard(k)
	return k
}

// release frees the storage of an empty ring (an idle connection keeps
// no buffer).
func (r *ring) release() {
	r.m.uncharge(len(r.buf))
	r.buf, r.head, r.n = nil, 0, 0
}
