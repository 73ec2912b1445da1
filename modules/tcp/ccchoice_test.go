package tcp_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pipestack/pipestack/modules/tcp"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestPerConnectionCC: a Dialer and a ListenConfig choose the algorithm
// of their connections over the stack's (cubic, the default); an unknown name
// is refused with the known ones.
func TestPerConnectionCC(t *testing.T) {
	pt.CheckGoroutines(t)
	tp := newTopo(t, "")
	ln, err := tcp.ListenConfig{CongestionControl: "newreno"}.Listen(tp.b.Stack, "tcp4", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	plain, err := tcp.Listen(tp.b.Stack, "tcp4", ":8")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	for _, tc := range []struct {
		dialer, port, client, server string
		ln                           *tcp.Listener
	}{
		{"", "7", "cubic", "newreno", ln},
		{"tcp.cc.newreno", "8", "newreno", "cubic", plain},
	} {
		d := tcp.Dialer{Stack: tp.a.Stack, CongestionControl: tc.dialer}
		c, err := d.DialTCP(context.Background(), "tcp4", "10.0.2.2:"+tc.port)
		if err != nil {
			t.Fatal(err)
		}
		s, err := tc.ln.AcceptTCP()
		if err != nil {
			t.Fatal(err)
		}
		if got := c.CongestionControlName(); got != tc.client {
			t.Errorf("dialer %q: client runs %s, want %s", tc.dialer, got, tc.client)
		}
		if got := s.CongestionControlName(); got != tc.server {
			t.Errorf("port %s: server runs %s, want %s", tc.port, got, tc.server)
		}
		c.Close()
		s.Close()
	}
	d := tcp.Dialer{Stack: tp.a.Stack, CongestionControl: "vegas"}
	if _, err := d.Dial("tcp4", "10.0.2.2:7"); err == nil || !strings.Contains(err.Error(), "known: ") {
		t.Fatalf("unknown algorithm: %v", err)
	}
}
