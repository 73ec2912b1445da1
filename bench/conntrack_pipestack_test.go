package bench

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pipestack/pipestack/modules/conntrack"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// newConntrackRouter is pipestack's router with netfilter.conntrack of
// max entries (0: none).
func newConntrackRouter(tb testing.TB, max int) (*pipeline.Stack, *channel.Endpoint, *channel.Endpoint) {
	return newConntrackRouterWith(tb, max, "")
}

// masquerade is the nat table of the masqueraded runs: every flow leaves
// from the router's address on b.
const masquerade = `filter:
  nat:
    postrouting:
      rules: ["-o b -j MASQUERADE"]
`

// stateful is masquerade with a stateful FORWARD policy (the slow path
// of the flowtable runs: every packet through the filter table's rules
// and the Postrouting hooks); offloaded puts each flow in the flowtable
// at its second packet (its entry confirmed), and its later packets skip
// both (modules/conntrack/flowtable.go).
const (
	stateful = masquerade + `  filter:
    forward:
      policy: drop
      rules:
        - "-m conntrack --ctstate INVALID -j DROP"
        - "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        - "-i a -o b -j ACCEPT"
`
	offloaded = masquerade + `  filter:
    forward:
      policy: drop
      rules:
        - "-i a -o b -j FLOWOFFLOAD"
        - "-m conntrack --ctstate INVALID -j DROP"
        - "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        - "-i a -o b -j ACCEPT"
`
)

// newConntrackRouterWith is newConntrackRouter with a section appended.
func newConntrackRouterWith(tb testing.TB, max int, extra string) (*pipeline.Stack, *channel.Endpoint, *channel.Endpoint) {
	cfg := fmt.Sprintf(pipestackRouter, "ip", queueSize, "", "") + extra
	if max > 0 {
		cfg = strings.Replace(cfg, "modules: [network.ipv4]", fmt.Sprintf("modules: [network.ipv4, {module: netfilter.conntrack, max: %d}]", max), 1)
	}
	c, err := pipeline.ParseConfig("bench-conntrack.yaml", []byte(cfg))
	if err != nil {
		tb.Fatal(err)
	}
	s := pipeline.New(pipeline.Options{})
	if _, err := s.Apply(c); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	la, _ := s.Link("a")
	lb, _ := s.Link("b")
	return s, la.(*channel.Endpoint), lb.(*channel.Endpoint)
}

// BenchmarkConntrackPipestack: untracked and tracked forwarding with 10 k
// and 100 k live flows, and new flows (conntrack_scenario_test.go). The
// tracked runs report B/entry: the table's preallocated arrays per entry
// (Table.MemoryBytes; a heap delta was at the mercy of the previous
// sub-benchmark's garbage).
func BenchmarkConntrackPipestack(b *testing.B) {
	check := func(d, want []byte) { checkForwarded(b, d, want) }
	for _, flows := range conntrackFlowCounts {
		for _, mode := range []string{"untracked", "tracked", "masqueraded", "stateful", "offloaded"} {
			b.Run(conntrackName(mode, flows), func(b *testing.B) {
				max, extra, chk := 0, "", check
				if mode != "untracked" {
					max = 1 << 18
				}
				switch mode {
				case "masqueraded":
					extra = masquerade
				case "stateful":
					extra = stateful
				case "offloaded":
					extra = offloaded
				}
				if extra != "" {
					chk = func(d, want []byte) { checkMasqueraded(b, d, want) }
				}
				s, in, out := newConntrackRouterWith(b, max, extra)
				fs := conntrackFlowSet(flows)
				if mode == "offloaded" {
					offloadFlows(b, in, out, fs)
				}
				runForward(b, in, out, fs, conntrackSize, chk)
				if mode == "offloaded" { // every timed packet took the fast path
					if fast := (&pipelinetest.Node{Stack: s}).Counter("conntrack", "flow_fastpath"); fast < uint64(b.N) {
						b.Fatalf("%d of %d packets through the fast path", fast, b.N)
					}
				}
				if t := conntrack.StackTable(s); t != nil { // after runForward: ResetTimer drops reported metrics
					b.ReportMetric(float64(t.MemoryBytes())/float64(t.Max()), "B/entry")
				}
			})
		}
	}
	for _, mode := range []string{"untracked", "tracked"} {
		b.Run(conntrackName("newflows-"+mode, conntrackNewFlows), func(b *testing.B) {
			max := 0
			if mode == "tracked" {
				max = conntrackNewMax
			}
			_, in, out := newConntrackRouter(b, max)
			runForward(b, in, out, conntrackFlowSet(conntrackNewFlows), conntrackSize, check)
		})
	}
}

// offloadFlows sends every flow of fs twice, unchecked: the first packet
// makes the entry, the second (the entry confirmed) offloads it. A batch
// where some flows are offloaded already and others not yet comes out in
// another order (the fast path's packets leave first), which runForward's
// checked warm-up would refuse; flows of one batch keep their order.
func offloadFlows(tb testing.TB, in, out *channel.Endpoint, fs *flowSet) {
	buf := make([]*pipeline.Packet, batchSize)
	for sent := 0; sent < 2*fs.n; sent += batchSize {
		frames, _ := fs.batch(batchSize)
		in.InjectFrames(frames)
		if got := out.Read(buf); got != len(frames) {
			tb.Fatalf("forwarded %d of %d", got, len(frames))
		} else {
			pipeline.ReleaseBatch(buf[:got])
		}
	}
	fs.next = 0
}

// checkMasqueraded checks a masqueraded packet: the source is the
// router's address on b, the rest as sent (TTL one less; the checksums
// and the source port may differ).
func checkMasqueraded(tb testing.TB, got, want []byte) {
	if len(got) != len(want) || len(got) < 28 {
		tb.Helper()
		tb.Fatalf("forwarded packet length %d, want %d", len(got), len(want))
	}
	if [4]byte(got[12:16]) != [4]byte{10, 0, 2, 1} || string(got[16:20]) != string(want[16:20]) || got[8] != want[8]-1 ||
		string(got[22:24]) != string(want[22:24]) || string(got[28:]) != string(want[28:]) {
		tb.Helper()
		tb.Fatalf("not masqueraded as expected:\n% x\nsent\n% x", got, want)
	}
}
