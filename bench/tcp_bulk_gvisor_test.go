package bench

// gVisor's half of the TCP benchmarks (tcp_bulk_scenario_test.go): two
// gVisor stacks (ipv4 + tcp, SACK on) on link/channel endpoints joined by
// gvisorPipe, the connections from adapters/gonet (ListenTCP,
// DialContextTCP).

import (
	"context"
	"fmt"
	"net"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

func newGVisorTCPHost(tb testing.TB, addr [4]byte, mtu int) (*stack.Stack, *channel.Endpoint) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	tb.Cleanup(func() {
		s.Close()
		s.Wait()
	})
	// As the users of gVisor's netstack configure it (Tailscale,
	// wireguard-go's tun/netstack): SACK, receive buffer moderation.
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		tb.Fatalf("SACK: %s", err)
	}
	mod := tcpip.TCPModerateReceiveBufferOption(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &mod); err != nil {
		tb.Fatalf("moderate receive buffer: %s", err)
	}
	ep := channel.New(tcpQueue, uint32(mtu), "")
	// No offloads, as pipestack's link (offload: false): every checksum
	// is computed by the sender and verified by the receiver in software,
	// and no segmentation offload.
	ep.LinkEPCapabilities = 0
	ep.SupportedGSOKind = stack.GSONotSupported
	if ep.Capabilities()&(stack.CapabilityTXChecksumOffload|stack.CapabilityRXChecksumOffload) != 0 || ep.SupportedGSO() != stack.GSONotSupported {
		tb.Fatal("gVisor's bench link offloads checksums or segmentation")
	}
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

func newGVisorTCPPair(tb testing.TB, mtu int) tcpPair {
	server, es := newGVisorTCPHost(tb, echoServerIP, mtu)
	client, ec := newGVisorTCPHost(tb, echoClientIP, mtu)
	tb.Cleanup(gvisorPipe(ec, es))
	addr := tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(echoServerIP), Port: bulkPort}
	ln, err := gonet.ListenTCP(server, addr, ipv4.ProtocolNumber)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return tcpPair{ln: ln, dial: func(ctx context.Context) (net.Conn, error) {
		return gonet.DialContextTCP(ctx, client, addr, ipv4.ProtocolNumber)
	}}
}

func BenchmarkTCPBulkGVisor(b *testing.B) {
	for _, mtu := range []int{1500, 65535} {
		b.Run(fmt.Sprintf("mtu=%d", mtu), func(b *testing.B) { bulk(b, newGVisorTCPPair(b, mtu)) })
	}
	b.Run("mtu=65535-writes=32KiB", func(b *testing.B) { bulkWrites32K(b, newGVisorTCPPair(b, 65535)) })
}

func BenchmarkTCPConnectGVisor(b *testing.B) {
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("dialers=%d", n), func(b *testing.B) { runConnect(b, newGVisorTCPPair(b, 1500), n) })
	}
}

func BenchmarkTCPIdleGVisor(b *testing.B) { runIdle(b, newGVisorTCPPair(b, 1500)) }
