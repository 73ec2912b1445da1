package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReloadUnderIperf3: a 7-second iperf3 TCP stream from A to B runs
// through the router while the pipeline file is changed four times — a
// route for another prefix (10.99.0.0/16) moves between B's and A's side,
// and 10.98.0.0/16 comes and goes — and reloaded, alternately with
// `pipectl reload` and SIGHUP. Each reload builds a new generation and
// hands the links over; the stream must not notice: no quarter-second interval
// without data, no collapse of the total. Over TUN and over AF_PACKET.
func TestReloadUnderIperf3(t *testing.T) {
	for _, mode := range []string{"tun", "afpacket"} {
		t.Run(mode, func(t *testing.T) {
			requireLab(t, "iperf3 (iperf3)")
			l := newLabMode(t, mode)
			base := l.routerConfig("")
			routes := []string{
				"routes:\n  - {to: 10.99.0.0/16, via: 10.10.2.2, link: b}\n",
				"routes:\n  - {to: 10.99.0.0/16, via: 10.10.1.2, link: a}\n",
				"routes:\n  - {to: 10.99.0.0/16, via: 10.10.1.2, link: a}\n  - {to: 10.98.0.0/16, via: 10.10.2.2, link: b}\n",
				"routes:\n  - {to: 10.99.0.0/16, via: 10.10.2.2, link: b, metric: 5}\n",
				"routes:\n  - {to: 10.99.0.0/16, via: 10.10.1.2, link: a}\n",
			}
			kres := kernelIperf3(t, v4)
			kernel := kres.End.SumReceived.BitsPerSecond
			r := startRouter(t, base+routes[0])
			startIperf3Server(t, l, v4)
			time.Sleep(300 * time.Millisecond) // the hosts' start-up chatter (RS, MLD) is over
			before := r.stats()

			type result struct {
				res *iperfResult
				err error
			}
			done := make(chan result, 1)
			go func() {
				out, err := ns(t, 30*time.Second, l.nsA, "iperf3", "-c", "10.10.2.2", "-J", "-t", "7", "-i", "0.25")
				if err != nil {
					done <- result{err: fmt.Errorf("iperf3: %v\n%s", err, out)}
					return
				}
				res, err := parseIperf3(out)
				done <- result{res, err}
			}()

			// Reload at about 1.5, 3, 4.5 and 6 s into the stream.
			time.Sleep(1500 * time.Millisecond)
			for i, rt := range routes[1:] {
				gen := uint64(i + 2)
				r.rewrite(base + rt)
				if i%2 == 0 {
					out, err := r.control("reload")
					if err != nil {
						t.Fatal(err)
					}
					if want := fmt.Sprintf("reloaded: generation %d", gen); !strings.Contains(out, want) {
						t.Errorf("pipectl reload said %q, want %q", strings.TrimSpace(out), want)
					}
				} else {
					if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
						t.Fatal(err)
					}
				}
				r.waitReloaded(gen, 5*time.Second)
				time.Sleep(1500 * time.Millisecond)
			}

			res := <-done
			if res.err != nil {
				t.Fatal(res.err)
			}
			checkReloadLog(t, r, 5)
			if got, err := r.control("route"); err != nil {
				t.Error(err)
			} else if !regexp.MustCompile(`10\.99\.0\.0/16 via 10\.10\.1\.2 dev a\b`).MatchString(got) {
				t.Errorf("pipectl route after the last reload: no 10.99.0.0/16 via 10.10.1.2 on a:\n%s", got)
			}

			// Every quarter second of the stream carried data: a reload that
			// stalled the router would leave an empty interval (TCP backs
			// off for at least 200 ms after a loss it cannot repair fast).
			// Throughput dips are not judged: on a shared 2-core machine
			// the iperf3 processes themselves miss the CPU for hundreds of
			// milliseconds with no reload at all.
			var rates []float64
			for _, iv := range res.res.Intervals {
				rates = append(rates, iv.Sum.BitsPerSecond)
			}
			// 28 quarter-second intervals in 7 s; an iperf3 starved of CPU
			// (a loaded 2-core machine: the kernel's own stream a moment
			// earlier ran at 1 Gbit/s instead of 18) reports fewer, longer
			// ones, and a stall still shows as an empty one.
			if len(rates) < 20 {
				t.Fatalf("iperf3 reported %d intervals, want 28 (at least 20)", len(rates))
			}
			med := median(rates)
			// A machine so busy that even the kernel's stream (a moment
			// earlier) or the run queue says streams starve is not one
			// on which a stall can be blamed on a reload: then stalls
			// are reported, not judged (the zero-loss proof below still
			// is).
			starved := ""
			if n := kres.stalls(); n > 0 {
				starved = fmt.Sprintf("the kernel's own stream stalled for %d quarter seconds in this test", n)
			} else if load, ok := loadPerCPU(); ok && load > 4 {
				starved = fmt.Sprintf("load average %.1f per CPU", load)
			}
			for i, iv := range res.res.Intervals {
				if iv.Sum.Bytes == 0 {
					msg := fmt.Sprintf("interval %d (%.1f–%.1f s): %.0f bytes, %.2f Gbit/s (median %.2f): the stream stalled",
						i, iv.Sum.Start, iv.Sum.End, iv.Sum.Bytes, iv.Sum.BitsPerSecond/1e9, med/1e9)
					if starved != "" {
						t.Logf("%s; not judged: %s", msg, starved)
					} else {
						t.Error(msg)
					}
				}
			}
			gbps := res.res.End.SumReceived.BitsPerSecond / 1e9
			t.Logf("iperf3 across 4 reloads: %.2f Gbit/s, %d retransmits; intervals min %.2f, median %.2f Gbit/s",
				gbps, res.res.End.SumSent.Retransmits, slices.Min(rates)/1e9, med/1e9)
			checkRate(t, "iperf3 across 4 reloads", res.res.End.SumReceived.BitsPerSecond, kernel)

			// Zero loss, from the router's own counters: every IPv4 packet
			// it received during the stream was forwarded (or delivered
			// to it), no link dropped anything on either side, and the
			// kernel dropped nothing before the link's reader.
			time.Sleep(300 * time.Millisecond) // the last segments are through
			checkNoLoss(t, before, r.stats())
			// iperf3's retransmits: with the router losing nothing they
			// come from the hosts' kernels and TCP's reaction to
			// reordering across the two queues (tens to a thousand per
			// run here, with or without reloads: a fraction of a per
			// mille of the segments). A reload that dropped a window
			// would add thousands; 1 % of the segments is the bound.
			segs := res.res.End.SumSent.Bytes / 1448
			if rt := float64(res.res.End.SumSent.Retransmits); rt > segs/100 {
				t.Errorf("iperf3: %.0f retransmits of %.0f segments (over 1 %%)", rt, segs)
			}
		})
	}
}

