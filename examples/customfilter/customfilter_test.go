package customfilter_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipestack/pipestack/examples/customfilter"
	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// router copies testdata/router.yaml and blocked.txt into a directory of
// the test's and builds the stack from the copy.
func router(t *testing.T) (*pt.Node, string, *pipeline.Config) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"router.yaml", "blocked.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := pipeline.LoadConfigFile(filepath.Join(dir, "router.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := pipeline.New(pipeline.Options{})
	t.Cleanup(func() { s.Close() })
	if _, err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	return &pt.Node{Name: "custom", Stack: s}, dir, cfg
}

// forward injects p on link a and returns what left on link b.
func forward(t *testing.T, n *pt.Node, p filtertest.Packet) [][]byte {
	t.Helper()
	n.Link(t, "a").InjectFrames([][]byte{p.Bytes()})
	return pt.Drain(n.Link(t, "b"))
}

func TestBlockedPrefixDropped(t *testing.T) {
	n, _, _ := router(t)
	for _, c := range []struct {
		p    filtertest.Packet
		pass bool
	}{
		{filtertest.Packet{Src: "10.0.1.2", Dst: "10.0.2.2", DstPort: 9}, true},
		{filtertest.Packet{Src: "192.0.2.55", Dst: "10.0.2.2", DstPort: 9}, false},
		{filtertest.Packet{Src: "198.51.100.7", Dst: "10.0.2.2", DstPort: 9}, false},
		{filtertest.Packet{Src: "198.51.100.8", Dst: "10.0.2.2", DstPort: 9}, true},
		{filtertest.Packet{IPv6: true, Src: "2001:db8:1::2", Dst: "2001:db8:2::2", DstPort: 9}, true},
		{filtertest.Packet{IPv6: true, Src: "2001:db8:bad:1::2", Dst: "2001:db8:2::2", DstPort: 9}, false},
	} {
		got := forward(t, n, c.p)
		if (len(got) == 1) != c.pass {
			t.Errorf("%s -> %s: %d packets forwarded, want pass=%v", c.p.Src, c.p.Dst, len(got), c.pass)
		}
	}
}

