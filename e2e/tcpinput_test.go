package e2e

import (
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/tcp"
)

// tcpInputKnown are the answers in which transport.tcp differs from Linux
// on purpose (modules/tcp/README.md, "Conformance").
var tcpInputKnown = map[string]string{
	// Linux's request sockets reset on an in-window SYN; we answer with a
	// challenge ACK as RFC 5961 §4 asks of synchronized states.
	"synrecv syn-in-window": "challenge ACK, not a reset",
}

// TestTCPInputDifferential sends the same segments (e2e/testdata/
// tcpinput.py: resets at RCV.NXT−1 after a FIN, an ACK below ISS+1 with
// data, TSval 0 then 2^31 later, ACKs above SND.NXT, SYNs again and in
// window in SYN-RECEIVED, a reset in window there, a FIN beyond the
// window, options of bad lengths, data on a SYN, SYN+FIN, zero-window
// probes and their rate limit, TIME-WAIT against an old reset, an old
// SYN and a reset, a SYN reopening TIME-WAIT, a reset and a SYN in the
// window of ESTABLISHED, data without ACK, beyond the window, twice and
// out of order, a wrong ACK in SYN-RECEIVED) to Linux's TCP (the
// script is the wire of a TUN device in a namespace, with its own
// listeners) and to transport.tcp (a stack in this process owns a TUN
// device in another namespace; the script sends over a raw socket and
// reads with AF_PACKET). The answers, normalized (flags, relative
// sequence numbers, which options a SYN-ACK carries), must be the same
// line by line but for tcpInputKnown.
func TestTCPInputDifferential(t *testing.T) {
	requireLab(t)
	if out, err := exec.Command(debianPython, "-c", "import socket, fcntl, select").CombinedOutput(); err != nil {
		need(t, "%s: %v %s", debianPython, err, out)
	}
	script := filepath.Join(repoRoot(t), "e2e", "testdata", "tcpinput.py")

	// Linux.
	s := "ti" + randSuffix()[:4]
	nsL, devL := "ps-"+s, "ps-ti-"+s
	if out, err := exec.Command("ip", "netns", "add", nsL).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", nsL).CombinedOutput(); err != nil {
			t.Errorf("ip netns del: %v\n%s", err, out)
		}
	})
	mustNS(t, 10*time.Second, nsL, "sh", "-c", "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && sysctl -qw net.ipv6.conf.default.disable_ipv6=1 && "+
		"ip link set lo up && ip tuntap add dev "+devL+" mode tun && ip addr add 10.77.0.1/24 dev "+devL+" && ip link set "+devL+" up")
	linux := mustNS(t, 120*time.Second, nsL, debianPython, script, "tun", devL, "10.77.0.1", "10.77.0.2")

	// transport.tcp: listeners as the script's own (:80 keeps what it
	// accepts and never reads, :81 closes at once).
	st, nsP := newTCPStack(t, false)
	devP := "ps-tcp-" + strings.TrimPrefix(nsP, "ps-")
	lc := tcp.ListenConfig{KeepAlive: -1}
	for _, port := range []string{":80", ":81"} {
		ln, err := lc.Listen(st, "tcp4", port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		keep := port == ":80"
		go func() {
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for {
				c, err := ln.Accept()
				if err != nil {
					if !errors.Is(err, net.ErrClosed) {
						t.Errorf("accept: %v", err)
					}
					return
				}
				if keep {
					held = append(held, c)
				} else {
					c.Close()
				}
			}
		}()
	}
	ours := mustNS(t, 120*time.Second, nsP, debianPython, script, "raw", devP, "10.199.0.2", "10.199.0.3")

	lines := func(out string) ([]string, map[string]string) {
		var keys []string
		m := map[string]string{}
		for _, l := range strings.Split(out, "\n") {
			k, v, ok := strings.Cut(l, ": ")
			if !ok {
				continue
			}
			keys = append(keys, k)
			m[k] = v
		}
		return keys, m
	}
	lk, lm := lines(linux)
	_, om := lines(ours)
	if !strings.Contains(linux, "\ndone") || !strings.Contains(ours, "\ndone") || len(lk) < 45 {
		t.Fatalf("the script did not finish:\nLinux:\n%s\ntransport.tcp:\n%s", linux, ours)
	}
	for _, k := range lk {
		l, o := lm[k], om[k]
		switch {
		case l == o:
			t.Logf("%-40s %s", k, l)
		case tcpInputKnown[k] != "":
			t.Logf("%-40s Linux %s, ours %s (known: %s)", k, l, o, tcpInputKnown[k])
		default:
			t.Errorf("%-40s Linux %s, ours %s", k, l, o)
		}
	}
	for k := range tcpInputKnown {
		if lm[k] == om[k] {
			t.Errorf("%s: known difference gone (both %s): update tcpInputKnown and the README", k, lm[k])
		}
	}
}
