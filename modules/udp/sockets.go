package udp

import (
	"net/netip"
	"sort"

	"github.com/pipestack/pipestack/pipeline"
)

// Socket is one UDP socket as `ss -una` lists it.
type Socket struct {
	State  string // UNCONN, or ESTAB for a connected socket
	RecvQ  int    // bytes queued to read
	SendQ  int    // always 0: datagrams are sent at once
	Local  netip.AddrPort
	Remote netip.AddrPort // invalid unless connected
}

// Sockets lists s's UDP sockets, sorted by local then remote address
// (none when transport.udp never ran on s).
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
	var es []*endpoint
	for _, list := range t.ports {
		es = append(es, list...)
	}
	t.mu.RUnlock()
	out := make([]Socket, 0, len(es))
	for _, e := range es {
		e.mu.Lock()
		if !e.closed {
			so := Socket{State: "UNCONN", Local: e.local}
			if e.remote.IsValid() && e.remote.Port() != 0 {
				so.State, so.Remote = "ESTAB", e.remote
			}
			for i := 0; i < e.n; i++ {
				if p := e.ring[(e.head+i)%len(e.ring)]; p != nil {
					so.RecvQ += len(p.Data())
				}
			}
			out = append(out, so)
		}
		e.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool {
		if a, b := out[i].Local, out[j].Local; a != b {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c < 0
			}
			return a.Port() < b.Port()
		}
		return out[i].Remote.Addr().Compare(out[j].Remote.Addr()) < 0
	})
	return out
}
