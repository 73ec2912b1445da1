package cli

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pipestack/pipestack/internal/pcap"
	"github.com/pipestack/pipestack/modules/conntrack"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipectl/control"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// ReplayOptions configure Replay.
type ReplayOptions struct {
	// Link is the link the packets are fed into ("": the file's first).
	Link string
	// Seed seeds every random draw (0: 1).
	Seed uint64
	// Out, when set, receives a pcap of every frame that left a link, in
	// the input's framing.
	Out io.Writer
}

// ReplayPacket is what became of one packet of the capture.
type ReplayPacket struct {
	N      int                  `json:"n"` // from 1, as the capture's order
	Time   string               `json:"time"`
	Link   string               `json:"link"`
	Packet string               `json:"packet"`
	Hooks  []control.HookRecord `json:"hooks"`
	// Fate sums it up: forwarded, delivered, dropped by a rule, dropped
	// (with the counter), answered.
	Fate string `json:"fate"`
	// Decided is the step that decided the hook that ended or last passed
	// the packet ("filter/FORWARD rule 2 `…` -> ACCEPT").
	Decided string `json:"decided,omitempty"`
	// Left are the frames that left a link while the packet was handled
	// (the packet forwarded, an ICMP error, a neighbor solicitation…), and
	// anything a timer sent since the previous packet.
	Left []LeftFrame `json:"left"`
	// Counters are the counters that changed (drops by reason among them).
	Counters []CounterDelta `json:"counters"`
	// With netfilter.conntrack: CT is the packet's connection-tracking
	// state and direction (NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED;
	// "original" or "reply"), Conn its entry after the packet as `pipectl
	// conntrack -L` prints it (the reply tuple shows the NAT binding), NAT
	// the packet's rewrite: its flow as it came in -> as it left the last
	// hook ("udp 10.0.1.2:4000 > 10.0.2.2:53 -> udp 10.0.2.1:4000 >
	// 10.0.2.2:53 (SNAT)").
	CT   string `json:"ct,omitempty"`
	Conn string `json:"conn,omitempty"`
	NAT  string `json:"nat,omitempty"`
}

// LeftFrame is one frame that left a link.
type LeftFrame struct {
	Link   string `json:"link"`
	Packet string `json:"packet"`
	// ICMPError: the stack generated it as an ICMP error.
	ICMPError bool `json:"icmp_error,omitempty"`
}

// CounterDelta is one counter that changed.
type CounterDelta struct {
	Name  string `json:"name"` // set.counter, or link.NAME.rx_dropped
	Delta uint64 `json:"delta"`
}

// replayTracer traces every packet into the current packet's record.
type replayTracer struct {
	mu    sync.Mutex
	names func(pipeline.NICID) string
	hooks []control.HookRecord
	meta  []hookMeta
}

// hookMeta is what a hook record does not show of the packet: which
// packet it was, its conntrack state and reference, its flow after the
// hook (replay's ct and nat lines).
type hookMeta struct {
	pkt  *pipeline.Packet
	in   pipeline.NICID
	hook pipeline.Hook
	ct   pipeline.CTInfo
	ref  uint64
	flow string
}

func (*replayTracer) Select(*pipeline.PacketContext) bool { return true }

func (t *replayTracer) Trace(ht *pipeline.HookTrace) {
	r := control.NewHookRecord(ht, t.names)
	m := hookMeta{pkt: ht.Pkt, in: ht.InNIC, hook: ht.Hook}
	if ht.Pkt != nil {
		m.ct, m.ref, m.flow = ht.Pkt.CTInfo, ht.Pkt.ConnTrack, natFlow(ht.Pkt.Data())
	}
	t.mu.Lock()
	t.hooks = append(t.hooks, r)
	t.meta = append(t.meta, m)
	t.mu.Unlock()
}

func (t *replayTracer) take() ([]control.HookRecord, []hookMeta) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, m := t.hooks, t.meta
	t.hooks, t.meta = nil, nil
	if h == nil {
		h = []control.HookRecord{}
	}
	return h, m
}

