// Package control is pipectl's control socket: a running pipeline answers
// `pipectl stats`, `route`, `neigh`, `rules` and `reload` over a Unix socket that only
// root may open (mode 0600), one JSON request and one JSON reply per
// connection, or for a streaming command (`pipectl trace`: stream.go) a
// sequence of replies ending with one that says why. It also renders the same counters as Prometheus text metrics.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/pipestack/pipestack/modules/conntrack"
	"github.com/pipestack/pipestack/modules/filter/plugin"
	"github.com/pipestack/pipestack/pipeline"
)

// Request is what a client sends.
type Request struct {
	Cmd string `json:"cmd"` // stats, route, neigh, rules, plugins, reload; trace streams (stream.go)
	// Trace: the trace command's parameters.
	Trace *TraceRequest `json:"trace,omitempty"`
	// Conntrack: the conntrack command's (conntrack.go).
	Conntrack *ConntrackRequest `json:"conntrack,omitempty"`
	// Set: the set command's (sets.go).
	Set *SetRequest `json:"set,omitempty"`
}

// Reply is what the server answers; one of the payloads is set.
type Reply struct {
	Error     string                  `json:"error,omitempty"`
	Stats     *Stats                  `json:"stats,omitempty"`
	Routes    []RouteEntry            `json:"routes,omitempty"`
	Neigh     []NeighEntry            `json:"neigh,omitempty"`
	Rules     []pipeline.ChainListing `json:"rules,omitempty"`
	Reload    *ReloadReply            `json:"reload,omitempty"`
	Conntrack *ConntrackReply         `json:"conntrack,omitempty"`
	Set       *SetReply               `json:"set,omitempty"`
	// Sockets: pipectl sockets (sockets.go).
	Sockets []SocketEntry `json:"sockets,omitempty"`
	// Plugins: the out-of-process filter plugins (pipectl plugins).
	Plugins []plugin.Status `json:"plugins,omitempty"`
	// A stream's event and its end (stream.go).
	Trace   *TraceEvent     `json:"trace,omitempty"`
	CTEvent *ConntrackEvent `json:"ct_event,omitempty"`
	End     *StreamEnd      `json:"end,omitempty"`
}

// Stats are the counters of a running stack.
type Stats struct {
	Generation uint64       `json:"generation"`
	Links      []LinkStats  `json:"links"`
	Sets       []CounterSet `json:"counters"`
	// Conntrack is the connection table's fill (nil without
	// netfilter.conntrack); its counters are the set "conntrack".
	Conntrack *ConntrackFill `json:"conntrack,omitempty"`
}

// ConntrackFill is how full the connection table is.
type ConntrackFill struct {
	Count int `json:"count"`
	Max   int `json:"max"`
}

// LinkStats are one link's counters.
type LinkStats struct {
	Name      string   `json:"name"`
	ID        uint32   `json:"id"`
	Module    string   `json:"module"`
	MTU       int      `json:"mtu"`
	LinkAddr  string   `json:"link_addr,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
	RxPackets uint64   `json:"rx_packets"`
	RxBytes   uint64   `json:"rx_bytes"`
	RxDropped uint64   `json:"rx_dropped"`
	RxUnknown uint64   `json:"rx_unknown_protocol"`
	TxPackets uint64   `json:"tx_packets"`
	TxBytes   uint64   `json:"tx_bytes"`
	TxDropped uint64   `json:"tx_dropped"`
	// State is "up", or "down" while the link's device is gone (Down
	// says since when and why; the stack keeps trying to reopen it).
	State string        `json:"state"`
	Down  *LinkDownInfo `json:"down,omitempty"`
	// Downs counts how often the link went down; TxLinkDown the packets
	// dropped because it was.
	Downs      uint64 `json:"downs"`
	TxLinkDown uint64 `json:"tx_link_down"`
	// Device are the link driver\'s own counters.
	Device []pipeline.CounterValue `json:"device,omitempty"`
}

// LinkDownInfo says why a link is down.
type LinkDownInfo struct {
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"`
	// Retry is the error of the last attempt to reopen the link.
	Retry    string `json:"retry,omitempty"`
	Attempts int    `json:"attempts"`
}

// CounterSet is one named group of counters (drops by reason included).
type CounterSet struct {
	Name     string                  `json:"name"`
	Counters []pipeline.CounterValue `json:"values"`
}

// RouteEntry is one route.
type RouteEntry struct {
	To        string `json:"to"`
	Via       string `json:"via,omitempty"`
	Link      string `json:"link"`
	Metric    uint32 `json:"metric"`
	Connected bool   `json:"connected"`
	Src       string `json:"src,omitempty"`
}

