package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TCP and UDP to the router's own addresses, with no transport module
// configured (pipelines/router.yaml has none): the router must answer as a
// Linux host with nothing listening does — a TCP reset and ICMP port
// unreachable — so that nmap reports the ports "closed" (it said
// "filtered" while the router sent protocol unreachable) and curl gets
// "Connection refused".

// newLocalPortsLab is the lab of scripts/lab.sh (mode tun) with this
// file's own tag in every name (suffix "ic" and 4 random hex digits:
// ps-aic…, ps-tun-aic…), removed when the test ends.
func newLocalPortsLab(t *testing.T) *lab {
	t.Helper()
	s := "ic" + randSuffix()[:4]
	l := &lab{t: t, mode: "tun", suffix: s, nsA: "ps-a" + s, nsB: "ps-b" + s, tunA: "ps-tun-a" + s, tunB: "ps-tun-b" + s}
	script := filepath.Join(repoRoot(t), "scripts", "lab.sh")
	run := func(arg string) error {
		cmd := exec.Command("timeout", "60", script, arg, "tun")
		cmd.Env = append(os.Environ(), "LAB_SUFFIX="+s)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("lab.sh %s tun: %v\n%s", arg, err, out)
		}
		return nil
	}
	t.Cleanup(func() {
		if err := run("down"); err != nil {
			t.Error(err)
		}
		if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), s) {
			t.Errorf("lab.sh down left namespaces behind:\n%s", out)
		}
	})
	if err := run("up"); err != nil {
		t.Fatal(err)
	}
	return l
}

var nmapPortRE = regexp.MustCompile(`(?m)^(\d+)/(tcp|udp)\s+(\S+)`)

// nmapStates runs nmap (bounded: 2 retries, a 30 s host timeout, killed
// after 60 s) from netns and returns the state of each port it reports
// ("22/tcp" → "closed").
func nmapStates(t *testing.T, netns string, args ...string) (map[string]string, string) {
	t.Helper()
	base := []string{"nmap", "-n", "-Pn", "--max-retries", "2", "--host-timeout", "30s"}
	out := mustNS(t, 60*time.Second, netns, append(base, args...)...)
	states := map[string]string{}
	for _, m := range nmapPortRE.FindAllStringSubmatch(out, -1) {
		states[m[1]+"/"+m[2]] = m[3]
	}
	return states, out
}

func TestLocalPortsClosed(t *testing.T) {
	requireLab(t, "nmap (nmap)", "curl (curl)")
	l := newLocalPortsLab(t)
	r := startRouter(t, l.routerConfig(""))
	for _, f := range []*family{v4, v6} {
		t.Run(f.name, func(t *testing.T) {
			var flag []string
			if f == v6 {
				flag = []string{"-6"}
			}
			for _, scan := range []struct {
				kind  string
				ports []string
			}{{"-sS", []string{"22/tcp", "80/tcp"}}, {"-sU", []string{"53/udp", "161/udp"}}} {
				// The near address and the far one (link b's): the
				// reply comes from the address probed.
				for _, to := range []string{f.routerA, f.routerB} {
					ports := strings.Join([]string{strings.Split(scan.ports[0], "/")[0], strings.Split(scan.ports[1], "/")[0]}, ",")
					states, out := nmapStates(t, l.nsA, append(flag, scan.kind, "-p", ports, to)...)
					for _, p := range scan.ports {
						if states[p] != "closed" {
							t.Errorf("nmap %s %s: %s is %q, want closed:\n%s", scan.kind, to, p, states[p], out)
						}
					}
				}
			}
			for _, to := range []string{f.routerA, f.routerB} {
				// curl exits 7 (could not connect); -v shows why.
				out, err := ns(t, 15*time.Second, l.nsA, "curl", f.flag, "-v", "-sS", "-m", "5", "http://"+hostPort(to, 80)+"/")
				if err == nil || !strings.Contains(out, "Connection refused") {
					t.Errorf("curl http://%s: %v, want Connection refused:\n%s", hostPort(to, 80), err, out)
				}
			}
			if got := r.waitCounter(f.name, "tcp_reset_out", 6, 5*time.Second); got < 6 {
				t.Errorf("%s tcp_reset_out = %d, want ≥ 6 (4 SYN scans, 2 curls)", f.name, got)
			}
			if got := r.waitCounter(f.name, "udp_no_transport", 4, 5*time.Second); got < 4 {
				t.Errorf("%s udp_no_transport = %d, want ≥ 4", f.name, got)
			}
		})
	}
}
