package control_test

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/pipectl/control"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// TestStreamEndsWhenClientHangsUp: a trace whose client closes the
// connection ends at once (its tracer is removed, so a new trace may
// start), and a second trace while one runs is refused.
func TestStreamEndsWhenClientHangsUp(t *testing.T) {
	n := pipelinetest.NewNode(t, "r", `
name: r
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}
filter:
  filter:
    input:
      rules: ["-p udp -j ACCEPT"]
`, pipeline.Options{})
	path := filepath.Join(t.TempDir(), "r.sock")
	srv, err := control.Listen(path, n.Stack, func() (control.ReloadReply, error) { return control.ReloadReply{}, nil })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	req := control.Request{Cmd: "trace", Trace: &control.TraceRequest{Count: 1000, TimeoutMS: 60000}}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		t.Fatal(err)
	}
	// The first trace runs once it shows a packet: a second is refused.
	got := make(chan control.Reply, 1)
	go func() {
		var r control.Reply
		json.NewDecoder(c).Decode(&r)
		got <- r
	}()
	a := n.Link(t, "a")
	var first control.Reply
wait:
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		a.InjectFrames([][]byte{pipelinetest.UDP4("10.0.1.2", "10.0.1.1", 1, 2, 64, nil)})
		select {
		case first = <-got:
			break wait
		case <-time.After(10 * time.Millisecond):
		}
	}
	if first.Trace == nil || first.Trace.Packet != 1 || first.Trace.Hook.Hook != "input" {
		t.Fatalf("the first trace's first reply: %+v", first)
	}
	_, busy := control.Stream(path, control.Request{Cmd: "trace", Trace: &control.TraceRequest{Count: 1, TimeoutMS: 20}}, 5*time.Second, func(*control.Reply) error { return nil })
	if busy == nil || !strings.Contains(busy.Error(), "another trace is running") {
		t.Fatalf("a second trace: %v, want refused", busy)
	}
	// Whatever the server still had queued goes into the socket buffer;
	// then the client hangs up while no packet comes: only the hang-up
	// can end the stream before its 60 s.
	time.Sleep(100 * time.Millisecond)
	c.Close()
	var end *control.StreamEnd
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		end, err = control.Stream(path, control.Request{Cmd: "trace", Trace: &control.TraceRequest{Count: 1, TimeoutMS: 20}}, 5*time.Second, func(*control.Reply) error { return nil })
		if err == nil {
			break
		}
	}
	if err != nil || end.Reason != "timeout" {
		t.Fatalf("a trace after the first client hung up: %+v, %v", end, err)
	}
	// Bad requests are errors, not streams.
	if _, err := control.Stream(path, control.Request{Cmd: "trace", Trace: &control.TraceRequest{Count: 0, TimeoutMS: 20}}, 5*time.Second, nil); err == nil {
		t.Error("count 0 accepted")
	}
	if _, err := control.Stream(path, control.Request{Cmd: "trace", Trace: &control.TraceRequest{Count: 1, TimeoutMS: 20, Filter: "port"}}, 5*time.Second, nil); err == nil {
		t.Error("a bad filter accepted")
	}
}
