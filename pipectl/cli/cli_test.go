package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipectl/cli"
	"github.com/pipestack/pipestack/pipeline"
)

// A router on two test links; the variants below change one thing each.
const (
	routerYAML = `name: router
log: {level: debug, format: json}
modules: [network.testproto]
links:
  - {name: a, module: test.link, device: a0, addresses: [10.0.1.1/24]}
  - {name: b, module: test.link, device: b0, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
`
	// One more route: the links are kept, a new generation is built.
	routerWithRoute = routerYAML + `routes:
  - {to: 10.0.3.0/24, via: 10.0.2.2, link: b}
`
	// Line 5 has a key test.link does not know.
	routerUnknownKey = `name: router
log: {level: debug, format: json}
modules: [network.testproto]
links:
  - {name: a, module: test.link, devise: a0, addresses: [10.0.1.1/24]}
`
	// Decodes, but the protocol's Validate refuses it.
	routerValidateFails = `name: router
log: {level: debug, format: json}
modules:
  - {module: network.testproto, fail: "refused by Validate"}
links:
  - {name: a, module: test.link, device: a0, addresses: [10.0.1.1/24]}
`
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func tempPipeline(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "router.yaml")
	writeFile(t, path, content)
	return path
}

// mainResult is what one pipectl invocation did.
type mainResult struct {
	code           int
	stdout, stderr string
}

// runMain runs cli.Main; a panic fails the test with its value instead of
// killing the test binary.
func runMain(t *testing.T, args ...string) (r mainResult) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	defer func() {
		if v := recover(); v != nil {
			t.Fatalf("pipectl %s panicked: %v", strings.Join(args, " "), v)
		}
	}()
	r.code = cli.Main(args, &stdout, &stderr)
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

func TestValidateOK(t *testing.T) {
	opened := links.opened.Load()
	file := tempPipeline(t, routerWithRoute)
	r := runMain(t, "validate", file)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if want := file + ": ok (2 links, 1 module)\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	if n := links.opened.Load() - opened; n != 0 {
		t.Errorf("validate opened %d links", n)
	}
}

func TestValidateBroken(t *testing.T) {
	for _, tc := range []struct {
		name, content, line, want string
	}{
		{"unknown key", routerUnknownKey, ":5:34: ", `test.link (link a): unknown field "devise", did you mean "device"? (known: addresses, device, fail, forwarding, module, mtu, name, neighbors, transparent)`},
		{"validate fails", routerValidateFails, ":4:", `network.testproto: refused by Validate`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := tempPipeline(t, tc.content)
			good := tempPipeline(t, routerYAML)
			r := runMain(t, "validate", good, file)
			if r.code != 1 {
				t.Errorf("exit %d, want 1", r.code)
			}
			if !strings.HasPrefix(r.stderr, file+tc.line) || !strings.HasSuffix(r.stderr, ": "+tc.want+"\n") {
				t.Errorf("stderr %q, want %s%s…: %s", r.stderr, file, tc.line, tc.want)
			}
			// The good file is still reported.
			if !strings.Contains(r.stdout, good+": ok") {
				t.Errorf("stdout %q lacks the good file", r.stdout)
			}
		})
	}
}

