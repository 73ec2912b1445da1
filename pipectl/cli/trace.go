package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pipestack/pipestack/pipectl/control"
	"github.com/pipestack/pipestack/pipeline"
)

const traceUsage = "[-s SOCKET | FILE] [--count N] [--filter EXPR] [--timeout D] [--json]"

// cmdTrace traces the next packets of a running pipeline through its
// control socket (a streaming request: control/stream.go).
func cmdTrace(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("trace", traceUsage, stderr)
	sock := fs.String("s", "", "control socket path (default: the one FILE configures, else /run/pipestack/pipestack.sock)")
	count := fs.Int("count", 10, "trace this many packets")
	filter := fs.String("filter", "", "trace only packets matching EXPR: terms ip, ip6, proto P, src|dst|host A[/N], sport|dport|port N[:M], in|out LINK, joined by and, negated by not")
	timeout := fs.Duration("timeout", 30*time.Second, "stop after this long even if fewer packets came")
	asJSON := fs.Bool("json", false, "one JSON object per packet and hook")
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
	if (file != "" && *sock != "") || *count < 1 || *count > control.MaxTraceCount || *timeout <= 0 || *timeout > control.MaxTraceTimeout {
		fs.Usage()
		return 2
	}
	if _, err := control.ParseTraceFilter(*filter); err != nil {
		fmt.Fprintf(stderr, "pipectl trace: %v\n", err)
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
			fmt.Fprintf(stderr, "pipectl trace: %s has control: {socket: off}\n", file)
			return 1
		}
	} else if path == "" {
		path = (&pipeline.Config{}).SocketPath()
	}
	req := control.Request{Cmd: "trace", Trace: &control.TraceRequest{Count: *count, Filter: *filter, TimeoutMS: timeout.Milliseconds()}}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	last := 0
	end, err := control.Stream(path, req, *timeout+30*time.Second, func(rep *control.Reply) error {
		ev := rep.Trace
		if ev == nil {
			return nil
		}
		if *asJSON {
			return enc.Encode(ev)
		}
		if ev.Packet != last {
			fmt.Fprintf(stdout, "#%d %s %s\n", ev.Packet, ev.Time, ev.Hook.Packet)
			last = ev.Packet
		}
		control.FormatHook(stdout, "  ", ev.Hook)
		return nil
	})
	if err != nil {
		fmt.Fprintf(stderr, "pipectl trace: %v\n", err)
		return 1
	}
	if *asJSON {
		return 0
	}
	lost := ""
	if end.Lost > 0 {
		lost = fmt.Sprintf(", %d events lost (the client read too slowly)", end.Lost)
	}
	fmt.Fprintf(stdout, "trace ended (%s): %d packets%s\n", end.Reason, end.Packets, lost)
	return 0
}
