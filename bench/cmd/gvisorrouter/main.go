//go:build linux

// Command gvisorrouter is gVisor's netstack (gvisor.dev/gvisor/pkg/tcpip)
// as the router of the lab (scripts/lab.sh), so that bench/realnet.sh
// measures the system our users would otherwise pick on the same real-link
// work as pipestack, the kernel and the bare forwarders.
//
// It builds one gVisor stack with IPv4, IPv6 (and ARP on Ethernet links)
// and ICMP, two NICs on gVisor's fdbased link endpoints, the addresses of
// pipelines/router.yaml (10.10.1.1/24 and fd00:10:1::1/64 on side A,
// 10.10.2.1/24 and fd00:10:2::1/64 on side B), a route for each of their
// prefixes to its NIC, and forwarding on for IPv4 and IPv6. Neighbors are
// resolved by gVisor itself (ARP, NDP), as network.arp and network.ipv6
// do in pipelines/router-afpacket.yaml; no static neighbor, as in
// pipestack's pipelines.
//
//	gvisorrouter -mode tun -a ps-tun-a@ps-a -b ps-tun-b@ps-b
//	gvisorrouter -mode afpacket -a ps-ra@ps-r -b ps-rb@ps-r
//
// tun: attaches -queues queues (default 2, as router.yaml) to each of the
// existing multi_queue TUN devices (`lab.sh up tun`) with IFF_TUN|IFF_NO_PI
// and sets the devices up; each queue is one FD of the fdbased endpoint
// (raw IP, readv dispatcher: a TUN descriptor is not a socket).
//
// afpacket: one AF_PACKET SOCK_RAW socket per router end of the veth
// pairs (`lab.sh up afpacket`: ps-ra and ps-rb in ps-r), bound to the
// device, PACKET_IGNORE_OUTGOING, 4 MiB buffers; the fdbased endpoint
// (Ethernet, the device's MAC) puts it in a PACKET_FANOUT group and reads
// it with recvmmsg (-dispatch recvmmsg, the default; mmap for the
// PACKET_RX_RING dispatcher, readv).
//
// Offloads: none. The fdbased endpoint skips the virtio-net header on
// receive without looking at it, so it cannot take in TSO/USO
// super-packets or partial checksums. TUN devices without the header
// (no IFF_VNET_HDR, no TUNSETOFFLOAD) get segmented, checksummed packets
// from the kernel; on veth the host ends must have transmit checksumming
// (and with it TSO) off, which bench/realnet.sh does for this mode with
// `ethtool -K DEV tx off` in ps-a and ps-b. gVisor's GSO (GSOMaxSize) would
// only apply to packets gVisor's own TCP sends.
//
// -a and -b name the devices as DEV@NETNS (NETNS a name under
// /var/run/netns, or a path). The program prints "running" once both NICs
// are up and, on SIGTERM or SIGINT, gVisor's IP counters.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/pipestack/pipestack/bench/internal/labnet"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
)

const mtu = 1500