func TestValidateUsage(t *testing.T) {
	if r := runMain(t, "validate"); r.code != 2 || !strings.Contains(r.stderr, "usage: pipectl validate") {
		t.Errorf("no file: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runMain(t, "validate", "--bogus", "x.yaml"); r.code != 2 {
		t.Errorf("bad flag: exit %d", r.code)
	}
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	if r := runMain(t, "validate", missing); r.code != 1 || !strings.Contains(r.stderr, missing) {
		t.Errorf("missing file: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestModules(t *testing.T) {
	r := runMain(t, "modules")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	var ids []string
	col := -1
	for _, l := range lines {
		id, _, _ := strings.Cut(l, " ")
		ids = append(ids, id)
		summary := strings.TrimLeft(l[len(id):], " ")
		if c := len(l) - len(summary); col < 0 {
			col = c
		} else if c != col {
			t.Errorf("summaries not aligned:\n%s", r.stdout)
		}
	}
	// The filter's modules are linked in by control_test.go (pipectl rules),
	// the plugins section by the control socket (pipectl plugins);
	// link.channel by pipectl replay, network.ipv4, network.ipv6 and
	// transport.collect by its tests; netfilter.conntrack (and its
	// matchers) by the control package (pipectl conntrack, stats), and
	// transport.tcp (with its tcp.cc.* guests) and transport.udp too
	// (pipectl sockets).
	var own []string
	for _, id := range ids {
		if id != "filter" && id != "plugins" && !strings.HasPrefix(id, "filter.") && id != "link.channel" && id != "network.ipv4" && id != "network.ipv6" && id != "transport.collect" && id != "netfilter.conntrack" &&
			id != "transport.tcp" && id != "transport.udp" && !strings.HasPrefix(id, "tcp.cc.") {
			own = append(own, id)
		}
	}
	if got, want := strings.Join(own, " "), "network.testproto test.link"; got != want {
		t.Errorf("modules %q, want %q (sorted)\n%s", got, want, r.stdout)
	}
	if !strings.Contains(r.stdout, "a network protocol for tests") {
		t.Errorf("no summary:\n%s", r.stdout)
	}

	r = runMain(t, "modules", "test")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "test.link  a link for tests" {
		t.Errorf("modules test: exit %d, %q", r.code, r.stdout)
	}
	if r = runMain(t, "modules", "nosuchnamespace"); r.code != 1 || r.stdout != "" {
		t.Errorf("empty namespace: exit %d, %q", r.code, r.stdout)
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string // a substring, "" for none
		stderr string
	}{
		{nil, 2, "", "Usage:"},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"help"}, 0, "pipectl validate [--stats] [--lint] FILE...", ""},
		{[]string{"-h"}, 0, "pipectl run [--stats-interval DURATION] FILE", ""},
		{[]string{"version"}, 0, "pipectl ", ""},
		{[]string{"run"}, 2, "", "usage: pipectl run"},
		{[]string{"run", "a.yaml", "b.yaml"}, 2, "", "usage: pipectl run"},
		{[]string{"run", "-h"}, 0, "", "-stats-interval"},
	} {
		r := runMain(t, tc.args...)
		if r.code != tc.code {
			t.Errorf("pipectl %v: exit %d, want %d", tc.args, r.code, tc.code)
		}
		if tc.stdout == "" && r.stdout != "" || !strings.Contains(r.stdout, tc.stdout) {
			t.Errorf("pipectl %v: stdout %q, want %q", tc.args, r.stdout, tc.stdout)
		}
		if tc.stderr == "" && r.stderr != "" || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("pipectl %v: stderr %q, want %q", tc.args, r.stderr, tc.stderr)
		}
	}
}

// syncBuffer is a log output tests read while Run writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// entries decodes the JSON log; a line that is not JSON fails the test.
func (s *syncBuffer) entries(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if l == "" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		out = append(out, e)
	}
	return out
}

// find returns the last log entry with this message.
func (s *syncBuffer) find(t *testing.T, msg string) map[string]any {
	t.Helper()
	var found map[string]any
	for _, e := range s.entries(t) {
		if e["message"] == msg {
			found = e
		}
	}
	return found
}

// outcome is one apply attempt reported by RunOptions.Applied.
type outcome struct {
	seq     uint64
	changed bool
	err     error
}

// runner is a Run on its own goroutine, driven like pipectl run is by
// signals.
type runner struct {
	t       *testing.T
	file    string
	log     syncBuffer
	stack   *pipeline.Stack
	reload  chan struct{}
	applied chan outcome
	cancel  context.CancelFunc
	done    chan error
}

