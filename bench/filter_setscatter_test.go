package bench

// BenchmarkFilterSetCost with scattered destinations (issue 12;
// bench/README.md, "Sets"). The filter flows go to consecutive addresses
// (198.18.0.1+i), and so do the set elements they match: the prefix set's
// DIR table (modules/filter/sets_dir.go) serves all 4,096 from the
// blocks of sixteen /24s (16 KB, neighbouring flows on one cache line),
// which real traffic's destinations do not allow. Here the flows'
// destinations and the sets' elements are spread over the routed
// 198.18.0.0/15 by a seeded pseudo-random permutation:
//
//   - flow i goes to a distinct address of 198.18.0.0/16 when (i>>1)&1 is
//     0, of 198.19.0.0/16 when it is 1 (2,048 flows in each, drawn
//     without replacement; neither /16's first or last address), its
//     ports as the filter flows' (1024+i → 2000+i);
//   - each set holds the even flows' destinations (/32, or DST .
//     udp:2000+i) and 97,952 other /32s (DST . udp:1+k%60000) drawn from
//     the /15's remaining addresses, so half the flows match each set
//     rule, and the prefix set's table is 100,000 /32s over the /15's
//     512 /24s (~195 elements each, each its own interval: more starts
//     than a run holds, so a 1 KB block per /24; a scratch build of this
//     table had 514 blocks, 0.79 MB in all) — the flows' lookups spread
//     over ~0.5 MB of blocks, the consecutive flows' over 16 KB;
//   - the -d /32 baseline is flow 0's destination; the half baseline is
//     -d 198.18.0.0/16 (d16), which exactly the 2,048 flows of the first
//     /16 match (half of them even, half odd: not the set's half, as many);
//   - the control is a second -d 198.18.0.0/16 router.
//
// TestFilterSetCostScatteredApply checks all of it.

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
)

// scatterSeed seeds the permutation of the /15's addresses.
const scatterSeed = 12

// scatterAddrs are the scattered flows' destinations (host order; flow
// i's at [i]) and the sets' other elements (none a flow's destination).
var scatterAddrs = sync.OnceValues(func() (dsts, others []uint32) {
	rng := rand.New(rand.NewPCG(scatterSeed, 0))
	var half [2][]uint32 // each /16's addresses but its first and last, in a random order
	for h := range half {
		for _, o := range rng.Perm(1<<16 - 2) {
			half[h] = append(half[h], beyond4+uint32(h)<<16+1+uint32(o))
		}
	}
	dsts = make([]uint32, filterFlows)
	for i := range dsts {
		dsts[i] = half[i>>1&1][i>>2<<1|i&1] // the 2,048 flows of each /16: its first 2,048
	}
	rest := append(half[0][filterFlows/2:], half[1][filterFlows/2:]...)
	rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	return dsts, rest[:setElements-filterFlows/2]
})

// newScatteredFlowSet is the filter flows with scatterAddrs' destinations.
func newScatteredFlowSet() *flowSet {
	dsts, _ := scatterAddrs()
	return newFlowSet(filterFlows, func(i int) ([]byte, []byte) {
		ip := buildUDPFlowPacket(filterSize, srcIP+uint32(i%250), dsts[i], uint16(1024+i), uint16(flowPortFirst+i))
		return ip, ip
	})
}

// scatteredSetFiles writes the scattered sets' files into dir.
func scatteredSetFiles(tb testing.TB, dir string) (nets, ipport string) {
	dsts, others := scatterAddrs()
	elems := make([]setElem, 0, setElements)
	for i := 0; i < filterFlows; i += 2 {
		elems = append(elems, setElem{dsts[i], 32, flowPortFirst + i})
	}
	for k, a := range others {
		elems = append(elems, setElem{a, 32, 1 + (filterFlows/2+k)%60000})
	}
	return writeSetFiles(tb, dir, elems)
}

// scatterHalfRule matches the flows whose destination is in 198.18.0.0/16.
const scatterHalfRule = "-d 198.18.0.0/16 -j %s"

