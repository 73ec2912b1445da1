package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestDifferentialFilter loads the same iptables/ip6tables rule sets
// (e2e/testdata/differential/*.yaml: base, l4, marks-chains, matches,
// rewrite, fragments, local, edges) into the Linux kernel as the router
// (lab.sh kernel mode: iptables-restore and ip6tables-restore in the
// router's namespace, which has tables of its own) and into pipectl as the
// router (lab.sh tun mode: the filter section built from the same strings,
// -4/-6 in front), sends the same probes from host A with scapy
// (e2e/testdata/diffprobe.py: TCP, UDP, ICMP, ICMPv6 with chosen
// addresses, ports, flags, TTLs, lengths, MSS options, fragments, IPv6
// extension headers, bad checksums) and compares, probe by probe, what the
// hosts see: delivered to B (with the TTL or hop limit B reads, a SYN's
// MSS, the fragments that came), answered to A (a reset and what it
// acknowledges; an ICMP error's type/code, source, length and TTL; an echo
// reply), or nothing within a second (dropped). Any difference fails the
// test with the whole table; a known one is listed in the rule set's
// `known:` with each side's outcome and the reason (and, for one that
// only the nf_tables or only the legacy x_tables backend shows, which:
// DIFF_IPTABLES=legacy runs the kernel router on iptables-legacy), said so
// in the table, and fails too when it no longer shows (stale). Both routers' per-
// destination ICMP rate limits are off. The labs' names carry "df…".
func TestDifferentialFilter(t *testing.T) {
	requireLab(t, "iptables-restore (iptables)", "ip6tables-restore (iptables)")
	if out, err := exec.Command(debianPython, "-c", "import scapy.all").CombinedOutput(); err != nil {
		need(t, "scapy for %s: apt-get install python3-scapy (%v: %s)", debianPython, err, out)
	}
	if _, err := exec.LookPath("nft"); err != nil {
		need(t, "nft: apt-get install nftables (lab.sh's veth wiring)")
	}
	sets := loadRuleSets(t)
	if only := os.Getenv("DIFF_ONLY"); only != "" {
		// DIFF_ONLY=sets runs the rule sets of that name (comma-separated) alone.
		sets = slices.DeleteFunc(sets, func(rs *ruleSet) bool { return !slices.Contains(strings.Split(only, ","), rs.Name) })
		if len(sets) == 0 {
			t.Fatalf("DIFF_ONLY=%s: no such rule set", only)
		}
	}
	s := "df" + randSuffix()[:3]
	duts := []dut{newKernelDUT(t, s+"k"), newPipestackDUT(t, s+"p")}

	failed := false
	for i, rs := range sets {
		probes := rs.expand(i)
		out := make([]map[string]string, len(duts))
		for j, d := range duts {
			d.load(t, rs)
			out[j] = d.probe(t, rs, probes)
			d.unload(t)
		}
		table, bad := compare(rs, out[0], out[1])
		if bad {
			failed = true
			t.Errorf("rule set %s (%s): kernel and pipestack differ:\n%s", rs.Name, rs.file, table)
		} else {
			t.Logf("rule set %s (%s):\n%s", rs.Name, rs.file, table)
		}
	}
	if failed {
		t.Log("each DIFF line is a probe whose outcome differs: a bug in modules/filter (or the router), or a difference to list under known: with its reason")
	}
}

// A ruleSet is one file of e2e/testdata/differential: iptables-save text
// for each family ({IN} and {OUT} stand for the router's interfaces toward
// A and B), the probes, and the differences known with their reasons.
type ruleSet struct {
	file string
	Name string `yaml:"name"`
	IPv4 string `yaml:"ipv4"`
	IPv6 string `yaml:"ipv6"`
	// Ipset is ipset restore text (create/add lines) the rules' -m set
	// refer to: the kernel router restores it, pipectl gets it as the
	// filter's sets: (ipset's sets have one family each, ours both).
	Ipset  string      `yaml:"ipset"`
	Probes []probeSpec `yaml:"probes"`
	Known  []knownDiff `yaml:"known"`
}

// A knownDiff is a probe whose outcomes legitimately differ: each side's
// outcome as it must show, and why.
type knownDiff struct {
	Probe     string `yaml:"probe"`
	Kernel    string `yaml:"kernel"`
	Pipestack string `yaml:"pipestack"`
	Reason    string `yaml:"reason"`
	// Backend limits the entry to one iptables backend: "nft" (the
	// system's, by default) or "legacy" (DIFF_IPTABLES=legacy); "" both.
	Backend string `yaml:"backend"`
}

