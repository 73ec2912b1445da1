package tcp_test

import (
	"context"
	"encoding/binary"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// dnsServe answers A queries for name with addr, on a UDP socket of the
// stack, until it closes; other queries get an empty NOERROR answer.
func dnsServe(c *udp.Conn, name string, addr [4]byte) {
	buf := make([]byte, 512)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		q := buf[:n]
		if len(q) < 12 {
			continue
		}
		// The question: labels, then type and class.
		i, qname := 12, ""
		for i < len(q) && q[i] != 0 {
			l := int(q[i])
			if i+1+l > len(q) {
				break
			}
			if qname != "" {
				qname += "."
			}
			qname += string(q[i+1 : i+1+l])
			i += 1 + l
		}
		if i+5 > len(q) {
			continue
		}
		qtype := binary.BigEndian.Uint16(q[i+1:])
		end := i + 5
		resp := append([]byte(nil), q[:end]...)
		resp[2], resp[3] = 0x81, 0x80 // response, RD, RA, NOERROR
		binary.BigEndian.PutUint16(resp[6:], 0)
		binary.BigEndian.PutUint16(resp[8:], 0)
		binary.BigEndian.PutUint16(resp[10:], 0)
		if qtype == 1 && qname == name {
			binary.BigEndian.PutUint16(resp[6:], 1)
			resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
			resp = append(resp, addr[:]...)
		}
		c.WriteToUDPAddrPort(resp, from)
	}
}

// TestDialName: a Dialer with StackResolver resolves a host name through
// a DNS server reached over the stack itself (host B's, across the
// in-memory router) and connects to the address it gave.
func TestDialName(t *testing.T) {
	pt.CheckGoroutines(t)
	withUDP := func(cfg string) string {
		return strings.Replace(cfg, "  - network.ipv4\n", "  - network.ipv4\n  - transport.udp\n", 1)
	}
	a := pt.NewNode(t, "host-a", withUDP(hostConfig("host-a", "a", "10.0.1.2/24", "10.0.1.1", "")), pipeline.Options{})
	r := pt.NewNode(t, "router", readFile(t, "inmemory-router.yaml"), pipeline.Options{})
	b := pt.NewNode(t, "host-b", withUDP(hostConfig("host-b", "b", "10.0.2.2/24", "10.0.2.1", "")), pipeline.Options{})
	pt.Connect(t, a, "a", r, "a")
	pt.Connect(t, b, "b", r, "b")
	tp := &topo{a: a, r: r, b: b}
	dns, err := udp.ListenPacket(tp.b.Stack, "udp4", "10.0.2.2:53")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { dnsServe(dns, "web.pipestack.test", [4]byte{10, 0, 2, 2}); close(done) }()
	defer func() { dns.Close(); <-done }()
	ln, err := tcp.Listen(tp.b.Stack, "tcp4", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		s, err := ln.AcceptTCP()
		if err != nil {
			return
		}
		s.Write([]byte("hello"))
		s.Close()
	}()
	d := tcp.Dialer{Stack: tp.a.Stack, Resolver: tcp.StackResolver(tp.a.Stack, "10.0.2.2:53")}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp4", "web.pipestack.test:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().String(); got != "10.0.2.2:80" {
		t.Fatalf("connected to %s", got)
	}
	got, _ := io.ReadAll(c)
	if string(got) != "hello" {
		t.Fatalf("read %q", got)
	}
	if _, err := d.DialContext(ctx, "tcp4", "nowhere.pipestack.test:80"); err == nil {
		t.Fatal("dialled a name the server does not know")
	}
	if _, err := (&tcp.Dialer{Stack: tp.a.Stack}).DialContext(ctx, "tcp4", "web.pipestack.test:80"); err == nil {
		t.Fatal("a Dialer without Resolver resolved a name")
	}
}
