package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPluginGoREADME runs the command lines of examples/plugin-go/README.md
// (steps 2 to 4: build, declare, watch it judge traffic, rebuild and see
// the new verdicts) as they are written, in a lab of its own: sudo goes
// (the test is root), `go run ./cmd/pipectl` is the pure-Go pipectl the
// tests build, the example's files are copies in a temporary directory,
// ps-a / ps-b and their TUN devices get this lab's names, iperf3 runs 12 s
// instead of 60 and its daemon writes a pid file. A line ending in & runs
// in the background until the test ends. It checks what the README says
// is seen: version 1 dropping the datagrams to port 9000, version 2 after
// the rename letting them through in order, and iperf3's UDP stream
// losing nothing in the router across the swap (what it loses the lab's
// kernels dropped and counted: on a loaded machine the receiver's socket
// buffer overflows).
func TestPluginGoREADME(t *testing.T) {
	requireLab(t, "iperf3 (iperf3)", "python3 (python3)")
	l := newLabMode(t, "tun")
	root := repoRoot(t)
	pipectl := buildPipectl(t)
	dir, err := os.MkdirTemp("", "pipestack-e2e-readme-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // after the cleanup below, which reads iperf3's pid file
	os.Chmod(dir, 0o755)
	yml, err := os.ReadFile(filepath.Join(root, "examples/plugin-go/pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ctl.sock")
	y := strings.NewReplacer("ps-tun-a", l.tunA, "ps-tun-b", l.tunB, "netns: ps-a", "netns: "+l.nsA, "netns: ps-b", "netns: "+l.nsB,
		"/run/pipestack/plugin-demo.sock", sock).Replace(string(yml))
	if y == string(yml) || !strings.Contains(y, sock) {
		t.Fatalf("the example's pipeline.yaml has none of the names this test rewrites:\n%s", yml)
	}
	if err := os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}

	readme, err := os.ReadFile(filepath.Join(root, "examples/plugin-go/README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	from, to := strings.Index(text, "## 2."), strings.Index(text, "## 5.") // 5 cleans up: the test's own cleanup does
	if from < 0 || to < from {
		t.Fatal("README.md: no steps 2 to 4")
	}
	var cmds []string // the indented lines outside fenced blocks
	fenced := false
	for _, line := range strings.Split(text[from:to], "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		} else if !fenced && strings.HasPrefix(line, "    ") && strings.TrimSpace(line) != "" {
			cmds = append(cmds, strings.TrimSpace(line))
		}
	}
	sub := strings.NewReplacer(
		"sudo ", "",
		"go run ./cmd/pipectl", pipectl,
		"examples/plugin-go/pipeline.yaml", filepath.Join(dir, "pipeline.yaml"),
		"examples/plugin-go/dstfilter", filepath.Join(dir, "dstfilter"),
		"ip netns exec ps-a ", "ip netns exec "+l.nsA+" ",
		"ip netns exec ps-b ", "ip netns exec "+l.nsB+" ",
		"iperf3 -s -D", "iperf3 -s -D -I "+filepath.Join(dir, "iperf3.pid"), // killed at the end if still there
		" -t 60", " -t 12",
	)
	type bg struct {
		line string
		cmd  *exec.Cmd
		out  *syncBuffer
		done chan struct{}
	}
	var bgs []*bg
	t.Cleanup(func() {
		for i := len(bgs) - 1; i >= 0; i-- { // pipectl (started first) last
			b := bgs[i]
			syscall.Kill(-b.cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-b.done:
			case <-time.After(10 * time.Second):
				syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
				<-b.done
			}
			if t.Failed() {
				t.Logf("%s:\n%s", b.line, b.out.String())
			}
		}
		// iperf3's daemon (one-off: it exits after its test) must not
		// outlive the test: it holds the files the test inherited (the
		// e2e lock among them).
		if pid, err := os.ReadFile(filepath.Join(dir, "iperf3.pid")); err == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(strings.TrimRight(string(pid), "\x00"))); err == nil && n > 1 {
				syscall.Kill(n, syscall.SIGKILL)
			}
		}
	})
	run := func(line string) string {
		t.Helper()
		cmd := exec.Command("bash", "-c", line)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		t.Logf("$ %s\n%s", line, out)
		return string(out)
	}
	var plugins []string // what each `pipectl plugins` said
	var iperf, recv *bg
	waited := map[string]bool{}
	for _, c := range cmds {
		if c == "sudo scripts/lab.sh up tun" {
			continue // the test's lab
		}
		line := sub.Replace(c)
		if strings.HasSuffix(line, "&") {
			b := &bg{line: line, out: new(syncBuffer), done: make(chan struct{})}
			b.cmd = exec.Command("bash", "-c", strings.TrimSuffix(line, "&"))
			b.cmd.Dir = root
			b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
			b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := b.cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { b.cmd.Wait(); close(b.done) }()
			bgs = append(bgs, b)
			switch {
			case strings.Contains(line, " run "):
				waitFor(t, 20*time.Second, "pipectl running", func() bool { return strings.Contains(b.out.String(), "running file=") })
			case strings.Contains(line, "iperf3 -u"):
				iperf = b
			case strings.Contains(line, "s.bind"):
				recv = b
			}
			continue
		}
		if strings.Contains(line, "pipectl") && strings.Contains(line, " plugins ") {
			if !waited["traffic"] {
				time.Sleep(3 * time.Second) // traffic judged for a while
				waited["traffic"] = true
			}
			plugins = append(plugins, run(line))
			continue
		}
		run(line)
		if strings.HasPrefix(line, "mv ") {
			waitFor(t, 15*time.Second, "reload: watch: binary replaced", func() bool {
				return strings.Contains(bgs[0].out.String(), "reload: watch: binary replaced")
			})
			time.Sleep(2 * time.Second)
			plugins = append(plugins, run(pipectl+" plugins -s "+sock))
		}
	}
	if iperf == nil || recv == nil || len(plugins) != 2 {
		t.Fatalf("the README's steps did not start iperf3 (%v) and the receiver (%v), or ran pipectl plugins %d times, not twice", iperf != nil, recv != nil, len(plugins))
	}
	version := regexp.MustCompile(`(?m)^dstfilter\s+(\S+)\s+(\d+)`)
	m1, m2 := version.FindStringSubmatch(plugins[0]), version.FindStringSubmatch(plugins[1])
	if m1 == nil || m2 == nil || m1[1] != "1" || m2[1] != "2" || m1[2] == m2[2] {
		t.Fatalf("pipectl plugins before and after the rename:\n%s\n%s", plugins[0], plugins[1])
	}
	select {
	case <-iperf.done:
	case <-time.After(30 * time.Second):
		t.Fatal("iperf3 did not end")
	}
	stats := run(pipectl + " stats -s " + sock)
	counter := func(name string) int {
		m := regexp.MustCompile(`(?m)^\s+` + name + `\s+(\d+)`).FindStringSubmatch(stats)
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	// iperf3's receiver line: "… 0/8562 (0%)  receiver". What is lost is
	// lost outside the router, counted by the kernels: the TUN device's
	// queue toward the router in ps-a, the receiver's socket buffer in
	// ps-b (a loaded machine: the README's 0 is a quiet one's). The router
	// drops nothing but the plugin's verdicts.
	lost := regexp.MustCompile(`(\d+)/(\d+) \([0-9.e+-]+%\)\s+receiver`).FindStringSubmatch(iperf.out.String())
	if lost == nil || lost[2] == "0" {
		t.Fatalf("iperf3 UDP across the swap: no receiver report\n%s", iperf.out.String())
	}
	nLost, _ := strconv.Atoi(lost[1])
	kernel := kernelUDPDrops(t, l)
	if nLost > kernel {
		t.Errorf("iperf3 lost %s of %s datagrams across the swap, the kernels dropped %d: the router lost %d\n%s", lost[1], lost[2], kernel, nLost-kernel, iperf.out.String())
	}
	if d := regexp.MustCompile(`(?ms)^\s*2: b: .*?TX:[^\n]*\n\s+\d+\s+\d+\s+(\d+)`).FindStringSubmatch(stats); d == nil || d[1] != strconv.Itoa(counter("verdict_drop_packets")) {
		t.Errorf("link b dropped other packets than the plugin's verdicts (%d):\n%s", counter("verdict_drop_packets"), stats)
	}
	// The numbered datagrams to port 9000: none under version 1 but those
	// the failure policy let through (fail open: a missed deadline), then
	// every one from the switch on, in order.
	time.Sleep(300 * time.Millisecond)
	var got []int
	for _, f := range strings.Fields(recv.out.String()) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("receiver printed %q", f)
		}
		got = append(got, n)
	}
	tail := len(got) - 1
	for tail > 0 && got[tail-1] == got[tail]-1 {
		tail--
	}
	if len(got) == 0 || len(got)-tail < 300 {
		t.Fatalf("port 9000 received %d datagrams, the last %d in a row; want ≥ 300 in a row after the swap", len(got), len(got)-max(tail, 0))
	}
	if before, policy := tail, counter("policy_accept_packets"); before > policy {
		t.Errorf("port 9000 received %d datagrams before the swap's run, more than the %d the failure policy let through", before, policy)
	}
	if counter("verdict_drop_packets") < 100 {
		t.Errorf("version 1 dropped %d datagrams, want ≥ 100 (3 s at 100/s)\n%s", counter("verdict_drop_packets"), stats)
	}
	t.Logf("iperf3 UDP across the swap: %s/%s lost (the kernels dropped %d); port 9000: %d datagrams, %d in a row from %d; %s", lost[1], lost[2], kernel, len(got), len(got)-tail, got[tail], plugins[1])
}

