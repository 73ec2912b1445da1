package control

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pipestack/pipestack/modules/filter/plugin"
	"github.com/pipestack/pipestack/pipeline"
)

// FormatStats writes counters the way `ip -s link` readers expect them: a
// block per link, then each counter set with its non-zero counters (drops
// by reason among them); all counters with all=true.
func FormatStats(w io.Writer, st *Stats, all bool) {
	fmt.Fprintf(w, "generation %d\n", st.Generation)
	for _, l := range st.Links {
		state := "UP"
		if l.State == "down" {
			state = "DOWN"
		}
		fmt.Fprintf(w, "%d: %s: <%s> mtu %d state %s\n", l.ID, l.Name, l.Module, l.MTU, state)
		if d := l.Down; d != nil {
			fmt.Fprintf(w, "    down since %s: %s; routes withdrawn\n", d.Since.Format(time.RFC3339), d.Reason)
			if d.Retry != "" {
				fmt.Fprintf(w, "    reopen: %d attempts, last: %s\n", d.Attempts, d.Retry)
			}
		}
		if l.LinkAddr != "" {
			fmt.Fprintf(w, "    link/ether %s\n", l.LinkAddr)
		}
		for _, a := range l.Addresses {
			fam := "inet"
			if strings.Contains(a, ":") {
				fam = "inet6"
			}
			fmt.Fprintf(w, "    %s %s\n", fam, a)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "    RX:\tbytes\tpackets\tdropped\tunknown_proto\n")
		fmt.Fprintf(tw, "    \t%d\t%d\t%d\t%d\n", l.RxBytes, l.RxPackets, l.RxDropped, l.RxUnknown)
		fmt.Fprintf(tw, "    TX:\tbytes\tpackets\tdropped\tlink_down\n")
		fmt.Fprintf(tw, "    \t%d\t%d\t%d\t%d\n", l.TxBytes, l.TxPackets, l.TxDropped, l.TxLinkDown)
		tw.Flush()
		var dev []string
		for _, c := range l.Device {
			if all || c.Value != 0 {
				dev = append(dev, fmt.Sprintf("%s %d", c.Name, c.Value))
			}
		}
		if len(dev) > 0 {
			fmt.Fprintf(w, "    device: %s\n", strings.Join(dev, ", "))
		}
	}
	if c := st.Conntrack; c != nil {
		fmt.Fprintf(w, "conntrack: %d entries of %d\n", c.Count, c.Max)
	}
	for _, s := range st.Sets {
		var lines []string
		for _, c := range s.Counters {
			if all || c.Value != 0 {
				lines = append(lines, fmt.Sprintf("    %-28s %d", c.Name, c.Value))
			}
		}
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s:\n%s\n", s.Name, strings.Join(lines, "\n"))
	}
}

// FormatRoutes writes routes like `ip route`.
func FormatRoutes(w io.Writer, routes []RouteEntry) {
	for _, r := range routes {
		to := r.To
		if to == "0.0.0.0/0" || to == "::/0" {
			to = "default"
		}
		var b strings.Builder
		b.WriteString(to)
		if r.Via != "" {
			b.WriteString(" via " + r.Via)
		}
		b.WriteString(" dev " + r.Link)
		if r.Connected {
			b.WriteString(" proto kernel scope link")
		}
		if r.Src != "" && r.Connected {
			b.WriteString(" src " + r.Src)
		}
		if r.Metric != 0 {
			fmt.Fprintf(&b, " metric %d", r.Metric)
		}
		if r.Table != 0 {
			fmt.Fprintf(&b, " table %d", r.Table)
		}
		fmt.Fprintln(w, b.String())
	}
}

// FormatNeighbors writes entries like `ip neigh`.
func FormatNeighbors(w io.Writer, ns []NeighEntry) {
	for _, n := range ns {
		fmt.Fprintf(w, "%s dev %s lladdr %s %s\n", n.Addr, n.Link, n.LinkAddr, n.State)
	}
}

