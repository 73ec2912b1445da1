package bench

import (
	"fmt"
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
`

func newPipestackRouter(tb testing.TB, eth bool) (*pipeline.Stack, *channel.Endpoint, *channel.Endpoint) {
	framing, macA, macB := "ip", "", ""
	if eth {
		framing = "ethernet"
		macA = fmt.Sprintf(`, mac: "%s"`, macString(nic1MAC))
		macB = fmt.Sprintf(`, mac: "%s", neighbors: [{ip: 10.0.2.2, mac: "%s"}]`, macString(nic2MAC), macString(receiverMAC))
	}
	cfg, err := pipeline.ParseConfig("bench-router.yaml", []byte(fmt.Sprintf(pipestackRouter, framing, queueSize, macA, macB)))
	if err != nil {
		tb.Fatal(err)
	}
	s := pipeline.New(pipeline.Options{})
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
			b.Run(fmt.Sprintf("%s/%dB", framing, size), func(b *testing.B) {
				benchForwardPipestack(b, framing == "eth", size)
			})
		}
	}
}

func benchForwardPipestack(b *testing.B, eth bool, size int) {
	_, in, out := newPipestackRouter(b, eth)
	ipPkt := buildUDPPacket(size)
	frame := ipPkt
	if eth {
		frame = buildEthFrame(nic1MAC, senderMAC, ipPkt)
	}
	runForward(b, in, out, frame, size, func(d []byte) {
		if eth {
			checkEthHeader(b, d, receiverMAC, nic2MAC)
			d = d[ethHeaderLen:]
		}
		checkForwarded(b, d, ipPkt)
	})
}

// runForward is the measured loop of every pipestack forwarding benchmark
// (IPv4 and IPv6): batches of up to 64 copies of frame injected into in,
// drained from out, every packet handed to check, then released; one b.N
// iteration is one packet. A warm-up batch runs (and is checked) first.
func runForward(b *testing.B, in, out *channel.Endpoint, frame []byte, ipSize int, check func(frame []byte)) {
	frames := make([][]byte, batchSize)
	for i := range frames {
		frames[i] = frame
	}
	buf := make([]*pipeline.Packet, batchSize)
	drain := func(n int) {
		got := out.Read(buf)
		if got != n {
			b.Fatalf("forwarded %d of %d packets", got, n)
		}
		for _, p := range buf[:got] {
			check(p.Data())
		}
		pipeline.ReleaseBatch(buf[:got])
	}
	// Warm up (pools, queues) and verify once outside the timer.
	in.InjectFrames(frames)
	drain(batchSize)

	b.SetBytes(int64(ipSize))
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batchSize, b.N-done)
		in.InjectFrames(frames[:n])
		drain(n)
		done += n
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pps")
}
