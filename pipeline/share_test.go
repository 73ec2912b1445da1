package pipeline

import (
	"bytes"
	"sync"
	"testing"
)

// TestShare: a handle made by Share reads the same bytes, pushes its own
// header in front of them without moving the other handle, and the
// buffer goes back to the pool once, with the last handle, whichever
// handle is released first; a Compact of a shared handle leaves the
// other intact.
func TestShare(t *testing.T) {
	for _, order := range []string{"root first", "view first", "batch"} {
		t.Run(order, func(t *testing.T) {
			pl := NewPool(64)
			root := pl.Get(LargeDataSize - 512)
			data, _ := root.Append(60000)
			for i := range data {
				data[i] = byte(i * 7)
			}
			want := bytes.Clone(data)
			if root.Shared() {
				t.Fatal("a fresh packet is shared")
			}
			v := root.Share()
			if !root.Shared() || !v.Shared() {
				t.Fatal("Shared is false after Share")
			}
			h, ok := v.Push(40)
			if !ok {
				t.Fatal("no headroom in the shared handle")
			}
			for i := range h {
				h[i] = 0xa5
			}
			if !bytes.Equal(root.Data(), want) || !bytes.Equal(v.Data()[40:], want) || v.Len() != root.Len()+40 {
				t.Fatal("the handles do not read the same bytes")
			}
			_, large0 := pl.Free()
			switch order {
			case "root first":
				root.Release()
				if _, large := pl.Free(); large != large0 {
					t.Fatal("the buffer went back to the pool while a handle holds it")
				}
				if v.Shared() {
					t.Fatal("the last handle still reports the buffer shared")
				}
				if !bytes.Equal(v.Data()[40:], want) {
					t.Fatal("the bytes changed under the remaining handle")
				}
				v.Release()
			case "view first":
				v.Release()
				if _, large := pl.Free(); large != large0 || root.Shared() {
					t.Fatal("after the shared handle's release: buffer freed or still shared")
				}
				root.Release()
			case "batch":
				ReleaseBatch([]*Packet{v, nil, root})
			}
			if _, large := pl.Free(); large != large0+1 {
				t.Fatalf("free large buffers %d, want %d", large, large0+1)
			}
			// Reused, the buffer is one unshared packet again.
			p := pl.Get(LargeDataSize - 512)
			if p.Shared() || p.root != nil {
				t.Fatal("a reused buffer is still shared")
			}
			p.Release()
		})
	}
	t.Run("compact", func(t *testing.T) {
		pl := NewPool(64)
		root := pl.Get(LargeDataSize - 512)
		d, _ := root.Append(1000)
		copy(d, "payload")
		v := root.Share()
		c := v.Compact() // a small copy; v released
		if c == v || c.Shared() || !bytes.Equal(c.Data(), root.Data()) {
			t.Fatal("Compact of a shared handle is not an unshared copy")
		}
		if root.Shared() {
			t.Fatal("root still shared after its other handle was compacted away")
		}
		c.Release()
		root.Release()
	})
}

// TestShareConcurrentRelease: the two handles released at once on two
// goroutines, many times: each buffer goes back to the pool exactly once
// (no packet twice in the free list) and no handle is lost (run with
// -race).
func TestShareConcurrentRelease(t *testing.T) {
	pl := NewPool(1 << 12)
	const rounds = 20000
	views := make(chan *Packet, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for v := range views {
			v.Release()
		}
	}()
	for i := 0; i < rounds; i++ {
		p := pl.Get(100)
		p.Append(100)
		v := p.Share()
		if i%3 == 0 {
			v2 := v.Share() // a handle of a handle: same buffer
			views <- v2
		}
		views <- v
		p.Release()
	}
	close(views)
	wg.Wait()
	pl.mu.Lock()
	defer pl.mu.Unlock()
	seen := map[*Packet]bool{}
	for _, p := range pl.small {
		if seen[p] {
			t.Fatal("a packet is twice in the free list: its buffer was released twice")
		}
		seen[p] = true
		if p.sc != nil && p.sc.n.Load() != 0 {
			t.Fatal("a free buffer still counts other handles")
		}
	}
	if got, want := uint64(len(pl.small)), pl.Allocated(); got != want {
		t.Fatalf("%d free packets of %d allocated: buffers lost", got, want)
	}
}

// TestUnshare: a handle made by Share while the sharer holds the buffer
// gets a copy of its bytes of its own (marks and metadata kept), so that
// writing them leaves the sharer's intact; the last handle alive keeps
// its buffer; every buffer goes back to the pool with its last handle;
// the sharer cannot unshare, and an unshared packet is left as it is.
func TestUnshare(t *testing.T) {
	for _, order := range []string{"root released first", "root released after"} {
		t.Run(order, func(t *testing.T) {
			pl := NewPool(64)
			root := pl.Get(LargeDataSize - 512)
			data, _ := root.Append(50000)
			for i := range data {
				data[i] = byte(i * 13)
			}
			want := bytes.Clone(data)
			v := root.Share()
			h, _ := v.Push(20)
			copy(h, bytes.Repeat([]byte{0x45}, 20))
			v.SetNetworkHeader()
			v.Mark = 7
			if root.Unshare() {
				t.Fatal("the sharer unshared while a handle of its buffer is alive")
			}
			if order == "root released first" {
				root.Release()
			}
			_, large0 := pl.Free()
			if !v.Unshare() || v.Shared() {
				t.Fatal("Unshare left the handle shared")
			}
			if order == "root released first" {
				// v was the last handle: nothing to copy, the buffer stays.
				if _, large := pl.Free(); large != large0 {
					t.Fatalf("Unshare of the last handle moved buffers: %d free, was %d", large, large0)
				}
			} else if root.Shared() {
				t.Fatal("the sharer still counts the unshared handle")
			}
			if v.Mark != 7 || len(v.NetworkHeader()) != 50020 || v.NetworkHeader()[0] != 0x45 || !bytes.Equal(v.Data()[20:], want) {
				t.Fatal("Unshare lost bytes, marks or metadata")
			}
			for i := range v.Data() {
				v.Data()[i] = 0
			}
			if order == "root released after" {
				if !bytes.Equal(root.Data(), want) {
					t.Fatal("writing the unshared handle changed the sharer's bytes")
				}
				root.Release()
			}
			_, large0 = pl.Free()
			v.Release()
			if _, large := pl.Free(); large != large0+1 {
				t.Fatalf("the last handle's release did not return its buffer: %d free, was %d", large, large0)
			}
		})
	}
	p := NewPool(4).Get(100)
	if !p.Unshare() || p.Shared() {
		t.Fatal("an unshared packet is not writable")
	}
	p.Release()
}
