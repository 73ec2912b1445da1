package tcp_test

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// IPv6: two hosts on one link (static addresses, no DAD wait), a
// connection each way, data intact, the checksum over the IPv6
// pseudo-header, MSS from the MTU less 60 bytes.
func TestIPv6(t *testing.T) {
	host := func(name, addr string) string {
		return fmt.Sprintf(`
name: %s
modules: [{module: network.ipv6, router_solicitations: 0, dad: {transmits: 0}}, transport.tcp]
links:
  - {name: l, module: link.channel, framing: ip, addresses: [%s]}
`, name, addr)
	}
	a := pt.NewNode(t, "a6", host("a6", "2001:db8::1/64"), pipeline.Options{})
	b := pt.NewNode(t, "b6", host("b6", "2001:db8::2/64"), pipeline.Options{})
	pt.Connect(t, a, "l", b, "l")
	ln, err := tcp.Listen(b.Stack, "tcp6", "[2001:db8::2]:443")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.(*tcp.Conn).CloseWrite()
	}()
	var c *tcp.Conn
	pt.Eventually(t, 5*time.Second, func() bool {
		c, err = tcp.Dial(a.Stack, "tcp6", "[2001:db8::2]:443")
		return err == nil
	}, "dial: %v", err)
	defer c.Close()
	if c.RemoteAddr().String() != "[2001:db8::2]:443" {
		t.Fatal(c.RemoteAddr())
	}
	data := blob(1 << 20)
	go func() { c.Write(data); c.CloseWrite() }()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%d bytes, %v; %s", len(got), err, a.DumpCounters())
	}
	if a.Counter("tcp", "bad_checksum")+b.Counter("tcp", "bad_checksum") != 0 {
		t.Fatal("bad checksums")
	}
}

// Connections and listeners survive a reload: the same connection goes on
// carrying data after the pipeline is applied again with another setting,
// and the listener still accepts.
func TestSurvivesReload(t *testing.T) {
	tp := newTopo(t, "")
	ln, err := tcp.Listen(tp.b.Stack, "tcp4", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	c, err := tcp.Dial(tp.a.Stack, "tcp4", "10.0.2.2:7")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	echo := func(msg string) {
		t.Helper()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q: %q %v", msg, buf, err)
		}
	}
	echo("before")
	for _, n := range []*pt.Node{tp.a, tp.b} {
		cfg := hostConfig(n.Name, map[string]string{"host-a": "a", "host-b": "b"}[n.Name],
			map[string]string{"host-a": "10.0.1.2/24", "host-b": "10.0.2.2/24"}[n.Name],
			map[string]string{"host-a": "10.0.1.1", "host-b": "10.0.2.1"}[n.Name], ", delayed_ack: 20ms")
		if err := n.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	echo("after the reload")
	c2, err := tcp.Dial(tp.a.Stack, "tcp4", "10.0.2.2:7")
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
}

// The segment path takes any bytes: a fuzzed TCP header and payload, to a
// listener and to an established connection, never panics (the harness
// checks the stack's own answers are well formed).
func FuzzSegment(f *testing.F) {
	f.Add(uint16(40000), uint16(80), uint32(1000), uint32(0), uint8(syn), uint16(1000), synOpts(1, 0), []byte(nil))
	f.Add(uint16(40001), uint16(80), uint32(1001), uint32(5), uint8(ack|psh), uint16(100), tsOpt(5, 5), []byte("data"))
	f.Add(uint16(40002), uint16(81), uint32(7), uint32(9), uint8(rst|ack), uint16(0), []byte{5, 10, 0, 0}, []byte{})
	f.Add(uint16(40001), uint16(80), uint32(1001), uint32(5), uint8(fin|ack), uint16(100), []byte{1, 1, 5, 34, 0, 0, 0, 0}, []byte("x"))
	f.Fuzz(func(t *testing.T, sport, dport uint16, seq, ackn uint32, flags uint8, wnd uint16, opts, data []byte) {
		if len(opts) > 40 {
			opts = opts[:40]
		}
		pp := newPeer(t, "")
		pp.accept(pp.listen(), 40001, mssOpt(1460))
		pp.send(seg{sport: sport, dport: dport, seq: seq, ack: ackn, flags: flags, wnd: wnd, opts: opts, data: data})
		pp.read()
		// A raw mangled frame too: the data offset taken from the input.
		fr := pp.frame(seg{sport: sport, dport: 80, seq: seq, flags: flags, data: data})
		if len(data) > 0 {
			fr[wire.IPv4MinimumSize+12] = data[0]
		}
		pp.ep.InjectFrames([][]byte{fr})
		pp.read()
		pp.clock.Advance(time.Second)
		pp.read()
	})
}

// congestion_control picks a tcp.cc module; a bad one is refused at its
// line with the modules there are.
func TestCongestionControlConfig(t *testing.T) {
	tp := newTopo(t, ", congestion_control: {module: tcp.cc.cubic}")
	ln, err := tcp.Listen(tp.b.Stack, "tcp4", ":9")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	c, err := tcp.Dial(tp.a.Stack, "tcp4", "10.0.2.2:9")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(blob(4 << 20)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	cfg, err := pipeline.ParseConfig("bad.yaml", []byte(hostConfig("x", "a", "10.0.1.2/24", "10.0.1.1", ", congestion_control: vegas")))
	if err == nil {
		err = pipeline.Check(cfg)
	}
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:5:") || !strings.Contains(err.Error(), `unknown module "tcp.cc.vegas"`) ||
		!strings.Contains(err.Error(), "tcp.cc.cubic") {
		t.Fatalf("error %v", err)
	}
}