func startRun(t *testing.T, file string, opts cli.RunOptions) *runner {
	t.Helper()
	r := &runner{t: t, file: file, reload: make(chan struct{}), applied: make(chan outcome, 16), done: make(chan error, 1)}
	var ctx context.Context
	ctx, r.cancel = context.WithCancel(context.Background())
	opts.LogOutput, opts.Reload = &r.log, r.reload
	opts.KeepPrivileges = true // the test binary must keep its own
	opts.Applied = func(st *pipeline.Stack, changed bool, err error) {
		r.stack = st // written before the send, read after the receive
		var seq uint64
		if g := st.Generation(); g != nil {
			seq = g.Seq()
		}
		r.applied <- outcome{seq, changed, err}
	}
	go func() {
		defer func() {
			if v := recover(); v != nil {
				r.done <- fmt.Errorf("Run panicked: %v", v)
			}
		}()
		r.done <- cli.Run(ctx, file, opts)
	}()
	return r
}

// next waits for the next apply outcome.
func (r *runner) next() outcome {
	r.t.Helper()
	select {
	case o := <-r.applied:
		return o
	case err := <-r.done:
		r.t.Fatalf("Run returned early: %v\nlog:\n%s", err, r.log.String())
	case <-time.After(10 * time.Second):
		r.t.Fatalf("no apply outcome\nlog:\n%s", r.log.String())
	}
	panic("unreachable")
}

// reloadWith writes content to the file (unless empty) and reloads.
func (r *runner) reloadWith(content string) outcome {
	r.t.Helper()
	if content != "" {
		writeFile(r.t, r.file, content)
	}
	select {
	case r.reload <- struct{}{}:
	case err := <-r.done:
		r.t.Fatalf("Run returned early: %v", err)
	}
	return r.next()
}

// stop cancels the context (what SIGINT/SIGTERM do) and waits for Run.
func (r *runner) stop() error {
	r.t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		return err
	case <-time.After(10 * time.Second):
		r.t.Fatal("Run did not stop")
	}
	return nil
}

// checkGoroutines waits until no more goroutines run than before.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunReload(t *testing.T) {
	before := runtime.NumGoroutine()
	opened, closed := links.opened.Load(), links.closed.Load()
	file := tempPipeline(t, routerYAML)
	r := startRun(t, file, cli.RunOptions{})

	if o := r.next(); o.err != nil || !o.changed || o.seq != 1 {
		t.Fatalf("start: %+v", o)
	}
	if e := r.log.find(t, "running"); e == nil || e["generation"] != 1.0 || e["file"] != file {
		t.Errorf("no running entry with generation 1 and the file: %v", e)
	}
	nicA, _ := r.stack.NIC("a")

	// A changed file: a new generation, links handed over.
	if o := r.reloadWith(routerWithRoute); o.err != nil || !o.changed || o.seq != 2 {
		t.Fatalf("reload: %+v", o)
	}
	if n, _ := r.stack.NIC("a"); n != nicA {
		t.Error("link a was reopened, not handed over")
	}
	if _, ok := r.stack.Route(netip.MustParseAddr("10.0.3.7")); !ok {
		t.Error("the new route is not in force")
	}
	if e := r.log.find(t, "reloaded"); e == nil || e["generation"] != 2.0 {
		t.Errorf("no reloaded entry with generation 2: %v", e)
	}

	// The same bytes again: nothing happens.
	if o := r.reloadWith(""); o.err != nil || o.changed || o.seq != 2 {
		t.Fatalf("unchanged reload: %+v", o)
	}
	if e := r.log.find(t, "reload: file unchanged; nothing to do"); e == nil {
		t.Errorf("unchanged reload not logged:\n%s", r.log.String())
	}

	// Broken files: the error is logged whole, generation 2 keeps running.
	for _, tc := range []struct{ name, content, want string }{
		{"unknown key", routerUnknownKey, file + `:5:34: test.link (link a): unknown field "devise"`},
		{"validate fails", routerValidateFails, file + `:4:`},
		{"not YAML", "name: r\nlinks: [\n  {name: a}\n", file + ":2: not valid YAML"},
	} {
		o := r.reloadWith(tc.content)
		if o.err == nil || o.seq != 2 {
			t.Errorf("%s: reload %+v, want an error and generation 2 still running", tc.name, o)
			continue
		}
		e := r.log.find(t, "reload failed; the running generation stays")
		if e == nil || !strings.HasPrefix(fmt.Sprint(e["error"]), tc.want) || e["level"] != "error" || e["generation"] != 2.0 {
			t.Errorf("%s: logged %v, want an error starting %q", tc.name, e, tc.want)
		}
		if tc.name == "validate fails" && !strings.Contains(o.err.Error(), "network.testproto: refused by Validate") {
			t.Errorf("%s: %v", tc.name, o.err)
		}
	}
	if n, _ := r.stack.NIC("a"); n != nicA {
		t.Error("a failed reload replaced link a")
	}

	// Fixed again: generation 3.
	if o := r.reloadWith(routerYAML); o.err != nil || !o.changed || o.seq != 3 {
		t.Fatalf("reload after errors: %+v", o)
	}

	// SIGTERM-equivalent: a clean stop.
	if err := r.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if r.stack.Generation() != nil {
		t.Error("a generation still runs after the stop")
	}
	if e := r.log.find(t, "stopped"); e == nil {
		t.Errorf("stop not logged:\n%s", r.log.String())
	}
	if o, c := links.opened.Load()-opened, links.closed.Load()-closed; o != 2 || c != 2 {
		t.Errorf("opened %d links, closed %d; want 2 and 2", o, c)
	}
	checkGoroutines(t, before)
}

