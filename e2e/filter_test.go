package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestTUNFilter: the router's filter section against Linux hosts. A's TCP
// to B's port 8080 passes, 8081 is answered with a reset and 8082 with ICMP
// port unreachable (Linux reports both as "connection refused", at once),
// 8083 is dropped (the connect times out); ping passes both ways; pipectl
// rules shows the counts. The lab's names carry the suffix "fl…".
func TestTUNFilter(t *testing.T) {
	requireLab(t, "ping (iputils-ping)", "curl (curl)")
	l := newLabSuffix(t, "tun", "fl"+randSuffix()[:4])
	cfg := l.routerConfig("") + `filter:
  filter:
    forward:
      policy: drop
      rules:
        - "-p icmp -j ACCEPT"
        - "-p ipv6-icmp -j ACCEPT"
        - {id: b-to-a, in: b, out: a, target: accept}
        - {id: web, in: a, proto: tcp, dport: 8080, target: accept}
        - "-i a -p tcp --dport 8081 -j REJECT --reject-with tcp-reset"
        - "-i a -p tcp --dport 8082 -j REJECT"
`
	r := startRouter(t, cfg)
	checkPings(t, l, r, v4)
	startHTTP(t, l.nsB, "10.10.2.2:8080")
	out := mustNS(t, 20*time.Second, l.nsA, "curl", "-sS", "--fail", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "http://10.10.2.2:8080/blob?size=100000&seed=1")
	if out != "200" {
		t.Errorf("curl to 8080: %q", out)
	}
	for _, port := range []string{"8081", "8082"} {
		start := time.Now()
		out, err := ns(t, 20*time.Second, l.nsA, "curl", "-sS", "--connect-timeout", "5", "http://10.10.2.2:"+port+"/")
		refused := strings.Contains(out, "refused") || strings.Contains(out, "Couldn't connect") // curl's wordings of ECONNREFUSED
		if err == nil || !refused || time.Since(start) > 3*time.Second {
			t.Errorf("curl to %s: %v after %v: %s (want connection refused at once)", port, err, time.Since(start), out)
		}
	}
	start := time.Now()
	out, err := ns(t, 20*time.Second, l.nsA, "curl", "-sS", "--connect-timeout", "2", "http://10.10.2.2:8083/")
	if err == nil || strings.Contains(out, "refused") || strings.Contains(out, "Couldn't connect") || time.Since(start) < 1500*time.Millisecond {
		t.Errorf("curl to 8083: %v after %v: %s (want a timeout: dropped)", err, time.Since(start), out)
	}
	rules, err := r.control("rules")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pipectl rules:\n%s", rules)
	for _, want := range []string{"Chain FORWARD (policy DROP", "REJECT     tcp   a      *", "reject-with tcp-reset"} {
		if !strings.Contains(rules, want) {
			t.Errorf("pipectl rules lacks %q", want)
		}
	}
	// The reset and the ICMP error were each sent (and counted).
	if n := r.counters("filter")["rejected"]; n < 2 {
		t.Errorf("filter rejected %d, want at least 2: %v", n, r.counters("filter"))
	}
	if n := r.counters("stack")["filter_drop_forward"]; n == 0 {
		t.Errorf("no forward drop counted (8083): %v", r.counters("stack"))
	}
}
