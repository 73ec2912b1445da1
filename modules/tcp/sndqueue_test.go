package tcp

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// TestSndQueueSums: the checksum sum a send-queue packet keeps (the
// segment sent as a handle of it takes its checksum from it) is the sum
// of the packet's bytes after every write (tail appends at odd lengths
// included), every ACK (discard, which may take part of a packet) and
// every seal; and peek's sum is that of the bytes it copied, from any
// offset, across packets. A wrong sum here is a segment the peer drops
// as corrupt.
func TestSndQueueSums(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	pool := pipeline.NewPool(4096)
	for _, chunk := range []int{65495, 9000, 1460, 1, 0} {
		var s sndQueue
		var model []byte // the stream from the queue's front
		src := make([]byte, 200<<10)
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		kept := 0
		for step := 0; step < 400; step++ {
			switch op := r.IntN(10); {
			case op < 4 && s.n < 1<<20:
				p := src[:r.IntN(3*max(chunk, 100))+1]
				if r.IntN(4) == 0 {
					for j := range p[:min(len(p), 64)] {
						p[j] = 0xff
					}
				}
				k := s.write(p, chunk, pool)
				model = append(model, p[:k]...)
			case op < 6 && s.n > 0:
				k := r.IntN(s.n + 1)
				s.discard(k)
				model = model[k:]
			case op < 7 && s.q != nil && s.q.cnt > 0:
				s.q.at(r.IntN(s.q.cnt)).sealed = true // sent as a handle
			}
			if s.n != len(model) {
				t.Fatalf("chunk %d: the queue holds %d bytes, want %d", chunk, s.n, len(model))
			}
			if s.q == nil {
				continue
			}
			for i := 0; i < s.q.cnt; i++ {
				e := s.q.at(i)
				if !e.sumOK {
					continue
				}
				kept++
				if w := wire.Checksum(e.pkt.Data(), 0); e.sum != w {
					t.Fatalf("chunk %d step %d: packet %d of %d (%d bytes) keeps sum %#04x, its bytes sum to %#04x",
						chunk, step, i, s.q.cnt, e.pkt.Len(), e.sum, w)
				}
			}
			if s.n == 0 {
				continue
			}
			off := r.IntN(s.n)
			p := make([]byte, r.IntN(s.n-off+10)+1)
			n, sum := s.peek(off, p, true)
			if want := min(len(p), s.n-off); n != want || !bytes.Equal(p[:n], model[off:off+n]) {
				t.Fatalf("chunk %d: peek at %d copied %d bytes (want %d) or other bytes", chunk, off, n, want)
			}
			if w := wire.Checksum(p[:n], 0); sum != w {
				t.Fatalf("chunk %d: peek of %d bytes at %d sums to %#04x, the bytes to %#04x", chunk, n, off, sum, w)
			}
		}
		if chunk > 0 && kept == 0 {
			t.Errorf("chunk %d: no packet kept a sum", chunk)
		}
		s.release()
	}
}