// A probeSpec is one probe (count copies of it, each with its own key):
// family 4 or 6, a protocol, addresses (A's and B's first ones by
// default), ports, TCP flags (S by default), TTL/hop limit (64), the IP
// length to pad to, a SYN's MSS option (none by default), an ICMP type
// and code (echo request by default).
type probeSpec struct {
	Name  string `yaml:"name"`
	Fam   int    `yaml:"fam"`
	Proto string `yaml:"proto"`
	Src   string `yaml:"src"`
	Dst   string `yaml:"dst"`
	Sport int    `yaml:"sport"`
	Dport int    `yaml:"dport"`
	Flags string `yaml:"flags"`
	TTL   int    `yaml:"ttl"`
	Len   int    `yaml:"len"`
	MSS   int    `yaml:"mss"`
	IType *int   `yaml:"itype"`
	ICode int    `yaml:"icode"`
	Count int    `yaml:"count"`
	// NoData sends no payload (a bare SYN: Linux's TCPMSS inserts an MSS
	// option only where no data follows the header).
	NoData bool `yaml:"nodata"`
	// Frag sends the probe in fragments: IPv4 ones of this many payload
	// bytes (a multiple of 8), IPv6 ones of this size.
	Frag int `yaml:"frag"`
	// Ext are IPv6 extension headers before the upper layer: hbh
	// (hop-by-hop options), dst (destination options), each padding only.
	Ext []string `yaml:"ext"`
	// Sum: "bad" sends a wrong transport checksum, "zero" none (UDP).
	Sum string `yaml:"sum"`
}

// wireProbe is what diffprobe.py sends.
type wireProbe struct {
	Key    int      `json:"key"`
	Fam    int      `json:"fam"`
	Proto  string   `json:"proto"`
	Src    string   `json:"src"`
	Dst    string   `json:"dst"`
	Sport  int      `json:"sport"`
	Dport  int      `json:"dport"`
	Flags  string   `json:"flags,omitempty"`
	TTL    int      `json:"ttl,omitempty"`
	Len    int      `json:"len,omitempty"`
	MSS    int      `json:"mss,omitempty"`
	IType  *int     `json:"itype,omitempty"`
	ICode  int      `json:"icode"`
	NoData bool     `json:"nodata,omitempty"`
	Frag   int      `json:"frag,omitempty"`
	Ext    []string `json:"ext,omitempty"`
	Sum    string   `json:"sum,omitempty"`
	name   string
}

func loadRuleSets(t *testing.T) []*ruleSet {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "e2e", "testdata", "differential", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule sets in e2e/testdata/differential: %v", err)
	}
	var sets []*ruleSet
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rs := &ruleSet{file: filepath.Base(f)}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(rs); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		rs.Probes = splitFamilies(rs.Probes)
		names := map[string]bool{}
		for _, p := range rs.Probes {
			if names[p.Name] || p.Name == "" {
				t.Fatalf("%s: probe name %q empty or twice", f, p.Name)
			}
			names[p.Name] = true
		}
		var known []knownDiff
		for _, k := range rs.Known {
			if !names[k.Probe] || k.Reason == "" || k.Backend != "" && k.Backend != "nft" && k.Backend != "legacy" {
				t.Fatalf("%s: known difference for %q: no such probe, no reason, or backend %q not nft or legacy", f, k.Probe, k.Backend)
			}
			if be := map[string]string{"": "nft", "-legacy": "legacy"}[iptablesBackend()]; k.Backend == "" || k.Backend == be {
				known = append(known, k)
			}
		}
		rs.Known = known
		sets = append(sets, rs)
	}
	return sets
}

// splitFamilies makes a probe of fam 46 two, NAME/4 and NAME/6, and
// resolves the addresses a2, a5, a9 (A's), b2, b5, b9 (B's) for the family:
// 10.10.1.5, fd00:10:1::5.
func splitFamilies(ps []probeSpec) []probeSpec {
	var out []probeSpec
	for _, p := range ps {
		fams := []int{p.Fam}
		if p.Fam == 46 {
			fams = []int{4, 6}
		}
		for _, f := range fams {
			q := p
			q.Fam = f
			if p.Fam == 46 {
				q.Name = fmt.Sprintf("%s/%d", p.Name, f)
			}
			q.Src, q.Dst = shortAddr(f, p.Src), shortAddr(f, p.Dst)
			if q.Proto == "icmp" && f == 6 {
				q.Proto = "icmpv6"
			}
			out = append(out, q)
		}
	}
	return out
}

