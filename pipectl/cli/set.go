package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/pipestack/pipestack/pipectl/control"
	"github.com/pipestack/pipestack/pipeline"
)

const setUsage = "[-s SOCKET] [--json] [FILE] add|del|test NAME ELEMENT [timeout N] | list [NAME] | flush NAME"

var setOps = map[string]bool{"add": true, "del": true, "list": true, "flush": true, "test": true}

// cmdSet is `pipectl set`, ipset's add, del, test, list and flush on a
// running pipeline's sets (the filter's sets:), over the control socket:
// the next packet sees the change; a reload keeps it unless the file
// changes that set.
func cmdSet(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("set", setUsage, stderr)
	sock := fs.String("s", "", "control socket path (default: the one FILE configures, else /run/pipestack/pipestack.sock)")
	asJSON := fs.Bool("json", false, "print the reply as JSON")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	rest := fs.Args()
	file := ""
	if len(rest) > 0 && !setOps[rest[0]] {
		file, rest = rest[0], rest[1:]
	}
	if len(rest) == 0 || !setOps[rest[0]] || (file != "" && *sock != "") {
		fs.Usage()
		return 2
	}
	req := control.SetRequest{Op: rest[0]}
	rest = rest[1:]
	if len(rest) > 0 {
		req.Name, rest = rest[0], rest[1:]
	}
	if n := len(rest); n >= 2 && strings.EqualFold(rest[n-2], "timeout") {
		if req.Op != "add" {
			fmt.Fprintln(stderr, "pipectl set: a timeout goes with add")
			return 2
		}
		v, err := strconv.ParseInt(rest[n-1], 10, 64)
		if err != nil || v < 0 || v > 2147483 {
			fmt.Fprintf(stderr, "pipectl set: timeout %q: seconds, 0..2147483\n", rest[n-1])
			return 2
		}
		req.Timeout = &v
		rest = rest[:n-2]
	}
	req.Elem = strings.Join(rest, " ")
	switch req.Op {
	case "add", "del", "test":
		if req.Name == "" || req.Elem == "" {
			fs.Usage()
			return 2
		}
	case "flush":
		if req.Name == "" || req.Elem != "" {
			fs.Usage()
			return 2
		}
	case "list":
		if req.Elem != "" {
			fs.Usage()
			return 2
		}
	}
	path := *sock
	if file != "" {
		cfg, err := pipeline.LoadConfigFile(file)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if path = cfg.SocketPath(); path == "" {
			fmt.Fprintf(stderr, "pipectl set: %s has control: {socket: off}\n", file)
			return 1
		}
	} else if path == "" {
		path = (&pipeline.Config{}).SocketPath()
	}
	rep, err := control.CallRequest(path, control.Request{Cmd: "set", Set: &req})
	if err != nil {
		fmt.Fprintf(stderr, "pipectl set: %v\n", err)
		return 1
	}
	r := rep.Set
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(r)
		return 0
	}
	switch req.Op {
	case "list":
		control.FormatSets(stdout, r.Sets)
	case "add":
		if !r.Added {
			fmt.Fprintf(stdout, "%s: already in set %s (timeout renewed)\n", req.Elem, req.Name)
		}
	case "flush":
		fmt.Fprintf(stdout, "%d elements removed from set %s\n", r.Deleted, req.Name)
	case "test":
		if !r.Found {
			fmt.Fprintf(stdout, "%s is NOT in set %s.\n", req.Elem, req.Name)
			return 1
		}
		fmt.Fprintf(stdout, "%s is in set %s.\n", req.Elem, req.Name)
	}
	return 0
}
