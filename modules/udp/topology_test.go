package udp_test

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/ipv4"
	_ "github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// The topology of pipelines/inmemory-*.yaml, with UDP on both hosts:
//
//	host-a 10.0.1.2 ──(a)── 10.0.1.1 router 10.0.2.1 ──(b)── host-b 10.0.2.2
//
// The router and host B are the example files themselves
// (inmemory-router.yaml, inmemory-udp-host.yaml); host A is written here so
// that it can also collect the ICMP messages delivered to it.

func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../pipelines/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hostA is host A with transport.udp and an ICMP collector.
func hostA(collector, udpOptions string) string {
	return fmt.Sprintf(`
name: host-a
modules:
  - network.ipv4
  - {module: transport.udp%s}
  - {module: transport.collect, protocol: 1, name: %q}
links:
  - {name: a, module: link.channel, framing: ip, addresses: [10.0.1.2/24]}
routes:
  - {to: default, via: 10.0.1.1, link: a}
`, udpOptions, collector)
}

type topo struct {
	a, r, b *pt.Node
	aICMP   *pt.Collector
}

// testName makes names (collectors) unique per test.
func testName(t testing.TB) string { return strings.ReplaceAll(t.Name(), "/", "_") }

func newTopo(t *testing.T) *topo {
	t.Helper()
	name := testName(t) + "-a-icmp"
	a := pt.NewNode(t, "host-a", hostA(name, ""), pipeline.Options{})
	r := pt.NewNode(t, "router", readFile(t, "inmemory-router.yaml"), pipeline.Options{})
	b := pt.NewNode(t, "host-b", readFile(t, "inmemory-udp-host.yaml"), pipeline.Options{})
	pt.Connect(t, a, "a", r, "a")
	pt.Connect(t, b, "b", r, "b")
	return &topo{a: a, r: r, b: b, aICMP: pt.Collected(name)}
}

// hostAlone is one UDP host whose link the test drives by hand.
func hostAlone(t *testing.T, udpOptions string) *pt.Node {
	t.Helper()
	cfg := fmt.Sprintf(`
name: host
modules: [network.ipv4, {module: transport.udp%s}]
links:
  - {name: eth0, module: link.channel, framing: ip, addresses: [10.0.2.2/24]}
routes:
  - {to: default, via: 10.0.2.1, link: eth0}
`, udpOptions)
	return pt.NewNode(t, "host", cfg, pipeline.Options{})
}

// readOut drains what a node's link sent.
func readOut(t *testing.T, n *pt.Node, link string) [][]byte {
	t.Helper()
	return pt.Drain(n.Link(t, link))
}

func listen(t testing.TB, n *pt.Node, address string) *udp.Conn {
	t.Helper()
	c, err := udp.ListenPacket(n.Stack, "udp4", address)
	if err != nil {
		t.Fatalf("%s: listen %s: %v", n.Name, address, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echo serves c until it is closed: every datagram goes back to its source.
func echo(c net.PacketConn) (done chan struct{}) {
	done = make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if _, err := c.WriteTo(buf[:n], from); err != nil {
				return
			}
		}
	}()
	return done
}

// stopEcho closes the server and waits for its goroutine.
func stopEcho(t testing.TB, c net.PacketConn, done chan struct{}) {
	t.Helper()
	c.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("echo server did not stop after Close")
	}
}

// payload is a deterministic payload of n bytes for datagram i.
func payload(i, n int) []byte {
	p := make([]byte, n)
	for j := range p {
		p[j] = byte(i*31 + j*7 + 1)
	}
	return p
}