// NeighEntry is one neighbor entry.
type NeighEntry struct {
	Addr     string `json:"addr"`
	Link     string `json:"link"`
	LinkAddr string `json:"lladdr"`
	State    string `json:"state"`
	Age      string `json:"age"`
}

// ReloadReply says what a reload did.
type ReloadReply struct {
	Changed    bool   `json:"changed"`
	Generation uint64 `json:"generation"`
	// Notes are what the new generation's modules have to say about it
	// (the filter: sets whose run-time contents the file replaced).
	Notes []string `json:"notes,omitempty"`
}

// ReloadNoter is a module with something to say about the generation it
// was built for (ReloadReply.Notes).
type ReloadNoter interface{ ReloadNotes() []string }

// GenerationNotes gathers the running generation's notes.
func GenerationNotes(s *pipeline.Stack) []string {
	g := s.Generation()
	if g == nil {
		return nil
	}
	var out []string
	for _, mc := range g.Config().Modules {
		if n, ok := mc.Module.(ReloadNoter); ok {
			out = append(out, n.ReloadNotes()...)
		}
	}
	return out
}

// Snapshot gathers the stack's counters.
func Snapshot(s *pipeline.Stack) *Stats {
	st := &Stats{}
	g := s.Generation()
	if g != nil {
		st.Generation = g.Seq()
	}
	for _, n := range s.NICs() {
		c := &n.Stats
		ls := LinkStats{
			Name: n.Name(), ID: uint32(n.ID()), Module: n.Module(),
			RxPackets: c.RxPackets.Load(), RxBytes: c.RxBytes.Load(), RxDropped: c.RxDropped.Load(), RxUnknown: c.RxUnknownProtocol.Load(),
			TxPackets: c.TxPackets.Load(), TxBytes: c.TxBytes.Load(), TxDropped: c.TxDropped.Load(),
			TxLinkDown: c.TxLinkDown.Load(), State: "up",
		}
		lst := n.State()
		ls.Downs = lst.Downs
		if !lst.Up {
			ls.State = "down"
			ls.Down = &LinkDownInfo{Since: lst.Since, Reason: lst.Reason, Retry: lst.Retry, Attempts: lst.Attempts}
		}
		if r, ok := n.Link().(pipeline.LinkCounterReader); ok {
			ls.Device = r.LinkCounters()
		}
		if g != nil {
			if ni, ok := g.NIC(n.ID()); ok {
				ls.MTU = ni.MTU()
				if mac := ni.LinkAddress(); !mac.IsZero() {
					ls.LinkAddr = mac.String()
				}
				for _, fam := range []int{4, 6} {
					for _, a := range ni.Addresses(fam) {
						ls.Addresses = append(ls.Addresses, a.Prefix.String())
					}
				}
			}
		}
		st.Links = append(st.Links, ls)
	}
	for _, cs := range s.Counters() {
		st.Sets = append(st.Sets, CounterSet{Name: cs.Name(), Counters: cs.Snapshot()})
	}
	if t := conntrack.StackTable(s); t != nil {
		st.Conntrack = &ConntrackFill{Count: t.Count(), Max: t.Max()}
	}
	return st
}

// Rules lists the running generation's filter rules with their counters
// (every module that implements pipeline.RuleLister: the filter).
func Rules(s *pipeline.Stack) []pipeline.ChainListing {
	g := s.Generation()
	if g == nil {
		return nil
	}
	var out []pipeline.ChainListing
	for _, mc := range g.Config().Modules {
		if rl, ok := mc.Module.(pipeline.RuleLister); ok {
			out = append(out, rl.ListRules()...)
		}
	}
	return out
}

// Routes lists the running generation's routes.
func Routes(s *pipeline.Stack) []RouteEntry {
	g := s.Generation()
	if g == nil {
		return nil
	}
	names := map[pipeline.NICID]string{}
	for _, n := range s.NICs() {
		names[n.ID()] = n.Name()
	}
	var out []RouteEntry
	for _, r := range g.Routes().Routes() {
		e := RouteEntry{To: r.Dst.String(), Link: names[r.NIC], Metric: r.Metric, Connected: r.Connected}
		if r.Via.IsValid() {
			e.Via = r.Via.String()
		}
		if ni, ok := g.NIC(r.NIC); ok {
			fam := 4
			if r.Dst.Addr().Is6() {
				fam = 6
			}
			if p, ok := ni.PrimaryAddress(fam); ok {
				e.Src = p.Addr().String()
			}
		}
		out = append(out, e)
	}
	return out
}