// Replay builds the pipeline in file with link.channel links in place of
// its links (same names, MTUs and addresses; the capture's framing), on a
// clock that follows the capture's timestamps and with every random draw
// seeded, feeds it each packet of the capture in, and calls emit with what
// became of each. No device is opened; two runs on the same input give the
// same records and the same output capture.
func Replay(file string, in io.Reader, opts ReplayOptions, emit func(ReplayPacket) error) error {
	rd, err := pcap.NewReader(in)
	if err != nil {
		return err
	}
	var eth bool
	switch rd.LinkType {
	case pcap.LinkTypeEthernet:
		eth = true
	case pcap.LinkTypeRaw, pcap.LinkTypeIPv4, pcap.LinkTypeIPv6:
	default:
		return fmt.Errorf("capture link type %d: replay reads Ethernet (1), raw IP (101), IPv4 (228) and IPv6 (229)", rd.LinkType)
	}
	var recs []pcap.Record
	for {
		r, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("record %d: %w", len(recs)+1, err)
		}
		recs = append(recs, r)
	}

	cfg, err := pipeline.LoadConfigFile(file)
	if err != nil {
		return err
	}
	if len(cfg.Links) == 0 {
		return fmt.Errorf("%s has no link to feed", file)
	}
	link := opts.Link
	if link == "" {
		link = cfg.Links[0].Name
	}
	found := false
	var names []string
	for i := range cfg.Links {
		lc := &cfg.Links[i]
		names = append(names, lc.Name)
		m := &channel.Module{Framing: "ip", Queue: 1 << 16}
		if eth {
			m.Framing = "ethernet"
		}
		if lc.Name == link {
			found = true
			// The frames were addressed to the captured device: the
			// channel link takes the first unicast destination as its
			// own address.
			for _, r := range recs {
				if e := wire.Ethernet(r.Data); eth && e.Check() == nil && !e.Dst().IsMulticast() {
					m.MAC = e.Dst().String()
					break
				}
			}
		}
		lc.ModuleID, lc.Module = "link.channel", m
	}
	if !found {
		return fmt.Errorf("--link %s: %s has no such link (%s)", link, file, strings.Join(names, ", "))
	}

	// The capture's clock: Set moves it to each packet's timestamp (never
	// back), firing due timers in order.
	start := time.Unix(0, 0).UTC()
	if len(recs) > 0 {
		start = recs[0].Time
	}
	clock := pipeline.NewManualClock(start)
	seed := opts.Seed
	if seed == 0 {
		seed = 1
	}
	s := pipeline.New(pipeline.Options{Clock: clock, Seed: seed})
	defer s.Close()
	if _, err := s.Apply(cfg); err != nil {
		return err
	}
	nicName := map[pipeline.NICID]string{}
	eps := map[string]*channel.Endpoint{}
	var inID pipeline.NICID
	for _, n := range s.NICs() {
		nicName[n.ID()] = n.Name()
		if n.Name() == link {
			inID = n.ID()
		}
		if ep, ok := n.Link().(*channel.Endpoint); ok {
			eps[n.Name()] = ep
		}
	}
	sort.Strings(names)
	tr := &replayTracer{names: func(id pipeline.NICID) string {
		if n, ok := nicName[id]; ok {
			return n
		}
		return fmt.Sprintf("nic%d", id)
	}}
	s.SetTracer(tr)
	defer s.SetTracer(nil)

	var pw *pcap.Writer
	if opts.Out != nil {
		lt := uint32(pcap.LinkTypeRaw)
		if eth {
			lt = pcap.LinkTypeEthernet
		}
		if pw, err = pcap.NewWriter(opts.Out, lt, 0); err != nil {
			return err
		}
	}
	before := counterValues(s)
	buf := make([]*pipeline.Packet, 64)
	for i, r := range recs {
		clock.Set(r.Time)
		eps[link].InjectFrames([][]byte{r.Data})
		rp := ReplayPacket{N: i + 1, Time: r.Time.Format(time.RFC3339Nano), Link: link, Packet: control.FrameSummary(r.Data, eth)}
		var meta []hookMeta
		rp.Hooks, meta = tr.take()
		rp.CT, rp.Conn, rp.NAT = conntrackView(s, clock.Now(), meta, inID, r.Data, eth)
		rp.Left = []LeftFrame{}
		for _, name := range names {
			ep := eps[name]
			for {
				n := ep.Read(buf)
				if n == 0 {
					break
				}
				for _, p := range buf[:n] {
					d := p.Data()
					rp.Left = append(rp.Left, LeftFrame{Link: name, Packet: control.FrameSummary(d, eth), ICMPError: isICMPError(d, eth)})
					if pw != nil {
						if err := pw.Write(clock.Now(), d); err != nil {
							pipeline.ReleaseBatch(buf[:n])
							return err
						}
					}
				}
				pipeline.ReleaseBatch(buf[:n])
			}
		}
		after := counterValues(s)
		rp.Counters = counterDeltas(before, after)
		before = after
		rp.Fate, rp.Decided = fate(rp, link, isICMPError(r.Data, eth))
		if err := emit(rp); err != nil {
			return err
		}
	}
	return nil
}