// lossCounters are the links' own counters that count a packet lost (read
// while no stack was attached, dropped by the kernel before our reader,
// malformed, not written); those absent on a driver are 0.
var lossCounters = []string{"rx_not_attached", "rx_detached", "rx_kernel_dropped", "rx_malformed", "rx_truncated",
	"rx_bad_offload", "rx_errors", "tx_dropped", "tx_errors", "tx_malformed", "tx_closed"}

// checkNoLoss compares the router's counters before and after traffic
// that must have crossed it without a loss: for links a and b no stack
// drop (rx_dropped, tx_dropped, unknown protocol) and no driver loss
// counter grew, and every IPv4 packet received was forwarded or
// delivered to the router (ipv4 rx = forwarded + delivered; each drop
// reason is counted apart from both).
func checkNoLoss(t *testing.T, before, after *routerStats) {
	t.Helper()
	for _, link := range []string{"a", "b"} {
		b0, b1 := before.nic(link), after.nic(link)
		for _, c := range []string{"rx_dropped", "tx_dropped", "rx_unknown_protocol"} {
			if d := b1[c] - b0[c]; d != 0 {
				t.Errorf("link %s: %s grew by %d during the stream", link, c, d)
			}
		}
		d0, d1 := before.device(link), after.device(link)
		for _, c := range lossCounters {
			if d := d1[c] - d0[c]; d != 0 {
				t.Errorf("link %s: device counter %s grew by %d during the stream: %v", link, c, d, d1)
			}
		}
	}
	v0, v1 := before.set("ipv4"), after.set("ipv4")
	delta := func(c string) uint64 { return v1[c] - v0[c] }
	rx, fwd, dlv := delta("rx"), delta("forwarded"), delta("delivered")
	t.Logf("during the stream: ipv4 rx %d, forwarded %d, delivered %d", rx, fwd, dlv)
	if fwd < 1000 {
		t.Errorf("ipv4 forwarded only %d packets during the stream", fwd)
	}
	if rx != fwd+dlv {
		var grew []string
		for name, v := range v1 {
			if v != v0[name] && name != "rx" && name != "forwarded" && name != "delivered" && name != "sent" {
				grew = append(grew, fmt.Sprintf("%s +%d", name, v-v0[name]))
			}
		}
		slices.Sort(grew)
		t.Errorf("ipv4 received %d packets but forwarded %d and delivered %d: %d lost (%v)", rx, fwd, dlv, rx-fwd-dlv, grew)
	}
}

// checkReloadLog: the log says "reloaded" once per generation from 2 to
// last, in increasing order, and nothing failed.
func checkReloadLog(t *testing.T, r *router, last uint64) {
	t.Helper()
	var gens []uint64
	for _, line := range lines(r.log.String()) {
		var ev struct {
			Message    string `json:"message"`
			Generation uint64 `json:"generation"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Message == "reloaded" {
			gens = append(gens, ev.Generation)
		}
	}
	var want []uint64
	for g := uint64(2); g <= last; g++ {
		want = append(want, g)
	}
	if fmt.Sprint(gens) != fmt.Sprint(want) {
		t.Errorf("reloaded generations %v, want %v:\n%s", gens, want, r.logWithoutStats())
	}
	if strings.Contains(r.log.String(), "reload failed") {
		t.Errorf("a reload failed:\n%s", r.logWithoutStats())
	}
}

// waitReloaded waits until the log says generation gen was reloaded.
func (r *router) waitReloaded(gen uint64, d time.Duration) {
	r.t.Helper()
	re := regexp.MustCompile(fmt.Sprintf(`"generation":%d,[^\n]*"message":"reloaded"`, gen))
	deadline := time.Now().Add(d)
	for !re.MatchString(r.log.String()) {
		if time.Now().After(deadline) {
			r.t.Fatalf("generation %d not reloaded after %v:\n%s", gen, d, r.logWithoutStats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loadPerCPU is the 1-minute load average divided by the CPUs.
func loadPerCPU() (float64, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, false
	}
	return v / float64(runtime.NumCPU()), true
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
