// Command tun2socks is a transparent proxy in the style of tun2socks: the
// TCP connections and UDP flows that a network namespace (or a host)
// sends into a TUN device are terminated by a pipestack stack, whatever
// their destination, and carried on with this process's own sockets —
// the host kernel's TCP and UDP, dialled to the original destination.
//
//	tun2socks -device ps-t2s0 -netns client     # the device inside namespace "client"
//
// The namespace then routes what it wants proxied into the device
// (`ip route add default dev ps-t2s0`). Nothing is forwarded at the IP
// level: the stack's TUN link is `transparent: true`, so every unicast
// packet on it is delivered to the stack, where tcp.Forwarder and
// udp.Forwarder hand each new connection or flow to this program with its
// original destination. A connection is accepted only once the dial to
// its destination succeeded (a refused dial resets it, one that times out
// is dropped, so the client sees what the destination did); a UDP flow
// gets a host socket connected to its destination and lives until it has
// been idle for -udp-timeout. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/pipestack/pipestack/modules/standard"
	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipeline"
)

type options struct {
	device, netns string
	mtu           int
	offload       bool
	dialTimeout   time.Duration
	udpTimeout    time.Duration
	maxInFlight   int
	verbose       bool
}

func main() {
	var o options
	flag.StringVar(&o.device, "device", "ps-t2s0", "TUN device (created if missing)")
	flag.StringVar(&o.netns, "netns", "", "network namespace of the device (a name under /run/netns or a path); default: this process's")
	flag.IntVar(&o.mtu, "mtu", 1500, "the device's MTU")
	flag.BoolVar(&o.offload, "offload", true, "virtio-net header offloads (TSO/GRO super-packets) on the device")
	flag.DurationVar(&o.dialTimeout, "dial-timeout", 10*time.Second, "how long a TCP dial to the original destination may take")
	flag.DurationVar(&o.udpTimeout, "udp-timeout", time.Minute, "a UDP flow idle this long is closed")
	flag.IntVar(&o.maxInFlight, "max-in-flight", 1024, "connection requests (and UDP flows) waiting for their dial")
	flag.BoolVar(&o.verbose, "v", false, "log every connection and flow")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "tun2socks:", err)
		os.Exit(1)
	}
}

// pipelineFile is the stack: one transparent TUN link with no address of
// its own, every destination routed back into it.
func pipelineFile(o options) string {
	netns := ""
	if o.netns != "" {
		netns = fmt.Sprintf(", netns: %q", o.netns)
	}
	return fmt.Sprintf(`
name: tun2socks
modules: [network.ipv4, network.ipv6, transport.tcp, transport.udp]
links:
  - {name: tun, module: link.tun, device: %q%s, mtu: %d, offload: %v, transparent: true}
routes:
  - {to: default, link: tun}
`, o.device, netns, o.mtu, o.offload)
}

func run(ctx context.Context, o options) error {
	cfg, err := pipeline.ParseConfig("tun2socks.yaml", []byte(pipelineFile(o)))
	if err != nil {
		return err
	}
	s := pipeline.New(pipeline.Options{})
	if _, err := s.Apply(cfg); err != nil {
		s.Close()
		return err
	}
	tf, err := tcp.NewForwarder(s, tcp.ForwarderConfig{MaxInFlight: o.maxInFlight})
	if err != nil {
		s.Close()
		return err
	}
	uf, err := udp.NewForwarder(s, udp.ForwarderConfig{MaxInFlight: o.maxInFlight})
	if err != nil {
		s.Close()
		return err
	}
	p := &proxy{o: o}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.serveTCP(ctx, tf) }()
	go func() { defer wg.Done(); p.serveUDP(ctx, uf) }()
	log.Printf("tun2socks: proxying what arrives on %s (netns %q) — ready", o.device, o.netns)
	<-ctx.Done()
	tf.Close()
	uf.Close()
	wg.Wait()
	// Closing the stack ends every connection and flow on its side; the
	// copies then close the host sockets.
	s.Close()
	p.conns.Wait()
	return nil
}

