package cli_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/pipectl/cli"
	"github.com/pipestack/pipestack/pipectl/control"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The control socket answers stats, route, neigh and reload while the
// pipeline runs, root-only, and metrics are served in the Prometheus format.
func TestControlSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "ctl", "router.sock")
	metrics := freePort(t)
	content := fmt.Sprintf(`
name: router
control: {socket: %s, metrics: %q}
modules: [network.testproto]
links:
  - {name: a, module: test.link, device: d0, addresses: [10.0.1.1/24], neighbors: [{ip: 10.0.1.2, mac: "02:00:00:00:00:02"}]}
routes:
  - {to: 10.9.0.0/16, via: 10.0.1.254, link: a, metric: 5}
  - {to: default, via: 10.0.1.253, link: a, table: 100}
route_rules:
  - {fwmark: 1, table: 100}
`, sock, metrics)
	file := tempPipeline(t, content)
	r := startRun(t, file, cli.RunOptions{})
	if o := r.next(); o.err != nil {
		t.Fatal(o.err)
	}

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatalf("no control socket: %v\n%s", err, r.log.String())
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}

	st := runMain(t, "stats", "-s", sock)
	if st.code != 0 || !strings.Contains(st.stdout, "1: a: <test.link>") || !strings.Contains(st.stdout, "inet 10.0.1.1/24") {
		t.Errorf("stats: %d %q %q", st.code, st.stdout, st.stderr)
	}
	rt := runMain(t, "route", file) // the socket path read from the file
	if rt.code != 0 || !strings.Contains(rt.stdout, "10.9.0.0/16 via 10.0.1.254 dev a metric 5") ||
		!strings.Contains(rt.stdout, "10.0.1.0/24 dev a proto kernel scope link src 10.0.1.1") ||
		!strings.Contains(rt.stdout, "default via 10.0.1.253 dev a table 100") {
		t.Errorf("route: %d %q %q", rt.code, rt.stdout, rt.stderr)
	}
	ne := runMain(t, "neigh", "-s", sock)
	if ne.code != 0 || !strings.Contains(ne.stdout, "10.0.1.2 dev a lladdr 02:00:00:00:00:02 PERMANENT") {
		t.Errorf("neigh: %d %q %q", ne.code, ne.stdout, ne.stderr)
	}
	js := runMain(t, "stats", "-json", "-s", sock)
	if js.code != 0 || !strings.Contains(js.stdout, `"rx_packets": 0`) {
		t.Errorf("stats -json: %q", js.stdout)
	}

	// reload over the socket: unchanged, then changed, then broken.
	if rl := runMain(t, "reload", "-s", sock); rl.code != 0 || !strings.Contains(rl.stdout, "unchanged: generation 1") {
		t.Errorf("reload unchanged: %d %q %q", rl.code, rl.stdout, rl.stderr)
	}
	r.next()
	writeFile(t, file, strings.Replace(content, "metric: 5", "metric: 7", 1))
	if rl := runMain(t, "reload", "-s", sock); rl.code != 0 || !strings.Contains(rl.stdout, "reloaded: generation 2") {
		t.Errorf("reload changed: %d %q %q", rl.code, rl.stdout, rl.stderr)
	}
	r.next()
	writeFile(t, file, strings.Replace(content, "metric: 5", "metrik: 7", 1))
	if rl := runMain(t, "reload", "-s", sock); rl.code != 1 || !strings.Contains(rl.stderr, `unknown field "metrik"`) {
		t.Errorf("reload broken: %d %q %q", rl.code, rl.stdout, rl.stderr)
	}
	r.next()

	// Prometheus text.
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + metrics + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{`pipestack_link_rx_packets_total{link="a"} 0`, "# TYPE pipestack_counter_total counter", "pipestack_generation 2"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}

	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind after stop: %v", err)
	}
	if rl := runMain(t, "stats", "-s", sock); rl.code != 1 || !strings.Contains(rl.stderr, "no pipeline is running") {
		t.Errorf("stats with nothing running: %d %q", rl.code, rl.stderr)
	}
}

