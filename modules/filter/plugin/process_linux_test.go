package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pipestack/pipestack/internal/testenv"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

var built struct {
	once sync.Once
	path string
	sum  string
	err  error
}

// testPlugin builds internal/testplugin once into a directory every user
// may enter, and returns its path and sha256.
func testPlugin(t *testing.T) (string, string) {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "pipestack-testplugin-")
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "testplugin")
		out, err := exec.Command("go", "build", "-o", built.path, "./internal/testplugin").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		b, err := os.ReadFile(built.path)
		built.err = err
		s := sha256.Sum256(b)
		built.sum = hex.EncodeToString(s[:])
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path, built.sum
}

// procStatus reads fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

// stopped reports whether every thread of pid is stopped (state T). kill(2)
// with SIGSTOP returns once the signal is queued: one thread takes it and
// then stops the others, which run on until then — on a loaded machine for
// tens of milliseconds, long enough to answer a batch.
func stopped(pid int) bool {
	ts, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(ts) == 0 {
		return false
	}
	for _, p := range ts {
		b, err := os.ReadFile(p)
		if err != nil {
			return false
		}
		// pid (comm) state …: comm may hold anything, the state follows
		// its last ")".
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i < 0 || !strings.HasPrefix(s[i+1:], " T") {
			return false
		}
	}
	return true
}

func processRouter(t *testing.T, decl string) *pt.Node {
	t.Helper()
	cfg := strings.Replace(routerBase, "privileges: {drop: false}", "privileges: {keep: [net_admin, net_raw, setuid, setgid, chown, dac_override]}", 1)
	cfg = strings.Replace(cfg, "PLUGINS", decl, 1)
	return pt.NewNode(t, "r", cfg, testOptions(nil))
}

// TestProcessSecurity: the plugin runs as a real child with CapEff,
// CapPrm and CapAmb 0 although pipectl (this test, root) has every
// capability — as pipectl's uid 0 under the NOROOT secure bit, or as
// user: nobody — without the host's environment, from the sealed memfd
// copy whose sha256 was checked, in its own process group, with its socket
// in a private 0700 directory of its uid; it judges traffic; closing the
// stack kills it.
func TestProcessSecurity(t *testing.T) {
	for _, c := range []struct {
		user string
		uid  uint32
	}{{"", 0}, {"nobody", 65534}} {
		t.Run("user="+c.user, func(t *testing.T) { testProcessSecurity(t, c.user, c.uid) })
	}
}

