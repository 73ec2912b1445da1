package control_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/conntrack"
	"github.com/pipestack/pipestack/pipectl/control"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// TestConntrackCommands: -L lists in conntrack-tools' format, -C counts,
// -D deletes what the filter selects, -F flushes, -S shows the counters,
// stats carry the fill; -E streams [NEW] and [DESTROY] events.
func TestConntrackCommands(t *testing.T) {
	n := pipelinetest.NewNode(t, "r", `
name: r
modules: [network.ipv4, {module: netfilter.conntrack, max: 128}]
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
`, pipeline.Options{Clock: pipeline.NewManualClock(time.Unix(1e6, 0))})
	path := filepath.Join(t.TempDir(), "r.sock")
	srv, err := control.Listen(path, n.Stack, func() (control.ReloadReply, error) { return control.ReloadReply{}, nil })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	a, b := n.Link(t, "a"), n.Link(t, "b")
	send := func(sport, dport uint16) {
		a.InjectFrames([][]byte{pipelinetest.UDP4("10.0.1.2", "10.0.2.2", sport, dport, 64, []byte("x"))})
		buf := make([]*pipeline.Packet, 4)
		pipeline.ReleaseBatch(buf[:b.Read(buf)])
	}
	// The event stream first, so that it sees the flows come and go.
	events := make(chan string, 16)
	streamDone := make(chan error, 1)
	go func() {
		_, err := control.Stream(path, control.Request{Cmd: "conntrack-events"}, 10*time.Second, func(r *control.Reply) error {
			if r.CTEvent != nil {
				events <- "[" + r.CTEvent.Type + "] " + r.CTEvent.Line
			}
			return nil
		})
		streamDone <- err
	}()
	time.Sleep(100 * time.Millisecond) // the stream subscribes
	send(1000, 53)
	send(1001, 53)
	send(1002, 123)
	call := func(op string, f control.ConntrackFilter) *control.ConntrackReply {
		t.Helper()
		rep, err := control.CallRequest(path, control.Request{Cmd: "conntrack", Conntrack: &control.ConntrackRequest{Op: op, Filter: f}})
		if err != nil {
			t.Fatal(err)
		}
		return rep.Conntrack
	}
	l := call("list", control.ConntrackFilter{})
	if len(l.Entries) != 3 || l.Count != 3 || l.Max != 128 {
		t.Fatalf("list: %+v", l)
	}
	want := "udp      17 30 src=10.0.1.2 dst=10.0.2.2 sport=1000 dport=53 [UNREPLIED] src=10.0.2.2 dst=10.0.1.2 sport=53 dport=1000 mark=0 use=1"
	if !strings.Contains(strings.Join(l.Entries, "\n"), want) {
		t.Fatalf("list lacks %q:\n%s", want, strings.Join(l.Entries, "\n"))
	}
	if l := call("list", control.ConntrackFilter{DPort: 123}); len(l.Entries) != 1 {
		t.Fatalf("list --dport 123: %v", l.Entries)
	}
	if d := call("delete", control.ConntrackFilter{DPort: 53}); d.Deleted != 2 || d.Count != 1 {
		t.Fatalf("delete --dport 53: %+v", d)
	}
	if st := call("stats", control.ConntrackFilter{}); len(st.Stats) == 0 {
		t.Fatal("no counters")
	}
	stats := control.Snapshot(n.Stack)
	if stats.Conntrack == nil || stats.Conntrack.Count != 1 || stats.Conntrack.Max != 128 {
		t.Fatalf("stats fill: %+v", stats.Conntrack)
	}
	if f := call("flush", control.ConntrackFilter{}); f.Deleted != 1 || f.Count != 0 {
		t.Fatalf("flush: %+v", f)
	}
	var got []string
	for deadline := time.After(5 * time.Second); len(got) < 6; {
		select {
		case e := <-events:
			got = append(got, e)
		case <-deadline:
			t.Fatalf("events: %q", got)
		}
	}
	all := strings.Join(got, "\n")
	if strings.Count(all, "[NEW] udp") != 3 || strings.Count(all, "[DESTROY] udp") != 3 {
		t.Fatalf("events:\n%s", all)
	}
}
