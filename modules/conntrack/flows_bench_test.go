package conntrack

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// BenchmarkTrackFlows is the table's part of a tracked packet, as the
// Prerouting hook runs it (the batch pass, then Track per packet), with
// 10 k and 100 k live UDP flows in round robin, in batches of 64: ns/op
// and cpu-ns/pkt (the process's CPU time) are per packet. The packets are rewritten in 64 pooled buffers per batch
// and their tuples parsed, as a hook would (that share is in the figure
// too); bench/ has the whole router beside gVisor's.
func BenchmarkTrackFlows(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("%dflows", n), func(b *testing.B) {
			clock := pipeline.NewManualClock(time.Unix(1_000_000, 0))
			t := NewTable(1<<18, 2<<18, clock, (&pipeline.Context{}).Counters("conntrack")) // the module's default buckets
			b.Cleanup(func() { t.Close() })
			tr := NewTracker(t, DefaultTCP(), DefaultTimeouts())
			tmpl := filtertest.Packet{Proto: filtertest.UDP, Src: "10.0.1.2", Dst: "198.18.0.1", SrcPort: 1, DstPort: 1, Payload: 18}.Bytes()
			flows := make([][]byte, n)
			for i := range flows {
				p := append([]byte(nil), tmpl...)
				binary.BigEndian.PutUint32(p[12:], 0x0a000102+uint32(i%250))
				binary.BigEndian.PutUint32(p[16:], 0xc6120001+uint32(i))
				binary.BigEndian.PutUint16(p[20:], uint16(1024+i%50000))
				binary.BigEndian.PutUint16(p[22:], uint16(2000+i/50000))
				flows[i] = p
			}
			const batch = 64
			pkts := make([]*pipeline.Packet, batch)
			pcs := make([]pipeline.PacketContext, batch)
			for j := range pkts {
				pkts[j] = pipeline.DefaultPool.Get(len(tmpl))
				b.Cleanup(pkts[j].Release)
			}
			next := 0
			now := clock.Now().UnixNano()
			pass := func(m int) {
				for j := 0; j < m; j++ {
					p := pkts[j]
					if !p.SetData(flows[next]) {
						b.Fatal("SetData")
					}
					next = (next + 1) % n
					p.SetNetworkHeader()
					p.NetProto, p.ConnTrack, p.CTInfo = pipeline.IPv4ProtocolNumber, 0, pipeline.CTNone
					pcs[j] = pipeline.PacketContext{Hook: pipeline.Prerouting, Pkt: p}
					if !pipeline.ParseTuple(nil, p, &pcs[j]) {
						b.Fatal("ParseTuple")
					}
				}
				t.prefetch(pkts[:m])
				for j := 0; j < m; j++ {
					if tr.Track(now, &pcs[j]) != pipeline.VerdictAccept || pkts[j].ConnTrack == 0 {
						b.Fatal("not tracked")
					}
				}
			}
			for range (n + batch - 1) / batch { // every flow's entry made
				pass(batch)
			}
			if t.Count() != n {
				b.Fatalf("%d entries, want %d", t.Count(), n)
			}
			next = 0
			b.ReportAllocs()
			cpu0 := pipelinetest.ProcessCPU()
			b.ResetTimer()
			for done := 0; done < b.N; {
				m := min(batch, b.N-done)
				pass(m)
				done += m
			}
			b.StopTimer()
			if cpu := pipelinetest.ProcessCPU() - cpu0; cpu0 > 0 && cpu > 0 {
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/pkt")
			}
		})
	}
}
