package tcp

import (
	"net/netip"
	"sort"

	"github.com/pipestack/pipestack/pipeline"
)

// Socket is one TCP socket as `ss -tna` lists it.
type Socket struct {
	// State is ss's name: LISTEN, SYN-SENT, SYN-RECV, ESTAB, FIN-WAIT-1,
	// FIN-WAIT-2, CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT.
	State string
	// RecvQ: unread bytes (a listener: connections waiting in its accept
	// queue); SendQ: bytes not yet acknowledged (a listener: its backlog),
	// as Linux's tcp_diag.
	RecvQ, SendQ  int
	Local, Remote netip.AddrPort // Remote is invalid for a listener
}

var ssStates = [...]string{"CLOSED", "SYN-SENT", "SYN-RECV", "ESTAB", "FIN-WAIT-1", "FIN-WAIT-2",
	"CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT"}

// Sockets lists s's TCP listeners and connections, sorted by local then
// remote address (none when transport.tcp never ran on s).
func Sockets(s *pipeline.Stack) []Socket {
	v, ok := s.SharedLookup(sharedKey)
	if !ok {
		return nil
	}
	t, ok := v.(*table)
	if !ok {
		return nil
	}
	t.mu.RLock()
	ls := make([]*listener, 0, len(t.bound)+len(t.wildcard))
	for _, l := range t.bound {
		ls = append(ls, l)
	}
	for _, l := range t.wildcard {
		ls = append(ls, l)
	}
	cs := make([]*conn, 0, len(t.conns))
	for _, c := range t.conns {
		cs = append(cs, c)
	}
	tws := make([]fourTuple, 0, len(t.tw.idx))
	for k := range t.tw.idx {
		tws = append(tws, k.tuple())
	}
	t.mu.RUnlock()
	out := make([]Socket, 0, len(ls)+len(cs)+len(tws))
	for _, k := range tws {
		out = append(out, Socket{State: "TIME-WAIT", Local: k.local, Remote: k.remote})
	}
	for _, l := range ls {
		l.mu.Lock()
		local := l.addr
		if l.network == "tcp" && local.Addr().IsUnspecified() {
			local = netip.AddrPortFrom(netip.Addr{}, local.Port()) // both families: ss's *:port
		}
		out = append(out, Socket{State: "LISTEN", RecvQ: len(l.queue), SendQ: l.backlog, Local: local})
		l.mu.Unlock()
	}
	for _, c := range cs {
		c.mu.Lock()
		if c.state != stateClosed && int(c.state) < len(ssStates) {
			out = append(out, Socket{State: ssStates[c.state], RecvQ: c.rcvHeld(), SendQ: c.sndBuf.n, Local: c.local, Remote: c.remote})
		}
		c.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool {
		if a, b := out[i].Local, out[j].Local; a != b {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c < 0
			}
			return a.Port() < b.Port()
		}
		if c := out[i].Remote.Addr().Compare(out[j].Remote.Addr()); c != 0 {
			return c < 0
		}
		return out[i].Remote.Port() < out[j].Remote.Port()
	})
	return out
}
