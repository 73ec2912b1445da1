package cli_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/internal/pcap"
	_ "github.com/pipestack/pipestack/modules/ipv4"
	_ "github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/pipectl/cli"
	"github.com/pipestack/pipestack/pipeline/wire"
	"github.com/pipestack/pipestack/pipelinetest"
)

// replayPipeline routes between a (10.0.1.0/24) and b (10.0.2.0/24) on
// test.link links, which replay replaces by channel links (opening none).
const replayPipeline = `
name: router
modules: [network.ipv4]
links:
  - {name: a, module: test.link, device: never-opened-a, mtu: 1500, addresses: [10.0.1.1/24]}
  - {name: b, module: test.link, device: never-opened-b, mtu: 1500, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
filter:
  mangle:
    forward:
      rules: ["-p udp --dport 5000 -j MARK --set-mark 0x7"]
  filter:
    forward:
      policy: drop
      rules:
        - "-p udp --dport 9 -j REJECT --reject-with icmp-port-unreachable"
        - "-p udp --dport 5000 -m mark --mark 0x7 -j ACCEPT"
        - "-p udp --dport 53 -j ACCEPT"
`

// writeEthCapture writes an Ethernet capture of the frames, one a second.
func writeEthCapture(t *testing.T, frames ...[]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "eth.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := pcap.NewWriter(f, pcap.LinkTypeEthernet, 0)
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for i, fr := range frames {
		w.Write(t0.Add(time.Duration(i)*time.Second), fr)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeCapture writes a raw-IP capture of the packets, one a second.
func writeCapture(t *testing.T, pkts ...[]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pcap.NewWriter(f, pcap.LinkTypeRaw, 0)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for i, p := range pkts {
		if err := w.Write(t0.Add(time.Duration(i)*time.Second), p); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func readCapture(t *testing.T, path string) []pcap.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcap.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []pcap.Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
}

func replayCapture(t *testing.T) string {
	return writeCapture(t,
		pipelinetest.UDP4("10.0.1.2", "10.0.2.2", 4000, 5000, 64, []byte("marked")),  // mangle MARK, then filter rule 2
		pipelinetest.UDP4("10.0.1.2", "10.0.2.2", 4000, 9, 64, []byte("discard")),    // filter rule 1: REJECT
		pipelinetest.UDP4("10.0.1.2", "10.0.2.2", 4000, 7000, 64, []byte("nothing")), // the policy
	)
}

func TestReplay(t *testing.T) {
	file := tempPipeline(t, replayPipeline)
	in := replayCapture(t)
	outPcap := filepath.Join(t.TempDir(), "out.pcap")
	opened := links.opened.Load()
	res := runMain(t, "replay", file, "--pcap", in, "--out", outPcap)
	if res.code != 0 {
		t.Fatalf("replay: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	t.Log("\n" + res.stdout)
	if links.opened.Load() != opened {
		t.Error("replay opened a test.link: the links were not replaced")
	}
	for _, want := range []string{
		"#1 2026-12-03T12:00:00Z a: udp 10.0.1.2:4000 > 10.0.2.2:5000",
		"mangle/FORWARD rule 1 `-p udp -m udp --dport 5000 -j MARK --set-xmark 0x7/0xffffffff` -> CONTINUE",
		"rewrite: mark 0x0->0x7",
		"filter/FORWARD rule 2 `-p udp -m udp --dport 5000 -m mark --mark 0x7 -j ACCEPT` -> ACCEPT",
		"=> forwarded to b",
		"left b: udp 10.0.1.2:4000 > 10.0.2.2:5000 len 34 ttl 63",
		"filter/FORWARD rule 1 `-p udp -m udp --dport 9 -j REJECT --reject-with icmp-port-unreachable` -> STOLEN",
		"=> rejected at forward (ICMP error sent)",
		"left a (icmp error): icmp 10.0.1.1 > 10.0.1.2 type 3 code 3 [about: udp 10.0.1.2:4000 > 10.0.2.2:9",
		"filter/FORWARD policy `-P FORWARD DROP` -> DROP",
		"=> dropped at forward",
		"counters: ipv4.forwarded +1",
		"by forward filter/FORWARD rule 2 `-p udp -m udp --dport 5000 -m mark --mark 0x7 -j ACCEPT` -> ACCEPT",
		"counters: ipv4.rx +1, link.b.tx_dropped +1, stack.filter_drop_forward +1",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("replay output lacks %q", want)
		}
	}
	// OUT: what left, as it left: the forwarded datagram (TTL 63) on b,
	// the ICMP error on a.
	recs := readCapture(t, outPcap)
	if len(recs) != 2 {
		t.Fatalf("out.pcap has %d records, want 2", len(recs))
	}
	pipelinetest.CheckIPv4(t, recs[0].Data, pipelinetest.SrcAddr("10.0.1.2"), pipelinetest.DstAddr("10.0.2.2"), pipelinetest.TTL(63))
	pipelinetest.CheckIPv4(t, recs[1].Data, pipelinetest.SrcAddr("10.0.1.1"), pipelinetest.DstAddr("10.0.1.2"), pipelinetest.ICMP(3, 3))
	if !recs[1].Time.Equal(time.Date(2026, 12, 3, 12, 0, 1, 0, time.UTC)) {
		t.Errorf("the ICMP error left at %v, want the capture time of the packet it answers", recs[1].Time)
	}
}

// TestReplayJSONDeterministic: two runs give byte-identical output and
// output captures; the JSON has one object per packet.
func TestReplayJSONDeterministic(t *testing.T) {
	file := tempPipeline(t, replayPipeline)
	in := replayCapture(t)
	dir := t.TempDir()
	var outs [2]string
	var caps [2][]byte
	for i := range outs {
		o := filepath.Join(dir, "out"+string(rune('0'+i))+".pcap")
		res := runMain(t, "replay", file, "--pcap", in, "--json", "--out", o, "--link", "a")
		if res.code != 0 {
			t.Fatalf("replay: %d %s", res.code, res.stderr)
		}
		outs[i] = res.stdout
		b, err := os.ReadFile(o)
		if err != nil {
			t.Fatal(err)
		}
		caps[i] = b
	}
	if outs[0] != outs[1] {
		t.Errorf("two runs differ:\n%s\n---\n%s", outs[0], outs[1])
	}
	if !bytes.Equal(caps[0], caps[1]) {
		t.Error("two runs wrote different captures")
	}
	dec := json.NewDecoder(strings.NewReader(outs[0]))
	var fates []string
	for dec.More() {
		var rp cli.ReplayPacket
		if err := dec.Decode(&rp); err != nil {
			t.Fatal(err)
		}
		fates = append(fates, rp.Fate)
	}
	want := []string{"forwarded to b", "rejected at forward (ICMP error sent)", "dropped at forward"}
	if strings.Join(fates, "|") != strings.Join(want, "|") {
		t.Errorf("fates %q, want %q", fates, want)
	}
}

func TestReplayUsage(t *testing.T) {
	file := tempPipeline(t, replayPipeline)
	if res := runMain(t, "replay", file); res.code != 2 {
		t.Errorf("replay without --pcap: %d, want 2", res.code)
	}
	in := replayCapture(t)
	if res := runMain(t, "replay", file, "--pcap", in, "--link", "nope"); res.code != 1 || !strings.Contains(res.stderr, "no such link") {
		t.Errorf("replay --link nope: %d %s", res.code, res.stderr)
	}
}

// TestReplayEthernet: an Ethernet capture makes Ethernet links; the link
// fed takes the capture's destination MAC (else the frame would be for
// another host); the pipeline has no ARP, so the forwarded packet is
// dropped on b as unresolved, and replay says so with the counter.
func TestReplayEthernet(t *testing.T) {
	file := tempPipeline(t, replayPipeline)
	dst := wire.MAC{0x02, 0, 0, 0, 0, 0x01}
	frame := pipelinetest.EthFrame(dst, wire.MAC{0x02, 0, 0, 0, 0, 0x02}, 0x0800, pipelinetest.UDP4("10.0.1.2", "10.0.2.2", 4000, 5000, 64, []byte("marked")))
	path := filepath.Join(t.TempDir(), "eth.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := pcap.NewWriter(f, pcap.LinkTypeEthernet, 0)
	w.Write(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC), frame)
	f.Close()
	res := runMain(t, "replay", file, "--pcap", path)
	t.Log("\n" + res.stdout)
	for _, want := range []string{
		"a: 02:00:00:00:00:02 > 02:00:00:00:00:01 udp 10.0.1.2:4000 > 10.0.2.2:5000",
		"filter/FORWARD rule 2 `-p udp -m udp --dport 5000 -m mark --mark 0x7 -j ACCEPT` -> ACCEPT",
		"counters: ipv4.forwarded +1, ipv4.rx +1, link.b.tx_dropped +1, stack.neighbor_unresolved +1",
		"=> dropped (link.b.tx_dropped, stack.neighbor_unresolved)",
	} {
		if res.code != 0 || !strings.Contains(res.stdout, want) {
			t.Errorf("replay output lacks %q (%d %s)", want, res.code, res.stderr)
		}
	}
}

// replay6Pipeline: dual-stack, so network.ipv6 draws random numbers (its
// default stable secret, from which the links' link-local addresses come,
// the fragment identification, the router solicitation delays).
const replay6Pipeline = `
name: router6
modules: [network.ipv4, network.ipv6]
links:
  - {name: a, module: test.link, device: never-a, addresses: [10.0.1.1/24, "fd00:1::1/64"]}
  - {name: b, module: test.link, device: never-b, addresses: [10.0.2.1/24, "fd00:2::1/64"]}
forwarding: {ipv4: true, ipv6: true}
filter:
  filter:
    forward:
      rules: ["-p udp --dport 9 -j REJECT --reject-with icmp6-port-unreachable"]
`

// udp6 is an IPv6 UDP datagram (checksum left zero: a router does not
// look at it).
func udp6(src, dst string, sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 48+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	b[6], b[7] = 17, 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	binary.BigEndian.PutUint16(b[40:], sport)
	binary.BigEndian.PutUint16(b[42:], dport)
	binary.BigEndian.PutUint16(b[44:], uint16(8+len(payload)))
	copy(b[48:], payload)
	return b
}

// TestReplayDeterministicIPv6: with network.ipv6 on Ethernet links (its
// random draws: the stable secret, delays; duplicate address detection and
// neighbor solicitations on timers as the capture's clock moves over 10
// s), two runs with one seed are identical.
func TestReplayDeterministicIPv6(t *testing.T) {
	file := tempPipeline(t, replay6Pipeline)
	var pkts [][]byte
	for i := 0; i < 10; i++ {
		pkts = append(pkts, pipelinetest.EthFrame(wire.MAC{2, 0, 0, 0, 0, 1}, wire.MAC{2, 0, 0, 0, 0, 2}, 0x86dd, udp6("fd00:1::2", "fd00:2::2", 4000, uint16(8+i%2), []byte("x"))))
	}
	in := writeEthCapture(t, pkts...)
	run := func(seed string) string {
		res := runMain(t, "replay", file, "--pcap", in, "--json", "--seed", seed)
		if res.code != 0 {
			t.Fatalf("replay: %d %s", res.code, res.stderr)
		}
		return res.stdout
	}
	a, b := run("7"), run("7")
	if a != b {
		t.Errorf("two runs with one seed differ:\n%s\n---\n%s", a, b)
	}
	for _, want := range []string{"icmpv6 fd00:1::1 > fd00:1::2 type 1 code 4", "type 135 code 0"} {
		if !strings.Contains(a, want) {
			t.Errorf("no %q (the ICMPv6 error, the neighbor solicitations on timers) in:\n%s", want, a)
		}
	}
}