func testProcessSecurity(t *testing.T, usr string, wantUID uint32) {
	testenv.Root(t)
	path, sum := testPlugin(t)
	t.Setenv("PIPESTACK_SECRET_TEST_VAR", "must-not-leak")
	n := processRouter(t, fmt.Sprintf(`  - {name: blk, path: %s, sha256: %s, user: "%s", timeout: 2s, config: {block: 53}}`, path, sum, usr))
	st := Plugins(n.Stack)
	// The Go SDK and the host negotiate protocol version 2.
	if len(st) != 1 || st[0].PID <= 0 || st[0].State != "running" || st[0].Protocol != 2 {
		t.Fatalf("%+v", st)
	}
	pid := st[0].PID
	s := procStatus(t, pid)
	for _, k := range []string{"CapEff", "CapPrm", "CapAmb", "CapInh"} {
		if s[k] != "0000000000000000" {
			t.Errorf("%s = %s, want 0", k, s[k])
		}
	}
	if uid := strings.Fields(s["Uid"]); len(uid) == 0 || uid[0] != strconv.Itoa(int(wantUID)) {
		t.Errorf("Uid %q, want %d", s["Uid"], wantUID)
	}
	if me := procStatus(t, os.Getpid()); me["CapEff"] == "0000000000000000" {
		t.Fatalf("the test itself has no capabilities: it proves nothing")
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	var sockDir string
	for _, kv := range strings.Split(string(env), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "", "PIPESTACK_FILTER_PLUGIN", "PLUGIN_MIN_PORT", "PLUGIN_MAX_PORT", "PLUGIN_PROTOCOL_VERSIONS", "PLUGIN_CLIENT_CERT", "PIPESTACK_PLUGIN_NAME":
		case "PLUGIN_UNIX_SOCKET_DIR":
			sockDir = v
		default:
			t.Errorf("the plugin's environment has %s", k)
		}
	}
	if !strings.Contains(string(env), "PLUGIN_CLIENT_CERT=") {
		t.Error("no AutoMTLS client certificate in the plugin's environment")
	}
	fi, err := os.Stat(sockDir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 || fi.Sys().(*syscall.Stat_t).Uid != wantUID {
		t.Errorf("socket dir %s: mode %v uid %d, want 0700 uid %d", sockDir, fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Uid, wantUID)
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); !strings.HasPrefix(exe, "/memfd:pipestack-plugin") {
		t.Errorf("the plugin runs %q, not the sealed copy", exe)
	}
	if pgid, _ := syscall.Getpgid(pid); pgid != pid {
		t.Errorf("pgid %d, want its own group %d", pgid, pid)
	}
	a, b := n.Link(t, "a"), n.Link(t, "b")
	a.InjectFrames([][]byte{udp(0, 53, 1), udp(0, 80, 2)})
	var got [][]byte
	waitFor(t, "judged", func() bool { got = append(got, pt.Drain(b)...); return len(got) == 1 })
	if _, seq := seqOf(got[0]); seq != 2 {
		t.Fatalf("forwarded seq %d", seq)
	}
	n.Stack.Close()
	waitFor(t, "plugin gone after Close", func() bool { return !running(pid) })
}

// lazy is a value formatted when it is printed (a failure's counters).
type lazy func() string

func (l lazy) String() string { return l() }

// restartWithin is how long the supervisor may take to restart the plugin
// of TestProcessKillAndHang: the health check that finds a hang (5× its
// 300ms deadline), the first backoff and a start, which startInstance
// allows 10s (exec and the AutoMTLS handshake take 1–4s at load 20).
const restartWithin = 5*300*time.Millisecond + 50*time.Millisecond + 10*time.Second

// TestProcessKillAndHang: SIGKILL (crash) and SIGSTOP (hang) under
// traffic: the policy answers within the deadline, nothing is left
// unjudged, the plugin is killed with its group and restarted.
func TestProcessKillAndHang(t *testing.T) {
	testenv.Root(t)
	path, _ := testPlugin(t)
	n := processRouter(t, fmt.Sprintf(`  - {name: blk, path: %s, timeout: 300ms, on_failure: accept, config: {block: 53}}`, path))
	a, b := n.Link(t, "a"), n.Link(t, "b")
	pid := Plugins(n.Stack)[0].PID
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGSTOP} {
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatal(err)
		}
		if sig == syscall.SIGSTOP {
			// Hung means hung: traffic sent before the stop reached every
			// thread would be answered, and with no miss nothing restarts.
			// (No thread runs after SIGKILL: it is fatal to all at once.)
			waitFor(t, "every thread stopped", func() bool { return stopped(pid) })
		}
		// Traffic while it is dead or hung: every packet ends (policy
		// accept: forwarded) within the deadline and counted.
		before := n.Counter("plugin_blk", "policy_accept_packets")
		start := time.Now()
		var frames [][]byte
		for i := 0; i < 50; i++ {
			frames = append(frames, udp(0, 80, uint32(i)))
		}
		a.InjectFrames(frames)
		got := 0
		pt.Eventually(t, 5*time.Second, func() bool { got += len(pt.Drain(b)); return got == 50 },
			"%v: all 50 forwarded by the policy: %v", sig, lazy(func() string { return fmt.Sprintf("%d\n%s", got, n.DumpCounters()) }))
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%v: the policy took %v (deadline 300ms)", sig, d)
		}
		if c := n.Counter("plugin_blk", "policy_accept_packets"); c-before != 50 {
			t.Errorf("%v: policy counted %d of 50", sig, c-before)
		}
		var np int
		pt.Eventually(t, restartWithin, func() bool {
			st := Plugins(n.Stack)[0]
			np = st.PID
			return st.State == "running" && np != pid
		}, "%v: restarted", sig)
		waitFor(t, "old process gone", func() bool { return !running(pid) })
		pid = np
		a.InjectFrames([][]byte{udp(0, 53, 1), udp(0, 80, 2)})
		got = 0
		waitFor(t, "the new process judges", func() bool { got += len(pt.Drain(b)); return got == 1 })
	}
	if r := n.Counter("plugin_blk", "restarts"); r != 2 {
		t.Errorf("restarts %d, want 2", r)
	}
}

