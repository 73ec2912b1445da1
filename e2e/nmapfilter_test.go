package e2e

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestNmapStatelessFirewall: a stateless firewall in router.yaml form (the
// lab's TUN router with a filter section: FORWARD drops by default, lets
// everything from B back to A, and opens tcp 22 and 80 and udp 53 to host
// B, in both families) seen by nmap from host A. B listens on every port
// scanned (TCP accepts, UDP echoes), so what nmap finds open is exactly
// what the rules let through: tcp 22 and 80 open and the other TCP ports
// filtered (SYNs dropped, no reset), udp 53 open (its echo came back) and
// the other UDP ports open|filtered (no answer). The lab's names carry
// "nf…".
func TestNmapStatelessFirewall(t *testing.T) {
	requireLab(t, "nmap (nmap)")
	l := newLabSuffix(t, "tun", "nf"+randSuffix()[:4])
	cfg := l.routerConfig("") + `filter:
  filter:
    forward:
      policy: drop
      rules:
        - {id: replies, in: b, out: a, target: accept}
        - "-i a -o b -d 10.10.2.2 -p tcp -m multiport --dports 22,80 -j ACCEPT"
        - "-i a -o b -d fd00:10:2::2 -p tcp -m multiport --dports 22,80 -j ACCEPT"
        - {in: a, out: b, dst: 10.10.2.2, proto: udp, dport: 53, target: accept}
        - {in: a, out: b, dst: "fd00:10:2::2", proto: udp, dport: 53, target: accept}
`
	r := startRouter(t, cfg)
	tcpPorts := []int{21, 22, 23, 80, 443, 8080}
	udpPorts := []int{52, 53, 54, 161}
	var addrs []string
	for _, p := range tcpPorts {
		addrs = append(addrs, fmt.Sprintf("tcp/:%d", p))
	}
	for _, p := range udpPorts {
		addrs = append(addrs, fmt.Sprintf("udp/:%d", p))
	}
	startListen(t, l.nsB, strings.Join(addrs, ","))
	for _, f := range []*family{v4, v6} {
		got := nmap(t, l, f, "-sS", "-p", ports(tcpPorts))
		for p, s := range nmap(t, l, f, "-sU", "-p", ports(udpPorts)) {
			got[p] = s
		}
		want := map[string]string{}
		for _, p := range tcpPorts {
			want[fmt.Sprintf("%d/tcp", p)] = "filtered"
		}
		for _, p := range udpPorts {
			want[fmt.Sprintf("%d/udp", p)] = "open|filtered"
		}
		want["22/tcp"], want["80/tcp"], want["53/udp"] = "open", "open", "open"
		t.Logf("nmap %s %s: %v", f.flag, f.hostB, got)
		for p, s := range want {
			if got[p] != s {
				t.Errorf("nmap %s %s: port %s %q, want %q (all: %v)", f.flag, f.hostB, p, got[p], s, got)
			}
		}
		if len(got) != len(want) {
			t.Errorf("nmap %s: %d ports reported, want %d: %v", f.flag, len(got), len(want), got)
		}
	}
	if n := r.counters("stack")["filter_drop_forward"]; n < 2*(4+3) {
		t.Errorf("filter_drop_forward %d, want at least one per closed port and family: %v", n, r.counters("stack"))
	}
	rules, err := r.control("rules")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pipectl rules:\n%s", rules)
	if !strings.Contains(rules, "Chain FORWARD (policy DROP") || !strings.Contains(rules, "multiport --dports 22,80") {
		t.Errorf("pipectl rules:\n%s", rules)
	}
}

func ports(ps []int) string {
	var s []string
	for _, p := range ps {
		s = append(s, fmt.Sprint(p))
	}
	return strings.Join(s, ",")
}

// startListen runs the helper in netns, listening on addrs
// ("tcp/:22,udp/:53": TCP accepts and closes, UDP echoes each datagram)
// until the test ends.
func startListen(t *testing.T, netns, addrs string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	background(t, 2*time.Minute, "ready", netns,
		[]string{helperEnv + "=listen", "PIPESTACK_E2E_ADDR=" + addrs}, exe, "-test.run=^$")
}

// serveListen is the listen helper (startListen); dual-stack sockets.
func serveListen(addrs string) {
	for _, a := range strings.Split(addrs, ",") {
		netw, addr, _ := strings.Cut(a, "/")
		switch netw {
		case "tcp":
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				fmt.Println("listen:", err)
				os.Exit(1)
			}
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		case "udp":
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				fmt.Println("listen:", err)
				os.Exit(1)
			}
			go func() {
				buf := make([]byte, 2048)
				for {
					n, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					pc.WriteTo(buf[:n], from)
				}
			}()
		default:
			fmt.Println("bad address", a)
			os.Exit(1)
		}
	}
	fmt.Println("ready")
	select {}
}