func shortAddr(fam int, s string) string {
	if len(s) != 2 || (s[0] != 'a' && s[0] != 'b') {
		return s
	}
	net := "1"
	if s[0] == 'b' {
		net = "2"
	}
	if fam == 6 {
		return "fd00:10:" + net + "::" + s[1:]
	}
	return "10.10." + net + "." + s[1:]
}

// names are the probes' names in order.
func (rs *ruleSet) names() []string {
	var out []string
	for _, p := range rs.Probes {
		out = append(out, p.Name)
	}
	return out
}

// expand gives each copy of each probe its key (unique in the run: set
// index i) and fills the defaults; TCP and UDP source ports default to
// 20000+key, so that a reset is matched to its probe by the port pair.
func (rs *ruleSet) expand(i int) []wireProbe {
	var out []wireProbe
	key := 1000 + 300*i
	for _, p := range rs.Probes {
		n := max(p.Count, 1)
		for c := 0; c < n; c++ {
			w := wireProbe{Key: key, Fam: p.Fam, Proto: p.Proto, Src: p.Src, Dst: p.Dst, Sport: p.Sport, Dport: p.Dport,
				Flags: p.Flags, TTL: p.TTL, Len: p.Len, MSS: p.MSS, IType: p.IType, ICode: p.ICode, NoData: p.NoData, Frag: p.Frag, Ext: p.Ext, Sum: p.Sum, name: p.Name}
			f := v4
			if p.Fam == 6 {
				f = v6
			}
			if w.Src == "" {
				w.Src = f.hostA
			}
			if w.Dst == "" {
				w.Dst = f.hostB
			}
			if w.Sport == 0 {
				w.Sport = 20000 + key
			}
			out = append(out, w)
			key++
		}
	}
	return out
}

// table is one iptables table of a rule set: built-in chains' policies,
// user chains, rules in order as "CHAIN rest-of-rule".
type table struct {
	name     string
	policies map[string]string
	user     []string
	rules    [][2]string
}

// parseSave reads iptables-save text (*table, :CHAIN POLICY, -A CHAIN …,
// COMMIT) with {IN} and {OUT} replaced.
func parseSave(t *testing.T, text, in, out string) []*table {
	t.Helper()
	text = strings.NewReplacer("{IN}", in, "{OUT}", out).Replace(text)
	var tabs []*table
	var cur *table
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			cur = &table{name: line[1:], policies: map[string]string{}}
			tabs = append(tabs, cur)
		case cur == nil:
			t.Fatalf("line %d: %q outside a table", n+1, line)
		case line == "COMMIT":
			cur = nil
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				t.Fatalf("line %d: %q", n+1, line)
			}
			if f[1] == "-" {
				cur.user = append(cur.user, f[0])
			} else {
				cur.policies[f[0]] = f[1]
			}
		case strings.HasPrefix(line, "-A "):
			chain, rest, _ := strings.Cut(line[3:], " ")
			cur.rules = append(cur.rules, [2]string{chain, rest})
		default:
			t.Fatalf("line %d: %q: not iptables-save text", n+1, line)
		}
	}
	return tabs
}

var builtinChains = map[string][]string{
	"raw":    {"PREROUTING", "OUTPUT"},
	"mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
}