// TestProcessCrashLoop: a plugin that dies at every restart ends at the
// budget: state failed, the policy (drop) holds, the log says so; an
// reload with a change starts it again once it is fixed.
func TestProcessCrashLoop(t *testing.T) {
	testenv.Root(t)
	path, _ := testPlugin(t)
	n := processRouter(t, fmt.Sprintf(`  - {name: blk, path: %s, restarts: 2, on_failure: drop}`, path))
	pid := Plugins(n.Stack)[0].PID
	flag := path + ".exit"
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(flag)
	syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, "budget spent", func() bool { return Plugins(n.Stack)[0].State == "failed" })
	st := Plugins(n.Stack)[0]
	if st.Restarts != 2 || !strings.Contains(st.Reason, "budget") {
		t.Fatalf("%+v", st)
	}
	a, b := n.Link(t, "a"), n.Link(t, "b")
	a.InjectFrames([][]byte{udp(0, 80, 1)})
	if got := len(pt.Drain(b)); got != 0 || n.Counter("plugin_blk", "unavailable_packets") == 0 {
		t.Fatalf("budget spent: %d forwarded, unavailable %d", got, n.Counter("plugin_blk", "unavailable_packets"))
	}
	// Fixed, and reloaded with a change (a plugin's budget is refilled by
	// a new version): it runs again.
	os.Remove(flag)
	cfg := strings.Replace(routerBase, "privileges: {drop: false}", "privileges: {keep: [net_admin, net_raw, setuid, setgid]}", 1)
	if err := n.Reload(strings.Replace(cfg, "PLUGINS", fmt.Sprintf(`  - {name: blk, path: %s, restarts: 3, on_failure: drop}`, path), 1)); err != nil {
		t.Fatal(err)
	}
	if st := Plugins(n.Stack)[0]; st.State != "running" {
		t.Fatalf("after reload: %+v", st)
	}
}

