package bench

// pipestack's half of the TCP bulk benchmark (tcp_bulk_scenario_test.go):
// two stacks from pipeline files on piped link.channel endpoints, the
// connection from modules/tcp (tcp.Listen, tcp.Dial) used as net.Conn.

import (
	"fmt"
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
  - {name: l, module: link.channel, framing: ip, mtu: %[2]d, queue: %[3]d, addresses: [%[4]s/24]}
`

func newPipestackTCPHost(tb testing.TB, name string, addr [4]byte) *pipeline.Stack {
	text := fmt.Sprintf(pipestackTCPHost, name, echoLinkMTU, queueSize, netip.AddrFrom4(addr))
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

func BenchmarkTCPBulkPipestack(b *testing.B) {
	server := newPipestackTCPHost(b, "bulk-server", echoServerIP)
	client := newPipestackTCPHost(b, "bulk-client", echoClientIP)
	ls, _ := server.Link("l")
	lc, _ := client.Link("l")
	stop := channel.Pipe(lc.(*channel.Endpoint), ls.(*channel.Endpoint))
	defer stop()
	addr := netip.AddrPortFrom(netip.AddrFrom4(echoServerIP), bulkPort)
	ln, err := tcp.Listen(server, "tcp4", addr.String())
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *tcp.Conn, 1)
	go func() {
		c, _ := ln.AcceptTCP()
		accepted <- c
	}()
	cli, err := tcp.Dial(client, "tcp4", addr.String())
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	srv := <-accepted
	defer srv.Close()
	runBulk(b, cli, srv)
}