// TestRunLogConfig: the file's log: section sets level and format, and a
// reload switches them.
func TestRunLogConfig(t *testing.T) {
	consoleWarn := strings.Replace(routerYAML, "{level: debug, format: json}", "{level: warn, format: console}", 1)
	file := tempPipeline(t, routerYAML)
	r := startRun(t, file, cli.RunOptions{})
	r.next()
	if r.log.find(t, "running") == nil {
		t.Fatal("info not logged at level debug")
	}
	if o := r.reloadWith(consoleWarn); o.err != nil || !o.changed {
		t.Fatalf("reload: %+v", o)
	}
	n := len(r.log.String())
	r.reloadWith(routerUnknownKey) // an error: logged, as console text
	got := r.log.String()[n:]
	if !strings.Contains(got, "ERR") || !strings.Contains(got, "reload failed") || strings.HasPrefix(got, "{") {
		t.Errorf("want one console error line, got %q", got)
	}
	if strings.Contains(got, "reloading") {
		t.Errorf("an info line passed level warn: %q", got)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestRunStats(t *testing.T) {
	file := tempPipeline(t, routerYAML)
	r := startRun(t, file, cli.RunOptions{StatsInterval: 5 * time.Millisecond})
	r.next()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if e := r.log.find(t, "link counters"); e != nil {
			if _, ok := e["rx_packets"]; !ok || (e["link"] != "a" && e["link"] != "b" && e["link"] != "lo") {
				t.Errorf("counters entry %v", e)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no counters logged:\n%s", r.log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestRunBadStart(t *testing.T) {
	for _, tc := range []struct{ name, content, want string }{
		{"unknown key", routerUnknownKey, `:5:34: test.link (link a): unknown field "devise"`},
		{"validate fails", routerValidateFails, `: network.testproto: refused by Validate`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opened, closed := links.opened.Load(), links.closed.Load()
			file := tempPipeline(t, tc.content)
			r := runMain(t, "run", file)
			if r.code != 1 || !strings.HasPrefix(r.stderr, file+":") || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q, want 1 and %q", r.code, r.stderr, tc.want)
			}
			if o, c := links.opened.Load()-opened, links.closed.Load()-closed; o != c {
				t.Errorf("opened %d links, closed %d", o, c)
			}
		})
	}
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	if r := runMain(t, "run", missing); r.code != 1 || !strings.Contains(r.stderr, missing) {
		t.Errorf("missing file: exit %d, stderr %q", r.code, r.stderr)
	}
}
