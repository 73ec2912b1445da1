// Package cli is pipectl, the command that runs and checks pipestack
// pipelines, as a library: Main is the whole command line, so that a custom
// build with extra modules is a main package of a few lines that blank-imports
// them:
//
//	package main
//
//	import (
//		"os"
//
//		_ "example.com/mymodule"
//		"github.com/pipestack/pipestack/pipectl/cli"
//		_ "github.com/pipestack/pipestack/modules/standard"
//	)
//
//	func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
//
// The subcommands are
//
//	run FILE         run the pipeline until SIGINT/SIGTERM; SIGHUP reloads FILE
//	validate FILE…   decode, provision and validate without opening a device
//	modules [NS]     list the modules compiled into this binary
//	stats, route, neigh, sockets, rules, reload   ask a running pipeline over its control socket
//	import FILE      translate iptables-save output into a filter: section
//	export [FILE]    print a pipeline's filter rules in iptables-save format
//	replay FILE --pcap IN   feed a capture through FILE's pipeline offline, deterministically
//	trace            trace the next packets of a running pipeline (a stream)
//	set              change and list a running pipeline's sets (ipset's add, del, list, flush)
//	version, help
//
// Exit codes: 0 success, 1 the pipeline (or running it) failed, 2 the command
// line is wrong.
//
// Run is the run subcommand without signals: tests and programs that embed
// pipectl drive reloads and the stop through a channel and a context.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/pipectl/control"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/classify"
)

// Version is printed by `pipectl version`. Empty means: take it from the
// build information (the module version, or the VCS revision of a
// development build). Set it with -ldflags "-X
// github.com/pipestack/pipestack/pipectl/cli.Version=v1.2.3".
var Version = ""

const modulePath = "github.com/pipestack/pipestack"

const usageText = `pipectl runs and checks pipestack pipelines.

Usage:
  pipectl run [--stats-interval DURATION] FILE
        run the pipeline in FILE until SIGINT or SIGTERM; SIGHUP reloads FILE
        (an unchanged file changes nothing, a broken one keeps what runs)
  pipectl validate [--stats] [--lint] FILE...
        decode, provision and validate each FILE; opens no device, needs no root;
        --stats: per filter chain, what the rule compiler made of it;
        --lint: filter rules that can never match (shadowed), rules whose removal
        changes no verdict (redundant), user chains never reached; exit 1 if any
  pipectl modules [NAMESPACE]
        list the modules compiled into this binary (e.g. pipectl modules link)
  pipectl stats [-a] [-json] [-s SOCKET | FILE]
        a running pipeline's counters per link and per protocol, drops by reason
  pipectl route [-s SOCKET | FILE]      its routes, as ip route shows them
  pipectl neigh [-s SOCKET | FILE]      its neighbor entries, as ip neigh shows them
  pipectl sockets [-s SOCKET | FILE]    its UDP and TCP sockets, as ss -tuna shows them
  pipectl rules [-s SOCKET | FILE]      its filter rules with packet and byte counters,
        as iptables -L -v -n --line-numbers shows them
  pipectl plugins [-json] [-s SOCKET | FILE]
        its out-of-process filter plugins: version, pid, state, batches,
        packets, p50/p99 round trip, timeouts, restarts, cache hit rate
  pipectl reload [-s SOCKET | FILE]     make it re-read its file (like SIGHUP), and say what happened
        The control socket is the file's control: socket
        (default /run/pipestack/<name>.sock); root only.
  pipectl import [--links dev=link,...] [--family 4|6] [--ipset FILE] FILE [FILE6]
        translate iptables-save (and ip6tables-save) output (FILE or - for stdin)
        into a filter: section, ipset save output into its sets:; names every option it cannot translate with its
        line and exits 1 if anything was left out
  pipectl export [--family 4|6] [--links dev=link,...] [-c] [-s SOCKET | FILE]
        print the filter rules of FILE, or of the running pipeline (its socket),
        in iptables-save format; one family per output: --family 4 (the default) or 6
        (--ipset: its sets in ipset save format instead)
  pipectl replay FILE --pcap IN [--out OUT] [--json] [--link NAME] [--seed N]
        feed a capture through FILE's pipeline offline (channel links, the capture's
        clock, seeded random draws): per packet the rules that decided it, the
        rewrites, what left which link and the counters that moved; deterministic
  pipectl trace [-s SOCKET | FILE] [--count N] [--filter EXPR] [--timeout D] [--json]
        trace the next N packets matching EXPR (e.g. "proto tcp and dport 22",
        "src 10.0.0.0/8") through a running pipeline's hooks, streamed back
  pipectl conntrack [-s SOCKET | FILE] -L|-C|-F|-D|-E|-S [-p P] [--src A] [--dst A] [--sport N] [--dport N]
        a running pipeline's connection table as conntrack-tools shows it: list, count,
        flush, delete what the filter selects, stream events, counters
  pipectl set [-s SOCKET | FILE] add|del|test NAME ELEMENT [timeout N] | list [NAME] | flush NAME
        a running pipeline's sets (filter sets:), as ipset: add an element (with a
        timeout in seconds), delete it, test it, list, flush; no reload needed
  pipectl version
        print the version
  pipectl help
        print this help

Exit status: 0 success, 1 the pipeline failed, 2 wrong usage.
`