func main() {
	mode := flag.String("mode", "tun", "tun or afpacket")
	aSpec := flag.String("a", "", "side A: DEV@NETNS")
	bSpec := flag.String("b", "", "side B: DEV@NETNS")
	aAddrs := flag.String("aaddr", "10.10.1.1/24,fd00:10:1::1/64", "side A: the router's addresses")
	bAddrs := flag.String("baddr", "10.10.2.1/24,fd00:10:2::1/64", "side B: the router's addresses")
	queues := flag.Int("queues", 2, "tun: queues (FDs) per device")
	dispatch := flag.String("dispatch", "recvmmsg", "afpacket: the fdbased receive dispatcher: recvmmsg, mmap or readv")
	processors := flag.Int("processors", 0, "fdbased ProcessorsPerChannel: goroutines handling each FD's packets (0: gVisor's default, GOMAXPROCS/FDs)")
	flag.Parse()
	if *aSpec == "" || *bSpec == "" || flag.NArg() > 0 {
		fatalf("usage: gvisorrouter -mode tun|afpacket -a DEV@NETNS -b DEV@NETNS [-aaddr P,P -baddr P,P -queues N -dispatch D]")
	}
	eth := false
	switch *mode {
	case "tun":
		if *queues < 1 {
			fatalf("-queues %d: at least 1", *queues)
		}
	case "afpacket":
		eth = true
	default:
		fatalf("-mode %q: tun or afpacket", *mode)
	}
	var dm fdbased.PacketDispatchMode
	switch *dispatch {
	case "recvmmsg":
		dm = fdbased.RecvMMsg
	case "mmap":
		dm = fdbased.PacketMMap
	case "readv":
		dm = fdbased.Readv
	default:
		fatalf("-dispatch %q: recvmmsg, mmap or readv", *dispatch)
	}

	protos := []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol}
	if eth {
		protos = append(protos, arp.NewProtocol)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   protos,
		TransportProtocols: []stack.TransportProtocolFactory{icmp.NewProtocol4, icmp.NewProtocol6},
	})

	var routes []tcpip.Route
	for i, side := range []struct{ spec, addrs string }{{*aSpec, *aAddrs}, {*bSpec, *bAddrs}} {
		id := tcpip.NICID(i + 1)
		dev, ns := labnet.SplitSpec(side.spec)
		opts := fdbased.Options{MTU: mtu, PacketDispatchMode: dm, ProcessorsPerChannel: *processors, ClosedFunc: func(err tcpip.Error) {
			fatalf("%s: endpoint closed: %s", side.spec, err)
		}}
		var err error
		if eth {
			opts.EthernetHeader = true
			opts.FDs, opts.Address, err = openPacket(dev, ns)
		} else {
			opts.PacketDispatchMode = fdbased.Readv
			opts.FDs, err = openTUN(dev, ns, *queues)
		}
		if err != nil {
			fatalf("%s: %v", side.spec, err)
		}
		ep, err := fdbased.New(&opts)
		if err != nil {
			fatalf("%s: fdbased: %v", side.spec, err)
		}
		if err := s.CreateNIC(id, ep); err != nil {
			fatalf("%s: CreateNIC: %s", side.spec, err)
		}
		for _, a := range strings.Split(side.addrs, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(a))
			if err != nil {
				fatalf("%s: address %q: %v", side.spec, a, err)
			}
			proto := ipv4.ProtocolNumber
			if p.Addr().Is6() {
				proto = ipv6.ProtocolNumber
			}
			pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddressWithPrefix{
				Address: tcpip.AddrFromSlice(p.Addr().AsSlice()), PrefixLen: p.Bits()}}
			if err := s.AddProtocolAddress(id, pa, stack.AddressProperties{}); err != nil {
				fatalf("%s: AddProtocolAddress %s: %s", side.spec, p, err)
			}
			routes = append(routes, tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: id})
		}
	}
	s.SetRouteTable(routes)
	for _, proto := range []tcpip.NetworkProtocolNumber{ipv4.ProtocolNumber, ipv6.ProtocolNumber} {
		if err := s.SetForwardingDefaultAndAllNICs(proto, true); err != nil {
			fatalf("forwarding on for protocol %#x: %s", proto, err)
		}
	}

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	fmt.Println("running")
	<-sigc
	ip := s.Stats().IP
	fw := ip.Forwarding
	fmt.Printf("ip: received %d, sent %d, delivered %d, outgoing errors %d; forwarding: errors %d, unrouteable %d, exhausted TTL %d, packet too big %d\n",
		ip.PacketsReceived.Value(), ip.PacketsSent.Value(), ip.PacketsDelivered.Value(), ip.OutgoingPacketErrors.Value(),
		fw.Errors.Value(), fw.Unrouteable.Value(), fw.ExhaustedTTL.Value(), fw.PacketTooBig.Value())
	os.Exit(0)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gvisorrouter: "+format+"\n", args...)
	os.Exit(1)
}

// openTUN attaches n queues to the existing multi_queue TUN device dev in
// netns ns, without the virtio-net header, and sets the device up.
func openTUN(dev, ns string, n int) ([]int, error) {
	var fds []int
	err := labnet.InNetns(ns, func() error {
		for range n {
			fd, err := labnet.AttachTUN(dev, unix.IFF_TUN|unix.IFF_NO_PI|unix.IFF_MULTI_QUEUE)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
		}
		return labnet.SetUp(dev)
	})
	if err != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, err
	}
	return fds, nil
}

// openPacket makes an AF_PACKET socket bound to dev in netns ns and
// returns it with the device's MAC.
func openPacket(dev, ns string) ([]int, tcpip.LinkAddress, error) {
	fd := -1
	var mac tcpip.LinkAddress
	err := labnet.InNetns(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		if len(ifi.HardwareAddr) != 6 {
			return fmt.Errorf("%s: no Ethernet address", dev)
		}
		mac = tcpip.LinkAddress(ifi.HardwareAddr)
		// Protocol 0: nothing is queued until bind names the device.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket(AF_PACKET): %w", err)
		}
		const bufSize = 4 << 20
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bufSize); err != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, bufSize)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, bufSize); err != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, bufSize)
		}
		// Its own frames would come back as input otherwise.
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
			return fmt.Errorf("PACKET_IGNORE_OUTGOING: %w", err)
		}
		const ethPAll = unix.ETH_P_ALL<<8&0xff00 | unix.ETH_P_ALL>>8 // htons
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: ethPAll, Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("bind to %s: %w", dev, err)
		}
		return nil
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, "", err
	}
	return []int{fd}, mac, nil
}
