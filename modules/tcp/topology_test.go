package tcp_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/ipv4"
	_ "github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// The in-memory topology: host A and host B across the router of
// pipelines/inmemory-router.yaml.
//
//	host-a 10.0.1.2 ──(a)── 10.0.1.1 router 10.0.2.1 ──(b)── host-b 10.0.2.2

func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../pipelines/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func hostConfig(name, link, addr, gw, tcpOpts string) string {
	return fmt.Sprintf(`
name: %s
modules:
  - network.ipv4
  - {module: transport.tcp%s}
links:
  - {name: %s, module: link.channel, framing: ip, addresses: [%s]}
routes:
  - {to: default, via: %s, link: %s}
`, name, tcpOpts, link, addr, gw, link)
}

type topo struct {
	a, r, b *pt.Node
}

func newTopo(t testing.TB, tcpOpts string) *topo {
	t.Helper()
	a := pt.NewNode(t, "host-a", hostConfig("host-a", "a", "10.0.1.2/24", "10.0.1.1", tcpOpts), pipeline.Options{})
	r := pt.NewNode(t, "router", readFile(t, "inmemory-router.yaml"), pipeline.Options{})
	b := pt.NewNode(t, "host-b", hostConfig("host-b", "b", "10.0.2.2/24", "10.0.2.1", tcpOpts), pipeline.Options{})
	pt.Connect(t, a, "a", r, "a")
	pt.Connect(t, b, "b", r, "b")
	return &topo{a: a, r: r, b: b}
}

func TestEchoAcrossRouter(t *testing.T) {
	pt.CheckGoroutines(t)
	tp := newTopo(t, "")
	ln, err := tcp.Listen(tp.b.Stack, "tcp4", "10.0.2.2:7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := make(chan *tcp.Conn, 1)
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			srv <- c
			go func() {
				io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	c, err := tcp.Dial(tp.a.Stack, "tcp4", "10.0.2.2:7")
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>8)
	}
	go func() {
		c.Write(data)
		c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (got %d)\nclient %s\nserver %s\n%s\n%s\n%s", err, len(got), tcp.DebugState(c), tcp.DebugState(<-srv),
			tp.a.DumpCounters(), tp.r.DumpCounters(), tp.b.DumpCounters())
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echo differs: %d bytes, sha %x want %x", len(got), sha256.Sum256(got), sha256.Sum256(data))
	}
	c.Close()
	t.Log(tp.a.DumpCounters())
}
