package filter

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// bigSetsSection declares big_net (n prefixes /16../32 in 10.0.0.0/8 and
// 2001:db8::/32), big_ipport (n addresses . tcp ports) and ports, from
// files in dir.
func bigSetsSection(t testing.TB, dir string, n int) string {
	var nets, ipp strings.Builder
	for i := 0; i < n; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		bits := 16 + i%17
		if i%10 == 9 {
			fmt.Fprintf(&nets, "2001:db8:%x:%x::/64\n", i>>16, i&0xffff)
		} else {
			fmt.Fprintf(&nets, "%s\n", netip.PrefixFrom(a, bits).Masked())
		}
		fmt.Fprintf(&ipp, "%s . tcp:%d\n", netip.AddrFrom4([4]byte{172, 16 + byte(i>>16), byte(i >> 8), byte(i)}), 1+i%1000)
	}
	for _, f := range []struct{ name, s string }{{"nets.txt", nets.String()}, {"ipport.txt", ipp.String()}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf(`sets:
  big_net: {type: hash:net, file: %s}
  big_ipport: {type: "addr . port", file: %s, timeout: 3600, counters: true}
  big_ipport_plain: {type: "addr . port", file: %s}
  ports: {type: bitmap:port, elements: ["1-1000"]}
filter:`, filepath.Join(dir, "nets.txt"), filepath.Join(dir, "ipport.txt"), filepath.Join(dir, "ipport.txt"))
}

// bigSetFlow is flow i of 4,096: TCP to an address of big_ipport with its
// port for even i, to a 10.x address (in big_net for some) for odd i.
func bigSetFlow(i int) pk {
	j := i * 24 % 100000
	if i%2 == 0 {
		return pk{proto: 6, src: "192.168.0.1", dst: netip.AddrFrom4([4]byte{172, 16 + byte(j>>16), byte(j >> 8), byte(j)}).String(), sport: 1000, dport: uint16(1 + j%1000)}
	}
	return pk{proto: 6, src: "192.168.0.1", dst: netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)}).String(), sport: 1000, dport: 2000}
}

// BenchmarkSetLookup: Evaluate of a chain of one rule over 4,096 flows:
// a -d /32, a 100,000-element prefix set, a 100,000-element addr . port
// set (with timeouts and counters).
func BenchmarkSetLookup(b *testing.B) {
	dir := b.TempDir()
	sec := bigSetsSection(b, dir, 100000)
	at := time.Unix(1e9, 0) // the batch clock (outside a batch: testNow)
	testNow = func() time.Time { return at }
	defer func() { testNow = nil }()
	for _, c := range []struct{ name, rule string }{
		{"rule=-d32", "-d 10.255.255.255/32 -j DROP"},
		{"set=prefix100k", "-m set --match-set big_net dst -j ACCEPT"},
		{"set=addrport100k", "-m set --match-set big_ipport_plain dst,dst -j ACCEPT"},
		{"set=addrport100k-timeout-counters", "-m set --match-set big_ipport dst,dst -j ACCEPT"},
	} {
		// Built once: the benchmark function runs again for each b.N.
		m := mustLoad(b, sec+"\n  forward:\n    rules:\n      - "+quoteYAML(c.rule)+"\n")
		pcs := make([]*pipeline.PacketContext, 4096)
		for i := range pcs {
			p := bigSetFlow(i)
			p.hook = pipeline.Forward
			pcs[i] = p.ctx(b)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				eval(m, pcs[i&4095])
			}
		})
	}
}

// BenchmarkSetAdd: one run-time add (pipectl set add) to a 100,000-element
// set: the copy-on-write rebuild of its lookup structures.
func BenchmarkSetAdd(b *testing.B) {
	for _, typ := range []string{"hash:net", "addr . port"} {
		b.Run("type="+strings.ReplaceAll(typ, " ", ""), func(b *testing.B) {
			decl := setDecl{name: "b", typ: setNet, maxElem: defaultMaxElem}
			for i := 0; i < 100000; i++ {
				a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
				if typ == "hash:net" {
					decl.elems = append(decl.elems, a.String())
				} else {
					decl.typ = setIPPort
					decl.elems = append(decl.elems, a.String()+" . tcp:80")
				}
			}
			s, err := newSet(decl, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e := netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}).String()
				if decl.typ == setIPPort {
					e += " . tcp:80"
				}
				if _, err := s.Add(e, -1, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