// TestConfigErrors: the section is decoded strictly and checked with
// file:line and the plugin's name.
func TestConfigErrors(t *testing.T) {
	path, sum := testPlugin(t)
	bad := strings.Repeat("0", 64)
	for _, c := range []struct{ decl, want string }{
		{`  - {name: blk, path: ` + path + `, timeot: 5ms}`, `plugins (plugin blk): unknown field "timeot", did you mean "timeout"?`},
		{`  - {name: blk, path: ` + path + `, timeout: 5}`, `plugins (plugin blk): timeout "5": a duration`},
		{`  - {name: blk, path: ` + path + `, on_failure: maybe}`, `on_failure "maybe" is not one of accept, drop`},
		{`  - {name: blk, path: ` + path + `, sha256: abc}`, `sha256 "abc": 64 hex digits`},
		{`  - {name: blk, path: ` + path + `, sha256: ` + bad + `}`, `has sha256 ` + sum + `, the file pins ` + bad},
		{`  - {name: blk, path: /nonexistent/plugin}`, `no such file`},
		{`  - {name: blk, path: ` + path + `, user: root}`, `is root: leave user: out`},
		{`  - {name: blk, path: ` + path + `}` + "\n  - {name: blk, path: " + path + "}", `plugin "blk" declared twice`},
		{`  - {name: other, path: ` + path + `}`, `no plugin "blk" under plugins: (declared: other)`},
		{`  - {name: blk, path: ` + path + `, window: 100}`, `window 100 out of range [1, 64]`},
	} {
		cfg := strings.Replace(routerBase, "PLUGINS", c.decl, 1)
		pc, err := pipeline.ParseConfig("r.yaml", []byte(cfg))
		if err == nil {
			err = pipeline.Check(pc)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s\n  got  %v\n  want …%s…", c.decl, err, c.want)
		}
	}
	// A plugin with user: is restarted after the privileges are dropped:
	// they must keep what switching users needs. Without user: nothing.
	if os.Geteuid() == 0 {
		cfg := strings.Replace(routerBase, "privileges: {drop: false}", "", 1)
		for _, c := range []struct{ decl, want string }{
			{`  - {name: blk, path: ` + path + `, user: nobody}`, "privileges: keep must list setuid, setgid, chown, dac_override"},
			{`  - {name: blk, path: ` + path + `}`, ""},
		} {
			pc, err := pipeline.ParseConfig("r.yaml", []byte(strings.Replace(cfg, "PLUGINS", c.decl, 1)))
			if err == nil {
				err = pipeline.Check(pc)
			}
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Errorf("%s with default privileges: %v, want %q", c.decl, err, c.want)
			}
		}
	}
	_ = strconv.Itoa
}

// TestPythonPlugin: the example plugin in Python (Debian's python3-grpcio)
// speaks the same protocol: go-plugin's handshake with AutoMTLS,
// Configure, Health and Judge; it drops what its config blocks.
func TestPythonPlugin(t *testing.T) {
	const py = "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import grpc, google.protobuf, cryptography").CombinedOutput(); err != nil {
		testenv.Need(t, "%s with grpc, protobuf and cryptography (apt-get install python3-grpcio python3-protobuf python3-cryptography): %s", py, out)
	}
	dir, err := os.MkdirTemp("", "pipestack-pyplugin-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	for _, f := range []string{"plugin.py", "filterplugin_pb2.py"} {
		b, err := os.ReadFile(filepath.Join("../../../examples/plugin-python", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := routerBase
	if os.Geteuid() == 0 {
		cfg = strings.Replace(cfg, "privileges: {drop: false}", "privileges: {keep: [net_admin, net_raw, setuid, setgid]}", 1)
	}
	cfg = strings.Replace(cfg, "PLUGINS", fmt.Sprintf(`  - {name: blk, path: %s, args: [%s], timeout: 2s, on_failure: accept, config: {block: [53, 54]}}`, py, filepath.Join(dir, "plugin.py")), 1)
	n := pt.NewNode(t, "r", cfg, testOptions(nil))
	st := Plugins(n.Stack)
	if len(st) != 1 || st[0].Version != "python-1" || st[0].State != "running" || st[0].Protocol != 1 { // the Python plugin speaks version 1
		t.Fatalf("%+v", st)
	}
	a, b := n.Link(t, "a"), n.Link(t, "b")
	var frames [][]byte
	for i := 0; i < 30; i++ {
		frames = append(frames, udp(0, uint16(52+i%3), uint32(i)))
	}
	a.InjectFrames(frames)
	var got [][]byte
	waitFor(t, "10 forwarded", func() bool { got = append(got, pt.Drain(b)...); return len(got) >= 10 })
	time.Sleep(50 * time.Millisecond)
	got = append(got, pt.Drain(b)...)
	if len(got) != 10 {
		t.Fatalf("forwarded %d, want 10", len(got))
	}
	for i, g := range got {
		if _, seq := seqOf(g); seq != uint32(3*i) {
			t.Fatalf("forwarded seq %d at %d", seq, i)
		}
	}
	if c := n.Counter("plugin_blk", "verdict_drop_packets"); c != 20 {
		t.Fatalf("python plugin dropped %d, want 20 (policy: %d)", c, n.Counter("plugin_blk", "policy_accept_packets"))
	}
}
