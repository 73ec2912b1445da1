package wire

import (
	"math/rand/v2"
	"testing"

	"github.com/pipestack/pipestack/internal/alloctest"
)

var (
	sinkErr error
	sinkU16 uint16
	sinkStr string
)

func TestZeroAllocs(t *testing.T) {
	if alloctest.Race {
		t.Skip("allocation counts are not exact under -race (run outside it: the zero-allocation step)")
	}
	ip := ipOf(frameTCPSyn)
	_, tcp := l4Of(frameTCPSyn)
	buf := make([]byte, 1500)
	truncated := IPv4(frameICMPEcho[14:30])
	cases := map[string]func(){
		"Checksum":         func() { sinkU16 = Checksum(buf, 0) },
		"DecTTL":           func() { ip.DecTTL() },
		"IPv4.Check":       func() { sinkErr = ip.Check() },
		"IPv4.Check error": func() { sinkErr = truncated.Check() },
		"Ethernet.Check error": func() {
			sinkErr = Ethernet(buf[:3]).Check()
		},
		"UDP.Check error":    func() { sinkErr = UDP(buf[:20]).Check() },
		"TCP.Check error":    func() { sinkErr = TCP(buf[:20]).Check() },
		"ICMPv4.Check error": func() { sinkErr = ICMPv4(buf[:2]).Check() },
		"TCP checksum": func() {
			sinkU16 = TCP(tcp).CalculateChecksum(IPv4PseudoChecksum(ip, uint16(len(tcp))))
		},
		"ParseError.Error": func() { sinkStr = ErrBadChecksum.Error() },
	}
	for name, fn := range cases {
		if n := countAllocs(fn); n != 0 {
			t.Errorf("%s: %d allocations over %d calls, want 0", name, n, allocRuns)
		}
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	buf := make([]byte, 1500)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		sinkU16 = Checksum(buf, 0)
	}
}

// BenchmarkChecksum64K: a TCP segment's payload at MTU 65,535.
func BenchmarkChecksum64K(b *testing.B) {
	buf := make([]byte, 65495)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		sinkU16 = Checksum(buf, 0)
	}
}

func BenchmarkChecksum20(b *testing.B) {
	buf := []byte(ipOf(frameICMPEcho)[:20])
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		sinkU16 = Checksum(buf, 0)
	}
}

func BenchmarkDecTTL(b *testing.B) {
	ip := ipOf(frameICMPEcho)
	b.ReportAllocs()
	for b.Loop() {
		ip.DecTTL()
	}
}

func BenchmarkIPv4Check(b *testing.B) {
	ip := ipOf(frameICMPEcho)
	b.ReportAllocs()
	for b.Loop() {
		sinkErr = ip.Check()
	}
}

// allocRuns is how many times countAllocs calls a function.
const allocRuns = 10000

// countAllocs calls fn allocRuns times (after one warm-up call) and returns
// how many heap allocations that made in all, exactly (internal/alloctest;
// testing.AllocsPerRun rounds the average down, so 99 allocations in 100
// runs read 0). Zero means none per call.
func countAllocs(fn func()) uint64 {
	fn()
	return alloctest.Count(func() {
		for range allocRuns {
			fn()
		}
	})
}

// BenchmarkCopyChecksum64K: a send queue's copy of a segment's payload
// at MTU 65,535 and its sum, fused (CopyChecksum) and as a copy then
// Checksum over the copy; dst=hot copies into one buffer, dst=cold into 64
// in turn (4 MiB, as a send queue's packets: farther than the core's L2).
func BenchmarkCopyChecksum64K(b *testing.B) {
	src := make([]byte, 65495)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range src {
		src[i] = byte(r.Uint32())
	}
	for _, nd := range []int{1, 64} {
		dsts := make([][]byte, nd)
		for i := range dsts {
			dsts[i] = make([]byte, len(src))
		}
		name := "dst=hot"
		if nd > 1 {
			name = "dst=cold"
		}
		b.Run("fused/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			i := 0
			for b.Loop() {
				_, sinkU16 = CopyChecksum(dsts[i%nd], src, 0)
				i++
			}
		})
		b.Run("copy+sum/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			i := 0
			for b.Loop() {
				d := dsts[i%nd]
				copy(d, src)
				sinkU16 = Checksum(d, 0)
				i++
			}
		})
		b.Run("copy/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			i := 0
			for b.Loop() {
				copy(dsts[i%nd], src)
				i++
			}
		})
	}
}