// kernelUDPDrops is what the lab's kernels dropped of UDP on its way: the
// TUN device's transmit queue in ps-a (toward the router) and UDP receive
// errors (buffer overflows among them) in ps-b.
func kernelUDPDrops(t *testing.T, l *lab) int {
	t.Helper()
	n := 0
	link := mustNS(t, 5*time.Second, l.nsA, "ip", "-s", "link", "show", l.tunA)
	if m := regexp.MustCompile(`TX:.*\n\s+\d+\s+\d+\s+\d+\s+(\d+)`).FindStringSubmatch(link); m != nil { // bytes packets errors dropped
		d, _ := strconv.Atoi(m[1])
		n += d
	}
	snmp := strings.Split(mustNS(t, 5*time.Second, l.nsB, "cat", "/proc/net/snmp"), "\n")
	for i := 0; i+1 < len(snmp); i++ {
		if !strings.HasPrefix(snmp[i], "Udp: ") || !strings.HasPrefix(snmp[i+1], "Udp: ") {
			continue
		}
		keys, vals := strings.Fields(snmp[i]), strings.Fields(snmp[i+1])
		for k := range keys {
			if k < len(vals) && keys[k] == "InErrors" { // RcvbufErrors among them
				v, _ := strconv.Atoi(vals[k])
				n += v
			}
		}
		break
	}
	return n
}

// waitFor polls cond until it holds or d passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
