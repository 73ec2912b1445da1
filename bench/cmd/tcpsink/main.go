//go:build linux

// Command tcpsink measures one TCP stream between the Linux kernel and a
// userspace stack over a TUN device: pipestack (link.tun with its
// virtio-net offloads: GRO super-packets taken whole, TSO super-packets
// sent) or gVisor's netstack (fdbased on the same kind of TUN device;
// fdbased cannot take the virtio-net header, so the kernel segments and
// checksums for it and gVisor sends MTU-sized segments). The stack's end
// listens; the same binary with -send or -recv is the kernel's end, run
// inside the device's namespace (bench/tcptun.sh drives both).
//
//	tcpsink -stack pipestack -dev ps-tt0@ps-tt -addr 10.233.0.2/24   # prints "ready"
//	ip netns exec ps-tt tcpsink -send 10.233.0.2:5201 -t 5s          # kernel → stack
//
//	tcpsink -stack gvisor -dev ps-tt0@ps-tt -serve send -t 5s         # stack → kernel
//	ip netns exec ps-tt tcpsink -recv 10.233.0.2:5201
//
// With -serve recv (the default) the stack accepts connections on -port,
// reads and discards, and prints for each, when its sender closes:
// "received N bytes in D: X MB/s", from its first byte to the EOF. With
// -serve send it writes to each connection for -t, then closes its side;
// the kernel's end (-recv) reads and discards and prints the same line.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pipestack/pipestack/bench/internal/labnet"
	_ "github.com/pipestack/pipestack/modules/ipv4"
	_ "github.com/pipestack/pipestack/modules/link/tun"
	ptcp "github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	gtcp "gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

func main() {
	which := flag.String("stack", "pipestack", "pipestack or gvisor")
	dev := flag.String("dev", "", "the TUN device as DEV@NETNS (gvisor: an existing multi_queue device)")
	addr := flag.String("addr", "10.233.0.2/24", "the stack's address")
	port := flag.Int("port", 5201, "the port to listen on")
	queues := flag.Int("queues", 1, "TUN queues")
	offload := flag.Bool("offload", true, "pipestack: virtio-net offloads")
	send := flag.String("send", "", "kernel sender: dial this address with the kernel's TCP and send")
	recv := flag.String("recv", "", "kernel receiver: dial this address with the kernel's TCP and read until EOF")
	mode := flag.String("serve", "recv", "the stack's end: recv (read and discard) or send (write for -t)")
	dur := flag.Duration("t", 5*time.Second, "how long the sending end sends")
	flag.Parse()
	if *send != "" {
		if err := sender(*send, *dur); err != nil {
			fatalf("%v", err)
		}
		return
	}
	if *recv != "" {
		c, err := net.Dial("tcp", *recv)
		if err != nil {
			fatalf("%v", err)
		}
		if err := receive(c); err != nil {
			fatalf("%v", err)
		}
		return
	}
	if *mode != "recv" && *mode != "send" {
		fatalf("-serve %q: recv or send", *mode)
	}
	pfx, err := netip.ParsePrefix(*addr)
	if err != nil || *dev == "" {
		fatalf("usage: tcpsink -stack pipestack|gvisor -dev DEV@NETNS [-addr P -port N] | -send ADDR:PORT [-t D]")
	}
	var ln net.Listener
	switch *which {
	case "pipestack":
		ln, err = pipestack(*dev, pfx, *port, *queues, *offload)
	case "gvisor":
		ln, err = gvisor(*dev, pfx, *port, *queues)
	default:
		err = fmt.Errorf("-stack %q: pipestack or gvisor", *which)
	}
	if err != nil {
		fatalf("%v", err)
	}
	go serve(ln, *mode == "send", *dur)
	fmt.Println("ready")
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	<-sigc
}

func serve(ln net.Listener, send bool, d time.Duration) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			var err error
			if send {
				err = sendFor(c, d)
			} else {
				err = receive(c)
			}
			if err != nil {
				fmt.Println(err)
			}
		}()
	}
}

