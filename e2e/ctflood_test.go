package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTUNConntrackFlood: a bounded hping3 flood of new flows (UDP, one
// source port per packet: 200,000 packets, as fast as hping3 sends them
// within 12 s) from the LAN through the NAT gateway, whose conntrack table
// holds 1,024 entries. The table holds at its maximum (entries never
// above it, early_drop frees the unreplied flows for the new ones); the
// router's memory stays flat (its RSS in the second half of the flood
// grows by less than 8 MiB, and by less than 32 MiB from before it); a TCP
// stream opened before the flood (iperf3, 10 Mbit/s, assured, so never
// early-dropped) runs through it to the end with its entry kept, and a
// ping through the NAT during the flood keeps getting answers. Then a
// flood of SYNs from the WAN that the FORWARD policy drops: the LAN still
// opens new flows during it (their first packets' entries are the ones
// early drop frees).
func TestTUNConntrackFlood(t *testing.T) {
	requireLab(t, "hping3 (hping3)", "iperf3 (iperf3)", "ping (iputils-ping)")
	l := newLabSuffix(t, "tun", "cf"+randSuffix()[:4])
	const max = 1024
	cfg := l.routerConfigWith(fmt.Sprintf("{module: netfilter.conntrack, max: %d}", max)) + `filter:
  nat:
    postrouting:
      rules: ["-4 -o b -j MASQUERADE"]
  filter:
    forward:
      policy: drop
      rules:
        - "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        - "-m conntrack --ctstate INVALID -j DROP"
        - "-i a -o b -m conntrack --ctstate NEW -j ACCEPT"
`
	r := startRouter(t, cfg)
	pid := r.cmd.Process.Pid

	// The established flows: a TCP stream A → B for 16 s, and a ping.
	background(t, 40*time.Second, "listening", l.nsB, nil, "iperf3", "-s", "-1", "--forceflush", "-B", v4.hostB, "-p", "5301")
	iperfCtx, iperfCancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer iperfCancel()
	iperf := exec.CommandContext(iperfCtx, "ip", "netns", "exec", l.nsA, "iperf3", "-c", v4.hostB, "-p", "5301", "-t", "16", "-b", "10M", "-f", "m")
	var iperfOut syncBuffer
	iperf.Stdout, iperf.Stderr = &iperfOut, &iperfOut
	if err := iperf.Start(); err != nil {
		t.Fatal(err)
	}
	iperfDone := make(chan error, 1)
	go func() { iperfDone <- iperf.Wait() }()
	// Its entry: the stream's connection to 5301 (iperf3 also has a control
	// connection to the same port).
	var before string
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, _ := r.control("conntrack", "-L", "-p", "tcp", "--dport", "5301")
		if strings.Count(list, "ESTABLISHED") >= 2 && strings.Contains(list, "[ASSURED]") {
			before = list
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no established iperf3 connections in the table after 10 s:\n%s\n%s", list, iperfOut.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	streams := regexp.MustCompile(`sport=(\d+) dport=5301 src`).FindAllStringSubmatch(before, -1)
	if len(streams) == 0 {
		t.Fatalf("no stream connection in:\n%s", before)
	}
	rss0 := rssKiB(t, pid)

	ping := exec.Command("ip", "netns", "exec", l.nsA, "ping", "-c", "40", "-i", "0.25", "-W", "1", v4.hostB)
	var pingOut syncBuffer
	ping.Stdout, ping.Stderr = &pingOut, &pingOut
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	defer ping.Process.Kill()

	// The flood: new flows from A (UDP to B's discard port, the source
	// port incremented per packet), bounded by count and time.
	flood := exec.Command("ip", "netns", "exec", l.nsA, "timeout", "12", "hping3", "--udp", "-p", "9", "-i", "u10", "-c", "200000", "-q", v4.hostB)
	var floodOut syncBuffer
	flood.Stdout, flood.Stderr = &floodOut, &floodOut
	start := time.Now()
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	floodDone := make(chan error, 1)
	go func() { floodDone <- flood.Wait() }()
	var rssMid int
	maxEntries := 0
	for sampled := false; ; {
		select {
		case <-floodDone:
		case <-time.After(250 * time.Millisecond):
			if n := statsKV(t, r)["entries"]; n > maxEntries {
				maxEntries = n
			}
			if !sampled && time.Since(start) > 4*time.Second {
				rssMid, sampled = rssKiB(t, pid), true
			}
			continue
		}
		break
	}
	floodTime := time.Since(start)
	rss1 := rssKiB(t, pid)
	st := statsKV(t, r)
	t.Logf("flood: %v; hping3:\n%s", floodTime.Round(time.Millisecond), floodOut.String())
	t.Logf("conntrack -S after: %v; most entries seen: %d", st, maxEntries)
	t.Logf("router RSS: %d KiB before, %d KiB at 4 s, %d KiB after", rss0, rssMid, rss1)

	if st["new"] < 10*max {
		t.Errorf("only %d new flows: the flood did not reach the router (hping3: %s)", st["new"], floodOut.String())
	}
	if st["early_drop"] < 5*max {
		t.Errorf("early_drop %d: the table did not hold at its maximum by evicting unreplied flows", st["early_drop"])
	}
	if st["entries"] > max || maxEntries > max || st["max"] != max {
		t.Errorf("entries %d (most seen %d), max %d: the table grew past its maximum %d", st["entries"], maxEntries, st["max"], max)
	}
	// The stream's entries outlived the flood (assured: not early-dropped).
	after, _ := r.control("conntrack", "-L", "-p", "tcp", "--dport", "5301")
	for _, m := range streams {
		if !strings.Contains(after, "sport="+m[1]+" dport=5301 ") {
			t.Errorf("the entry of the connection from port %s was lost in the flood:\n%s", m[1], after)
		}
	}
	if rssMid == 0 {
		rssMid = rss0
	}
	if rss1-rssMid > 8<<10 || rss1-rss0 > 32<<10 {
		t.Errorf("router RSS %d → %d → %d KiB during the flood: not flat", rss0, rssMid, rss1)
	}

	// The stream opened before the flood ran to its end, its entry kept.
	select {
	case err := <-iperfDone:
		if err != nil {
			t.Errorf("iperf3 through the flood: %v\n%s", err, iperfOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("iperf3 did not end:\n%s", iperfOut.String())
	}
	t.Logf("iperf3:\n%s", iperfOut.String())
	if !strings.Contains(iperfOut.String(), "receiver") {
		t.Errorf("iperf3 reported no receiver summary")
	}
	if err := ping.Wait(); err != nil && !strings.Contains(pingOut.String(), "received") {
		t.Errorf("ping: %v\n%s", err, pingOut.String())
	}
	m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(pingOut.String())
	if m == nil {
		t.Fatalf("ping printed no summary:\n%s", pingOut.String())
	}
	sent, got := atoi(m[1]), atoi(m[2])
	if got*10 < sent*8 {
		t.Errorf("ping through the NAT during the flood: %d of %d answered (want ≥ 80 %%)", got, sent)
	}

	// A flood from the WAN (SYNs to ever other ports of A, which the
	// FORWARD policy drops): the entries of the dropped first packets are
	// the first early drop frees, so the LAN still opens new flows during
	// it — each ping below is a new flow (its own echo id).
	st0 := statsKV(t, r)
	wan := exec.Command("ip", "netns", "exec", l.nsB, "timeout", "10", "hping3", "-S", "-p", "++1", "-i", "u10", "-c", "200000", "-q", v4.hostA)
	var wanOut syncBuffer
	wan.Stdout, wan.Stderr = &wanOut, &wanOut
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	wanDone := make(chan error, 1)
	go func() { wanDone <- wan.Wait() }()
	time.Sleep(time.Second)
	answered := 0
	for i := 0; i < 8; i++ {
		if out, err := ns(t, 5*time.Second, l.nsA, "ping", "-c", "1", "-W", "2", v4.hostB); err == nil && strings.Contains(out, "1 received") {
			answered++
		}
		time.Sleep(300 * time.Millisecond)
	}
	<-wanDone
	st1 := statsKV(t, r)
	t.Logf("WAN flood: hping3:\n%s\nconntrack -S after: %v", wanOut.String(), st1)
	if d := st1["unconfirmed_dropped"] - st0["unconfirmed_dropped"]; d < 5*max {
		t.Errorf("unconfirmed_dropped +%d: the WAN flood's first packets did not reach the FORWARD policy", d)
	}
	if answered < 7 {
		t.Errorf("during the WAN flood %d of 8 new pings from the LAN were answered (table_full_drops +%d)", answered, st1["table_full_drops"]-st0["table_full_drops"])
	}
	if st1["entries"] > max {
		t.Errorf("entries %d > max %d", st1["entries"], max)
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// rssKiB is a process's resident set (VmRSS) in KiB.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	return atoi(string(m[1]))
}

// statsKV is `pipectl conntrack -S` as numbers by name.
func statsKV(t *testing.T, r *router) map[string]int {
	t.Helper()
	out, err := r.control("conntrack", "-S")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, kv := range strings.Fields(out) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = atoi(v)
		}
	}
	return m
}