// setCostScattered is BenchmarkFilterSetCostScattered's scenario.
var setCostScattered = setCostScenario{
	baselines: []struct{ name, rule string }{
		{"none", ""},
		{"d32", scatterD32Rule()},
		{"d16", scatterHalfRule},
	},
	sets: []struct{ name, rule string }{
		{"prefix100k", setCostSets[0].rule},
		{"addrport100k", setCostSets[1].rule},
		{"control-d16", scatterHalfRule},
	},
	flows: newScatteredFlowSet,
	files: scatteredSetFiles,
}

// scatterD32Rule is -d (flow 0's destination)/32.
func scatterD32Rule() string {
	dsts, _ := scatterAddrs()
	d := ip4(dsts[0])
	return fmt.Sprintf("-d %d.%d.%d.%d/32 -j %%s", d[0], d[1], d[2], d[3])
}

// BenchmarkFilterSetCostScattered is BenchmarkFilterSetCost over the
// scattered flows and sets (metrics d16-ns/pkt, set/d16,
// set-extra/d16-extra in place of the d21 ones).
func BenchmarkFilterSetCostScattered(b *testing.B) { benchSetCost(b, setCostScattered) }

// TestFilterSetCostScatteredApply: the scattered destinations are
// distinct, routed (198.18.0.0/15), spread (no two consecutive flows in
// one /24), and no other element is one; with DROP as the target each set
// rule forwards exactly the odd flows, the -d /32 all but flow 0, the
// half rule (and the control) exactly the flows outside 198.18.0.0/16,
// 2,048; forwarding through each allocates nothing.
func TestFilterSetCostScatteredApply(t *testing.T) {
	dsts, others := scatterAddrs()
	flowOf := map[uint32]int{}
	sameSlash24 := 0
	for i, d := range dsts {
		if d>>(32-beyond4Bits) != beyond4>>(32-beyond4Bits) {
			t.Fatalf("flow %d: destination %v outside 198.18.0.0/15", i, ip4(d))
		}
		if _, dup := flowOf[d]; dup {
			t.Fatalf("flow %d: destination %v repeated", i, ip4(d))
		}
		flowOf[d] = i
		if i > 0 && d>>8 == dsts[i-1]>>8 {
			sameSlash24++
		}
	}
	if sameSlash24 > filterFlows/100 {
		t.Errorf("%d consecutive flows share a /24: not scattered", sameSlash24)
	}
	if len(others)+filterFlows/2 != setElements {
		t.Fatalf("%d elements, want %d", len(others)+filterFlows/2, setElements)
	}
	seen := map[uint32]bool{}
	for _, a := range others {
		if _, isFlow := flowOf[a]; isFlow || seen[a] || a>>(32-beyond4Bits) != beyond4>>(32-beyond4Bits) {
			t.Fatalf("element %v: a flow's destination, repeated or outside the /15", ip4(a))
		}
		seen[a] = true
	}
	cases := slices.Concat(setCostScattered.baselines[1:], setCostScattered.sets)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, in, out := newPipestackRouterWith(t, false, setSectionWith(t, c.rule, "DROP", scatteredSetFiles), pipeline.Options{})
			fs := newScatteredFlowSet()
			buf := make([]*pipeline.Packet, batchSize)
			var got []int
			for sent := 0; sent < filterFlows; sent += batchSize {
				frames, _ := fs.batch(batchSize)
				in.InjectFrames(frames)
				n := out.Read(buf)
				for _, p := range buf[:n] {
					d := p.Data()
					got = append(got, flowOf[uint32(d[16])<<24|uint32(d[17])<<16|uint32(d[18])<<8|uint32(d[19])])
				}
				pipeline.ReleaseBatch(buf[:n])
			}
			var want []int
			for i, d := range dsts {
				var dropped bool
				switch c.name {
				case "d32":
					dropped = i == 0
				case "d16", "control-d16":
					dropped = d>>16 == beyond4>>16
				default:
					dropped = i%2 == 0
				}
				if !dropped {
					want = append(want, i)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("forwarded %d flows, want %d: got %v…, want %v…", len(got), len(want), got[:min(8, len(got))], want[:min(8, len(want))])
			}
			if c.name != "d32" && len(want) != filterFlows/2 {
				t.Errorf("the rule drops %d flows, want %d", filterFlows-len(want), filterFlows/2)
			}
			checkSetForwardAllocs(t, in, out, fs)
		})
	}
}
