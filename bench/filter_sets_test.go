package bench

// Sets against one rule (issue 12): the FORWARD chain with one rule — a
// -d /32, a match on a 100,000-element prefix set, or on a 100,000-element
// addr . port set — over the 4,096 filter flows
// (BenchmarkForwardFilterSets/case=…/impl=…). gVisor has no sets: its
// column is the one -d /32 rule and the empty chain; a set's contents as
// gVisor rules would be 100,000 rules walked one by one (~170 packets a
// second by the mixed benchmark's slope), not run here.
//
// The sets hold, for the even flows, their destination (as a /32, or
// with its port: DST . udp:2000+i), and 97,952 other elements that no
// flow has (100.64.0.0/10, /28 and /32 in turn; ports 1…60,000), so half
// the flows match the rule (ACCEPT; the policy accepts the rest too).
// TestForwardFilterSetsApply turns the target into DROP and checks that
// exactly the odd flows get through.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
)

const setElements = 100000

// setElem is one element of both sets: addr/bits in the prefix set, addr
// . udp:port in the addr . port set.
type setElem struct {
	addr       uint32 // host order
	bits, port int
}

// setFiles writes the two sets' files into dir.
func setFiles(tb testing.TB, dir string) (nets, ipport string) {
	elems := make([]setElem, 0, setElements)
	for k := 0; k < setElements; k++ {
		if k < filterFlows/2 {
			elems = append(elems, setElem{beyond4 + 1 + uint32(2*k), 32, flowPortFirst + 2*k})
			continue
		}
		bits := 32
		if k%2 == 0 {
			bits = 28
		}
		elems = append(elems, setElem{0x64400000 + uint32(k)*16, bits, 1 + k%60000})
	}
	return writeSetFiles(tb, dir, elems)
}

// writeSetFiles writes elems as the prefix set's file (nets) and the addr
// . port set's (ipport) into dir.
func writeSetFiles(tb testing.TB, dir string, elems []setElem) (nets, ipport string) {
	var n, p strings.Builder
	for _, e := range elems {
		d := ip4(e.addr)
		fmt.Fprintf(&n, "%d.%d.%d.%d/%d\n", d[0], d[1], d[2], d[3], e.bits)
		fmt.Fprintf(&p, "%d.%d.%d.%d . udp:%d\n", d[0], d[1], d[2], d[3], e.port)
	}
	nets, ipport = filepath.Join(dir, "nets.txt"), filepath.Join(dir, "ipport.txt")
	for _, f := range []struct{ path, s string }{{nets, n.String()}, {ipport, p.String()}} {
		if err := os.WriteFile(f.path, []byte(f.s), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return nets, ipport
}

// setCases are the one-rule chains.
var setCases = []struct{ name, rule string }{
	{"none", ""},
	{"rule=-d32", "-d 198.18.0.1/32 -j %s"},
	{"rule=-d15", "-d 198.18.0.0/15 -j %s"}, // every flow matches: the matched rule's cost (its counter)
	{"rule=-d21", halfRule},                 // half the flows match, as many as each set rule
	{"set=prefix100k", "-m set --match-set nets dst -j %s"},
	{"set=addrport100k", "-m set --match-set ipport dst,dst -j %s"},
}

func setSection(tb testing.TB, rule, target string) string {
	return setSectionWith(tb, rule, target, setFiles)
}

// setSectionWith is the filter section declaring the two sets that files
// writes, with rule (a format of the target; "": none) in FORWARD.
func setSectionWith(tb testing.TB, rule, target string, files func(testing.TB, string) (nets, ipport string)) string {
	nets, ipport := files(tb, tb.TempDir())
	s := fmt.Sprintf("filter:\n  sets:\n    nets: {type: hash:net, file: %s}\n    ipport: {type: \"addr . port\", file: %s}\n  filter:\n    forward:\n      policy: accept\n", nets, ipport)
	if rule != "" {
		s += "      rules: [" + fmt.Sprintf("%q", fmt.Sprintf(rule, target)) + "]\n"
	}
	return s
}

func newGVisorOneRuleRouter(tb testing.TB, withRule, drop bool) *gvisorRouter {
	r := newGVisorRouterWith(tb, false, []stack.TransportProtocolFactory{udp.NewProtocol})
	var rules []mixedRule
	if withRule {
		rules = []mixedRule{{dst: beyond4 + 1, dstBits: 32, drop: drop}}
	}
	r.s.IPTables().ForceReplaceTable(stack.FilterID, gvisorMixedTable(rules), false)
	return r
}

// BenchmarkForwardFilterSets: ours with each case, gVisor with the empty
// chain (case=none) and the one -d /32 rule; bench/README.md, "Sets".
func BenchmarkForwardFilterSets(b *testing.B) {
	for _, c := range setCases {
		b.Run("case="+c.name, func(b *testing.B) {
			if c.name == "none" || c.name == "rule=-d32" {
				b.Run("impl=gvisor", func(b *testing.B) {
					r := newGVisorOneRuleRouter(b, c.name != "none", false)
					runForwardGVisor(b, r, newFilterFlowSet(), filterSize, r.drain)
				})
			}
			b.Run("impl=pipestack", func(b *testing.B) {
				_, in, out := newPipestackRouterWith(b, false, setSection(b, c.rule, "ACCEPT"), pipeline.Options{})
				runForward(b, in, out, newFilterFlowSet(), filterSize, func(d, want []byte) { checkForwarded(b, d, want) })
			})
		})
	}
}

// TestForwardFilterSetsApply: with DROP as the target, the set rules let
// exactly the odd flows through (the -d /32 rule all but flow 0, the
// -d /21 all but 2,048 flows, the -d /15 none), and
// forwarding through them allocates nothing.
func TestForwardFilterSetsApply(t *testing.T) {
	for _, c := range setCases[1:] {
		t.Run(c.name, func(t *testing.T) {
			_, in, out := newPipestackRouterWith(t, false, setSection(t, c.rule, "DROP"), pipeline.Options{})
			fs := newFilterFlowSet()
			buf := make([]*pipeline.Packet, batchSize)
			got := 0
			for sent := 0; sent < filterFlows; sent += batchSize {
				frames, _ := fs.batch(batchSize)
				in.InjectFrames(frames)
				n := out.Read(buf)
				got += n
				pipeline.ReleaseBatch(buf[:n])
			}
			want := filterFlows / 2
			switch c.name {
			case "rule=-d32":
				want = filterFlows - 1
			case "rule=-d15":
				want = 0
			}
			if got != want {
				t.Errorf("forwarded %d of %d, want %d", got, filterFlows, want)
			}
			checkSetForwardAllocs(t, in, out, fs)
		})
	}
}

// checkSetForwardAllocs fails t if forwarding fs's flows through in and
// out, a batch at a time after a warm-up, allocates (not under -race).
func checkSetForwardAllocs(t *testing.T, in, out *channel.Endpoint, fs *flowSet) {
	if raceEnabled {
		return
	}
	buf := make([]*pipeline.Packet, batchSize)
	if a := totalAllocs(2*fs.warmBatches(), func() {
		frames, _ := fs.batch(batchSize)
		in.InjectFrames(frames)
		n := out.Read(buf)
		pipeline.ReleaseBatch(buf[:n])
	}); a != 0 {
		t.Errorf("%d allocations", a)
	}
}