// TestReloadReadsChangedPrefixFile: the same pipeline file, a changed
// prefix file: a reload takes the new prefixes.
func TestReloadReadsChangedPrefixFile(t *testing.T) {
	n, dir, _ := router(t)
	p := filtertest.Packet{Src: "10.0.1.2", Dst: "10.0.2.2", DstPort: 9}
	if got := forward(t, n, p); len(got) != 1 {
		t.Fatalf("10.0.1.2 dropped before the change")
	}
	if err := os.WriteFile(filepath.Join(dir, "blocked.txt"), []byte("10.0.1.0/24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := pipeline.LoadConfigFile(filepath.Join(dir, "router.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	changed, err := n.Stack.Apply(cfg)
	if err != nil || !changed {
		t.Fatalf("reload: changed %v, %v", changed, err)
	}
	if got := forward(t, n, p); len(got) != 0 {
		t.Errorf("10.0.1.2 still forwarded after the reload")
	}
	if got := forward(t, n, filtertest.Packet{Src: "192.0.2.55", Dst: "10.0.2.2"}); len(got) != 1 {
		t.Errorf("192.0.2.55 (no longer listed) dropped")
	}
	// Unchanged again: nothing to do.
	cfg, _ = pipeline.LoadConfigFile(filepath.Join(dir, "router.yaml"))
	if changed, err := n.Stack.Apply(cfg); err != nil || changed {
		t.Errorf("unchanged reload: changed %v, %v", changed, err)
	}
	// A broken prefix file keeps the running rules.
	os.WriteFile(filepath.Join(dir, "blocked.txt"), []byte("10.0.1.0/24\nnot-a-prefix\n"), 0o644)
	cfg, _ = pipeline.LoadConfigFile(filepath.Join(dir, "router.yaml"))
	if _, err := n.Stack.Apply(cfg); err == nil || !strings.Contains(err.Error(), "blocked.txt:2:") {
		t.Errorf("broken prefix file: %v", err)
	}
	if got := forward(t, n, p); len(got) != 0 {
		t.Errorf("the failed reload changed the rules")
	}
}

func TestDSCPSetWithValidChecksum(t *testing.T) {
	n, _, _ := router(t)
	for _, c := range []struct {
		p    filtertest.Packet
		dscp uint8
	}{
		{filtertest.Packet{Src: "10.0.1.2", Dst: "10.0.2.2", DstPort: 5004, TOS: 0x03}, 46},
		{filtertest.Packet{Src: "10.0.1.2", Dst: "10.0.2.2", DstPort: 5005}, 10},
		{filtertest.Packet{Src: "10.0.1.2", Dst: "10.0.2.2", DstPort: 5006, TOS: 0x20}, 8},
		{filtertest.Packet{IPv6: true, Src: "2001:db8:1::2", Dst: "2001:db8:2::2", DstPort: 5004, TOS: 0x01}, 46},
	} {
		got := forward(t, n, c.p)
		if len(got) != 1 {
			t.Fatalf("port %d: %d packets", c.p.DstPort, len(got))
		}
		b := got[0]
		tc, ecn := wire.IPv4(b).TOS(), c.p.TOS&3
		if c.p.IPv6 {
			tc = wire.IPv6(b).TrafficClass()
		}
		if tc>>2 != c.dscp || tc&3 != ecn {
			t.Errorf("port %d: traffic class %#x, want DSCP %d ECN %d", c.p.DstPort, tc, c.dscp, ecn)
		}
		filtertest.CheckChecksums(t, b)
	}
}

// TestRuleForms: the filter's parser takes the custom modules' options
// from the registered modules, in both forms, with the same canonical text;
// bad uses are refused as iptables would.
func TestRuleForms(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "blocked.txt"), []byte("192.0.2.0/24\n"), 0o644)
	base := "name: x\nmodules: [network.ipv4]\nfilter:\n  %s:\n    forward:\n      rules:\n        - %s\n"
	check := func(table, rule string) error {
		text := strings.Replace(strings.Replace(base, "%s", table, 1), "%s", rule, 1)
		cfg, err := pipeline.ParseConfig(filepath.Join(dir, "x.yaml"), []byte(text))
		if err != nil {
			return err
		}
		return pipeline.Check(cfg)
	}
	for _, ok := range []struct{ table, rule string }{
		{"filter", `"-m prefixfile --src-file blocked.txt -j DROP"`},
		{"filter", `"-m prefixfile ! --dst-file blocked.txt -j ACCEPT"`},
		{"filter", `{prefixfile: {src_file: blocked.txt}, target: drop}`},
		{"mangle", `"-j DSCP --set-dscp-class EF"`},
		{"mangle", `"-p tcp --dport 22 -j DSCP --set-dscp 0x10"`},
		{"mangle", `{target: {dscp: {set_dscp_class: af41}}}`},
	} {
		if err := check(ok.table, ok.rule); err != nil {
			t.Errorf("%s: %v", ok.rule, err)
		}
	}
	for _, bad := range []struct{ table, rule, want string }{
		{"filter", `"-j DSCP --set-dscp-class EF"`, "DSCP target: only valid in mangle table, not filter"},
		{"mangle", `"-j DSCP --set-dscp 64"`, "out of range"},
		{"mangle", `"-j DSCP --set-dscp-class XX"`, "not CS0"},
		{"mangle", `"-j DSCP --set-dscp 1 --set-dscp-class EF"`, "not both"},
		{"filter", `"-m prefixfile --src-file missing.txt -j DROP"`, "missing.txt"},
		{"filter", `"-m prefixfile --bogus x -j DROP"`, `unknown option "--bogus"`},
		{"filter", `{prefixfile: {src_fil: blocked.txt}}`, "src_fil"},
	} {
		err := check(bad.table, bad.rule)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want %q", bad.rule, err, bad.want)
		}
	}
}

