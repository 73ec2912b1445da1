package bench

// pipestack's half of the UDP echo benchmark (scenario in
// udp_echo_scenario_test.go): two stacks built from pipeline files, joined by
// link.channel endpoints piped together (channel.Pipe: one goroutine per
// direction), sockets from modules/udp used as net.PacketConn.

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	_ "github.com/pipestack/pipestack/modules/ipv4"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipeline"
)

const pipestackEchoHost = `
name: %[1]s
modules: [network.ipv4, transport.udp]
links:
  - {name: l, module: link.channel, framing: ip, mtu: %[2]d, queue: %[3]d, addresses: [%[4]s/24]}
`

func newPipestackEchoHost(tb testing.TB, name string, addr [4]byte) *pipeline.Stack {
	text := fmt.Sprintf(pipestackEchoHost, name, echoLinkMTU, queueSize, netip.AddrFrom4(addr))
	cfg, err := pipeline.ParseConfig(name+".yaml", []byte(text))
	if err != nil {
		tb.Fatal(err)
	}
	s := pipeline.New(pipeline.Options{})
	if _, err := s.Apply(cfg); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func BenchmarkUDPEchoPipestack(b *testing.B) {
	server := newPipestackEchoHost(b, "echo-server", echoServerIP)
	client := newPipestackEchoHost(b, "echo-client", echoClientIP)
	ls, _ := server.Link("l")
	lc, _ := client.Link("l")
	stop := channel.Pipe(lc.(*channel.Endpoint), ls.(*channel.Endpoint))
	defer stop()

	srvAddr := netip.AddrPortFrom(netip.AddrFrom4(echoServerIP), echoPort)
	srv, err := udp.ListenPacket(server, "udp4", srvAddr.String())
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); echoServe(srv) }()
	defer func() { srv.Close(); <-done }()

	cli, err := udp.ListenPacket(client, "udp4", netip.AddrFrom4(echoClientIP).String()+":0")
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	var pc net.PacketConn = cli
	runEcho(b, pc, net.UDPAddrFromAddrPort(srvAddr))
}

// BenchmarkUDPEchoPipestackAddrPort is the same echo through the
// allocation-free methods (ReadFromUDPAddrPort / WriteToUDPAddrPort) on both
// sides: what net.PacketConn's *net.UDPAddr results cost. For information;
// gVisor's gonet has no such API, so the comparison uses the benchmark above.
func BenchmarkUDPEchoPipestackAddrPort(b *testing.B) {
	server := newPipestackEchoHost(b, "echo-server", echoServerIP)
	client := newPipestackEchoHost(b, "echo-client", echoClientIP)
	ls, _ := server.Link("l")
	lc, _ := client.Link("l")
	stop := channel.Pipe(lc.(*channel.Endpoint), ls.(*channel.Endpoint))
	defer stop()

	srvAddr := netip.AddrPortFrom(netip.AddrFrom4(echoServerIP), echoPort)
	srv, err := udp.ListenPacket(server, "udp4", srvAddr.String())
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if _, err := srv.WriteToUDPAddrPort(buf[:n], from); err != nil {
				return
			}
		}
	}()
	defer func() { srv.Close(); <-done }()

	cli, err := udp.ListenPacket(client, "udp4", netip.AddrFrom4(echoClientIP).String()+":0")
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	msg := echoPayload()
	buf := make([]byte, 2048)
	once := func() {
		if _, err := cli.WriteToUDPAddrPort(msg, srvAddr); err != nil {
			b.Fatalf("write: %v", err)
		}
		n, _, err := cli.ReadFromUDPAddrPort(buf)
		if err != nil || n != len(msg) || string(buf[:n]) != string(msg) {
			b.Fatalf("echo: %d bytes, %v", n, err)
		}
	}
	for i := 0; i < 100; i++ {
		once()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		once()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "echoes/s")
}