// MetricsHandler serves the stack's counters in the Prometheus text format
// at any path it is mounted on.
func MetricsHandler(s *pipeline.Stack) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		WriteMetrics(w, Snapshot(s))
		WritePluginMetrics(w, plugin.Plugins(s))
	})
}

// FormatPlugins prints pipectl plugins: one line per plugin.
func FormatPlugins(w io.Writer, ps []plugin.Status) {
	if len(ps) == 0 {
		fmt.Fprintln(w, "no plugins")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tPID\tSTATE\tBATCHES\tPACKETS\tP50\tP99\tTIMEOUTS\tLATE\tRESTARTS\tCACHE HITS")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%v\t%v\t%d\t%d\t%d\t%s\n", p.Name, p.Version, p.PID, p.State, p.Batches, p.Packets, p.P50, p.P99, p.Timeouts, p.Late, p.Restarts, p.CacheHits)
	}
	tw.Flush()
	for _, p := range ps {
		if p.Reason != "" {
			fmt.Fprintf(w, "%s: %s\n", p.Name, p.Reason)
		}
	}
}

// WritePluginMetrics writes the plugins' figures as Prometheus metrics
// (their counters — timeouts, policy packets by reason, restarts — are also
// in pipestack_counter_total under set plugin_<name>).
func WritePluginMetrics(w io.Writer, ps []plugin.Status) {
	if len(ps) == 0 {
		return
	}
	fmt.Fprintf(w, "# HELP pipestack_plugin_up Whether a filter plugin runs (1) or not (0: restarting, failed).\n# TYPE pipestack_plugin_up gauge\n")
	for _, p := range ps {
		up := 0
		if p.State == "running" {
			up = 1
		}
		fmt.Fprintf(w, "pipestack_plugin_up{plugin=%q,version=%q} %d\n", p.Name, p.Version, up)
	}
	for _, m := range []struct {
		name, help string
		v          func(*plugin.Status) uint64
	}{
		{"pipestack_plugin_batches_total", "Batches a plugin answered.", func(p *plugin.Status) uint64 { return p.Batches }},
		{"pipestack_plugin_packets_total", "Packets a plugin answered.", func(p *plugin.Status) uint64 { return p.Packets }},
		{"pipestack_plugin_timeouts_total", "Batches whose answer missed the deadline.", func(p *plugin.Status) uint64 { return p.Timeouts }},
		{"pipestack_plugin_restarts_total", "Restarts of a plugin's process.", func(p *plugin.Status) uint64 { return p.Restarts }},
		{"pipestack_plugin_cache_hits_total", "Packets judged from a plugin's per-flow verdict cache (no round trip).", func(p *plugin.Status) uint64 { return p.CacheHitCount }},
		{"pipestack_plugin_cache_misses_total", "Cacheable packets (tracked by conntrack) sent to the plugin.", func(p *plugin.Status) uint64 { return p.CacheMissCount }},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", m.name, m.help, m.name)
		for i := range ps {
			fmt.Fprintf(w, "%s{plugin=%q} %d\n", m.name, ps[i].Name, m.v(&ps[i]))
		}
	}
	fmt.Fprintf(w, "# HELP pipestack_plugin_rtt_seconds A batch's round trip to the plugin.\n# TYPE pipestack_plugin_rtt_seconds gauge\n")
	for _, p := range ps {
		fmt.Fprintf(w, "pipestack_plugin_rtt_seconds{plugin=%q,quantile=\"0.5\"} %g\n", p.Name, p.P50.Seconds())
		fmt.Fprintf(w, "pipestack_plugin_rtt_seconds{plugin=%q,quantile=\"0.99\"} %g\n", p.Name, p.P99.Seconds())
	}
}