// Main runs pipectl with args (without the program name) and returns the
// exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(rest, stdout, stderr)
	case "validate":
		return cmdValidate(rest, stdout, stderr)
	case "modules":
		return cmdModules(rest, stdout, stderr)
	case "stats", "route", "neigh", "sockets", "rules", "plugins", "reload":
		return cmdControl(cmd, rest, stdout, stderr)
	case "import":
		return cmdImport(rest, stdout, stderr)
	case "export":
		return cmdExport(rest, stdout, stderr)
	case "replay":
		return cmdReplay(rest, stdout, stderr)
	case "trace":
		return cmdTrace(rest, stdout, stderr)
	case "conntrack":
		return cmdConntrack(rest, stdout, stderr)
	case "set":
		return cmdSet(rest, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText)
		return 0
	default:
		fmt.Fprintf(stderr, "pipectl: unknown command %q\n\n%s", cmd, usageText)
		return 2
	}
}

// newFlags returns a flag set for a subcommand that reports to stderr.
func newFlags(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("pipectl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: pipectl %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses a subcommand's flags; done is true when the command
// must return code at once (-h, a bad flag).
func parseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	switch err := fs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		return 0, true
	case err != nil:
		return 2, true
	}
	return 0, false
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", "[--stats] [--lint] FILE...", stderr)
	stats := fs.Bool("stats", false, "also print, per filter chain, what the rule compiler made of it (compile time, memory)")
	lint := fs.Bool("lint", false, "also report filter rules that can never match (an earlier rule covers them), redundant rules and user chains never reached; exit 1 if any")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	code := 0
	for _, file := range fs.Args() {
		cfg, err := pipeline.LoadConfigFile(file)
		if err == nil {
			err = pipeline.Check(cfg)
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: ok (%s, %s)\n", file, plural(len(cfg.Links), "link"), plural(len(cfg.Modules), "module"))
		if *stats {
			printClassifierStats(stdout, file, cfg)
		}
		if *lint && printLint(stdout, file, cfg) > 0 {
			code = 1
		}
	}
	return code
}

// printLint prints the filter's findings — shadowed and redundant rules,
// user chains never reached — with file:line:col, and returns how many.
func printLint(w io.Writer, file string, cfg *pipeline.Config) int {
	n := 0
	for _, mc := range cfg.Modules {
		l, ok := mc.Module.(interface{ LintAll() []filter.Finding })
		if !ok {
			continue
		}
		for _, f := range l.LintAll() {
			where := fmt.Sprintf("table %s, chain %s, rule %d", f.Table, f.Chain, f.Rule)
			switch {
			case f.Table == "":
				where = "sets"
			case f.Rule == 0:
				where = fmt.Sprintf("table %s, chain %s", f.Table, f.Chain)
			}
			fmt.Fprintf(w, "%s:%d:%d: filter (%s): %s\n", file, f.Line, f.Col, where, f.Msg)
			n++
		}
	}
	return n
}

// printClassifierStats prints what the filter's rule compiler made of each
// chain: compiled (time, partitions, entries, memory) or walked.
func printClassifierStats(w io.Writer, file string, cfg *pipeline.Config) {
	for _, mc := range cfg.Modules {
		if ss, ok := mc.Module.(interface{ SetStats() []filter.SetStats }); ok {
			for _, s := range ss.SetStats() {
				fmt.Fprintf(w, "  %s:%d: set %s (%s): %s built in %v, %.1f KiB\n",
					file, s.Line, s.Name, s.Type, plural(s.Elements, "element"), s.Build.Round(time.Microsecond), float64(s.Bytes)/1024)
			}
		}
		cs, ok := mc.Module.(interface{ ClassifierStats() []filter.ChainStats })
		if !ok {
			continue
		}
		for _, c := range cs.ClassifierStats() {
			where := fmt.Sprintf("%s:%d: table %s, chain %s", file, c.Line, c.Table, c.Chain)
			if !c.Indexed {
				fmt.Fprintf(w, "  %s: %s, walked rule by rule (compiled from %d)\n", where, plural(c.Rules, "rule"), classify.DefaultMinRules)
				continue
			}
			s := c.Stats
			fmt.Fprintf(w, "  %s: %s compiled in %v: %s, %d entries (%d on the always lists), %.1f KiB\n",
				where, plural(c.Rules, "rule"), s.Compile.Round(time.Microsecond), plural(s.Parts, "partition"), s.Entries, s.Always, float64(s.Bytes)/1024)
		}
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func cmdModules(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("modules", "[NAMESPACE]", stderr)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return 2
	}
	ns := fs.Arg(0)
	mods := pipeline.Modules(ns)
	if len(mods) == 0 {
		if ns != "" {
			fmt.Fprintf(stderr, "pipectl: no module in namespace %q\n", ns)
			return 1
		}
		fmt.Fprintln(stderr, "pipectl: no module is compiled into this binary")
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	for _, mi := range mods {
		fmt.Fprintf(tw, "%s\t%s\n", mi.ID, mi.Summary)
	}
	tw.Flush()
	return 0
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "[--stats-interval DURATION] FILE", stderr)
	interval := fs.Duration("stats-interval", 0, "log every NIC's counters this often (0: never)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 1 || *interval < 0 {
		fs.Usage()
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP) // never delivered on Windows
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-hup:
				select {
				case reload <- struct{}{}:
				default: // a reload is already pending
				}
			case <-ctx.Done():
				// A second SIGINT while the stack stops kills the process.
				stop()
				return
			}
		}
	}()

	err := Run(ctx, fs.Arg(0), RunOptions{LogOutput: stderr, Reload: reload, StatsInterval: *interval})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

