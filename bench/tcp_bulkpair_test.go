package bench

// The TCP bulk ratio measured in one run (issue 14; bench/README.md, "TCP
// benchmarks"). BenchmarkTCPBulk{Pipestack,GVisor} measure each stack in
// a case of its own, seconds apart: on this shared 2-core machine other
// processes' memory traffic comes in bursts of 15–60 ms (bench/README.md,
// "Sets"), and the ratio of two such cases swung 1.3–3.3× from run to run.
// BenchmarkTCPBulkPair builds an established pair of each stack in one
// process and has them transfer in turn, a few MiB per turn, so that a
// burst hits both sides of a round alike and the same-round ratio cancels
// it; a control case pairs two pairs of the same stack (its ratio is the
// method's own error: 1 when nothing else differs).
//
// Each turn is timed by the wall clock and by the process's CPU clock:
// TCP runs on several goroutines (the writer, the reader, each link's
// movers, the stacks' timers and workers), on several threads, so the
// calling thread's clock would miss most of it. The process clock counts
// the idle pair too, so the benchmark measures what an idle pair costs
// (idle-cpu-%) and what a turn leaves behind when it ends (tail-cpu-%).

import (
	"flag"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

var tcpPairMiB = flag.Int("tcppair.mib", 4, "BenchmarkTCPBulkPair: MiB each side transfers per turn")

const (
	// tcpPairTail is how long each turn's side is left to finish (the
	// last ACKs, window updates) after the reader has the turn's last
	// byte and before the next side starts: its CPU is the turn's.
	tcpPairTail = time.Millisecond
	// tcpPairIdle is how long both pairs sit idle while the process's CPU
	// time is read, once per sub-benchmark call.
	tcpPairIdle = 200 * time.Millisecond
	// tcpPairWarm is how many turns each side runs before the timed
	// rounds (the windows, gVisor's receive buffer moderation grown);
	// the first tcpPairChecked of them check every byte read.
	tcpPairWarm    = 8
	tcpPairChecked = 2
)

// bulkSide is one established connection of a pair with a reader that
// reads and discards, one request at a time.
type bulkSide struct {
	cli  net.Conn
	req  chan bulkReq
	done chan error
}

type bulkReq struct {
	n     int64
	check bool // compare every byte with the writer's pattern
}

func newBulkSide(tb testing.TB, p tcpPair) *bulkSide {
	cli, srv := establish(tb, p)
	s := &bulkSide{cli: cli, req: make(chan bulkReq), done: make(chan error, 1)}
	go func() {
		buf := make([]byte, bulkChunk)
		var off int64 // in the stream: the pattern repeats every bulkChunk
		for r := range s.req {
			var err error
			for left := r.n; left > 0 && err == nil; {
				var k int
				k, err = srv.Read(buf[:min(left, bulkChunk)])
				if r.check {
					for j, c := range buf[:k] {
						if want := payloadByte(int((off + int64(j)) % bulkChunk)); c != want {
							err = fmt.Errorf("byte %d of the stream is %#x, want %#x", off+int64(j), c, want)
							break
						}
					}
				}
				left -= int64(k)
				off += int64(k)
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			s.done <- err
		}
	}()
	tb.Cleanup(func() { close(s.req) }) // before the connections close
	return s
}

// turn writes n bytes (a multiple of bulkChunk) of chunk's pattern and
// returns once the reader has read them all.
func (s *bulkSide) turn(n int64, chunk []byte, check bool) error {
	s.req <- bulkReq{n, check}
	var err error
	for w := int64(0); w < n && err == nil; w += bulkChunk {
		_, err = s.cli.Write(chunk)
	}
	if rerr := <-s.done; err == nil {
		err = rerr
	}
	return err
}

func bulkPattern() []byte {
	chunk := make([]byte, bulkChunk)
	for i := range chunk {
		chunk[i] = payloadByte(i)
	}
	return chunk
}

// BenchmarkTCPBulkPair: per MTU (1500, 65,535), four established pairs in
// one process — two of pipestack, two of gVisor, built once — and three
// cases of two sides A and B: pipestack against gVisor, and the controls
// pipestack against pipestack and gVisor against gVisor. One op is one
// round: A transfers -tcppair.mib MiB (4) from client to server, then B
// (B first every other round). Metrics: each side's MB/s (the wall clock
// from the turn's first Write to its last byte read) and CPU ns per 64
// KiB (the process's CPU time from the turn's start to tcpPairTail after
// its end), medians over rounds; A/B-MB/s, the median over rounds of the
// same-round throughput ratio, and B/A-cpu, of the same-round CPU ratio
// (both above 1 where A is the better); idle-cpu-%, the process's CPU
// time while all four pairs sit established and idle (in % of one CPU,
// measured once per call over tcpPairIdle), and tail-cpu-%, the CPU time
// of the tails against the turns' (both must stay near 0 for a side's
// figures to be its own). ns/op is the wall time of a round.
func BenchmarkTCPBulkPair(b *testing.B) {
	for _, mtu := range []int{65535, 1500} {
		b.Run(fmt.Sprintf("mtu=%d", mtu), func(b *testing.B) {
			pairs := map[string][2]*bulkSide{
				"pipestack": {newBulkSide(b, newPipestackTCPPair(b, mtu)), newBulkSide(b, newPipestackTCPPair(b, mtu))},
				"gvisor":    {newBulkSide(b, newGVisorTCPPair(b, mtu)), newBulkSide(b, newGVisorTCPPair(b, mtu))},
			}
			for _, c := range [][2]string{{"pipestack", "gvisor"}, {"pipestack", "pipestack"}, {"gvisor", "gvisor"}} {
				a, bb := pairs[c[0]][0], pairs[c[1]][0]
				if c[0] == c[1] {
					bb = pairs[c[1]][1]
				}
				b.Run("pair="+c[0]+"-"+c[1], func(b *testing.B) { runBulkPair(b, [2]*bulkSide{a, bb}) })
			}
		})
	}
}

func runBulkPair(b *testing.B, sides [2]*bulkSide) {
	if processCPU() == 0 {
		b.Fatal("no process CPU clock here: the pair's CPU ratio cannot be measured")
	}
	n := int64(*tcpPairMiB) << 20 / bulkChunk * bulkChunk
	if n <= 0 {
		b.Fatalf("-tcppair.mib %d: no bytes to transfer", *tcpPairMiB)
	}
	chunk := bulkPattern()
	for i := range tcpPairWarm {
		for _, s := range sides {
			if err := s.turn(n, chunk, i < tcpPairChecked); err != nil {
				b.Fatal(err)
			}
		}
	}
	time.Sleep(20 * time.Millisecond) // the warm-up's tail out
	idle := idleCPU()

	var wall, cpu [2][]float64 // [side][round]: ns per turn
	var tail, turns time.Duration
	b.SetBytes(2 * n)
	b.ReportAllocs()
	b.ResetTimer()
	for r := range b.N {
		for k := range sides {
			j := k
			if r%2 == 1 {
				j = 1 - k
			}
			start, begun := processCPU(), time.Now()
			if err := sides[j].turn(n, chunk, false); err != nil {
				b.Fatal(err)
			}
			w := time.Since(begun)
			ended := processCPU()
			time.Sleep(tcpPairTail)
			end := processCPU()
			wall[j] = append(wall[j], float64(w))
			cpu[j] = append(cpu[j], float64(end-start))
			tail += end - ended
			turns += end - start
		}
	}
	b.StopTimer()
	chunks := float64(n / bulkChunk)
	mbps := func(ns float64) float64 { return float64(n) / ns * 1e3 } // bytes/ns → MB/s
	for j, name := range []string{"A", "B"} {
		b.ReportMetric(mbps(median(wall[j])), name+"-MB/s")
		b.ReportMetric(median(cpu[j])/chunks, name+"-cpu-ns/64KiB")
	}
	div := func(x, y float64) float64 { return x / y }
	b.ReportMetric(median(perRound(wall[1], wall[0], div)), "A/B-MB/s")
	b.ReportMetric(median(perRound(cpu[1], cpu[0], div)), "B/A-cpu")
	b.ReportMetric(100*idle, "idle-cpu-%")
	b.ReportMetric(100*float64(tail)/float64(turns), "tail-cpu-%")
}

// idleCPU is the process's CPU time over tcpPairIdle of sleep, in CPUs.
func idleCPU() float64 {
	c0, t0 := processCPU(), time.Now()
	time.Sleep(tcpPairIdle)
	return float64(processCPU()-c0) / float64(time.Since(t0))
}

// TestTCPBulkPair runs the paired benchmark's turns on every pair the
// benchmark builds, each byte checked, and checks what its idle-cpu-%
// relies on: pairs established and idle cost (almost) no CPU.
func TestTCPBulkPair(t *testing.T) {
	for _, mtu := range []int{1500, 65535} {
		t.Run(fmt.Sprintf("mtu=%d", mtu), func(t *testing.T) {
			sides := []*bulkSide{
				newBulkSide(t, newPipestackTCPPair(t, mtu)),
				newBulkSide(t, newGVisorTCPPair(t, mtu)),
			}
			chunk := bulkPattern()
			for range 3 {
				for _, s := range sides {
					if err := s.turn(1<<20, chunk, true); err != nil {
						t.Fatal(err)
					}
				}
			}
			if processCPU() == 0 || raceEnabled {
				t.Log("idle pairs' CPU not checked: no process CPU clock, or the race detector's threads")
				return
			}
			time.Sleep(20 * time.Millisecond)
			if idle := idleCPU(); idle > 0.05 {
				t.Errorf("two established idle pairs used %.1f %% of a CPU", 100*idle)
			}
		})
	}
}
