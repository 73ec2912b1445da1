package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestNmapThroughRouter: from A, nmap scans host B through the router, over
// TUN and over AF_PACKET, in both address families: a SYN scan of three TCP
// ports, one with a listener (the helper HTTP server), and a UDP scan of a
// port nothing listens on. nmap must see what Linux on B answers — open for
// the listener (B's SYN-ACK came back), closed for the others (B's RST, and
// for UDP B's ICMP port unreachable, came back) — which proves the router
// forwards SYNs, SYN-ACKs, RSTs and ICMP errors both ways.
func TestNmapThroughRouter(t *testing.T) {
	for _, mode := range []string{"tun", "afpacket"} {
		t.Run(mode, func(t *testing.T) {
			requireLab(t, "nmap (nmap)")
			l := newLabSuffix(t, mode, "tc"+randSuffix()[:4])
			r := startRouter(t, l.routerConfig(""))
			for _, f := range []*family{v4, v6} {
				startHTTP(t, l.nsB, hostPort(f.hostB, 8080))
				before := r.stats().set(f.name)["forwarded"]
				got := nmap(t, l, f, "-sS", "-p", "8080-8082")
				want := map[string]string{"8080/tcp": "open", "8081/tcp": "closed", "8082/tcp": "closed"}
				got6 := nmap(t, l, f, "-sU", "-p", "9999")
				want["9999/udp"] = "closed"
				for p, s := range got6 {
					got[p] = s
				}
				for p, s := range want {
					if got[p] != s {
						t.Errorf("nmap %s %s: port %s %q, want %q (all: %v)", f.flag, f.hostB, p, got[p], s, got)
					}
				}
				// 4 probes and 4 answers at least, plus nmap's RST for
				// the open port.
				if n := r.stats().set(f.name)["forwarded"] - before; n < 9 {
					t.Errorf("%s forwarded %d packets during the scans, want ≥ 9", f.name, n)
				}
			}
		})
	}
}

var nmapGrepablePortRE = regexp.MustCompile(`(\d+)/(open|closed|filtered|open\|filtered|unfiltered|closed\|filtered)/(tcp|udp)/`)

// nmap runs nmap in A against B's address (no ping, no DNS, one retry)
// and returns each port's state ("8080/tcp" -> "open") from its grepable
// output.
func nmap(t *testing.T, l *lab, f *family, args ...string) map[string]string {
	t.Helper()
	cmd := []string{"nmap", "-n", "-Pn", "--max-retries", "1", "--host-timeout", "20s", "-oG", "-"}
	if f == v6 {
		cmd = append(cmd, "-6")
	}
	out := mustNS(t, 40*time.Second, l.nsA, append(append(cmd, args...), f.hostB)...)
	ports := map[string]string{}
	for _, line := range lines(out) {
		if !strings.Contains(line, "Ports:") {
			continue
		}
		for _, m := range nmapGrepablePortRE.FindAllStringSubmatch(line, -1) {
			ports[m[1]+"/"+m[3]] = m[2]
		}
	}
	if len(ports) == 0 {
		t.Fatalf("nmap %s: no ports in its output:\n%s", strings.Join(args, " "), out)
	}
	return ports
}
