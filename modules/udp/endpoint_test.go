package udp

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
)

// An ICMP error reported to a connected socket is returned by its next read,
// once (as Linux does); an unconnected socket ignores it. The network layer
// does not report errors to transports yet, so this drives HandleError
// directly.
func TestHandleError(t *testing.T) {
	tab := newTable(&counters{})
	e := newEndpoint(tab)
	if err := tab.bind(e, netip.MustParseAddrPort("10.0.1.2:4000"), netip.MustParseAddrPort("10.0.2.2:53")); err != nil {
		t.Fatal(err)
	}
	e.HandleError(pipeline.ErrorPortUnreachable, 0, nil)
	if _, err := e.dequeue(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("read after port unreachable: %v, want ECONNREFUSED", err)
	}
	if pkt, err := e.dequeue(); pkt != nil || err != nil {
		t.Errorf("the error was reported twice: %v", err)
	}

	u := newEndpoint(tab)
	if err := tab.bind(u, netip.MustParseAddrPort("10.0.1.2:4001"), netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	u.HandleError(pipeline.ErrorPortUnreachable, 0, nil)
	if pkt, err := u.dequeue(); pkt != nil || err != nil {
		t.Errorf("an unconnected socket reported %v", err)
	}

	tab.Close()
	if _, err := e.dequeue(); err != errClosed {
		t.Errorf("read after the table closed: %v", err)
	}
	if err := tab.bind(newEndpoint(tab), netip.MustParseAddrPort("10.0.1.2:4002"), netip.AddrPort{}); err == nil {
		t.Error("bind on a closed table succeeded")
	}
}