// Reloads over the control socket may overlap, and a reload may change the
// control: section, which restarts the socket the other requests came in
// through. Every request gets its own answer, none waits forever, and the
// socket comes back where the file says. (The loop used to close the old
// socket while a second request waited for the loop: both hung.)
func TestControlConcurrentReloads(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "router.sock")
	metrics := freePort(t)
	variant := func(i int) string {
		m := ""
		if i%2 == 1 {
			m = fmt.Sprintf(", metrics: %q", metrics)
		}
		return fmt.Sprintf(`
name: router
control: {socket: %s%s}
modules: [network.testproto]
links:
  - {name: a, module: test.link, device: d0, addresses: [10.0.1.1/24]}
routes:
  - {to: 10.9.0.0/16, via: 10.0.1.254, link: a, metric: %d}
`, sock, m, i+1)
	}
	file := tempPipeline(t, variant(0))
	r := startRun(t, file, cli.RunOptions{})
	if o := r.next(); o.err != nil {
		t.Fatal(o.err)
	}
	// Applied is called once per reload; drain it so that Run never waits
	// for the test.
	var changes atomic.Int64
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for o := range r.applied {
			if o.err != nil {
				t.Errorf("reload failed: %v", o.err)
			}
			if o.changed {
				changes.Add(1)
			}
		}
	}()

	// call retries while the socket is being restarted (gone or refusing).
	call := func(cmd string) (*control.Reply, error) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			rep, err := control.Call(sock, cmd)
			if err == nil || rep != nil || time.Now().After(deadline) {
				return rep, err
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	const rounds, callers = 6, 6
	for round := 1; round <= rounds; round++ {
		writeFile(t, file, variant(round)) // every round changes control: and a route
		type answer struct {
			rep *control.Reply
			err error
		}
		answers := make(chan answer, callers)
		for range callers {
			go func() {
				rep, err := call("reload")
				answers <- answer{rep, err}
			}()
		}
		changed := 0
		gens := map[uint64]int{}
		timeout := time.After(20 * time.Second)
		for range callers {
			select {
			case a := <-answers:
				if a.err != nil || a.rep.Reload == nil {
					t.Fatalf("round %d: reload: %v %+v", round, a.err, a.rep)
				}
				if a.rep.Reload.Changed {
					changed++
				}
				gens[a.rep.Reload.Generation]++
			case <-timeout:
				t.Fatalf("round %d: concurrent reloads hung (the control loop is wedged)\nlog:\n%s", round, r.log.String())
			}
		}
		// The file changed once before the round: exactly one reload
		// applied it, the others found it unchanged, and all of them
		// answered with the generation now running.
		want := uint64(round + 1)
		if changed != 1 || len(gens) != 1 || gens[want] != callers {
			t.Errorf("round %d: %d changed, generations %v; want 1 changed, all %d", round, changed, gens, want)
		}
	}
	// The socket is back (it restarts after the last reply).
	if rep, err := call("stats"); err != nil || rep.Stats.Generation != rounds+1 {
		t.Fatalf("stats after the reloads: %v %+v", err, rep)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	close(r.applied)
	<-drained
	if n := changes.Load(); n != rounds {
		t.Errorf("%d reloads changed the generation, want %d", n, rounds)
	}
}

// pipectl rules lists the running filter rules with counters and rule
// numbers, as iptables -L -v -n --line-numbers does.
func TestControlRules(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "router.sock")
	content := fmt.Sprintf(`
name: router
control: {socket: %s}
modules: [network.testproto]
links:
  - {name: a, module: test.link, device: d0, addresses: [10.0.1.1/24]}
filter:
  filter:
    input:
      policy: drop
      rules:
        - "-p tcp -s 192.0.2.0/24 --dport 22 -j ACCEPT"
        - {in: a, jump: from_a}
    from_a:
      rules: ["-p udp -m multiport --dports 53,123 -j ACCEPT"]
`, sock)
	file := tempPipeline(t, content)
	r := startRun(t, file, cli.RunOptions{})
	if o := r.next(); o.err != nil {
		t.Fatal(o.err)
	}
	defer r.stop()
	out := runMain(t, "rules", "-s", sock)
	for _, want := range []string{
		"# table filter",
		"Chain INPUT (policy DROP 0 packets, 0 bytes)",
		"num      pkts    bytes target",
		"1           0        0 ACCEPT     tcp   *      *      192.0.2.0/24       0.0.0.0/0          tcp --dport 22",
		"2           0        0 from_a     all   a      *",
		"Chain from_a (1 references)",
		"multiport --dports 53,123",
		"Chain FORWARD (policy ACCEPT 0 packets, 0 bytes)",
	} {
		if out.code != 0 || !strings.Contains(out.stdout, want) {
			t.Errorf("rules lacks %q: %d\n%s%s", want, out.code, out.stdout, out.stderr)
		}
	}
	t.Log("\n" + out.stdout)
	js := runMain(t, "rules", "-json", "-s", sock)
	if js.code != 0 || !strings.Contains(js.stdout, `"Rule": "-p tcp -s 192.0.2.0/24 -m tcp --dport 22 -j ACCEPT"`) {
		t.Errorf("rules -json: %s", js.stdout)
	}
}