// restoreText is the iptables-restore input for tabs: every table (raw,
// mangle, filter) written out, so a rule set replaces all of the last one.
func restoreText(tabs []*table) string {
	var b strings.Builder
	for _, name := range []string{"raw", "mangle", "filter"} {
		fmt.Fprintf(&b, "*%s\n", name)
		var tab *table
		for _, x := range tabs {
			if x.name == name {
				tab = x
			}
		}
		for _, c := range builtinChains[name] {
			pol := "ACCEPT"
			if tab != nil && tab.policies[c] != "" {
				pol = tab.policies[c]
			}
			fmt.Fprintf(&b, ":%s %s [0:0]\n", c, pol)
		}
		if tab != nil {
			for _, u := range tab.user {
				fmt.Fprintf(&b, ":%s - [0:0]\n", u)
			}
			for _, r := range tab.rules {
				fmt.Fprintf(&b, "-A %s %s\n", r[0], r[1])
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// filterSection is the pipeline file's filter section for the rule set:
// the IPv4 rules with -4 in front, the IPv6 ones with -6, in one chain of
// the same name (lower case for the built-in ones). The two families must
// agree on the policies.
func filterSection(t *testing.T, rs *ruleSet) string {
	t.Helper()
	type chain struct {
		Policy string   `yaml:"policy,omitempty"`
		Rules  []string `yaml:"rules"`
	}
	sec := map[string]map[string]*chain{}
	for _, fam := range []struct{ flag, text string }{{"-4", rs.IPv4}, {"-6", rs.IPv6}} {
		for _, tab := range parseSave(t, fam.text, "a", "b") {
			if sec[tab.name] == nil {
				sec[tab.name] = map[string]*chain{}
			}
			get := func(name string) *chain {
				if slices.Contains(builtinChains[tab.name], name) {
					name = strings.ToLower(name)
				}
				c := sec[tab.name][name]
				if c == nil {
					c = &chain{Rules: []string{}}
					sec[tab.name][name] = c
				}
				return c
			}
			for c, pol := range tab.policies {
				ch := get(c)
				pol = strings.ToLower(pol)
				if ch.Policy != "" && ch.Policy != pol {
					t.Fatalf("%s: %s %s: the families' policies differ", rs.file, tab.name, c)
				}
				if pol != "accept" {
					ch.Policy = pol
				}
			}
			for _, u := range tab.user {
				get(u)
			}
			for _, r := range tab.rules {
				ch := get(r[0])
				ch.Rules = append(ch.Rules, fam.flag+" "+r[1])
			}
		}
	}
	all := map[string]any{}
	for k, v := range sec {
		all[k] = v
	}
	if sets := ipsetSection(t, rs); len(sets) > 0 {
		all["sets"] = sets
	}
	b, err := yaml.Marshal(map[string]any{"filter": all})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ipsetSection is the rule set's ipset text as the filter's sets: (type
// and elements; ipset's family, hashsize, range … are not ours).
func ipsetSection(t *testing.T, rs *ruleSet) map[string]any {
	t.Helper()
	type set struct {
		Type     string   `yaml:"type"`
		Elements []string `yaml:"elements"`
	}
	out := map[string]any{}
	sets := map[string]*set{}
	for _, l := range strings.Split(rs.Ipset, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 0:
		case f[0] == "create" && len(f) >= 3:
			sets[f[1]] = &set{Type: f[2], Elements: []string{}}
			out[f[1]] = sets[f[1]]
		case f[0] == "add" && len(f) >= 3 && sets[f[1]] != nil:
			sets[f[1]].Elements = append(sets[f[1]].Elements, f[2])
		default:
			t.Fatalf("%s: ipset line %q: create NAME TYPE … or add NAME ELEMENT", rs.file, l)
		}
	}
	return out
}

// A dut is a router under test: a lab with probe agents on its hosts.
type dut interface {
	load(t *testing.T, rs *ruleSet)
	probe(t *testing.T, rs *ruleSet, probes []wireProbe) map[string]string
	unload(t *testing.T)
}

// hosts are the two probe agents (diffprobe.py in A and in B).
type hosts struct {
	a, b *agent
}

func newHosts(t *testing.T, l *lab, aArgs, bArgs []string) *hosts {
	t.Helper()
	devA, devB := l.tunA, l.tunB
	if l.mode != "tun" {
		devA, devB = l.va, l.vb
	}
	for _, c := range []struct {
		netns, dev string
		addrs      []string
	}{
		{l.nsA, devA, []string{"10.10.1.5/24", "10.10.1.9/24", "fd00:10:1::5/64", "fd00:10:1::9/64"}},
		{l.nsB, devB, []string{"10.10.2.5/24", "10.10.2.9/24", "fd00:10:2::5/64", "fd00:10:2::9/64"}},
	} {
		for _, a := range c.addrs {
			args := []string{"ip", "addr", "add", a, "dev", c.dev}
			if strings.Contains(a, ":") {
				args = append(args, "nodad")
			}
			mustNS(t, 5*time.Second, c.netns, args...)
		}
	}
	script := filepath.Join(repoRoot(t), "e2e", "testdata", "diffprobe.py")
	h := &hosts{
		a: startAgent(t, l.nsA, append([]string{debianPython, script, "a", devA}, aArgs...)),
		b: startAgent(t, l.nsB, append([]string{debianPython, script, "b", devB}, bArgs...)),
	}
	return h
}

// outcomes runs the probes: B starts recording, A sends and listens for a
// second after the last one, B says what it received. A probe's outcome
// is "delivered ttl=N" (hl= for IPv6; with " mss=…" for a SYN, " frags=…"
// the offsets of the fragments B got), the answer A got (a reset, how it
// acknowledges the probe and from where; an ICMP error's type/code, source
// and length: see diffprobe.py) or "dropped"; copies of a probe
// are summed up as "3× delivered ttl=63, 3× dropped".
func (h *hosts) outcomes(t *testing.T, probes []wireProbe) map[string]string {
	t.Helper()
	var ok struct{ OK bool }
	h.b.call(t, map[string]any{"cmd": "start"}, &ok, 30*time.Second)
	var ans struct{ Answers map[string]string }
	h.a.call(t, map[string]any{"cmd": "probe", "wait": 1.0, "probes": probes}, &ans, 60*time.Second)
	var seen struct {
		Seen map[string]struct {
			TTL   int   `json:"ttl"`
			MSS   *int  `json:"mss"`
			Len   int   `json:"len"`
			N     int   `json:"n"`
			Frags []int `json:"frags"`
		}
	}
	h.b.call(t, map[string]any{"cmd": "stop"}, &seen, 10*time.Second)
	each := map[string][]string{}
	var order []string
	for _, p := range probes {
		k := fmt.Sprint(p.Key)
		var o string
		if r, ok := seen.Seen[k]; ok {
			hop := "ttl"
			if p.Fam == 6 {
				hop = "hl"
			}
			o = fmt.Sprintf("delivered %s=%d", hop, r.TTL)
			// A SYN's (also a SYN-ACK's) MSS option as B received it.
			if p.Proto == "tcp" && (p.Flags == "" || strings.Contains(p.Flags, "S")) {
				if r.MSS == nil {
					o += " mss=none"
				} else {
					o += fmt.Sprintf(" mss=%d", *r.MSS)
				}
			}
			if len(r.Frags) > 0 {
				slices.Sort(r.Frags)
				o += fmt.Sprintf(" frags=%v", strings.Trim(fmt.Sprint(r.Frags), "[]"))
			} else if r.N > 1 {
				o += fmt.Sprintf(" (%d copies)", r.N)
			}
		} else if a, ok := ans.Answers[k]; ok {
			o = a
		} else {
			o = "dropped"
		}
		if _, ok := each[p.name]; !ok {
			order = append(order, p.name)
		}
		each[p.name] = append(each[p.name], o)
	}
	res := map[string]string{}
	for _, name := range order {
		res[name] = summarize(each[name])
	}
	return res
}

// summarize writes a probe's copies' outcomes in order, runs counted.
func summarize(os []string) string {
	if len(os) == 1 {
		return os[0]
	}
	var parts []string
	for i := 0; i < len(os); {
		j := i
		for j < len(os) && os[j] == os[i] {
			j++
		}
		parts = append(parts, fmt.Sprintf("%d× %s", j-i, os[i]))
		i = j
	}
	return strings.Join(parts, ", ")
}

// compare builds the table of probe → kernel, pipestack and whether the
// outcomes are the same, a known difference (with its reason) or a DIFF
// (also a known difference that did not show as written).
func compare(rs *ruleSet, k, p map[string]string) (string, bool) {
	var b strings.Builder
	bad := false
	fmt.Fprintf(&b, "  %-24s | %-50s | %-50s | %s\n", "probe", "kernel (iptables)", "pipestack (pipectl)", "")
	for _, name := range rs.names() {
		ko, po := k[name], p[name]
		verdict := "same"
		if ko != po {
			verdict = "DIFF"
		}
		for _, kd := range rs.Known {
			if kd.Probe != name {
				continue
			}
			if ko == kd.Kernel && po == kd.Pipestack {
				verdict = "known difference: " + kd.Reason
			} else {
				verdict = fmt.Sprintf("DIFF (known difference expected kernel %q, pipestack %q: %s)", kd.Kernel, kd.Pipestack, kd.Reason)
			}
		}
		if strings.HasPrefix(verdict, "DIFF") {
			bad = true
		}
		fmt.Fprintf(&b, "  %-24s | %-50s | %-50s | %s\n", name, ko, po, verdict)
	}
	return b.String(), bad
}

// agent is a running diffprobe.py, one JSON request and answer at a time.
type agent struct {
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	errb *syncBuffer
	done chan struct{}
}

func startAgent(t *testing.T, netns string, args []string) *agent {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", netns}, args...)...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{name: netns, cmd: cmd, in: in, out: bufio.NewReader(out), errb: new(syncBuffer), done: make(chan struct{})}
	cmd.Stderr = a.errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		in.Close()
		select {
		case <-a.done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-a.done
		}
		if s := a.errb.String(); s != "" {
			t.Logf("diffprobe in %s, stderr:\n%s", netns, s)
		}
	})
	return a
}

// call sends req and decodes the answer line into resp, within d.
func (a *agent) call(t *testing.T, req, resp any, d time.Duration) {
	t.Helper()
	b, _ := json.Marshal(req)
	if _, err := a.in.Write(append(b, '\n')); err != nil {
		t.Fatalf("diffprobe in %s: %v\n%s", a.name, err, a.errb.String())
	}
	type line struct {
		s   string
		err error
	}
	ch := make(chan line, 1)
	go func() {
		s, err := a.out.ReadString('\n')
		ch <- line{s, err}
	}()
	select {
	case l := <-ch:
		if l.err != nil {
			t.Fatalf("diffprobe in %s: %v\n%s", a.name, l.err, a.errb.String())
		}
		if err := json.Unmarshal([]byte(l.s), resp); err != nil {
			t.Fatalf("diffprobe in %s: %v: %q", a.name, err, l.s)
		}
	case <-time.After(d):
		a.cmd.Process.Kill()
		t.Fatalf("diffprobe in %s: no answer within %v\n%s", a.name, d, a.errb.String())
	}
}

// kernelDUT is lab.sh kernel mode: Linux routes in ps-r… with the rule
// set in its iptables and ip6tables (nf_tables backend or legacy, as the
// system's iptables is).
type kernelDUT struct {
	l *lab
	h *hosts
}

func newKernelDUT(t *testing.T, suffix string) *kernelDUT {
	t.Helper()
	l := newLabSuffix(t, "kernel", suffix)
	// No ICMP error rate limit per destination (Linux allows 6, then one
	// a second): every probe's answer must show (the global limit, 1000/s
	// with a burst of 50, stays as pipestack's).
	sysctlNS(t, l.nsR, "net/ipv4/icmp_ratelimit", "0", "net/ipv6/icmp/ratelimit", "0")
	d := &kernelDUT{l: l}
	d.h = newHosts(t, l, []string{macOf(t, l.nsA, l.va), macOf(t, l.nsR, l.ra)}, []string{"eth"})
	// The router learns the hosts' addresses (ARP, NDP) before the probes.
	warm(t, l)
	return d
}

// warm pings from each of A's addresses to B's first one and from A's
// first to each of B's, both families, so the kernel router has resolved
// its neighbors before the probes.
func warm(t *testing.T, l *lab) {
	t.Helper()
	for _, c := range [][2]string{
		{"10.10.1.2", "10.10.2.2"}, {"10.10.1.5", "10.10.2.5"}, {"10.10.1.9", "10.10.2.9"},
		{"fd00:10:1::2", "fd00:10:2::2"}, {"fd00:10:1::5", "fd00:10:2::5"}, {"fd00:10:1::9", "fd00:10:2::9"},
	} {
		out, err := ns(t, 10*time.Second, l.nsA, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-I", c[0], c[1])
		if err != nil {
			t.Fatalf("ping %s from %s: %v\n%s", c[1], c[0], err, out)
		}
	}
}

// iptablesBackend is "" (the system's iptables, nf_tables on this
// machine), or "-legacy" with DIFF_IPTABLES=legacy: the x_tables kernel
// code, whose matchers hotdrop where the nf_tables translation only does
// not match (see 9-unknown-upper.yaml).
func iptablesBackend() string {
	if os.Getenv("DIFF_IPTABLES") == "legacy" {
		return "-legacy"
	}
	return ""
}

func (d *kernelDUT) load(t *testing.T, rs *ruleSet) {
	t.Helper()
	// The last rule set's sets go (its rules first: a set in use cannot),
	// then this one's come.
	for _, tool := range []string{"iptables", "ip6tables"} {
		cmd := exec.Command("ip", "netns", "exec", d.l.nsR, tool+iptablesBackend()+"-restore")
		cmd.Stdin = strings.NewReader(restoreText(nil))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: emptying %s in %s: %v\n%s", rs.file, tool, d.l.nsR, err, out)
		}
	}
	if out, err := exec.Command("ip", "netns", "exec", d.l.nsR, "ipset", "destroy").CombinedOutput(); err != nil && rs.Ipset != "" {
		t.Fatalf("%s: ipset destroy in %s: %v\n%s", rs.file, d.l.nsR, err, out)
	}
	if rs.Ipset != "" {
		cmd := exec.Command("ip", "netns", "exec", d.l.nsR, "ipset", "restore")
		cmd.Stdin = strings.NewReader(rs.Ipset)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: ipset restore in %s: %v\n%s", rs.file, d.l.nsR, err, out)
		}
	}
	for _, c := range []struct{ tool, text string }{{"iptables", rs.IPv4}, {"ip6tables", rs.IPv6}} {
		text := restoreText(parseSave(t, c.text, d.l.ra, d.l.rb))
		cmd := exec.Command("ip", "netns", "exec", d.l.nsR, c.tool+iptablesBackend()+"-restore")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %s in %s: %v\n%s\ninput:\n%s", rs.file, c.tool, d.l.nsR, err, out, text)
		}
	}
}

func (d *kernelDUT) probe(t *testing.T, rs *ruleSet, probes []wireProbe) map[string]string {
	t.Helper()
	return d.h.outcomes(t, probes)
}

func (d *kernelDUT) unload(t *testing.T) {
	t.Helper()
	// The next load replaces every table; the last one's go with the lab.
}

// pipestackDUT is lab.sh tun mode with pipectl as the router, started
// for each rule set with its filter section.
type pipestackDUT struct {
	l *lab
	h *hosts
	r *router
}

func newPipestackDUT(t *testing.T, suffix string) *pipestackDUT {
	t.Helper()
	l := newLabSuffix(t, "tun", suffix)
	return &pipestackDUT{l: l, h: newHosts(t, l, nil, nil)}
}

func (d *pipestackDUT) load(t *testing.T, rs *ruleSet) {
	t.Helper()
	cfg := d.l.routerConfig("")
	// As the kernel: no ICMP error rate limit per destination.
	cfg = strings.Replace(cfg, "modules: [network.ipv4, network.ipv6]\n",
		"modules:\n  - {module: network.ipv4, icmp_ratelimit_ms: 0}\n  - {module: network.ipv6, icmp_ratelimit_ms: 0}\n", 1)
	cfg += filterSection(t, rs)
	d.r = startRouter(t, cfg)
}

func (d *pipestackDUT) probe(t *testing.T, rs *ruleSet, probes []wireProbe) map[string]string {
	t.Helper()
	return d.h.outcomes(t, probes)
}

func (d *pipestackDUT) unload(t *testing.T) {
	t.Helper()
	if t.Failed() {
		if out, err := d.r.control("rules"); err == nil {
			t.Logf("pipectl rules:\n%s", out)
		}
	}
	if err := d.r.stop(); err != nil {
		t.Error(err)
	}
}

// TestDifferentialCompare: the comparison itself (no lab): equal outcomes
// pass, unequal ones fail, a known difference passes only while both
// sides show what it says, and fails when it no longer does (stale).
func TestDifferentialCompare(t *testing.T) {
	rs := &ruleSet{Probes: []probeSpec{{Name: "p"}, {Name: "q"}}}
	rs.Known = []knownDiff{{"q", "delivered mss=536", "delivered mss=none", "MSS insertion", ""}}
	for _, c := range []struct {
		k, p map[string]string
		bad  bool
		want string
	}{
		{map[string]string{"p": "dropped", "q": "delivered mss=536"}, map[string]string{"p": "dropped", "q": "delivered mss=none"}, false, "known difference: MSS insertion"},
		{map[string]string{"p": "dropped", "q": "delivered mss=536"}, map[string]string{"p": "rst", "q": "delivered mss=none"}, true, "| DIFF\n"},
		{map[string]string{"p": "dropped", "q": "delivered mss=536"}, map[string]string{"p": "dropped", "q": "delivered mss=536"}, true, "DIFF (known difference expected"},
	} {
		table, bad := compare(rs, c.k, c.p)
		if bad != c.bad || !strings.Contains(table, c.want) {
			t.Errorf("compare(%v, %v) = bad %v, want %v with %q:\n%s", c.k, c.p, bad, c.bad, c.want, table)
		}
	}
}
