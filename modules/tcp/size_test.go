package tcp

import (
	"testing"
	"unsafe"
)

// TestConnSize pins the size of conn: an idle connection is mostly this
// struct (issue 14: ≤ 4 KiB per idle connection pair, both ends, measured
// by bench's BenchmarkTCPIdlePipestack). The heap rounds an object up to
// its size class after an 8-byte header (objects over 512 bytes that hold
// pointers), so 1,400 bytes fits the 1,408-byte class; 1,401 costs 1,536
// and the pair 256 bytes more. Over the limit: put state used only in
// loss recovery, SACK or slow start behind a pointer allocated when first
// used, shrink field types, or keep the fields grouped by size (conn's
// comment) so that none adds padding.
func TestConnSize(t *testing.T) {
	const limit = 1400
	var c conn
	if n := unsafe.Sizeof(c); n > limit {
		t.Fatalf("unsafe.Sizeof(conn{}) = %d bytes, over %d (the 1,408-byte size class): every idle connection grows by %d bytes", n, limit, 1536-1408)
	}
	t.Logf("conn: %d bytes", unsafe.Sizeof(c))
}

// TestQueueEntrySizes pins the send and receive queues' entries: the
// send queue's kept checksum sum and the receive queue's own-copy flag
// sit in padding (a bulk connection holds 32 receive entries and a ring
// of send entries).
func TestQueueEntrySizes(t *testing.T) {
	if n := unsafe.Sizeof(sndEntry{}); n > 24 {
		t.Errorf("sndEntry is %d bytes, want at most 24", n)
	}
	if n := unsafe.Sizeof(rxEntry{}); n > 40 {
		t.Errorf("rxEntry is %d bytes, want at most 40", n)
	}
}
