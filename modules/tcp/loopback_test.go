package tcp_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TCP to the stack's own addresses (127.0.0.1, another 127/8 address, the
// link's, ::1) runs over the loopback NIC lo, as on Linux: the connection
// is made and carries data both ways and a half-close, its source is the
// address dialled (127.0.0.1 for the rest of 127/8), and nothing leaves
// the link. The clock is manual and never advanced: no timer is needed.
func TestLoopbackTCP(t *testing.T) {
	n := pt.NewNode(t, "host", `
name: host
modules: [network.ipv4, network.ipv6, transport.tcp]
links:
  - {name: eth0, module: link.channel, framing: ip, addresses: [10.0.2.2/24, "fd00:2::2/64"]}
routes:
  - {to: default, via: 10.0.2.1, link: eth0}
  - {to: "::/0", via: "fd00:2::1", link: eth0}
`, pipeline.Options{Clock: pt.NewManualClock(), Seed: 1})
	link := n.Link(t, "eth0")
	for _, tc := range []struct{ network, listen, dial, src string }{
		{"tcp4", "127.0.0.1:7001", "127.0.0.1:7001", "127.0.0.1"},
		{"tcp4", ":7002", "127.9.9.9:7002", "127.0.0.1"},
		{"tcp4", "10.0.2.2:7003", "10.0.2.2:7003", "10.0.2.2"},
		{"tcp6", "[::1]:7004", "[::1]:7004", "::1"},
		{"tcp6", "[::]:7005", "[fd00:2::2]:7005", "fd00:2::2"},
	} {
		t.Run(tc.dial, func(t *testing.T) {
			ln, err := tcp.Listen(n.Stack, tc.network, tc.listen)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			srv := make(chan error, 1)
			go func() {
				c, err := ln.AcceptTCP()
				if err != nil {
					srv <- err
					return
				}
				defer c.Close()
				b, err := io.ReadAll(c)
				if err == nil {
					_, err = c.Write(append([]byte("echo:"), b...))
				}
				srv <- err
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := (&tcp.Dialer{Stack: n.Stack}).DialTCP(ctx, tc.network, tc.dial)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if a := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); a != netip.MustParseAddr(tc.src) {
				t.Fatalf("local address %s, want %s", a, tc.src)
			}
			msg := make([]byte, 100_000) // more than the initial window
			for i := range msg {
				msg[i] = byte(i)
			}
			go func() {
				c.Write(msg)
				c.CloseWrite()
			}()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			back, err := io.ReadAll(c)
			if err != nil || len(back) != len(msg)+5 || string(back[:5]) != "echo:" || string(back[5:]) != string(msg) {
				t.Fatalf("%d bytes back, %v", len(back), err)
			}
			if err := <-srv; err != nil {
				t.Fatal(err)
			}
			if p := link.Pending(); p != 0 {
				t.Fatalf("%d packets on the link", p)
			}
		})
	}
}
