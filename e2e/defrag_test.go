package e2e

import (
	"strings"
	"testing"
	"time"
)

// defragUDPServer answers one datagram with 6,000 bytes (fragmented by
// Linux on the way back).
const defragUDPServer = `
import socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9999))
print('ready', flush=True)
d, a = s.recvfrom(65535)
print('got', len(d), flush=True)
s.sendto(b'y' * 6000, a)
`

// defragUDPClient sends 5,000 bytes (fragmented by Linux) until it gets an
// answer.
const defragUDPClient = `
import socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(1)
for i in range(8):
    s.sendto(b'x' * 5000, (sys.argv[1], 9999))
    try:
        d, _ = s.recvfrom(65535)
        print('reply', len(d), flush=True)
        break
    except socket.timeout:
        pass
`

// TestTUNDefragStateful: fragmented datagrams through the stateful router
// whose FORWARD and INPUT chains drop INVALID (Linux hosts fragment them
// at 1500 bytes): ping -s 3000 and a 5,000-byte UDP exchange from A to B
// pass both ways, over IPv4 and IPv6 (IPv6 was dropped: its non-first
// fragments were INVALID before defragmentation on the forwarding path),
// and a fragmented ping to the router itself is answered.
func TestTUNDefragStateful(t *testing.T) {
	requireLab(t, "ping (iputils-ping)", "python3 (python3)")
	l := newLabSuffix(t, "tun", "df"+randSuffix()[:4])
	cfg := l.routerConfigWith("{module: netfilter.conntrack, max: 4096}") + `filter:
  filter:
    input:
      rules:
        - "-m conntrack --ctstate INVALID -j DROP"
    forward:
      policy: drop
      rules:
        - "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        - "-m conntrack --ctstate INVALID -j DROP"
        - "-i a -o b -m conntrack --ctstate NEW -j ACCEPT"
`
	r := startRouter(t, cfg)
	for _, f := range []*family{v4, v6} {
		t.Run(f.name, func(t *testing.T) {
			if out, err := ns(t, 15*time.Second, l.nsA, "ping", f.flag, "-c", "3", "-i", "0.3", "-W", "2", "-s", "3000", f.hostB); err != nil || !strings.Contains(out, "3 received") {
				t.Errorf("ping -s 3000 through the router: %v\n%s", err, out)
			}
			if out, err := ns(t, 15*time.Second, l.nsA, "ping", f.flag, "-c", "3", "-i", "0.3", "-W", "2", "-s", "3000", f.routerB); err != nil || !strings.Contains(out, "3 received") {
				t.Errorf("ping -s 3000 to the router: %v\n%s", err, out)
			}
			got := make(chan string, 1)
			go func() {
				out, _ := ns(t, 20*time.Second, l.nsB, "python3", "-c", defragUDPServer, f.hostB)
				got <- out
			}()
			time.Sleep(500 * time.Millisecond)
			out, err := ns(t, 20*time.Second, l.nsA, "python3", "-c", defragUDPClient, f.hostB)
			if err != nil || !strings.Contains(out, "reply 6000") {
				t.Errorf("UDP 5000 bytes out, 6000 back: %v\nclient:\n%s", err, out)
			}
			if srv := <-got; !strings.Contains(srv, "got 5000") {
				t.Errorf("the server got:\n%s", srv)
			}
		})
	}
	for _, set := range []string{"ipv4", "ipv6"} {
		if c := r.waitCounter(set, "reasm_ok", 4, 10*time.Second); c < 4 {
			t.Errorf("%s reasm_ok %d: the router did not reassemble", set, c)
		}
	}
	if c := r.counters("stack")["filter_drop_forward"]; c != 0 {
		t.Errorf("filter_drop_forward %d", c)
	}
	if t.Failed() {
		for _, set := range []string{"conntrack", "ipv4", "ipv6", "stack"} {
			t.Logf("%s: %v", set, r.counters(set))
		}
		if list, err := r.control("conntrack", "-L"); err == nil {
			t.Logf("conntrack -L:\n%s", list)
		}
	}
}
