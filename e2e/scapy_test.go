package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// debianPython is the interpreter that has python3-scapy: the python3 first
// on PATH may be another one (pyenv's, on this project's machine) without it.
const debianPython = "/usr/bin/python3"

// TestScapyMalformed: host A writes 2,000 malformed IPv4 and IPv6 packets
// (e2e/testdata/malformed.py: bad IHL, lengths beyond or below the
// packet, bad version and checksum, truncated headers, bad and
// source-route options, overlapping fragments to the router and across it,
// bad extension headers, a bad hop-by-hop option, TTL and hop limit 1, a
// martian source) onto its link in about 1.5 s, over TUN and over
// AF_PACKET. Afterwards the router still forwards (ping both families),
// its drop counters grew by what it was sent (each malformed kind counted
// under its reason, overlaps in both families), and pipectl did not crash
// (it answers, logs no panic and stops with status 0).
func TestScapyMalformed(t *testing.T) {
	for _, mode := range []string{"tun", "afpacket"} {
		t.Run(mode, func(t *testing.T) {
			requireLab(t, "ping (iputils-ping)")
			if out, err := exec.Command(debianPython, "-c", "import scapy.all").CombinedOutput(); err != nil {
				need(t, "scapy for %s: apt-get install python3-scapy (%v: %s)", debianPython, err, out)
			}
			l := newLabSuffix(t, mode, "tc"+randSuffix()[:4])
			r := startRouter(t, l.routerConfig(""))
			for _, f := range []*family{v4, v6} {
				mustNS(t, 10*time.Second, l.nsA, "ping", f.flag, "-c", "2", "-i", "0.2", "-W", "2", f.hostB)
			}
			before := r.stats()

			args := []string{debianPython, filepath.Join(repoRoot(t), "e2e", "testdata", "malformed.py"), l.devA(), "2000", "1.5"}
			if mode == "afpacket" {
				args = append(args, macOf(t, l.nsA, l.va), macOf(t, l.nsR, l.ra))
			}
			out := mustNS(t, 30*time.Second, l.nsA, args...)
			if !strings.Contains(out, "sent 2000 of 2000") {
				t.Fatalf("malformed.py did not send every packet:\n%s", out)
			}
			time.Sleep(300 * time.Millisecond)

			for _, f := range []*family{v4, v6} {
				out := mustNS(t, 10*time.Second, l.nsA, "ping", f.flag, "-c", "3", "-i", "0.2", "-W", "2", f.hostB)
				if !strings.Contains(out, "3 received") {
					t.Errorf("after the burst: ping %s:\n%s", f.hostB, out)
				}
			}
			after := r.stats()
			if strings.Contains(r.log.String(), "panic") {
				t.Errorf("panic in the router log:\n%s", r.logWithoutStats())
			}
			var total uint64
			for _, set := range []string{"ipv4", "ipv6"} {
				b, a := before.set(set), after.set(set)
				var grew []string
				var drops uint64
				for name, v := range a {
					d := v - b[name]
					if d == 0 {
						continue
					}
					grew = append(grew, fmt.Sprintf("%s +%d", name, d))
					if isDropReason(name) {
						drops += d
					}
				}
				slices.Sort(grew)
				t.Logf("%s during the burst: %s", set, strings.Join(grew, ", "))
				if d := a["reasm_overlap"] - b["reasm_overlap"]; d == 0 {
					t.Errorf("%s: overlapping fragments to the router not counted (reasm_overlap)", set)
				}
				if drops == 0 {
					t.Errorf("%s: no drop counter grew", set)
				}
				total += drops
			}
			for _, link := range []string{"a", "b"} {
				total += after.device(link)["rx_malformed"] - before.device(link)["rx_malformed"]
			}
			// About two thirds of the 37 kinds are dropped as malformed
			// or refused (the others are forwarded or answered): 2,000
			// packets make well over 800 counted drops.
			if total < 800 {
				t.Errorf("drop counters grew by %d in all after 2,000 malformed packets, want ≥ 800", total)
			}
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// isDropReason tells a counter that counts dropped packets by reason from
// one that counts traffic (rx, forwarded, sent, ICMP sent, fragments seen).
func isDropReason(name string) bool {
	for _, p := range []string{"malformed_", "martian_", "unknown_option", "source_route", "ttl_exceeded",
		"hop_limit_exceeded", "reasm_overlap", "reasm_too_big", "reasm_discarded", "reasm_malformed", "rp_filter"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
