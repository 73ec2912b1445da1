package bench

// gVisor's half of the UDP echo benchmark (scenario in
// udp_echo_scenario_test.go): two gVisor stacks (ipv4 + udp) on link/channel
// endpoints joined by one goroutine per direction that turns each outbound
// packet into an inbound one on the other side, sockets from
// adapters/gonet (gonet.DialUDP) used as net.PacketConn.

import (
	"context"
	"net"
	"sync"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

func newGVisorEchoHost(tb testing.TB, addr [4]byte) (*stack.Stack, *channel.Endpoint) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{udp.NewProtocol},
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

// gvisorPipe moves packets both ways between two channel endpoints until
// the returned stop is called.
func gvisorPipe(a, b *channel.Endpoint) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	move := func(from, to *channel.Endpoint) {
		defer wg.Done()
		for {
			pkt := from.ReadContext(ctx)
			if pkt == nil {
				return
			}
			in := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: pkt.ToBuffer()})
			pkt.DecRef()
			to.InjectInbound(ipv4.ProtocolNumber, in)
			in.DecRef()
		}
	}
	wg.Add(2)
	go move(a, b)
	go move(b, a)
	return func() { cancel(); wg.Wait() }
}

func BenchmarkUDPEchoGVisor(b *testing.B) {
	server, es := newGVisorEchoHost(b, echoServerIP)
	client, ec := newGVisorEchoHost(b, echoClientIP)
	stop := gvisorPipe(ec, es)
	defer stop()

	srv, err := gonet.DialUDP(server, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(echoServerIP), Port: echoPort}, nil, ipv4.ProtocolNumber)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); echoServe(srv) }()
	defer func() { srv.Close(); <-done }()

	cli, err := gonet.DialUDP(client, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(echoClientIP)}, nil, ipv4.ProtocolNumber)
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	var pc net.PacketConn = cli
	runEcho(b, pc, &net.UDPAddr{IP: net.IP(echoServerIP[:]), Port: echoPort})
}