// Neighbors lists every link's neighbor entries.
func Neighbors(s *pipeline.Stack) []NeighEntry {
	now := s.Clock().Now()
	var out []NeighEntry
	for _, n := range s.NICs() {
		entries := n.Neighbors().Entries()
		sort.Slice(entries, func(i, j int) bool { return entries[i].Addr.Less(entries[j].Addr) })
		for _, e := range entries {
			out = append(out, NeighEntry{Addr: e.Addr.String(), Link: n.Name(), LinkAddr: e.LinkAddr.String(),
				State: e.State.String(), Age: now.Sub(e.UpdatedAt).Round(time.Second).String()})
		}
	}
	return out
}

// Server serves the control socket.
type Server struct {
	ln     net.Listener
	path   string
	stack  *pipeline.Stack
	reload func() (ReloadReply, error)
	wg     sync.WaitGroup

	mu      sync.Mutex
	closing bool
	cancels map[*context.CancelFunc]struct{} // the streams in progress (stream.go)
}

// Listen creates the socket at path (its directory too, mode 0755; a stale
// socket file is replaced; the socket itself is mode 0600) and serves it.
// reload is called for `pipectl reload`, on the connection's goroutine; it
// must serialise with other reloads (pipectl run funnels it through its main
// loop) and must return even while Close runs, since Close waits for the
// connections in progress.
func Listen(path string, s *pipeline.Stack, reload func() (ReloadReply, error)) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another pipeline is serving this socket", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	srv := &Server{ln: ln, path: path, stack: s, reload: reload}
	srv.wg.Add(1)
	go srv.serve()
	return srv, nil
}

// Path is the socket's path.
func (srv *Server) Path() string { return srv.path }

func (srv *Server) serve() {
	defer srv.wg.Done()
	for {
		c, err := srv.ln.Accept()
		if err != nil {
			return
		}
		srv.wg.Add(1)
		go func() {
			defer srv.wg.Done()
			srv.handle(c)
		}()
	}
}

func (srv *Server) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var req Request
	dec := json.NewDecoder(io.LimitReader(c, 4096))
	if err := dec.Decode(&req); err != nil {
		json.NewEncoder(c).Encode(Reply{Error: "bad request: " + err.Error()})
		return
	}
	if isStream(req.Cmd) {
		srv.serveStream(c, &req, io.MultiReader(dec.Buffered(), c))
		return
	}
	var rep Reply
	switch req.Cmd {
	case "stats":
		rep.Stats = Snapshot(srv.stack)
	case "route":
		rep.Routes = Routes(srv.stack)
	case "neigh":
		rep.Neigh = Neighbors(srv.stack)
	case "sockets":
		rep.Sockets = Sockets(srv.stack)
	case "rules":
		rep.Rules = Rules(srv.stack)
		if rep.Rules == nil {
			rep.Rules = []pipeline.ChainListing{}
		}
	case "plugins":
		rep.Plugins = plugin.Plugins(srv.stack)
		if rep.Plugins == nil {
			rep.Plugins = []plugin.Status{}
		}
	case "conntrack":
		if req.Conntrack == nil {
			rep.Error = "conntrack: no request"
			break
		}
		r, err := Conntrack(srv.stack, req.Conntrack)
		if err != nil {
			rep.Error = err.Error()
		} else {
			rep.Conntrack = r
		}
	case "set":
		if req.Set == nil {
			rep.Error = "set: no request"
			break
		}
		r, err := Sets(srv.stack, req.Set)
		if err != nil {
			rep.Error = err.Error()
		} else {
			rep.Set = r
		}
	case "reload":
		r, err := srv.reload()
		if err != nil {
			rep.Error = err.Error()
		} else {
			rep.Reload = &r
		}
	default:
		rep.Error = fmt.Sprintf("unknown command %q (stats, route, neigh, sockets, rules, plugins, reload, conntrack, set, trace, conntrack-events)", req.Cmd)
	}
	json.NewEncoder(c).Encode(rep)
}

// Close stops serving, waits for the connections in progress (a reload
// among them included) and removes the socket file.
func (srv *Server) Close() error {
	err := srv.ln.Close()
	srv.mu.Lock()
	srv.closing = true
	for cancel := range srv.cancels {
		(*cancel)()
	}
	srv.mu.Unlock()
	srv.wg.Wait()
	os.Remove(srv.path)
	return err
}

// Call sends one command to the socket at path and returns the reply; a
// reply carrying an error is returned as that error.
func Call(path, cmd string) (*Reply, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no pipeline is running with control socket %s", path)
		}
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if err := json.NewEncoder(c).Encode(Request{Cmd: cmd}); err != nil {
		return nil, err
	}
	var rep Reply
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&rep); err != nil {
		return nil, fmt.Errorf("reading the reply: %w", err)
	}
	if rep.Error != "" {
		return &rep, errors.New(rep.Error)
	}
	return &rep, nil
}
