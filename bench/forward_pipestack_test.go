package bench

import (
	"fmt"
	"runtime/debug"
	"testing"

	_ "github.com/pipestack/pipestack/modules/ipv4"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
)

// The same scenario as BenchmarkForwardGVisor, on pipestack: a stack with two
// NICs on in-memory links built from a pipeline file, IPv4 forwarding on;
// batches of 64 injected on one goroutine (each packet copied into a pooled
// buffer on injection), drained from the other NIC and checked.
const pipestackRouter = `
name: bench-router
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, framing: %[1]s, queue: %[2]d, addresses: [10.0.1.1/24]%[3]s}
  - {name: b, module: link.channel, framing: %[1]s, queue: %[2]d, addresses: [10.0.2.1/24]%[4]s}
forwarding: {ipv4: true}
routes:
  - {to: 198.18.0.0/15, via: 10.0.2.2, link: b}
`

func newPipestackRouter(tb testing.TB, eth bool, opts pipeline.Options) (*pipeline.Stack, *channel.Endpoint, *channel.Endpoint) {
	return newPipestackRouterWith(tb, eth, "", opts)
}

// newPipestackRouterWith is newPipestackRouter with extra top-level
// sections appended to the pipeline file (the filter benchmarks' filter:).
func newPipestackRouterWith(tb testing.TB, eth bool, extra string, opts pipeline.Options) (*pipeline.Stack, *channel.Endpoint, *channel.Endpoint) {
	framing, macA, macB := "ip", "", ""
	if eth {
		framing = "ethernet"
		macA = fmt.Sprintf(`, mac: "%s"`, macString(nic1MAC))
		macB = fmt.Sprintf(`, mac: "%s", neighbors: [{ip: 10.0.2.2, mac: "%s"}]`, macString(nic2MAC), macString(receiverMAC))
	}
	cfg, err := pipeline.ParseConfig("bench-router.yaml", []byte(fmt.Sprintf(pipestackRouter, framing, queueSize, macA, macB)+extra))
	if err != nil {
		tb.Fatal(err)
	}
	s := pipeline.New(opts)
	if _, err := s.Apply(cfg); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	la, _ := s.Link("a")
	lb, _ := s.Link("b")
	return s, la.(*channel.Endpoint), lb.(*channel.Endpoint)
}

func macString(m [6]byte) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

func BenchmarkForwardPipestack(b *testing.B) {
	for _, framing := range []string{"ip", "eth"} {
		for _, size := range packetSizes {
			for _, flows := range flowCounts {
				b.Run(flowName(framing, size, flows), func(b *testing.B) {
					benchForwardPipestack(b, framing == "eth", size, flows)
				})
			}
		}
	}
}

func benchForwardPipestack(b *testing.B, eth bool, size, flows int) {
	in, out, fs, check := setupForward4(b, eth, size, flows, pipeline.Options{})
	runForward(b, in, out, fs, size, check)
}

// setupForward4 builds pipestack's IPv4 router, the flows and the check of
// one forwarding scenario.
func setupForward4(tb testing.TB, eth bool, size, flows int, opts pipeline.Options) (in, out *channel.Endpoint, fs *flowSet, check func(got, want []byte)) {
	_, in, out = newPipestackRouter(tb, eth, opts)
	fs = newFlowSet(flows, func(i int) ([]byte, []byte) {
		ip := flowPacket4(size, i, flows)
		if eth {
			return ip, buildEthFrame(nic1MAC, senderMAC, ip)
		}
		return ip, ip
	})
	check = func(d, want []byte) {
		if eth {
			checkEthHeader(tb, d, receiverMAC, nic2MAC)
			d = d[ethHeaderLen:]
		}
		checkForwarded(tb, d, want)
	}
	return in, out, fs, check
}

// forwardPass returns one step of runForward: the next n ≤ batchSize
// packets of fs injected into in, drained from out, each checked against
// the IP packet it must be, released.
func forwardPass(tb testing.TB, in, out *channel.Endpoint, fs *flowSet, check func(got, want []byte)) func(n int) {
	buf := make([]*pipeline.Packet, batchSize)
	return func(n int) {
		frames, want := fs.batch(n)
		in.InjectFrames(frames)
		got := out.Read(buf)
		if got != n {
			tb.Fatalf("forwarded %d of %d packets", got, n)
		}
		for i, p := range buf[:got] {
			check(p.Data(), want[i])
		}
		pipeline.ReleaseBatch(buf[:got])
	}
}

// runForward is the measured loop of every pipestack forwarding benchmark
// (IPv4 and IPv6, one flow or many): batches of up to 64 frames, the flows
// of fs in round robin, injected into in, drained from out, every packet
// handed to check with the IP packet it must be, then released; one b.N
// iteration is one packet. A warm-up pass over every flow runs (and is
// checked) first.
func runForward(b *testing.B, in, out *channel.Endpoint, fs *flowSet, ipSize int, check func(got, want []byte)) {
	pass := forwardPass(b, in, out, fs, check)
	// Warm up (pools, queues, per-flow state) and verify outside the timer.
	for range fs.warmBatches() {
		pass(batchSize)
	}
	fs.next = 0

	b.SetBytes(int64(ipSize))
	b.ReportAllocs()
	// The setup's garbage (a filter section's 100,000-element sets) is
	// collected now, not by the collector's CPU inside the timed loop,
	// which cpu-ns/pkt counts, and given back to the OS now: after
	// runtime.GC alone the background scavenger returned 2–47 MB of it
	// during the loop of BenchmarkForwardFilterSets (madvise and TLB
	// shootdowns, up to ~25 ns/pkt in the loop's first 0.1 s).
	debug.FreeOSMemory()
	cpu0 := processCPU()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batchSize, b.N-done)
		pass(n)
		done += n
	}
	b.StopTimer()
	reportRates(b, cpu0)
}
