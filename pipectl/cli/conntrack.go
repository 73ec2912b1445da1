package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/pipestack/pipestack/pipectl/control"
	"github.com/pipestack/pipestack/pipeline"
)

const conntrackUsage = "[-s SOCKET | FILE] -L|-C|-F|-D|-E|-S [-p PROTO] [--src A[/N]] [--dst A[/N]] [--sport N] [--dport N] [-f ipv4|ipv6] [--mark N] [--json]"

// cmdConntrack is `pipectl conntrack`, conntrack-tools' commands over the
// control socket: -L lists (as conntrack -L prints), -C counts, -F
// flushes, -D deletes what the filter options select, -E streams events,
// -S prints the counters.
func cmdConntrack(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("conntrack", conntrackUsage, stderr)
	sock := fs.String("s", "", "control socket path (default: the one FILE configures, else /run/pipestack/pipestack.sock)")
	list := fs.Bool("L", false, "list the connections")
	count := fs.Bool("C", false, "count them")
	flush := fs.Bool("F", false, "delete every connection")
	del := fs.Bool("D", false, "delete the connections the filter selects")
	events := fs.Bool("E", false, "stream events ([NEW], [DESTROY]) until interrupted")
	stats := fs.Bool("S", false, "the counters (new, early_drop, table_full_drops, invalid, …)")
	proto := fs.String("p", "", "protocol (tcp, udp, icmp, icmpv6 or a number)")
	src := fs.String("src", "", "original source address or prefix")
	dst := fs.String("dst", "", "original destination address or prefix")
	sport := fs.Int("sport", 0, "original source port")
	dport := fs.Int("dport", 0, "original destination port")
	family := fs.String("f", "", "ipv4 or ipv6")
	mark := fs.String("mark", "", "connection mark")
	timeout := fs.Duration("timeout", 0, "with -E: stop after this long (0: until interrupted)")
	asJSON := fs.Bool("json", false, "print the reply as JSON")
	file, rest := "", args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		file, rest = args[0], args[1:]
	}
	if code, done := parseFlags(fs, rest); done {
		return code
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	} else if fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	op, n := "", 0
	for _, c := range []struct {
		set bool
		op  string
	}{{*list, "list"}, {*count, "count"}, {*flush, "flush"}, {*del, "delete"}, {*events, "events"}, {*stats, "stats"}} {
		if c.set {
			op = c.op
			n++
		}
	}
	if n != 1 || (file != "" && *sock != "") {
		fs.Usage()
		return 2
	}
	f := control.ConntrackFilter{Src: *src, Dst: *dst, SPort: *sport, DPort: *dport}
	if *proto != "" {
		p, ok := map[string]int{"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "gre": 47}[strings.ToLower(*proto)]
		if !ok {
			v, err := strconv.Atoi(*proto)
			if err != nil || v < 1 || v > 255 {
				fmt.Fprintf(stderr, "pipectl conntrack: bad protocol %q\n", *proto)
				return 2
			}
			p = v
		}
		f.Proto = p
	}
	switch *family {
	case "":
	case "ipv4", "4":
		f.Family = 4
	case "ipv6", "6":
		f.Family = 6
	default:
		fmt.Fprintf(stderr, "pipectl conntrack: bad family %q (ipv4, ipv6)\n", *family)
		return 2
	}
	if *mark != "" {
		v, err := strconv.ParseInt(*mark, 0, 64)
		if err != nil || v < 0 || v > 0xffffffff {
			fmt.Fprintf(stderr, "pipectl conntrack: bad mark %q\n", *mark)
			return 2
		}
		f.Mark = &v
	}
	if op == "delete" && f == (control.ConntrackFilter{}) {
		fmt.Fprintln(stderr, "pipectl conntrack: -D needs a filter (-p, --src, --dst, --sport, --dport, -f, --mark); -F deletes everything")
		return 2
	}
	path := *sock
	if file != "" {
		cfg, err := pipeline.LoadConfigFile(file)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if path = cfg.SocketPath(); path == "" {
			fmt.Fprintf(stderr, "pipectl conntrack: %s has control: {socket: off}\n", file)
			return 1
		}
	} else if path == "" {
		path = (&pipeline.Config{}).SocketPath()
	}
	if op == "events" {
		wait := *timeout
		if wait <= 0 {
			wait = 100 * 365 * 24 * time.Hour
		}
		req := control.Request{Cmd: "conntrack-events", Conntrack: &control.ConntrackRequest{Op: "events", Filter: f}}
		end, err := control.Stream(path, req, wait, func(rep *control.Reply) error {
			if ev := rep.CTEvent; ev != nil {
				if *asJSON {
					return json.NewEncoder(stdout).Encode(ev)
				}
				_, err := fmt.Fprintf(stdout, "%9s %s\n", "["+ev.Type+"]", ev.Line)
				return err
			}
			return nil
		})
		if err != nil {
			if *timeout > 0 && strings.Contains(err.Error(), "timeout") {
				return 0
			}
			fmt.Fprintf(stderr, "pipectl conntrack: %v\n", err)
			return 1
		}
		if end != nil && end.Lost > 0 {
			fmt.Fprintf(stderr, "pipectl conntrack: %d events lost (the reader was too slow)\n", end.Lost)
		}
		return 0
	}
	rep, err := control.CallRequest(path, control.Request{Cmd: "conntrack", Conntrack: &control.ConntrackRequest{Op: op, Filter: f}})
	if err != nil {
		fmt.Fprintf(stderr, "pipectl conntrack: %v\n", err)
		return 1
	}
	r := rep.Conntrack
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(r)
		return 0
	}
	switch op {
	case "list":
		for _, l := range r.Entries {
			fmt.Fprintln(stdout, l)
		}
		fmt.Fprintf(stderr, "conntrack v1 (pipestack): %d flow entries have been shown.\n", len(r.Entries))
	case "count":
		fmt.Fprintln(stdout, r.Count)
	case "flush":
		fmt.Fprintf(stderr, "conntrack v1 (pipestack): connection tracking table has been emptied (%d entries).\n", r.Deleted)
	case "delete":
		fmt.Fprintf(stderr, "conntrack v1 (pipestack): %d flow entries have been deleted.\n", r.Deleted)
	case "stats":
		fmt.Fprintf(stdout, "entries=%d max=%d", r.Count, r.Max)
		for _, c := range r.Stats {
			fmt.Fprintf(stdout, " %s=%d", c.Name, c.Value)
		}
		fmt.Fprintln(stdout)
	}
	return 0
}