// receive reads c to the EOF, prints the rate from the first byte to the
// EOF, and closes c.
func receive(c net.Conn) error {
	defer c.Close()
	buf := make([]byte, 256<<10)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("first read: %v", err)
	}
	start := time.Now()
	m, err := io.CopyBuffer(io.Discard, c, buf)
	total := int64(n) + m
	d := time.Since(start)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("error after %d bytes: %v", total, err)
	}
	fmt.Printf("received %d bytes in %v: %.1f MB/s\n", total, d.Round(time.Millisecond), float64(total)/d.Seconds()/1e6)
	return nil
}

// sendFor writes to c for d, closes its sending side, waits for the
// receiver to close, and closes c.
func sendFor(c net.Conn, d time.Duration) error {
	defer c.Close()
	buf := make([]byte, 128<<10)
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if _, err := c.Write(buf); err != nil {
			return err
		}
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return err
		}
	}
	io.Copy(io.Discard, c) // until the receiver closes
	return nil
}

func sender(addr string, d time.Duration) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	return sendFor(c, d)
}

func pipestack(spec string, pfx netip.Prefix, port, queues int, offload bool) (net.Listener, error) {
	dev, ns := labnet.SplitSpec(spec)
	netns := ""
	if ns != "" {
		netns = fmt.Sprintf(", netns: %q", ns)
	}
	cfg, err := pipeline.ParseConfig("tcpsink.yaml", []byte(fmt.Sprintf(`
name: tcpsink
modules: [network.ipv4, transport.tcp]
links:
  - {name: t, module: link.tun, device: %q%s, queues: %d, offload: %v, mtu: 1500, addresses: [%s]}
`, dev, netns, queues, offload, pfx)))
	if err != nil {
		return nil, err
	}
	s := pipeline.New(pipeline.Options{})
	if _, err := s.Apply(cfg); err != nil {
		return nil, err
	}
	return ptcp.Listen(s, "tcp4", netip.AddrPortFrom(pfx.Addr(), uint16(port)).String())
}

// gvisor is gVisor's netstack on fdbased over the TUN device, configured
// as its users do (SACK, receive buffer moderation), as in the in-memory
// benchmarks.
func gvisor(spec string, pfx netip.Prefix, port, queues int) (net.Listener, error) {
	dev, ns := labnet.SplitSpec(spec)
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{gtcp.NewProtocol},
	})
	sack := tcpip.TCPSACKEnabled(true)
	s.SetTransportProtocolOption(gtcp.ProtocolNumber, &sack)
	mod := tcpip.TCPModerateReceiveBufferOption(true)
	s.SetTransportProtocolOption(gtcp.ProtocolNumber, &mod)
	var fds []int
	err := labnet.InNetns(ns, func() error {
		for range queues {
			fd, err := labnet.AttachTUN(dev, unix.IFF_TUN|unix.IFF_NO_PI|unix.IFF_MULTI_QUEUE)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
		}
		return labnet.SetUp(dev)
	})
	if err != nil {
		return nil, err
	}
	ep, err := fdbased.New(&fdbased.Options{FDs: fds, MTU: 1500, PacketDispatchMode: fdbased.Readv})
	if err != nil {
		return nil, fmt.Errorf("fdbased: %v", err)
	}
	if err := s.CreateNIC(1, ep); err != nil {
		return nil, fmt.Errorf("CreateNIC: %s", err)
	}
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{
		Address: tcpip.AddrFrom4(pfx.Addr().As4()), PrefixLen: pfx.Bits()}}
	if err := s.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
		return nil, fmt.Errorf("AddProtocolAddress: %s", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: pa.AddressWithPrefix.Subnet(), NIC: 1}})
	return gonet.ListenTCP(s, tcpip.FullAddress{NIC: 1, Addr: pa.AddressWithPrefix.Address, Port: uint16(port)}, ipv4.ProtocolNumber)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "tcpsink: "+format+"\n", args...)
	os.Exit(1)
}
