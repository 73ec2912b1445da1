package control

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"text/tabwriter"

	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipeline"
)

// SocketEntry is one line of `pipectl sockets` (ss -tuna's columns).
type SocketEntry struct {
	Netid string `json:"netid"` // tcp or udp
	State string `json:"state"`
	RecvQ int    `json:"recv_q"`
	SendQ int    `json:"send_q"`
	Local string `json:"local"`
	Peer  string `json:"peer"`
}

// Sockets lists the stack's UDP and TCP sockets as ss -tuna does: UDP
// first, then TCP, each sorted by local address.
func Sockets(s *pipeline.Stack) []SocketEntry {
	out := []SocketEntry{}
	for _, so := range udp.Sockets(s) {
		out = append(out, SocketEntry{Netid: "udp", State: so.State, RecvQ: so.RecvQ, SendQ: so.SendQ,
			Local: ssAddr(so.Local, true), Peer: ssPeer(so.Local, so.Remote)})
	}
	for _, so := range tcp.Sockets(s) {
		out = append(out, SocketEntry{Netid: "tcp", State: so.State, RecvQ: so.RecvQ, SendQ: so.SendQ,
			Local: ssAddr(so.Local, true), Peer: ssPeer(so.Local, so.Remote)})
	}
	return out
}

// ssAddr prints an address as ss does: 10.0.2.2:80, [fd00::2]:80, and
// *:80 for a socket of both families on the wildcard address.
func ssAddr(a netip.AddrPort, withPort bool) string {
	port := "*"
	if withPort {
		port = strconv.Itoa(int(a.Port()))
	}
	switch {
	case !a.Addr().IsValid():
		return "*:" + port
	case a.Addr().Is4():
		return a.Addr().String() + ":" + port
	}
	return "[" + a.Addr().String() + "]:" + port
}

// ssPeer is the peer column: the remote, or the wildcard of the local
// family (0.0.0.0:*, [::]:*, *:*) for a listening or unconnected socket.
func ssPeer(local, remote netip.AddrPort) string {
	if remote.IsValid() && remote.Port() != 0 {
		return ssAddr(remote, true)
	}
	switch {
	case !local.Addr().IsValid():
		return "*:*"
	case local.Addr().Is4():
		return "0.0.0.0:*"
	}
	return "[::]:*"
}

// FormatSockets prints pipectl sockets as ss -tuna.
func FormatSockets(w io.Writer, ss []SocketEntry) {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	fmt.Fprintln(tw, "Netid\tState\tRecv-Q\tSend-Q\tLocal Address:Port\tPeer Address:Port")
	for _, s := range ss {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", s.Netid, s.State, s.RecvQ, s.SendQ, s.Local, s.Peer)
	}
	tw.Flush()
}
