package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestTUNStatefulFirewall: the router as the stateful firewall of the
// inside network A (netfilter.conntrack, FORWARD and INPUT policy drop,
// ESTABLISHED,RELATED accepted, new connections only from A, and from B
// only to A's port 8080). Against Linux hosts in namespaces: curl from A to
// B works (the replies are ESTABLISHED); from B, curl reaches A's 8080 and
// not its 8081 (both listen); nmap from B sees 8080 open and 8081, 22
// filtered; ping from A works and from B does not; the router lists the
// flows with pipectl conntrack -L. IPv4 and IPv6.
func TestTUNStatefulFirewall(t *testing.T) {
	requireLab(t, "ping (iputils-ping)", "curl (curl)", "nmap (nmap)")
	l := newLabSuffix(t, "tun", "ct"+randSuffix()[:4])
	cfg := l.routerConfigWith("{module: netfilter.conntrack, max: 4096}") + `filter:
  filter:
    input:
      policy: drop
      rules:
        - "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        - "-i a -p icmp -j ACCEPT"
        - "-p ipv6-icmp -j ACCEPT"
    forward:
      policy: drop
      rules:
        - "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        - "-m conntrack --ctstate INVALID -j DROP"
        - "-i a -o b -m conntrack --ctstate NEW -j ACCEPT"
        - "-i b -o a -p tcp --dport 8080 -m conntrack --ctstate NEW -j ACCEPT"
        - "-i b -o a -p ipv6-icmp --icmpv6-type echo-request -j DROP"
        - "-p ipv6-icmp -j ACCEPT"
`
	r := startRouter(t, cfg)
	for _, f := range []*family{v4, v6} {
		t.Run(f.name, func(t *testing.T) {
			host := func(h string) string {
				if f == v6 {
					return "[" + h + "]"
				}
				return h
			}
			if out := mustNS(t, 10*time.Second, l.nsA, "ping", f.flag, "-c", "3", "-i", "0.2", "-W", "2", f.hostB); !strings.Contains(out, "3 received") {
				t.Errorf("ping from the inside:\n%s", out)
			}
			if out, _ := ns(t, 10*time.Second, l.nsB, "ping", f.flag, "-c", "2", "-i", "0.2", "-W", "1", f.hostA); !strings.Contains(out, " 0 received") {
				t.Errorf("ping from the outside got through:\n%s", out)
			}
			startHTTP(t, l.nsB, host(f.hostB)+":8080")
			if out := mustNS(t, 20*time.Second, l.nsA, "curl", "-sS", "--fail", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
				"http://"+host(f.hostB)+":8080/blob?size=2000000&seed=3"); out != "200" {
				t.Errorf("curl from the inside: %q", out)
			}
			startHTTP(t, l.nsA, host(f.hostA)+":8080")
			startHTTP(t, l.nsA, host(f.hostA)+":8081")
			if out := mustNS(t, 20*time.Second, l.nsB, "curl", "-sS", "--fail", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
				"http://"+host(f.hostA)+":8080/blob?size=100000&seed=4"); out != "200" {
				t.Errorf("curl from the outside to the opened port: %q", out)
			}
			start := time.Now()
			if out, err := ns(t, 20*time.Second, l.nsB, "curl", "-sS", "--connect-timeout", "2", "http://"+host(f.hostA)+":8081/"); err == nil || time.Since(start) < 1500*time.Millisecond {
				t.Errorf("curl from the outside to 8081: %v after %v: %s (want a timeout: dropped)", err, time.Since(start), out)
			}
			cmd := []string{"nmap", "-n", "-Pn", "--max-retries", "1", "--host-timeout", "30s", "-oG", "-", "-sS", "-p", "22,8080,8081"}
			if f == v6 {
				cmd = append(cmd, "-6")
			}
			out := mustNS(t, 60*time.Second, l.nsB, append(cmd, f.hostA)...)
			ports := map[string]string{}
			for _, line := range lines(out) {
				for _, m := range nmapGrepablePortRE.FindAllStringSubmatch(line, -1) {
					ports[m[1]+"/"+m[3]] = m[2]
				}
			}
			for p, want := range map[string]string{"8080/tcp": "open", "8081/tcp": "filtered", "22/tcp": "filtered"} {
				if ports[p] != want {
					t.Errorf("nmap from the outside: %s %q, want %q (all: %v)\n%s", p, ports[p], want, ports, out)
				}
			}
		})
	}
	list, err := r.control("conntrack", "-L")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pipectl conntrack -L:\n%s", list)
	for _, want := range []string{"tcp      6 ", "src=10.10.1.2 dst=10.10.2.2", "dport=8080", "[ASSURED]", "src=fd00:10:1::2 dst=fd00:10:2::2", "icmp     1 "} {
		if !strings.Contains(list, want) {
			t.Errorf("pipectl conntrack -L lacks %q", want)
		}
	}
}