// conntrackView is the ct, conn and nat lines of a packet: from the hooks
// of the packet itself (the one that came in on link in: the first
// prerouting record from it, and the later records of that packet), none
// when no conntrack module tracked it.
func conntrackView(s *pipeline.Stack, now time.Time, meta []hookMeta, in pipeline.NICID, frame []byte, eth bool) (ct, conn, nat string) {
	first := -1
	for i, m := range meta {
		if m.hook == pipeline.Prerouting && m.in == in && m.pkt != nil {
			first = i
			break
		}
	}
	if first < 0 {
		return "", "", ""
	}
	// The packet's own hooks, up to Input (delivered) or an Output: the
	// stack may send a reply in the same buffer (an echo reply), which is
	// another packet.
	var own []hookMeta
	for _, m := range meta[first:] {
		if m.pkt != meta[first].pkt {
			continue
		}
		if m.hook == pipeline.Output {
			break
		}
		own = append(own, m)
		if m.hook == pipeline.Input {
			break
		}
	}
	var info pipeline.CTInfo
	var ref uint64
	for _, m := range own {
		if m.ct != pipeline.CTNone {
			info, ref = m.ct, m.ref
			break
		}
	}
	if info == pipeline.CTNone {
		return "", "", ""
	}
	ct = control.CTName(info)
	if t := conntrack.StackTable(s); t != nil && ref != 0 {
		conn, _ = t.Describe(conntrack.Ref(ref), now)
	}
	if eth && len(frame) >= wire.EthernetHeaderSize {
		frame = frame[wire.EthernetHeaderSize:]
	}
	before, after := natFlow(frame), own[len(own)-1].flow
	if before != "" && after != "" && before != after {
		kind := natKind(frame, own[len(own)-1].pkt.Data())
		nat = before + " -> " + after + kind
	}
	return ct, conn, nat
}

// natKind names which side of the outer header changed: " (SNAT)", "
// (DNAT)", " (SNAT+DNAT)", or "" (only a quoted packet or an id).
func natKind(before, after []byte) string {
	sb, db, ok1 := ipAddrs(before)
	sa, da, ok2 := ipAddrs(after)
	if !ok1 || !ok2 {
		return ""
	}
	bs, bd := natPorts(before)
	as, ad := natPorts(after)
	src, dst := sb != sa || bs != as, db != da || bd != ad
	switch {
	case src && dst:
		return " (SNAT+DNAT)"
	case src:
		return " (SNAT)"
	case dst:
		return " (DNAT)"
	}
	return ""
}

func ipAddrs(b []byte) (src, dst netip.Addr, ok bool) {
	if len(b) == 0 {
		return src, dst, false
	}
	// Lenient: an ICMP error's quoted header may be cut short.
	switch b[0] >> 4 {
	case 4:
		if len(b) >= wire.IPv4MinimumSize {
			ip := wire.IPv4(b)
			return netip.AddrFrom4(ip.Src()), netip.AddrFrom4(ip.Dst()), true
		}
	case 6:
		if len(b) >= wire.IPv6HeaderSize {
			ip := wire.IPv6(b)
			return netip.AddrFrom16(ip.Src()), netip.AddrFrom16(ip.Dst()), true
		}
	}
	return src, dst, false
}

