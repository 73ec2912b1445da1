package bench

// gVisor's half of the TCP bulk benchmark (tcp_bulk_scenario_test.go): two
// gVisor stacks (ipv4 + tcp) on link/channel endpoints joined by
// gvisorPipe, the connection from adapters/gonet (ListenTCP, DialTCP).

import (
	"context"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

func newGVisorTCPHost(tb testing.TB, addr [4]byte) (*stack.Stack, *channel.Endpoint) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	tb.Cleanup(func() {
		s.Close()
		s.Wait()
	})
	ep := channel.New(queueSize, echoLinkMTU, "")
	if err := s.CreateNIC(1, ep); err != nil {
		tb.Fatalf("CreateNIC: %s", err)
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(addr), PrefixLen: 24},
	}
	if err := s.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
		tb.Fatalf("AddProtocolAddress: %s", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: pa.AddressWithPrefix.Subnet(), NIC: 1}})
	return s, ep
}

func BenchmarkTCPBulkGVisor(b *testing.B) {
	server, es := newGVisorTCPHost(b, echoServerIP)
	client, ec := newGVisorTCPHost(b, echoClientIP)
	stop := gvisorPipe(ec, es)
	defer stop()
	ln, err := gonet.ListenTCP(server, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(echoServerIP), Port: bulkPort}, ipv4.ProtocolNumber)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *gonet.TCPConn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c.(*gonet.TCPConn)
	}()
	cli, err := gonet.DialContextTCP(context.Background(), client, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(echoServerIP), Port: bulkPort}, ipv4.ProtocolNumber)
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	srv := <-accepted
	if srv == nil {
		b.Fatal("accept failed")
	}
	defer srv.Close()
	runBulk(b, cli, srv)
}
