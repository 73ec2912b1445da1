package pipeline

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestPoolLargeBound: a pool keeps free large buffers up to its byte
// limit and no more, whichever release path returns them.
func TestPoolLargeBound(t *testing.T) {
	const limit = 10 * (LargeDataSize + DefaultHeadroom)
	pl := NewPoolLimits(1000, limit)
	big := make([]*Packet, 25)
	pl.GetBatch(big, LargeDataSize)
	ReleaseBatch(big[:15])
	for _, p := range big[15:] {
		p.Release()
	}
	if small, large := pl.Free(); large != 10 || small != 0 {
		t.Errorf("free small %d large %d, want 0 and 10 (the byte limit)", small, large)
	}
	// The default pool: 64 MiB of free large buffers, not 65,536 of them.
	if DefaultPool.maxLarge != DefaultFreeLargeBytes/(LargeDataSize+DefaultHeadroom) || DefaultPool.maxLarge > 1100 {
		t.Errorf("DefaultPool keeps %d free large buffers", DefaultPool.maxLarge)
	}
	smalls := make([]*Packet, 1500)
	pl.GetBatch(smalls, 100)
	ReleaseBatch(smalls)
	if small, _ := pl.Free(); small != 1000 {
		t.Errorf("free small %d, want 1000", small)
	}
}

// TestPoolTrim: Trim drops the free packets that nobody took since the
// previous Trim, oldest first, and keeps the working set.
func TestPoolTrim(t *testing.T) {
	// No collection during the test: each one trims every pool too
	// (TestPoolTrimOnGC), which would race with the Trim calls counted here.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	pl := NewPool(1000)
	pkts := make([]*Packet, 100)
	pl.GetBatch(pkts, LargeDataSize)
	ReleaseBatch(pkts)
	pl.GetBatch(pkts[:20], 100)
	ReleaseBatch(pkts[:20])
	if n := pl.Trim(); n != 0 { // nothing was measured idle yet
		t.Fatalf("first Trim dropped %d", n)
	}
	for range 50 { // a working set of 10 large and 5 small
		pl.GetBatch(pkts[:10], LargeDataSize)
		ReleaseBatch(pkts[:10])
		p := pl.Get(1000)
		pl.GetBatch(pkts[:4], 1000)
		p.Release()
		ReleaseBatch(pkts[:4])
	}
	if n := pl.Trim(); n != 90+15 {
		t.Errorf("Trim dropped %d, want 105 (90 large, 15 small idle)", n)
	}
	if small, large := pl.Free(); small != 5 || large != 10 {
		t.Errorf("free small %d large %d after Trim, want 5 and 10", small, large)
	}
	a := pl.Allocated()
	pl.GetBatch(pkts[:10], LargeDataSize)
	ReleaseBatch(pkts[:10])
	pl.GetBatch(pkts[:5], 1000)
	ReleaseBatch(pkts[:5])
	if pl.Allocated() != a {
		t.Errorf("the working set was trimmed: %d allocations after", pl.Allocated()-a)
	}
	if n := pl.Trim(); n != 0 {
		t.Errorf("Trim dropped %d of the working set", n)
	}
	if pl.Trimmed() != 105 {
		t.Errorf("Trimmed %d", pl.Trimmed())
	}
}

// TestPoolTrimOnGC: collections trim every pool without being asked: a
// buffer left idle across two collections is dropped.
func TestPoolTrimOnGC(t *testing.T) {
	pl := NewPool(1000)
	pkts := make([]*Packet, 50)
	pl.GetBatch(pkts, LargeDataSize)
	ReleaseBatch(pkts)
	deadline := time.Now().Add(10 * time.Second)
	for pl.Trimmed() < 50 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(time.Millisecond) // the finalizer goroutine trims
	}
	if _, large := pl.Free(); large != 0 || pl.Trimmed() != 50 {
		t.Errorf("after collections: %d free large, %d trimmed, want 0 and 50", large, pl.Trimmed())
	}
}

// TestCompact: a small packet in a large buffer comes back in a small one
// with its bytes, header marks, position and metadata; the large one goes
// back to the pool. Packets already small, too big for a small buffer, or
// unpooled come back as they are.
func TestCompact(t *testing.T) {
	pl := NewPool(100)
	for _, tc := range []struct {
		name string
		head int // where the packet starts in its buffer
	}{{"at the headroom", DefaultHeadroom}, {"far into the buffer", 5000}} {
		p := pl.Get(LargeDataSize)
		p.head, p.tail = tc.head, tc.head
		b, _ := p.Append(1200)
		for i := range b {
			b[i] = byte(i)
		}
		p.SetLinkHeader()
		p.Pull(14)
		p.SetNetworkHeader()
		p.Pull(20)
		p.SetTransportHeader()
		p.Pull(8)
		p.InNIC, p.NetProto, p.TransProto, p.Mark, p.GSO.SegSize = 3, 0x800, 17, 7, 1000
		p.stage = 5
		data := append([]byte(nil), p.Data()...)
		nh := append([]byte(nil), p.NetworkHeader()...)
		lh := append([]byte(nil), p.LinkHeader()...)
		_, freeLarge := pl.Free()
		q := p.Compact()
		if q == p || len(q.buf) != SmallDataSize+DefaultHeadroom {
			t.Fatalf("%s: not compacted (%d-byte buffer)", tc.name, len(q.buf))
		}
		if !bytes.Equal(q.Data(), data) || !bytes.Equal(q.NetworkHeader(), nh) || !bytes.Equal(q.LinkHeader(), lh) {
			t.Errorf("%s: bytes or marks differ", tc.name)
		}
		if len(q.TransportHeader()) != 8+len(data) {
			t.Errorf("%s: transport header %d bytes", tc.name, len(q.TransportHeader()))
		}
		if q.InNIC != 3 || q.NetProto != 0x800 || q.TransProto != 17 || q.Mark != 7 || q.GSO.SegSize != 1000 || q.stage != 5 || q.pool != pl {
			t.Errorf("%s: metadata not kept: %+v", tc.name, q)
		}
		if tc.head == DefaultHeadroom && q.Headroom() != p.Headroom() {
			t.Errorf("%s: headroom %d, was %d", tc.name, q.Headroom(), p.Headroom())
		}
		if _, l := pl.Free(); l != freeLarge+1 {
			t.Errorf("%s: the large buffer was not released", tc.name)
		}
		q.Release()
	}

	s := pl.Get(100)
	if s.Compact() != s {
		t.Error("a small packet was copied")
	}
	s.Release()
	big := pl.Get(LargeDataSize)
	big.Append(SmallDataSize + DefaultHeadroom + 1)
	if big.Compact() != big {
		t.Error("a packet needing a large buffer was compacted")
	}
	big.Release()
	u := &Packet{buf: make([]byte, LargeDataSize)}
	u.reset()
	if u.Compact() != u {
		t.Error("an unpooled packet was compacted")
	}
}