func versionString() string {
	v := Version
	if v == "" {
		v = buildVersion()
	}
	return fmt.Sprintf("pipectl %s (%s, %s/%s)", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// buildVersion finds pipestack's version in the build information: the main
// module's in pipectl itself, the dependency's in a custom build.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := ""
	if bi.Main.Path == modulePath {
		v = bi.Main.Version
	} else {
		for _, d := range bi.Deps {
			if d.Path == modulePath {
				v = d.Version
				if d.Replace != nil {
					v += " => " + d.Replace.Path
				}
			}
		}
	}
	if v != "" && v != "(devel)" {
		return v
	}
	var rev, when string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "(devel)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	var b strings.Builder
	b.WriteString("(devel) " + rev)
	if dirty {
		b.WriteString("+dirty")
	}
	if t, err := time.Parse(time.RFC3339, when); err == nil {
		b.WriteString(" " + t.UTC().Format("2006-01-02"))
	}
	return b.String()
}

// cmdControl asks a running pipeline over its control socket.
func cmdControl(cmd string, args []string, stdout, stderr io.Writer) int {
	fs := newFlags(cmd, "[-s SOCKET | FILE]", stderr)
	sock := fs.String("s", "", "control socket path (default: the one FILE configures, else /run/pipestack/pipestack.sock)")
	all := fs.Bool("a", false, "stats: show zero counters too")
	asJSON := fs.Bool("json", false, "print the reply as JSON")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	path := *sock
	switch {
	case path != "" && fs.NArg() > 0, fs.NArg() > 1:
		fs.Usage()
		return 2
	case fs.NArg() == 1:
		cfg, err := pipeline.LoadConfigFile(fs.Arg(0))
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if path = cfg.SocketPath(); path == "" {
			fmt.Fprintf(stderr, "pipectl %s: %s has control: {socket: off}\n", cmd, fs.Arg(0))
			return 1
		}
	case path == "":
		path = (&pipeline.Config{}).SocketPath()
	}
	rep, err := control.Call(path, cmd)
	if err != nil {
		fmt.Fprintf(stderr, "pipectl %s: %v\n", cmd, err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
		return 0
	}
	switch cmd {
	case "stats":
		control.FormatStats(stdout, rep.Stats, *all)
	case "route":
		control.FormatRoutes(stdout, rep.Routes)
	case "neigh":
		control.FormatNeighbors(stdout, rep.Neigh)
	case "sockets":
		control.FormatSockets(stdout, rep.Sockets)
	case "rules":
		control.FormatRules(stdout, rep.Rules)
	case "plugins":
		control.FormatPlugins(stdout, rep.Plugins)
	case "reload":
		if rep.Reload.Changed {
			fmt.Fprintf(stdout, "reloaded: generation %d\n", rep.Reload.Generation)
			for _, n := range rep.Reload.Notes {
				fmt.Fprintln(stdout, n)
			}
		} else {
			fmt.Fprintf(stdout, "unchanged: generation %d keeps running\n", rep.Reload.Generation)
		}
	}
	return 0
}
