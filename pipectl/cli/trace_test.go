package cli_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipectl/cli"
	"github.com/pipestack/pipestack/pipectl/control"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// startTraced runs the replay router on channel links with a control
// socket and returns the socket and link a.
func startTraced(t *testing.T) (string, *channel.Endpoint, *runner) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "router.sock")
	content := strings.NewReplacer("module: test.link, device: never-opened-a,", "module: link.channel,",
		"module: test.link, device: never-opened-b,", "module: link.channel,").Replace(replayPipeline)
	content = strings.Replace(content, "name: router\n", fmt.Sprintf("name: router\ncontrol: {socket: %s}\n", sock), 1)
	r := startRun(t, tempPipeline(t, content), cli.RunOptions{})
	if o := r.next(); o.err != nil {
		t.Fatal(o.err)
	}
	l, ok := r.stack.Link("a")
	if !ok {
		t.Fatal("no link a")
	}
	return sock, l.(*channel.Endpoint), r
}

// traceWhileSending runs pipectl trace with args and, until it returns,
// sends the frames on a every 10 ms (the trace starts at some point of
// that: what it shows must be the matching packets only).
func traceWhileSending(t *testing.T, a *channel.Endpoint, frames [][]byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- cli.Main(append([]string{"trace"}, args...), &out, &errb) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case code := <-done:
			return code, out.String(), errb.String()
		case <-tick.C:
			a.InjectFrames(frames)
			drainLinks(a)
		}
	}
}

func drainLinks(eps ...*channel.Endpoint) {
	buf := make([]*pipeline.Packet, 64)
	for _, e := range eps {
		for n := e.Read(buf); n > 0; n = e.Read(buf) {
			pipeline.ReleaseBatch(buf[:n])
		}
	}
}

func TestTraceLive(t *testing.T) {
	sock, a, r := startTraced(t)
	defer r.stop()
	b, _ := r.stack.Link("b")
	frames := [][]byte{
		pipelinetest.UDP4("10.0.1.2", "10.0.2.2", 4000, 7000, 64, []byte("policy")),
		pipelinetest.UDP4("10.0.1.2", "10.0.2.2", 4000, 5000, 64, []byte("marked")),
	}
	stopDrain := make(chan struct{})
	defer close(stopDrain)
	go func() { // b's queue must not fill up
		for {
			select {
			case <-stopDrain:
				return
			case <-time.After(5 * time.Millisecond):
				drainLinks(b.(*channel.Endpoint))
			}
		}
	}()
	code, out, errs := traceWhileSending(t, a, frames, "-s", sock, "--count", "3", "--filter", "proto udp and dport 5000 and in a", "--timeout", "20s")
	t.Log("\n" + out)
	if code != 0 {
		t.Fatalf("trace: %d %s", code, errs)
	}
	for _, want := range []string{
		"#1 ", "#2 ", "#3 ",
		"udp 10.0.1.2:4000 > 10.0.2.2:5000",
		"mangle/FORWARD rule 1 `-p udp -m udp --dport 5000 -j MARK --set-xmark 0x7/0xffffffff` -> CONTINUE",
		"rewrite: mark 0x0->0x7",
		"filter/FORWARD rule 2 `-p udp -m udp --dport 5000 -m mark --mark 0x7 -j ACCEPT` -> ACCEPT",
		"postrouting in a out b: ACCEPT",
		"trace ended (done): 3 packets",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("trace output lacks %q", want)
		}
	}
	if strings.Contains(out, "#4 ") || strings.Contains(out, ":7000") {
		t.Error("trace shows a packet beyond the count or one the filter does not match")
	}
	// The tracer is off again: the stack runs untraced.
	if code, _, errs := traceWhileSending(t, a, nil, "-s", sock, "--count", "1", "--timeout", "50ms"); code != 0 || errs != "" {
		t.Errorf("a second trace after the first: %d %s", code, errs)
	}
}

// TestTraceTimeoutJSON: a trace that sees fewer packets than asked ends at
// its timeout; --json gives one object per packet and hook.
func TestTraceTimeoutJSON(t *testing.T) {
	sock, a, r := startTraced(t)
	defer r.stop()
	frames := [][]byte{pipelinetest.UDP4("10.0.1.2", "10.0.2.2", 4000, 7000, 64, []byte("policy"))}
	start := time.Now()
	code, out, errs := traceWhileSending(t, a, frames, "-s", sock, "--count", "1000", "--filter", "dport 7000", "--timeout", "300ms", "--json")
	if code != 0 {
		t.Fatalf("trace: %d %s", code, errs)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 10*time.Second {
		t.Errorf("the trace took %v, want its 300ms timeout", d)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	n := 0
	for dec.More() {
		var ev control.TraceEvent
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		n++
		if ev.Hook.Hook == "forward" && (ev.Hook.Verdict != "DROP" || len(ev.Hook.Steps) == 0 || !ev.Hook.Steps[len(ev.Hook.Steps)-1].Policy) {
			t.Errorf("forward: %+v, want DROP by the policy", ev.Hook)
		}
	}
	if n == 0 {
		t.Error("no event in 300 ms of packets every 10 ms")
	}
}

func TestTraceBadFilter(t *testing.T) {
	for _, f := range []string{"proto", "dport x", "src 10.0.0.0/33", "frobnicate 1", "proto tcp or proto udp", "proto tcp and"} {
		if _, err := control.ParseTraceFilter(f); err == nil {
			t.Errorf("filter %q parsed", f)
		}
	}
	if code := cli.Main([]string{"trace", "-s", "/nonexistent.sock", "--filter", "dport x"}, new(bytes.Buffer), new(bytes.Buffer)); code != 2 {
		t.Errorf("trace with a bad filter: %d, want 2", code)
	}
}