// WriteMetrics writes st as Prometheus text metrics.
func WriteMetrics(w io.Writer, st *Stats) {
	link := []struct {
		name, help string
		get        func(*LinkStats) uint64
	}{
		{"pipestack_link_rx_packets_total", "Packets received on a link.", func(l *LinkStats) uint64 { return l.RxPackets }},
		{"pipestack_link_rx_bytes_total", "Bytes received on a link.", func(l *LinkStats) uint64 { return l.RxBytes }},
		{"pipestack_link_rx_dropped_total", "Received packets dropped.", func(l *LinkStats) uint64 { return l.RxDropped }},
		{"pipestack_link_tx_packets_total", "Packets sent on a link.", func(l *LinkStats) uint64 { return l.TxPackets }},
		{"pipestack_link_tx_bytes_total", "Bytes handed to a link.", func(l *LinkStats) uint64 { return l.TxBytes }},
		{"pipestack_link_tx_dropped_total", "Packets dropped on output.", func(l *LinkStats) uint64 { return l.TxDropped }},
		{"pipestack_link_downs_total", "Times a link's device went away.", func(l *LinkStats) uint64 { return l.Downs }},
	}
	for _, m := range link {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", m.name, m.help, m.name)
		for i := range st.Links {
			fmt.Fprintf(w, "%s{link=%q} %d\n", m.name, st.Links[i].Name, m.get(&st.Links[i]))
		}
	}
	fmt.Fprintf(w, "# HELP pipestack_link_up Whether a link's device is there (1) or gone (0).\n# TYPE pipestack_link_up gauge\n")
	for _, l := range st.Links {
		up := 1
		if l.State == "down" {
			up = 0
		}
		fmt.Fprintf(w, "pipestack_link_up{link=%q} %d\n", l.Name, up)
	}
	fmt.Fprintf(w, "# HELP pipestack_link_device_total A link driver's own counters.\n# TYPE pipestack_link_device_total counter\n")
	for _, l := range st.Links {
		for _, c := range l.Device {
			fmt.Fprintf(w, "pipestack_link_device_total{link=%q,name=%q} %d\n", l.Name, c.Name, c.Value)
		}
	}
	fmt.Fprintf(w, "# HELP pipestack_counter_total Protocol and stack counters (drops by reason among them).\n# TYPE pipestack_counter_total counter\n")
	for _, s := range st.Sets {
		for _, c := range s.Counters {
			fmt.Fprintf(w, "pipestack_counter_total{set=%q,name=%q} %d\n", s.Name, c.Name, c.Value)
		}
	}
	fmt.Fprintf(w, "# HELP pipestack_generation The running configuration generation.\n# TYPE pipestack_generation gauge\npipestack_generation %d\n", st.Generation)
}

// FormatRules prints filter rules as iptables -L -v -n --line-numbers does,
// table by table.
func FormatRules(w io.Writer, chains []pipeline.ChainListing) {
	if len(chains) == 0 {
		fmt.Fprintln(w, "no filter rules (the pipeline has no filter: section)")
		return
	}
	table := ""
	for i, c := range chains {
		if c.Table != table {
			if i > 0 {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "# table %s\n", c.Table)
			table = c.Table
		} else {
			fmt.Fprintln(w)
		}
		if c.Policy != "" {
			fmt.Fprintf(w, "Chain %s (policy %s %d packets, %d bytes)\n", c.Chain, c.Policy, c.PolicyPackets, c.PolicyBytes)
		} else {
			fmt.Fprintf(w, "Chain %s (%d references)\n", c.Chain, c.References)
		}
		fmt.Fprintf(w, "%-4s %8s %8s %-10s %-5s %-6s %-6s %-18s %-18s %s\n", "num", "pkts", "bytes", "target", "prot", "in", "out", "source", "destination", "")
		for _, r := range c.Rules {
			fmt.Fprintf(w, "%-4d %8s %8s %-10s %-5s %-6s %-6s %-18s %-18s %s\n", r.Num, humanCount(r.Packets), humanCount(r.Bytes),
				r.Target, r.Prot, r.In, r.Out, r.Source, r.Dest, r.Options)
		}
	}
}

// humanCount abbreviates as iptables -v does (K, M, G above 99999).
func humanCount(n uint64) string {
	units := []string{"", "K", "M", "G", "T"}
	i := 0
	for n > 99999 && i < len(units)-1 {
		n /= 1000
		i++
	}
	return fmt.Sprintf("%d%s", n, units[i])
}