// TestWithKit: the modules one by one through filtertest.
func TestWithKit(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "p.txt")
	os.WriteFile(f, []byte("10.0.0.0/8\n10.1.0.0/16 # inside the first\n11.0.0.0/8\n  2001:db8::/32\n"), 0o644)
	m := filtertest.Module(t, "filter.match.prefixfile", "{dst_file: "+f+"}").(*customfilter.PrefixFile)
	for _, c := range []struct {
		dst  string
		want bool
	}{{"10.2.3.4", true}, {"11.255.255.255", true}, {"12.0.0.0", false}, {"9.255.255.255", false}, {"2001:db8:ffff::1", true}, {"2001:db9::1", false}} {
		p := filtertest.Packet{IPv6: strings.Contains(c.dst, ":"), Dst: c.dst}
		pc := filtertest.Context(t, p, pipeline.Forward, 1, 2)
		if ok, hot := filtertest.Match(t, m, pc); ok != c.want || hot {
			t.Errorf("dst %s: %v %v", c.dst, ok, hot)
		}
	}
	// 10/8 and 11/8 merge to one range; described as 10.0.0.0/7.
	got := m.Constraint()
	if len(got) != 1 || got[0].Field != pipeline.FieldDstAddr || len(got[0].Prefixes) != 2 ||
		got[0].Prefixes[0] != netip.MustParsePrefix("10.0.0.0/7") || got[0].Prefixes[1] != netip.MustParsePrefix("2001:db8::/32") {
		t.Errorf("constraint %+v", got)
	}
	d := filtertest.Module(t, "filter.target.dscp", "{set_dscp_class: EF}").(pipeline.Target)
	pc := filtertest.Context(t, filtertest.Packet{Proto: filtertest.TCP, TOS: 0x02}, pipeline.Forward, 1, 2)
	if v, _ := filtertest.Action(t, d, pc); v != pipeline.VerdictContinue {
		t.Errorf("verdict %v", v)
	}
	if tos := wire.IPv4(pc.Pkt.Data()).TOS(); tos != 46<<2|2 {
		t.Errorf("TOS %#x", tos)
	}
}

// TestModulesZeroAllocs: Match and Action allocate nothing per packet.
func TestModulesZeroAllocs(t *testing.T) {
	f := filepath.Join(t.TempDir(), "p.txt")
	os.WriteFile(f, []byte("10.0.0.0/8\n2001:db8::/32\n"), 0o644)
	m := filtertest.Module(t, "filter.match.prefixfile", "{src_file: "+f+", dst_file: "+f+"}").(pipeline.Matcher)
	d := filtertest.Module(t, "filter.target.dscp", "{set_dscp: 46}").(pipeline.Target)
	for _, p := range []filtertest.Packet{{Src: "10.1.1.1", Dst: "10.2.2.2"}, {IPv6: true, Src: "2001:db8::1", Dst: "2001:db9::1"}} {
		pc := filtertest.Context(t, p, pipeline.Forward, 1, 2)
		if a := filtertest.Allocs(func() { m.Match(pc); d.Action(pc) }); a != 0 {
			t.Errorf("%s: %v allocations per packet", p.Src, a)
		}
	}
}

// TestPrefixSet: Contains against a naive check over random-ish
// addresses, with overlapping, adjacent and edge prefixes.
func TestPrefixSet(t *testing.T) {
	ps := []string{"0.0.0.0/1", "128.0.0.0/2", "200.0.0.0/8", "200.1.0.0/16", "201.0.0.0/8", "255.255.255.255/32",
		"::/1", "8000::/2", "ffff:ffff:ffff:ffff::/64", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "2001:db8::/127"}
	var prefixes []netip.Prefix
	for _, p := range ps {
		prefixes = append(prefixes, netip.MustParsePrefix(p))
	}
	set := customfilter.NewPrefixSet(prefixes)
	naive := func(a netip.Addr) bool {
		for _, p := range prefixes {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	addrs := []string{"0.0.0.0", "127.255.255.255", "128.0.0.0", "191.255.255.255", "192.0.0.0", "199.255.255.255", "200.0.0.0",
		"201.255.255.255", "202.0.0.0", "255.255.255.254", "255.255.255.255", "::", "bfff::1", "c000::", "ffff:ffff:ffff:fffe::1",
		"ffff:ffff:ffff:ffff::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::1", "2001:db8::2"}
	for _, s := range addrs {
		a := netip.MustParseAddr(s)
		if got, want := set.Contains(a), naive(a); got != want {
			t.Errorf("%s: Contains %v, want %v", s, got, want)
		}
	}
	// Merged: v4 0/1+128/2 (one), 200/8+201/8 (one), 255.255.255.255 (one).
	if v4, _ := set.Len(); v4 != 3 {
		t.Errorf("%d IPv4 ranges, want 3", v4)
	}
	if _, err := customfilter.ParsePrefixes("x.txt", []byte("10.0.0.0/8\n\n# c\n10.0.0.0/33\n")); err == nil || !strings.Contains(err.Error(), "x.txt:4:") {
		t.Errorf("bad prefix: %v", err)
	}
}
