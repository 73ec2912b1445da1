package control_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipectl/control"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// pipectl sockets lists UDP and TCP sockets as ss -tuna: a listener on
// both families, a connection to the stack's own address over lo (both
// its ends, with the unread bytes in Recv-Q), an unconnected and a
// connected UDP socket.
func TestSockets(t *testing.T) {
	n := pipelinetest.NewNode(t, "h", `
name: h
modules: [network.ipv4, transport.udp, transport.tcp]
links:
  - {name: a, module: link.channel, framing: ip, addresses: [10.0.1.1/24]}
`, pipeline.Options{Clock: pipelinetest.NewManualClock(), Seed: 1})
	ln, err := tcp.Listen(n.Stack, "tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := (&tcp.Dialer{Stack: n.Stack}).DialTCP(context.Background(), "tcp4", "10.0.1.1:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	u, err := udp.ListenPacket(n.Stack, "udp4", "10.0.1.1:53")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	srv, err := control.Listen(filepath.Join(t.TempDir(), "ctl"), n.Stack, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rep, err := control.Call(srv.Path(), "sockets")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	control.FormatSockets(&out, rep.Sockets)
	port := c.LocalAddr().(interface{ String() string }).String()[len("10.0.1.1:"):]
	want := "Netid State  Recv-Q Send-Q Local Address:Port Peer Address:Port\n" +
		"udp   UNCONN 0      0      10.0.1.1:53        0.0.0.0:*\n" +
		"tcp   LISTEN 1      4096   *:80               *:*\n" +
		"tcp   ESTAB  5      0      10.0.1.1:80        10.0.1.1:" + port + "\n" +
		"tcp   ESTAB  0      0      10.0.1.1:" + port + "     10.0.1.1:80\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}
