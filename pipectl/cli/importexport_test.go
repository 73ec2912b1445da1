package cli_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pipestack/pipestack/internal/testenv"
	"github.com/pipestack/pipestack/pipectl/cli"
)

// The round-trip corpus: iptables-save and ip6tables-save output (made by
// the real tools from hand-written rule sets). Every rule in it is one the
// filter can express.
var corpus = []struct {
	file   string
	family string
}{
	{"host.v4", "4"},   // a host firewall: lo, ICMP types, limit, ssh, multiport, REJECT, a LOG chain
	{"router.v4", "4"}, // FORWARD policy drop, user chains, goto, iprange, comments with quotes
	{"raw.v4", "4"},    // raw NOTRACK (and CT --notrack)
	{"mangle.v4", "4"}, // MARK in every spelling, TCPMSS, TTL, length, pkttype
	{"reject.v4", "4"}, // every REJECT variant, addrtype, LOG with level and a quote in its prefix
	{"host.v6", "6"},   // ip6tables: ICMPv6 types, hl, HL, REJECT icmp6-*
}

func corpusFile(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join("testdata", "iptables", name)
}

// normSave is iptables-save text as the round trip compares it (the
// normalisation documented in modules/filter/README.md): comment lines and
// blank lines dropped; counters zeroed unless keepCounters; -j CT --notrack
// is -j NOTRACK; tables sorted by name, a table with nothing in it (ACCEPT
// policies, no user chain, no rule) left out; chain declarations sorted;
// rules grouped by chain in their order, chains sorted by name.
func normSave(t *testing.T, text string, keepCounters bool) string {
	t.Helper()
	type tbl struct {
		decls []string
		rules map[string][]string
		empty bool
	}
	tables := map[string]*tbl{}
	var cur *tbl
	counters := regexp.MustCompile(`\[\d+:\d+\]`)
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if !keepCounters {
			l = strings.TrimSpace(counters.ReplaceAllString(l, "[0:0]"))
			l = strings.TrimPrefix(l, "[0:0] ")
		}
		l = strings.ReplaceAll(l, "-j CT --notrack", "-j NOTRACK")
		switch {
		case strings.HasPrefix(l, "*"):
			cur = &tbl{rules: map[string][]string{}, empty: true}
			tables[l[1:]] = cur
		case l == "COMMIT":
			cur = nil
		case cur == nil:
			t.Fatalf("line %q outside a table", l)
		case strings.HasPrefix(l, ":"):
			cur.decls = append(cur.decls, l)
			if f := strings.Fields(l); f[1] != "ACCEPT" {
				cur.empty = false
			}
		default:
			f := strings.Fields(l)
			i := slices.Index(f, "-A")
			if i < 0 || i+1 >= len(f) {
				t.Fatalf("rule line %q", l)
			}
			cur.rules[f[i+1]] = append(cur.rules[f[i+1]], l)
			cur.empty = false
		}
	}
	var names []string
	for n, tb := range tables {
		if !tb.empty {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		tb := tables[n]
		fmt.Fprintf(&b, "*%s\n", n)
		slices.Sort(tb.decls)
		for _, d := range tb.decls {
			b.WriteString(d + "\n")
		}
		var chains []string
		for c := range tb.rules {
			chains = append(chains, c)
		}
		slices.Sort(chains)
		for _, c := range chains {
			for _, r := range tb.rules[c] {
				b.WriteString(r + "\n")
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// importToPipeline imports files and writes a pipeline file with the
// section; it fails t on any problem.
func importToPipeline(t *testing.T, args ...string) (file, section string) {
	t.Helper()
	r := runMain(t, append([]string{"import"}, args...)...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("import %v: exit %d\n%s\n%s", args, r.code, r.stderr, r.stdout)
	}
	return tempPipeline(t, "name: roundtrip\n"+r.stdout), r.stdout
}

// iptables-save text → import → pipeline file → export → the same rules.
func TestImportExportRoundTrip(t *testing.T) {
	for _, c := range corpus {
		t.Run(c.file, func(t *testing.T) {
			in, err := os.ReadFile(corpusFile(t, c.file))
			if err != nil {
				t.Fatal(err)
			}
			file, section := importToPipeline(t, corpusFile(t, c.file))
			out := runMain(t, "export", "--family", c.family, file)
			if out.code != 0 {
				t.Fatalf("export: exit %d: %s", out.code, out.stderr)
			}
			if got, want := normSave(t, out.stdout, false), normSave(t, string(in), false); got != want {
				t.Errorf("round trip differs\n--- export:\n%s\n--- input:\n%s\n--- section:\n%s", got, want, section)
			}
			// The other family gets none of the rules: each came from one
			// family's file.
			other := map[string]string{"4": "6", "6": "4"}[c.family]
			o := runMain(t, "export", "--family", other, file)
			if o.code != 0 || strings.Contains(o.stdout, "-A ") {
				t.Errorf("export --family %s: exit %d, rules of the other family:\n%s", other, o.code, o.stdout)
			}
		})
	}
}

// An IPv4 and an IPv6 file merge into one section; each rule keeps its
// family, so each family exports back as it was.
func TestImportMergeFamilies(t *testing.T) {
	file, section := importToPipeline(t, corpusFile(t, "host.v4"), corpusFile(t, "host.v6"))
	for _, want := range []string{"- -4 -i lo -j ACCEPT", "- -6 -i lo -j ACCEPT", "icmp6_in:", "LOGDROP:"} {
		if !strings.Contains(section, want) {
			t.Errorf("merged section lacks %q:\n%s", want, section)
		}
	}
	for _, c := range []struct{ file, family string }{{"host.v4", "4"}, {"host.v6", "6"}} {
		in, _ := os.ReadFile(corpusFile(t, c.file))
		out := runMain(t, "export", "--family", c.family, file)
		if got, want := normSave(t, out.stdout, false), normSave(t, string(in), false); out.code != 0 || got != want {
			t.Errorf("export --family %s of the merged section: exit %d\n%s\nwant\n%s", c.family, out.code, got, want)
		}
	}
	// Two files of one family are refused.
	if r := runMain(t, "import", corpusFile(t, "host.v4"), corpusFile(t, "router.v4")); r.code != 2 {
		t.Errorf("two IPv4 files: exit %d, want 2", r.code)
	}
}

// Policies that differ between the families: the IPv4 one is the chain's,
// IPv6 gets a last rule with its own.
func TestImportDifferentPolicies(t *testing.T) {
	dir := t.TempDir()
	v4 := filepath.Join(dir, "v4")
	v6 := filepath.Join(dir, "v6")
	writeFile(t, v4, "# Generated by iptables-save v1.8.9\n*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n")
	writeFile(t, v6, "# Generated by ip6tables-save v1.8.9\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT DROP [0:0]\nCOMMIT\n")
	file, section := importToPipeline(t, v4, v6)
	for _, want := range []string{"input:\n      policy: drop\n      rules:\n        - -4 -i lo -j ACCEPT\n", "- -6 -j ACCEPT\n", "output:\n      rules:\n", "- -6 -j DROP\n"} {
		if !strings.Contains(section, want) {
			t.Errorf("section lacks %q:\n%s", want, section)
		}
	}
	out := runMain(t, "export", "--family", "6", file)
	for _, want := range []string{":INPUT DROP [0:0]\n", "-A INPUT -j ACCEPT\n", ":OUTPUT ACCEPT [0:0]\n", "-A OUTPUT -j DROP\n"} {
		if !strings.Contains(out.stdout, want) {
			t.Errorf("export -6 lacks %q:\n%s", want, out.stdout)
		}
	}
}

// Device names map to link names on import and back on export.
func TestImportExportLinks(t *testing.T) {
	links := "wan0=uplink,lan0=inside,lan+=in+"
	file, section := importToPipeline(t, "--links", links, corpusFile(t, "router.v4"))
	for _, want := range []string{"-i inside -o uplink -j lan_to_wan", "-i in+ -o in+ -j ACCEPT"} {
		if !strings.Contains(section, want) {
			t.Errorf("section lacks %q:\n%s", want, section)
		}
	}
	if strings.Contains(section, "wan0") {
		t.Errorf("a device name is left in the section:\n%s", section)
	}
	in, _ := os.ReadFile(corpusFile(t, "router.v4"))
	out := runMain(t, "export", "--links", links, file)
	if got, want := normSave(t, out.stdout, false), normSave(t, string(in), false); got != want {
		t.Errorf("export --links:\n%s\nwant\n%s", got, want)
	}
	_, rej := importToPipeline(t, "--links", links, corpusFile(t, "reject.v4"))
	if !strings.Contains(rej, "! -i uplink ! -o inside") {
		t.Errorf("inverted -i/-o not mapped:\n%s", rej)
	}
	if r := runMain(t, "import", "--links", "wan0", corpusFile(t, "router.v4")); r.code != 2 {
		t.Errorf("--links wan0: exit %d, want 2", r.code)
	}
}

// What cannot be translated is named with its line, the rest still is,
// and the exit status says something was left out.
func TestImportProblems(t *testing.T) {
	r := runMain(t, "import", corpusFile(t, "partial.v4"))
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	for _, want := range []string{
		"line 17: -m recent --set --name ssh --rsource not supported yet (no matcher recent in the filter)",
		"line 20: -m owner --uid-owner 1000 not supported yet",
		"line 21: -j NFLOG --nflog-group 5 not supported yet",
		"3 problems",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	for _, want := range []string{"# the nat table needs connection tracking: netfilter.conntrack under modules:", "  nat:\n    postrouting:\n      rules:\n        - -4 -o wan0 -j MASQUERADE", "- -4 -i lo -j ACCEPT", "- -4 -p tcp -m tcp --dport 80 -j ACCEPT", "- -p icmp -m icmp --icmp-type 8 -j ACCEPT",
		`- '-4 -m comment --comment "one" -m comment --comment "two" -j DROP'`, // two instances, as iptables
		// netfilter.conntrack's matchers are registered: these translate.
		"- -4 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		"- -4 -p udp -m conntrack ! --ctstate INVALID -m udp --dport 53 -j ACCEPT",
		"# line 17 left out: -A INPUT -p tcp -m tcp --dport 22 -m state --state NEW -m recent"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	var translated []string
	for _, l := range strings.Split(r.stdout, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			translated = append(translated, l)
		}
	}
	if s := strings.Join(translated, "\n"); strings.Contains(s, "- -4 -j DROP") || strings.Contains(s, "dport 22") {
		t.Errorf("a rule with an untranslated part was translated without it:\n%s", r.stdout)
	}
	// What was translated loads.
	if v := runMain(t, "validate", tempPipeline(t, "name: partial\nmodules: [netfilter.conntrack]\n"+r.stdout)); v.code != 0 {
		t.Errorf("the partial section does not load: %s", v.stderr)
	}
	// A rule the filter refuses in its table is a problem too.
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	writeFile(t, bad, "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n")
	if b := runMain(t, "import", bad); b.code != 1 || !strings.Contains(b.stderr, "line 4: -j REJECT --reject-with icmp-port-unreachable: REJECT target: only valid in filter table, not raw") {
		t.Errorf("REJECT in raw: exit %d: %s", b.code, b.stderr)
	}
}

// import reads stdin with "-"; export without FILE asks the running
// pipeline's control socket and gives the same text as from the file.
func TestExportFromSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "x.sock")
	section, err := os.ReadFile(corpusFile(t, "router.v4"))
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	// Main reads os.Stdin for "-": give it the corpus file.
	f, err := os.Open(corpusFile(t, "router.v4"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := os.Stdin
	os.Stdin = f
	code := cli.Main([]string{"import", "-"}, &out, &errb)
	os.Stdin = old
	if code != 0 {
		t.Fatalf("import -: exit %d: %s", code, errb.String())
	}
	file := tempPipeline(t, fmt.Sprintf(`name: x
control: {socket: %s}
modules: [network.testproto]
links:
  - {name: lan0, module: test.link, device: d0, addresses: [10.0.1.1/24]}
%s`, sock, out.String()))
	r := startRun(t, file, cli.RunOptions{})
	if o := r.next(); o.err != nil {
		t.Fatal(o.err)
	}
	defer r.stop()
	live := runMain(t, "export", "-s", sock)
	if live.code != 0 {
		t.Fatalf("export -s: exit %d: %s", live.code, live.stderr)
	}
	if got, want := normSave(t, live.stdout, true), normSave(t, string(section), false); got != want {
		t.Errorf("export from the socket:\n%s\nwant\n%s", got, want)
	}
	c := runMain(t, "export", "-c", "-s", sock)
	if !strings.Contains(c.stdout, "[0:0] -A FORWARD -j blocklist\n") || !strings.Contains(c.stdout, ":FORWARD DROP [0:0]\n") {
		t.Errorf("export -c:\n%s", c.stdout)
	}
	if !strings.Contains(live.stdout, "IPv4 rules only; --family 4|6") {
		t.Errorf("export does not say which family it wrote:\n%s", live.stdout)
	}
}

// The corpus in real iptables (in a network namespace of its own): what
// iptables-save prints imports, exports, and iptables-restore --test
// accepts the export; restored, it saves as the same rules.
func TestImportExportRealIptables(t *testing.T) {
	testenv.Root(t)
	testenv.Tool(t, "ip", "iproute2")
	testenv.Tool(t, "iptables-restore", "iptables")
	testenv.Tool(t, "ip6tables-restore", "iptables")
	for _, c := range corpus {
		t.Run(c.file, func(t *testing.T) {
			tool := map[string]string{"4": "iptables", "6": "ip6tables"}[c.family]
			in, err := os.ReadFile(corpusFile(t, c.file))
			if err != nil {
				t.Fatal(err)
			}
			nsA := newNetns(t, "a")
			restore(t, nsA, tool+"-restore", in)
			saved := save(t, nsA, tool)
			dir := t.TempDir()
			savedFile := filepath.Join(dir, "saved")
			writeFile(t, savedFile, saved)
			file, _ := importToPipeline(t, savedFile)
			out := runMain(t, "export", "--family", c.family, file)
			if out.code != 0 {
				t.Fatalf("export: %s", out.stderr)
			}
			restore(t, nsA, tool+"-restore", []byte(out.stdout), "--test")
			nsB := newNetns(t, "b")
			restore(t, nsB, tool+"-restore", []byte(out.stdout))
			again := save(t, nsB, tool)
			if got, want := normSave(t, again, false), normSave(t, saved, false); got != want {
				t.Errorf("%s-save after restoring the export:\n%s\nwant (before)\n%s\nexport:\n%s", tool, got, want, out.stdout)
			}
		})
	}
}

// newNetns makes a network namespace im-<pid>-<tag> removed at the end.
func newNetns(t *testing.T, tag string) string {
	t.Helper()
	name := fmt.Sprintf("im-%d-%s", os.Getpid(), tag)
	exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return name
}

func restore(t *testing.T, ns, tool string, text []byte, args ...string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, tool}, args...)...)
	cmd.Stdin = bytes.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s\ninput:\n%s", tool, args, err, out, text)
	}
}

func save(t *testing.T, ns, tool string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, tool+"-save").Output()
	if err != nil {
		t.Fatalf("%s-save: %v", tool, err)
	}
	return string(out)
}

// TestImportFlowOffload: OpenWrt's -j FLOWOFFLOAD translates to the
// flowtable target, and the section loads with netfilter.conntrack.
func TestImportFlowOffload(t *testing.T) {
	in := filepath.Join(t.TempDir(), "ft.v4")
	writeFile(t, in, "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j FLOWOFFLOAD\n-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n")
	r := runMain(t, "import", in)
	if r.code != 0 || !strings.Contains(r.stdout, "- -4 -m conntrack --ctstate RELATED,ESTABLISHED -j FLOWOFFLOAD\n") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if v := runMain(t, "validate", tempPipeline(t, "name: ft\nmodules: [network.ipv4, netfilter.conntrack]\n"+r.stdout)); v.code != 0 {
		t.Errorf("the section does not load: %s", v.stderr)
	}
}
