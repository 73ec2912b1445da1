package bench

// pipestack's half of the TCP benchmarks (tcp_bulk_scenario_test.go): two
// stacks from pipeline files on piped link.channel endpoints, the
// connections from modules/tcp (tcp.Listen, tcp.Dialer) used as net.Conn.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline"
)

const pipestackTCPHost = `
name: %[1]s
modules: [network.ipv4, transport.tcp]
links:
  - {name: l, module: link.channel, framing: ip, mtu: %[2]d, queue: %[3]d, offload: false, addresses: [%[4]s/24]}
`

func newPipestackTCPHost(tb testing.TB, name string, addr [4]byte, mtu int) *pipeline.Stack {
	text := fmt.Sprintf(pipestackTCPHost, name, mtu, tcpQueue, netip.AddrFrom4(addr))
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

func newPipestackTCPPair(tb testing.TB, mtu int) tcpPair {
	server := newPipestackTCPHost(tb, "tcp-server", echoServerIP, mtu)
	client := newPipestackTCPHost(tb, "tcp-client", echoClientIP, mtu)
	ls, _ := server.Link("l")
	lc, _ := client.Link("l")
	// No offloads, as gVisor's link: every checksum computed and
	// verified in software, no TSO.
	for _, l := range []pipeline.LinkEndpoint{ls, lc} {
		if l.Capabilities()&(pipeline.CapGSO|pipeline.CapTXChecksumOffload|pipeline.CapRXChecksumOffload) != 0 {
			tb.Fatal("pipestack's bench link offloads checksums or segmentation")
		}
	}
	stop := channel.Pipe(lc.(*channel.Endpoint), ls.(*channel.Endpoint))
	tb.Cleanup(stop)
	addr := netip.AddrPortFrom(netip.AddrFrom4(echoServerIP), bulkPort)
	ln, err := tcp.Listen(server, "tcp4", addr.String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	d := &tcp.Dialer{Stack: client}
	return tcpPair{ln: ln, dial: func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp4", addr.String()) }}
}

func BenchmarkTCPBulkPipestack(b *testing.B) {
	for _, mtu := range []int{1500, 65535} {
		b.Run(fmt.Sprintf("mtu=%d", mtu), func(b *testing.B) { bulk(b, newPipestackTCPPair(b, mtu)) })
	}
	b.Run("mtu=65535-writes=32KiB", func(b *testing.B) { bulkWrites32K(b, newPipestackTCPPair(b, 65535)) })
}

func BenchmarkTCPConnectPipestack(b *testing.B) {
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("dialers=%d", n), func(b *testing.B) { runConnect(b, newPipestackTCPPair(b, 1500), n) })
	}
}

func BenchmarkTCPIdlePipestack(b *testing.B) { runIdle(b, newPipestackTCPPair(b, 1500)) }