type proxy struct {
	o     options
	conns sync.WaitGroup
}

func (p *proxy) logf(format string, args ...any) {
	if p.o.verbose {
		log.Printf(format, args...)
	}
}

// serveTCP answers the forwarder's requests, each on a goroutine of its
// own from the dial on (the forwarder holds the SYNs until then).
func (p *proxy) serveTCP(ctx context.Context, f *tcp.Forwarder) {
	for {
		r, err := f.Next(ctx)
		if err != nil {
			return
		}
		p.conns.Add(1)
		go func() {
			defer p.conns.Done()
			p.handleTCP(ctx, r)
		}()
	}
}

func (p *proxy) handleTCP(ctx context.Context, r *tcp.ForwarderRequest) {
	dst := r.LocalAddr()
	d := net.Dialer{Timeout: p.o.dialTimeout}
	up, err := d.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		p.logf("tcp %v → %v: %v", r.RemoteAddr(), dst, err)
		if errors.Is(err, syscall.ECONNREFUSED) {
			r.Reject() // the destination refused: so does the proxy
		} else {
			r.Drop() // unreachable or silent: the client times out as it would
		}
		return
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	down, err := r.Accept(actx)
	cancel()
	if err != nil {
		p.logf("tcp %v → %v: accept: %v", r.RemoteAddr(), dst, err)
		up.Close()
		return
	}
	p.logf("tcp %v → %v: proxied", r.RemoteAddr(), dst)
	splice(down, up.(*net.TCPConn))
}

// splice copies both ways until both sides have closed, passing half
// closes on (CloseWrite).
func splice(down *tcp.Conn, up *net.TCPConn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if _, err := io.Copy(up, down); err != nil {
			up.SetLinger(0) // a reset on one side resets the other
			up.Close()
			return
		}
		up.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		if _, err := io.Copy(down, up); err != nil {
			down.SetLinger(0)
			down.Close()
			return
		}
		down.CloseWrite()
	}()
	wg.Wait()
	down.Close()
	up.Close()
}

// serveUDP gives each new flow a host socket connected to its original
// destination.
func (p *proxy) serveUDP(ctx context.Context, f *udp.Forwarder) {
	for {
		r, err := f.Next(ctx)
		if err != nil {
			return
		}
		p.conns.Add(1)
		go func() {
			defer p.conns.Done()
			p.handleUDP(r)
		}()
	}
}

func (p *proxy) handleUDP(r *udp.ForwarderRequest) {
	dst := r.LocalAddr()
	up, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		p.logf("udp %v → %v: %v", r.RemoteAddr(), dst, err)
		r.Reject()
		return
	}
	down, err := r.Accept()
	if err != nil {
		up.Close()
		return
	}
	p.logf("udp %v → %v: flow", r.RemoteAddr(), dst)
	var once sync.Once
	closeBoth := func() { once.Do(func() { down.Close(); up.Close() }) }
	// The flow is idle when neither side sent for udpTimeout.
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(2)
	copyUDP := func(dst, src net.Conn) {
		defer wg.Done()
		defer closeBoth()
		buf := make([]byte, 65535)
		for {
			src.SetReadDeadline(time.Unix(0, last.Load()).Add(p.o.udpTimeout))
			n, err := src.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					if time.Since(time.Unix(0, last.Load())) < p.o.udpTimeout {
						continue // the other side was active
					}
					return // idle
				}
				if errors.Is(err, syscall.ECONNREFUSED) {
					continue // an ICMP error about an earlier datagram
				}
				return
			}
			last.Store(time.Now().UnixNano())
			if _, err := dst.Write(buf[:n]); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
				return
			}
		}
	}
	go copyUDP(up, down)
	go copyUDP(down, up)
	wg.Wait()
	p.logf("udp %v → %v: closed", r.RemoteAddr(), dst)
}
