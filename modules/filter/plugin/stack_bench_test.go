package plugin

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// BenchmarkStackJudge judges the same question — UDP to port 53 is
// dropped, the rest accepted — three ways in one run, through a whole
// router (netfilter.conntrack, two link.channel links, the filter's forward
// chain): InProcess, the filter's own matcher (-p udp --dport 53 -j DROP);
// Plugin, a plugin target (-j PLUGIN) over gRPC on a Unix socket in this
// process (sdk.TestPair: go-plugin's transport without TLS), the 64-byte
// packet crossing whole (DataPacket), one lane, 8 messages in flight;
// Cached, the same plugin allowing a per-flow verdict cache, its 64 flows
// established (each flow's first packet judged before the timer starts).
// 64-byte IPv4/UDP packets in batches (= messages) of 64 and 256, 64 flows.
// One iteration is one packet; reported: pkts/s (forwarded and read).
//
//	go test -run '^$' -bench 'StackJudge' -benchtime 2s -count 6 ./modules/filter/plugin/
func BenchmarkStackJudge(b *testing.B) {
	for _, mode := range []string{"InProcess", "Plugin", "Cached"} {
		for _, n := range []int{64, 256} {
			b.Run(fmt.Sprintf("%s/pkts%d", mode, n), func(b *testing.B) { benchStack(b, mode, n) })
		}
	}
}

const stackBenchConfig = `
name: r
modules: [network.ipv4, netfilter.conntrack]
links:
  - {name: a, module: link.channel, framing: ip, queue: 8192, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, framing: ip, queue: 8192, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
privileges: {drop: false}
PLUGINS
filter:
  filter:
    forward:
      rules:
        - RULE
`

func benchStack(b *testing.B, mode string, n int) {
	needs := sdk.Needs{Data: sdk.DataPacket}
	if mode == "Cached" {
		needs.CacheTTLMillis = 3600_000
	}
	impl := &sdk.Plugin{Version: "bench", Needs: needs, Target: dropDNS}
	dir := b.TempDir()
	old := newLauncher
	newLauncher = func(*Section, *decl) launcher {
		return func(context.Context) (*conn, error) {
			cl, stop, err := sdk.TestPair(dir, impl, sdk.ProtocolVersion)
			if err != nil {
				return nil, err
			}
			return &conn{client: cl, close: stop}, nil
		}
	}
	defer func() { newLauncher = old }()
	cfg := stackBenchConfig
	if mode == "InProcess" {
		cfg = strings.Replace(cfg, "PLUGINS", "", 1)
		cfg = strings.Replace(cfg, "RULE", `"-p udp --dport 53 -j DROP"`, 1)
	} else {
		cfg = strings.Replace(cfg, "PLUGINS", fmt.Sprintf("plugins:\n  - {name: blk, path: /bin/true, timeout: 10s, lanes: 1, window: 8, max_batch: %d}", n), 1)
		cfg = strings.Replace(cfg, "RULE", `"-p udp -j PLUGIN --name blk"`, 1)
	}
	node := pt.NewNode(b, "r", cfg, pipeline.Options{ResumeTimeout: minResumeTimeout(10 * time.Second)})
	a, out := node.Link(b, "a"), node.Link(b, "b")
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = pt.UDP4("10.0.1.2", "10.0.2.2", uint16(1000+i%64), 80, 64, make([]byte, 36)) // 64 bytes
	}
	const window = 8 // batches in flight (the plugin's window)
	tokens := make(chan struct{}, window)
	run := func(batches int) {
		want := batches * n
		done := make(chan int)
		go func() {
			buf := make([]*pipeline.Packet, 256)
			got, credit := 0, 0
			for got < want {
				k, err := out.ReadWait(context.Background(), buf)
				if err != nil {
					break
				}
				pipeline.ReleaseBatch(buf[:k])
				got += k
				for credit += k; credit >= n; credit -= n {
					<-tokens
				}
			}
			done <- got
		}()
		for range batches {
			tokens <- struct{}{}
			a.InjectFrames(frames)
		}
		if got := <-done; got != want {
			b.Fatalf("forwarded %d of %d", got, want)
		}
	}
	run(1) // conntrack entries; Cached: every flow's verdict
	if mode == "Cached" {
		pt.Eventually(b, 5*time.Second, func() bool { return len(Plugins(node.Stack)) == 1 && Plugins(node.Stack)[0].Packets >= 64 }, "warm")
	}
	run(window)
	b.ResetTimer()
	batches := (b.N + n - 1) / n
	start, cpu := time.Now(), cpuTime()
	run(batches)
	b.StopTimer()
	reportRate(b, batches*n, start, cpu)
	if mode != "InProcess" {
		st := Plugins(node.Stack)[0]
		b.ReportMetric(float64(st.P50.Microseconds()), "rtt-p50-µs")
		b.ReportMetric(float64(st.P99.Microseconds()), "rtt-p99-µs")
		if c := node.Counter("plugin_blk", "policy_accept_packets"); c != 0 {
			b.Fatalf("%d packets got the failure policy", c)
		}
		if st := Plugins(node.Stack)[0]; mode == "Cached" && st.CacheMissCount > uint64(64+window*n) {
			b.Fatalf("cache %+v", st)
		}
	}
}