// l4Of returns an IP packet's protocol and transport bytes (nil for a
// later fragment or a malformed packet).
func l4Of(b []byte) (uint8, []byte) {
	if len(b) == 0 {
		return 0, nil
	}
	switch b[0] >> 4 {
	case 4:
		ip := wire.IPv4(b)
		if len(b) < wire.IPv4MinimumSize || ip.FragmentOffset() != 0 {
			return 0, nil
		}
		hl := int(b[0]&0xf) * 4
		end := min(int(ip.TotalLength()), len(b))
		if hl < wire.IPv4MinimumSize || hl > end {
			return 0, nil
		}
		return ip.Protocol(), b[hl:end]
	case 6:
		if len(b) < wire.IPv6HeaderSize {
			return 0, nil
		}
		ip := wire.IPv6(b)
		end := wire.IPv6HeaderSize + int(ip.PayloadLength())
		if end > len(b) {
			// Cut short (a quoted packet): no extension header walked.
			switch nh := b[6]; nh {
			case 0, 43, 44, 60, 51:
				return 0, nil
			default:
				return nh, b[wire.IPv6HeaderSize:]
			}
		}
		x, err := ip[:end].WalkExtensions(64)
		if err != nil || (x.Fragment && x.FragmentOffset != 0) || x.ProtocolOffset > end {
			return 0, nil
		}
		return x.Protocol, b[x.ProtocolOffset:end]
	}
	return 0, nil
}

// natPorts are the ports (TCP, UDP) or the echo id (as the source) NAT
// rewrites.
func natPorts(b []byte) (uint16, uint16) {
	proto, l4 := l4Of(b)
	switch proto {
	case 6, 17, 136, 33:
		if len(l4) >= 4 {
			return binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		}
	case 1, 58:
		if len(l4) >= 8 && isEcho(proto, l4[0]) {
			return binary.BigEndian.Uint16(l4[4:]), 0
		}
	}
	return 0, 0
}

func isEcho(proto, typ uint8) bool {
	if proto == 1 {
		return typ == 0 || typ == 8
	}
	return typ == 128 || typ == 129
}

// natFlow is the part of an IP packet NAT rewrites: protocol, addresses,
// ports or echo id, and for an ICMP error the quoted packet's.
func natFlow(b []byte) string {
	src, dst, ok := ipAddrs(b)
	if !ok {
		return ""
	}
	proto, l4 := l4Of(b)
	switch proto {
	case 6, 17:
		name := map[uint8]string{6: "tcp", 17: "udp"}[proto]
		if len(l4) < 4 {
			break
		}
		sp, dp := natPorts(b)
		return fmt.Sprintf("%s %s > %s", name, netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp))
	case 1, 58:
		name := map[uint8]string{1: "icmp", 58: "icmpv6"}[proto]
		if len(l4) < 8 {
			break
		}
		if isEcho(proto, l4[0]) {
			id, _ := natPorts(b)
			return fmt.Sprintf("%s %s > %s type %d id %d", name, src, dst, l4[0], id)
		}
		if (proto == 1 && (l4[0] == 3 || l4[0] == 4 || l4[0] == 5 || l4[0] == 11 || l4[0] == 12)) || (proto == 58 && l4[0] < 128) {
			return fmt.Sprintf("%s %s > %s type %d [about: %s]", name, src, dst, l4[0], natFlow(l4[8:]))
		}
		return fmt.Sprintf("%s %s > %s type %d", name, src, dst, l4[0])
	}
	return fmt.Sprintf("proto %d %s > %s", proto, src, dst)
}

