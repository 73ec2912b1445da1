package conntrack

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// TestConcurrentTracking: workers tracking overlapping flows (both
// directions) while the wheel expires entries, early drop evicts and -F
// flushes: no race (under -race), the count stays within the maximum and
// matches the live entries at the end.
func TestConcurrentTracking(t *testing.T) {
	r := newRig(t, 128, DefaultTCP())
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			fwd := udp("10.0.1.2", "10.0.2.2", 1, 53)
			rev := udp("10.0.2.2", "10.0.1.2", 53, 1)
			for i := 0; i < 3000; i++ {
				b := fwd
				if i%3 == 0 {
					b = rev
				}
				port := uint16(1 + (i*7+w)%300)
				if b[9] == 17 && b[12] == 10 && b[15] == 2 {
					binary.BigEndian.PutUint16(b[20:], port)
				} else {
					binary.BigEndian.PutUint16(b[22:], port)
				}
				pkt := pipeline.DefaultPool.Get(len(b))
				pkt.SetData(b)
				pkt.SetNetworkHeader()
				pkt.NetProto = pipeline.IPv4ProtocolNumber
				pc := &pipeline.PacketContext{Hook: pipeline.Prerouting, Pkt: pkt}
				if pipeline.ParseTuple(nil, pkt, pc) {
					r.tr.Track(r.clock.Now().UnixNano(), pc)
					r.tr.Confirm(pkt)
				}
				pkt.Release()
			}
		}(w)
	}
	var clk sync.WaitGroup
	clk.Add(1)
	go func() {
		defer clk.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r.clock.Advance(time.Second)
			r.table.Expire(r.clock.Now())
			if i%50 == 0 {
				r.table.Flush()
			}
			r.table.Each(func(_ Ref, e *Entry) bool { _ = Format(e, r.clock.Now()); return true })
			time.Sleep(time.Millisecond)
		}
	}()
	wg.Wait()
	close(stop)
	clk.Wait()
	if n := r.table.Count(); n < 0 || n > 128 {
		t.Fatalf("count %d", n)
	}
	live := 0
	for i := range r.table.entries {
		if r.table.entries[i].status.Load()&statusLive != 0 {
			live++
		}
	}
	if live != r.table.Count() {
		t.Fatalf("%d live entries, count %d", live, r.table.Count())
	}
}