// counterValues reads every counter of the stack and the NICs' drop
// counters.
func counterValues(s *pipeline.Stack) map[string]uint64 {
	m := map[string]uint64{}
	for _, cs := range s.Counters() {
		for _, v := range cs.Snapshot() {
			m[cs.Name()+"."+v.Name] = v.Value
		}
	}
	for _, n := range s.NICs() {
		m["link."+n.Name()+".rx_dropped"] = n.Stats.RxDropped.Load()
		m["link."+n.Name()+".tx_dropped"] = n.Stats.TxDropped.Load()
	}
	return m
}

func counterDeltas(before, after map[string]uint64) []CounterDelta {
	out := []CounterDelta{}
	for k, v := range after {
		if v > before[k] {
			out = append(out, CounterDelta{Name: k, Delta: v - before[k]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// isICMPError reports whether a frame is an ICMP or ICMPv6 error message.
func isICMPError(d []byte, eth bool) bool {
	if eth {
		if len(d) < wire.EthernetHeaderSize {
			return false
		}
		d = d[wire.EthernetHeaderSize:]
	}
	if len(d) == 0 {
		return false
	}
	switch d[0] >> 4 {
	case 4:
		ip := wire.IPv4(d)
		if ip.Check() != nil || ip.Protocol() != 1 || ip.FragmentOffset() != 0 {
			return false
		}
		p := ip.Payload()
		return len(p) > 0 && (p[0] == 3 || p[0] == 4 || p[0] == 5 || p[0] == 11 || p[0] == 12)
	case 6:
		ip := wire.IPv6(d)
		if ip.Check() != nil {
			return false
		}
		x, err := ip.WalkExtensions(64)
		if err != nil || x.Protocol != 58 || x.ProtocolOffset >= len(ip) {
			return false
		}
		return ip[x.ProtocolOffset] < 128
	}
	return false
}

// fate sums up a packet's record; inErr: the packet is an ICMP error
// itself (what leaves another link is then the packet, forwarded).
func fate(rp ReplayPacket, in string, inErr bool) (fate, decided string) {
	describe := func(h control.HookRecord) string {
		if len(h.Steps) == 0 {
			return ""
		}
		s := h.Steps[len(h.Steps)-1]
		what := fmt.Sprintf("rule %d", s.Rule)
		if s.Policy {
			what = "policy"
		}
		if s.Text != "" {
			what += " `" + s.Text + "`"
		}
		return fmt.Sprintf("%s %s/%s %s -> %s", h.Hook, s.Table, s.Chain, what, s.Verdict)
	}
	for _, h := range rp.Hooks {
		if h.Malformed {
			return "dropped: malformed at " + h.Hook, ""
		}
		if h.Verdict != "ACCEPT" {
			decided = describe(h)
			errs := 0
			for _, l := range rp.Left {
				if l.ICMPError {
					errs++
				}
			}
			if errs > 0 {
				return fmt.Sprintf("rejected at %s (ICMP error sent)", h.Hook), decided
			}
			if h.Verdict == "STOLEN" {
				return "stolen at " + h.Hook, decided
			}
			return "dropped at " + h.Hook, decided
		}
	}
	// An accepted packet: the last rule (not a policy) that accepted it,
	// else the last step.
	for i := len(rp.Hooks) - 1; i >= 0 && decided == ""; i-- {
		for j := len(rp.Hooks[i].Steps) - 1; j >= 0; j-- {
			if s := rp.Hooks[i].Steps[j]; !s.Policy && s.Verdict == "ACCEPT" {
				h := rp.Hooks[i]
				h.Steps = h.Steps[:j+1]
				decided = describe(h)
				break
			}
		}
	}
	for i := len(rp.Hooks) - 1; i >= 0 && decided == ""; i-- {
		decided = describe(rp.Hooks[i])
	}
	var hooks []string
	for _, h := range rp.Hooks {
		hooks = append(hooks, h.Hook)
	}
	forwarded := false
	for _, h := range rp.Hooks {
		if h.Hook == "forward" {
			forwarded = true
		}
	}
	var drops []string
	for _, c := range rp.Counters {
		if strings.Contains(c.Name, "drop") || strings.Contains(c.Name, "malformed") || strings.Contains(c.Name, "no_route") || strings.Contains(c.Name, "unreachable") || strings.Contains(c.Name, "unresolved") {
			drops = append(drops, c.Name)
		}
	}
	var out []string
	for _, l := range rp.Left {
		if l.Link != in && (!l.ICMPError || inErr) {
			out = append(out, l.Link)
		}
	}
	switch {
	case forwarded && len(out) > 0:
		return "forwarded to " + strings.Join(dedup(out), ", "), decided
	case len(drops) > 0:
		return "dropped (" + strings.Join(drops, ", ") + ")", decided
	case len(hooks) > 0 && (hooks[len(hooks)-1] == "input" || slices.Contains(hooks, "input") && !forwarded):
		// (An answer the stack sent, such as an echo reply, adds its own
		// output and postrouting hooks after the input.)
		return "delivered locally", decided
	case forwarded:
		return "forwarded, not sent yet (waiting for the neighbor?)", decided
	}
	return "consumed", decided
}

func dedup(s []string) []string {
	var out []string
	for _, x := range s {
		if len(out) == 0 || out[len(out)-1] != x {
			out = append(out, x)
		}
	}
	return out
}

// FormatReplay writes one packet's record as text.
func FormatReplay(w io.Writer, rp ReplayPacket) {
	fmt.Fprintf(w, "#%d %s %s: %s\n", rp.N, rp.Time, rp.Link, rp.Packet)
	for _, h := range rp.Hooks {
		control.FormatHook(w, "  ", h)
	}
	if rp.CT != "" {
		fmt.Fprintf(w, "  conntrack: %s\n", rp.CT)
		if rp.Conn != "" {
			fmt.Fprintf(w, "    entry: %s\n", rp.Conn)
		}
	}
	if rp.NAT != "" {
		fmt.Fprintf(w, "  nat: %s\n", rp.NAT)
	}
	fmt.Fprintf(w, "  => %s\n", rp.Fate)
	if rp.Decided != "" {
		fmt.Fprintf(w, "     by %s\n", rp.Decided)
	}
	for _, l := range rp.Left {
		tag := ""
		if l.ICMPError {
			tag = " (icmp error)"
		}
		fmt.Fprintf(w, "  left %s%s: %s\n", l.Link, tag, l.Packet)
	}
	if len(rp.Counters) > 0 {
		var cs []string
		for _, c := range rp.Counters {
			cs = append(cs, fmt.Sprintf("%s +%d", c.Name, c.Delta))
		}
		fmt.Fprintf(w, "  counters: %s\n", strings.Join(cs, ", "))
	}
}

const replayUsage = "FILE --pcap IN [--out OUT] [--json] [--link NAME] [--seed N]"

func cmdReplay(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("replay", replayUsage, stderr)
	in := fs.String("pcap", "", "the capture to feed (classic pcap: Ethernet or raw IP)")
	out := fs.String("out", "", "write the frames that left the links to this pcap file")
	asJSON := fs.Bool("json", false, "one JSON object per packet")
	link := fs.String("link", "", "the link the packets enter (default: the file's first link)")
	seed := fs.Uint64("seed", 1, "the seed of every random draw")
	file, rest := "", args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		file, rest = args[0], args[1:]
	}
	if code, done := parseFlags(fs, rest); done {
		return code
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	} else if fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	if file == "" || *in == "" {
		fs.Usage()
		return 2
	}
	f, err := os.Open(*in)
	if err != nil {
		fmt.Fprintf(stderr, "pipectl replay: %v\n", err)
		return 1
	}
	defer f.Close()
	opts := ReplayOptions{Link: *link, Seed: *seed}
	var of *os.File
	if *out != "" {
		if of, err = os.Create(*out); err != nil {
			fmt.Fprintf(stderr, "pipectl replay: %v\n", err)
			return 1
		}
		opts.Out = of
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false) // "a > b" stays readable
	err = Replay(file, f, opts, func(rp ReplayPacket) error {
		if *asJSON {
			return enc.Encode(rp)
		}
		FormatReplay(stdout, rp)
		return nil
	})
	if of != nil {
		if cerr := of.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "pipectl replay: %v\n", err)
		return 1
	}
	return 0
}
