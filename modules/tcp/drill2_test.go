package tcp_test

// More of Linux's packetdrill scripts (see drill_test.go): fast
// retransmit, SACK recovery with RACK, PRR, limited transmit, slow
// start, zero-window probes, Nagle off. The scripts run Linux with CUBIC
// (gtests/net/common/defaults.sh); where the window after a loss matters
// the stack runs tcp.cc.cubic too.

import (
	"fmt"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline/wire"
)

const cubicOpts = ", congestion_control: cubic"

// wantCwnd checks cwnd and ssthresh in segments (tcpi_snd_cwnd,
// tcpi_snd_ssthresh; ssth < 0: not checked).
func (d *drill) wantCwnd(cwnd, ssth, mss int) {
	d.t.Helper()
	c, s := tcp.Window(d.c)
	if c != cwnd*mss || (ssth >= 0 && s != ssth*mss) {
		d.t.Fatalf("cwnd %d ssthresh %d bytes, want %d and %d segments of %d", c, s, cwnd, ssth, mss)
	}
}

// fast_retransmit/fr-4pkt.pkt and fr-4pkt-sack.pkt: three duplicate
// ACKs (without SACK), or three SACKed segments above the hole (RACK's
// reordering window is then 0: RFC 6675's DupThresh, Linux's
// tcp_rack_reo_wnd), resend the first segment at once; the close after
// it is ordinary.
func TestDrillFastRetransmit4pkt(t *testing.T) {
	for _, sack := range []bool{false, true} {
		opts := optsMSSWscale(1460, 7)
		if sack {
			opts = optsMSSWscaleSACK(1460, 7)
		}
		d, _ := passive(t, "", opts, 32792, 100*time.Millisecond, 257)
		d.write(5840)
		d.outData(1, 5840, 1, 1460)
		d.wait(100 * time.Millisecond)
		for i := uint32(0); i < 3; i++ {
			var o []byte
			if sack {
				o = d.sack(1461, 2921+1460*i)
			}
			d.none()
			d.in(ack, 1, 0, 1, 257, o)
		}
		d.out(ack, 1, 1460, 1)
		d.wait(100 * time.Millisecond)
		d.in(ack, 1, 0, 5841, 257, nil)
		d.none()
		d.wait(100 * time.Millisecond)
		d.closeThenFIN(5841, 1, 100*time.Millisecond)
	}
}

// sack/sack-shift-sacked-7-5-6-8-9-fack.pkt: a SACK of the 8th of 10
// segments arms RACK's reordering timer, min_RTT/4 = 25 ms plus Linux's
// TCP_TIMEOUT_MIN (2 ms); it marks the seven below lost and recovery
// resends the first; every further SACK of a segment lets PRR send one
// more lost segment (CUBIC: ssthresh 7 of 10).
func TestDrillSACKShift75689(t *testing.T) {
	d, _ := passive(t, cubicOpts, optsMSSWscaleSACK(1000, 7), 32792, 100*time.Millisecond, 1024)
	d.write(10000)
	d.outData(1, 10000, 1, 1000)
	d.wait(100 * time.Millisecond)
	d.in(ack, 1, 0, 1, 257, d.sack(7001, 8001))
	d.none()
	d.wait(26 * time.Millisecond)
	d.none()
	d.wait(time.Millisecond)
	d.out(ack, 1, 1000, 1)
	d.in(ack, 1, 0, 1, 257, d.sack(5001, 6001, 7001, 8001))
	d.out(ack, 1001, 1000, 1)
	d.in(ack, 1, 0, 1, 257, d.sack(5001, 8001))
	d.out(ack, 2001, 1000, 1)
	d.in(ack, 1, 0, 1, 257, d.sack(5001, 9001))
	d.out(ack, 3001, 1000, 1)
	d.in(ack, 1, 0, 1, 257, d.sack(5001, 10001))
	d.out(ack, 4001, 1000, 1)
	d.wait(100 * time.Millisecond)
	d.in(ack, 1, 0, 10001, 257, nil)
	d.none()
}

// sack/sack-shift-sacked-7-3-4-8-9-fack.pkt: as above, then SACKs below
// the first SACKed segment, each letting PRR resend one more lost
// segment. (The script's next step, the SACK of 8001:9001, sends nothing
// on Linux and 5001:6001 one SACK later; ours sends 5001:6001 on it:
// RFC 6937's PRR-SSRB allows it, and by Linux's tcp_cwnd_reduction as we
// read it — pipe 4, ssthresh 7 — so does Linux's formula; the README lists
// it as open.)
func TestDrillSACKShift73489(t *testing.T) {
	d, _ := passive(t, cubicOpts, optsMSSWscaleSACK(1000, 7), 32792, 100*time.Millisecond, 1024)
	d.write(10000)
	d.outData(1, 10000, 1, 1000)
	d.wait(100 * time.Millisecond)
	d.in(ack, 1, 0, 1, 257, d.sack(7001, 8001))
	d.wait(27 * time.Millisecond)
	d.out(ack, 1, 1000, 1)
	d.wait(2 * time.Millisecond)
	d.in(ack, 1, 0, 1, 257, d.sack(3001, 4001, 7001, 8001))
	d.out(ack, 1001, 1000, 1)
	d.wait(2 * time.Millisecond)
	d.in(ack, 1, 0, 1, 257, d.sack(3001, 5001, 7001, 8001))
	d.out(ack, 2001, 1000, 1)
}

// sack/sack-shift-sacked-2-6-8-3-9-nofack.pkt: three SACKed segments
// (2, 6, 8) start recovery at once with the first segment; the SACK of
// 3 lets the second go. (The script lists no segment after it.)
func TestDrillSACKShift26839(t *testing.T) {
	d, _ := passive(t, cubicOpts, optsMSSWscaleSACK(1000, 7), 32792, 100*time.Millisecond, 1024)
	d.write(10000)
	d.outData(1, 10000, 1, 1000)
	d.wait(100 * time.Millisecond)
	d.in(ack, 1, 0, 1, 257, d.sack(2001, 3001))
	d.wait(time.Millisecond)
	d.in(ack, 1, 0, 1, 257, d.sack(2001, 3001, 6001, 7001))
	d.none()
	d.wait(time.Millisecond)
	d.in(ack, 1, 0, 1, 257, d.sack(2001, 3001, 6001, 7001, 8001, 9001))
	d.out(ack, 1, 1000, 1)
	d.wait(7 * time.Millisecond)
	d.in(ack, 1, 0, 1, 257, d.sack(2001, 4001, 6001, 7001, 8001, 9001))
	d.out(ack, 1001, 1000, 1)
}

// fast_recovery/prr-ss-10pkt-lost-1.pkt: one segment lost of ten; in
// recovery (CUBIC: cwnd = ssthresh = 7) pipe equals ssthresh throughout,
// so PRR sends one new segment per segment SACKed; the full ACK ends
// recovery with cwnd 7.
func TestDrillPRR10pktLost1(t *testing.T) {
	d, _ := passive(t, cubicOpts, optsMSSWscaleSACK(1000, 7), 32792, 100*time.Millisecond, 320)
	d.write(10000)
	d.outData(1, 10000, 1, 1000)
	d.wait(110 * time.Millisecond)
	d.in(ack, 1, 0, 1, 320, d.sack(1001, 2001))
	d.wait(10 * time.Millisecond)
	d.in(ack, 1, 0, 1, 320, d.sack(1001, 3001))
	d.wait(10 * time.Millisecond)
	d.in(ack, 1, 0, 1, 320, d.sack(1001, 4001))
	d.out(ack, 1, 1000, 1)
	d.wait(10 * time.Millisecond)
	d.wantCwnd(7, 7, 1000)
	d.wait(10 * time.Millisecond)
	d.write(7000)
	d.none()
	for i := uint32(0); i < 6; i++ {
		d.wait(10 * time.Millisecond)
		d.in(ack, 1, 0, 1, 320, d.sack(1001, 5001+1000*i))
		d.out(ack, 10001+1000*i, 1000, 1)
	}
	d.wait(20 * time.Millisecond)
	d.in(ack, 1, 0, 10001, 320, nil)
	d.out(ack|psh, 16001, 1000, 1) // "> P. 16001:17001": the write's last byte
	d.wait(10 * time.Millisecond)
	d.wantCwnd(7, 7, 1000)
	for _, a := range []uint32{12001, 14001, 16001, 17001} {
		d.wait(20 * time.Millisecond)
		d.in(ack, 1, 0, a, 320, nil)
		d.none()
	}
}

// cwnd_moderation/cwnd-moderation-disorder-no-moderation.pkt: a SACK
// (Linux's Disorder state) leaves cwnd as it was.
func TestDrillCwndNoModerationOnDisorder(t *testing.T) {
	d, _ := passive(t, cubicOpts, optsMSSWscaleSACK(1000, 7), 32792, 100*time.Millisecond, 320)
	d.write(4000)
	d.outData(1, 4000, 1, 1000)
	d.wait(5 * time.Millisecond)
	d.wantCwnd(10, -1, 1000)
	d.wait(95 * time.Millisecond)
	d.in(ack, 1, 0, 1, 320, d.sack(1001, 2001))
	d.wait(5 * time.Millisecond)
	d.wantCwnd(10, -1, 1000)
}

// slow_start/slow-start-ack-per-1pkt.pkt and slow-start-ack-per-2pkt.pkt:
// in slow start an ACK of one segment lets two out, of two segments four;
// after 10 segments ACKed cwnd is 20.
func TestDrillSlowStart(t *testing.T) {
	for _, per := range []int{1, 2} {
		d, _ := passive(t, "", optsMSSWscaleSACK(1000, 7), 32792, 100*time.Millisecond, 257)
		d.write(30000)
		d.outData(1, 10000, 1, 1000)
		d.wantCwnd(10, -1, 1000)
		d.wait(105 * time.Millisecond)
		next := uint32(10001)
		for a := uint32(1 + 1000*per); a <= 10001; a += uint32(1000 * per) {
			d.in(ack, 1, 0, a, 257, nil)
			d.outData(next, 2000*per, 1, 1000)
			next += uint32(2000 * per)
			if per == 1 && a%2000 == 1 {
				d.wait(5 * time.Millisecond)
			} else if per == 2 {
				d.wait(5 * time.Millisecond)
			}
		}
		d.wantCwnd(20, -1, 1000)
	}
}

// limited_transmit/limited-transmit-sack.pkt and -no-sack.pkt (RFC
// 3042): each of the first two duplicate ACKs lets one new segment out,
// the window unchanged. (What follows in the scripts — how far cwnd
// grows on the ACK that ends the episode — is where the slow start of
// RFC 5681 and Linux's differ; see the README.)
func TestDrillLimitedTransmit(t *testing.T) {
	for _, sack := range []bool{true, false} {
		opts := optsMSSWscale(1000, 7)
		if sack {
			opts = optsMSSWscaleSACK(1000, 7)
		}
		d, _ := passive(t, "", opts, 32792, 100*time.Millisecond, 320)
		d.write(15000)
		d.outData(1, 10000, 1, 1000)
		d.wait(110 * time.Millisecond)
		var o1, o2 []byte
		if sack {
			o1, o2 = d.sack(1001, 2001), d.sack(1001, 3001)
		}
		d.in(ack, 1, 0, 1, 320, o1)
		d.out(ack, 10001, 1000, 1)
		d.wait(10 * time.Millisecond)
		d.in(ack, 1, 0, 1, 320, o2)
		d.out(ack, 11001, 1000, 1)
		d.wantCwnd(10, -1, 1000)
	}
}

// slow_start/slow-start-after-win-update.pkt: the peer closes its window
// with data waiting; zero-window probes (an ACK at SND.UNA−1) go at the
// RTO (300 ms: RTT 100 ms + 200 ms) and back off 600 ms, 1.2 s; the
// window's reopening lets the data go. (The burst size after it follows
// tcp_slow_start_after_idle=1 in the script, not Linux's default.)
func TestDrillZeroWindowProbes(t *testing.T) {
	d, _ := passive(t, "", optsMSSWscaleSACK(1000, 7), 65535, 100*time.Millisecond, 511)
	d.write(10000)
	d.outData(1, 10000, 1, 1000)
	d.wait(100 * time.Millisecond)
	d.in(ack, 1, 0, 10001, 0, nil)
	d.write(20000)
	d.none()
	for _, dt := range []time.Duration{300, 600, 1200} {
		d.wait((dt - 1) * time.Millisecond)
		d.none()
		d.wait(time.Millisecond)
		d.out(ack, 10000, 0, 1)
	}
	d.wait(900 * time.Millisecond)
	d.in(ack, 1, 0, 10001, 511, nil)
	if got := d.p.read(); len(got) == 0 || d.rel(got[0]).seq != 10001 || len(got[0].data) != 1000 {
		t.Fatalf("after the window opened: %v", d.rels(got))
	}
}

// nagle/https_client.pkt: TCP_NODELAY (Go's default) and timestamps off:
// small writes go at once, a write of 2002 bytes goes as two segments of
// the peer's MSS (974) and the rest without waiting for an ACK; data
// received at the start is ACKed at once.
func TestDrillNagleOffHTTPSClient(t *testing.T) {
	d, s := active(t, ", timestamps: false", optsMSSWscaleSACK(974, 7), 5792, 100*time.Millisecond)
	if o := s.parsed; o.HasTimestamps || !o.SACKPermitted || !o.HasWindowScale || o.MSS != 1460 {
		t.Fatalf("SYN options %+v, want mss 1460, sackOK, wscale", o)
	}
	d.write(517)
	d.out(ack|psh, 1, 517, 1)
	d.wait(100 * time.Millisecond)
	d.in(ack, 1, 0, 518, 229, nil)
	d.in(ack|psh, 1, 143, 518, 229, nil)
	d.out(ack, 518, 0, 144)
	d.read(143)
	d.write(51)
	d.out(ack|psh, 518, 51, 144)
	d.wait(30 * time.Millisecond)
	d.write(2002)
	got := d.p.read()
	if len(got) != 3 {
		t.Fatalf("want 974, 974, 54, got %v", d.rels(got))
	}
	d.check(got[0], ack, 569, 974, 144)
	d.check(got[1], ack, 1543, 974, 144)
	d.check(got[2], ack|psh, 2517, 54, 144)
	d.wait(100 * time.Millisecond)
	d.in(ack, 144, 0, 2571, 229, nil)
	d.none()
}

// The Linux kernel's copies of such scripts
// (tools/testing/selftests/net/packetdrill/, same notation) add a few:

// tcp_disorder_fin_in_FIN_WAIT.pkt (Linux 795a7dfbc3d9, "accept old ack
// during closing"): after SHUT_WR the peer ACKs our FIN, then its own
// FIN arrives carrying an older ACK (sent before it saw ours): it is
// still taken and ACKed.
func TestDrillDisorderFINInFinWait(t *testing.T) {
	d, _ := passive(t, "", optsMSSWscaleSACK(1000, 7), 65535, 0, 257)
	d.c.CloseWrite()
	d.out(fin|ack, 1, 0, 1)
	d.in(ack, 2, 0, 2, 257, nil)
	d.none()
	d.in(fin|ack, 1, 0, 1, 257, nil)
	d.out(ack, 2, 0, 2)
	wantState(t, d.c, "TIME-WAIT")
}

// tcp_close_no_rst.pkt (RFC 2525 §2.17): data read, then the same data
// again with a FIN: ACKed past the FIN; close then sends a FIN, not a
// reset, since nothing unread is left.
func TestDrillCloseNoRST(t *testing.T) {
	d, _ := passive(t, "", optsMSSWscaleSACK(1000, 0)[:8], 32792, 100*time.Millisecond, 32792)
	d.in(ack, 1, 1000, 1, 32792, nil)
	d.out(ack, 1, 0, 1001)
	d.read(1000)
	d.in(fin|ack, 1, 1000, 1, 32792, nil)
	d.wait(40 * time.Millisecond) // the script allows the ACK up to 40 ms late
	d.out(ack, 1, 0, 1002)
	d.c.Close()
	d.out(fin|ack, 1, 0, 1002)
}

// tcp_advmss_pmtu_ipv4.pkt: fragmentation needed (next-hop MTU 1200) for
// a full segment resends it at once as 1160 + 300 bytes; a reset ends
// the connection. A second connection from the same peer is offered the
// link's MSS (1460) in the SYN-ACK, not the learnt path MTU's, but sends
// by the path MTU: 1160 + 300 again (the network layer would otherwise
// fragment its 1500-byte packets).
func TestDrillAdvMSSPMTU(t *testing.T) {
	d, sa := passive(t, "", optsMSSWscaleSACK(1460, 8), 65535, 100*time.Millisecond, 257)
	if sa.parsed.MSS != 1460 {
		t.Fatalf("SYN-ACK MSS %d", sa.parsed.MSS)
	}
	d.write(1460)
	s := d.out(ack|psh, 1, 1460, 1)
	d.p.ep.InjectFrames([][]byte{d.p.icmp4(wire.ICMPv4DstUnreachable, wire.ICMPv4FragmentationNeeded, wire.ICMPv4FragNeededRest(1200), d.p.quote(s))})
	got := d.p.read()
	if len(got) != 2 {
		t.Fatalf("after fragmentation needed: %v", d.rels(got))
	}
	d.check(got[0], ack, 1, 1160, 1)
	d.check(got[1], ack|psh, 1161, 300, 1)
	d.in(rst|ack, 1, 0, 1461, 0, nil)
	wantState(t, d.c, "CLOSED")

	d2 := &drill{p: d.p, t: t, sport: 40001, dport: 80, piss: 1000}
	d2.in(syn, 0, 0, 0, 65535, optsMSSWscaleSACK(1460, 8))
	sa = d.p.one()
	if sa.flags != syn|ack || sa.parsed.MSS != 1460 {
		t.Fatalf("second SYN-ACK %v MSS %d, want 1460", sa, sa.parsed.MSS)
	}
	d2.siss = sa.seq
	d2.in(ack, 1, 0, 1, 257, nil)
	d.ln.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := d.ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	d2.c = c
	d2.write(1460)
	got = d.p.read()
	if len(got) != 2 {
		t.Fatalf("second connection: %v", d2.rels(got))
	}
	d2.check(got[0], ack, 1, 1160, 1)
	d2.check(got[1], ack|psh, 1161, 300, 1)
	d2.in(ack, 1, 0, 1461, 257, nil)
	d2.closeThenFIN(1461, 1, 0)
}

// shutdown/shutdown-rdwr-send-queue-ack-close.pkt: SHUT_RDWR with data
// not yet sent queues the FIN behind it; an ACK lets two more segments
// out (slow start), the tail loss probe 2·SRTT + 2 ms later sends the
// next new one; closed, the rest goes with the FIN on its last segment
// when the window allows, and the peer's FIN is ACKed.
func TestDrillShutdownSendQueueAckClose(t *testing.T) {
	d, _ := passive(t, "", optsMSSWscaleSACK(1000, 7), 32792, time.Millisecond, 257)
	d.wait(10 * time.Millisecond)
	d.write(20000)
	d.outData(1, 10000, 1, 1000)
	d.c.CloseRead()
	d.c.CloseWrite()
	d.none()
	d.wait(time.Millisecond)
	d.in(ack, 1, 0, 1001, 257, nil)
	d.outData(10001, 2000, 1, 1000)
	d.wait(3 * time.Millisecond)
	d.none()
	d.wait(2 * time.Millisecond) // the script: 5 ms (SRTT 1 ms)
	d.out(ack, 12001, 1000, 1)
	d.readEOF()
	d.wait(10 * time.Millisecond)
	d.c.Close()
	d.wait(10 * time.Millisecond)
	d.in(ack, 1, 0, 13001, 257, nil)
	got := d.p.read()
	if len(got) != 7 || d.rel(got[6]).flags&fin == 0 {
		t.Fatalf("want 13001:20001 in 7 segments, the FIN on the last: %v", d.rels(got))
	}
	for i, s := range got {
		want := ack
		if i == 6 {
			want = fin | ack | psh // "> FP. 13001:20001(7000)"
		}
		d.check(s, want, 13001+uint32(i)*1000, 1000, 1)
	}
	d.peerFIN(20001, 1, 10*time.Millisecond)
}

// fast_retransmit/fr-4pkt-fack-last-byte.pkt: only the last byte of the
// fourth segment SACKed (no whole segment: no loss marked); the probe
// resends the last segment 2·SRTT (+ 2 ms) after the data (SRTT 100 ms),
// the RTO (300 ms) the first; its ACK lets two lost segments go (cwnd 2), the
// next ACK the last.
func TestDrillFR4pktFACKLastByte(t *testing.T) {
	d, _ := passive(t, "", optsMSSWscaleSACK(1000, 7), 32792, 100*time.Millisecond, 320)
	d.write(4000)
	d.outData(1, 4000, 1, 1000)
	d.wait(100 * time.Millisecond)
	d.in(ack, 1, 0, 1, 320, d.sack(4000, 4001))
	d.none()
	d.wait(99 * time.Millisecond)
	d.none()
	d.wait(3 * time.Millisecond)  // 2·SRTT + 2 ms after the data (the script: 100–105 ms after the SACK)
	d.out(ack|psh, 3001, 1000, 1) // "> P. 3001:4001"
	d.wait(299 * time.Millisecond)
	d.none()
	d.wait(time.Millisecond) // the RTO, 300 ms after the probe (the script: 300–310 ms)
	d.out(ack, 1, 1000, 1)
	d.wait(500 * time.Millisecond)
	d.in(ack, 1, 0, 1001, 320, d.sack(4000, 4001))
	d.outData(1001, 2000, 1, 1000)
	d.wait(100 * time.Millisecond)
	d.in(ack, 1, 0, 3001, 320, d.sack(4000, 4001))
	d.out(ack|psh, 3001, 1000, 1) // "> P. 3001:4001"
	d.wait(100 * time.Millisecond)
	d.in(ack, 1, 0, 4001, 257, nil)
	d.none()
	d.closeThenFIN(4001, 1, 100*time.Millisecond)
}

// cubic/cubic-rto-ss-ca-cwnd-bump.pkt: one segment ACKed while cwnd is
// 10 leaves it 10 (not cwnd-limited); a lost second one is probed at the
// RTO's time (the probe is no later than the RTO) and resent by the RTO
// (300 ms, doubled); its ACK: cwnd 2, ssthresh 7 (CUBIC's β = 0.7 of 10);
// slow start to 7 (one segment more per ACK), then congestion
// avoidance one segment per ACK until cwnd 8 after 16 ACKs.
func TestDrillCubicRTOSlowStartCA(t *testing.T) {
	d, _ := passive(t, cubicOpts, optsMSSWscaleSACK(1000, 7), 32792, 100*time.Millisecond, 257)
	d.write(1000)
	d.out(ack|psh, 1, 1000, 1)
	d.wait(100 * time.Millisecond)
	d.in(ack, 1, 0, 1001, 257, nil)
	d.wantCwnd(10, -1, 1000)
	d.write(1000)
	d.out(ack|psh, 1001, 1000, 1)
	d.wait(300 * time.Millisecond)
	d.out(ack|psh, 1001, 1000, 1)
	d.wait(300 * time.Millisecond)
	d.out(ack|psh, 1001, 1000, 1)
	d.wait(100 * time.Millisecond)
	d.in(ack, 1, 0, 2001, 257, nil)
	d.wantCwnd(2, 7, 1000)
	d.write(30000)
	d.outData(2001, 2000, 1, 1000)
	steps := []struct {
		dt   time.Duration
		ackn uint32
		n    int
	}{
		{100, 3001, 2}, {2, 4001, 2}, {98, 5001, 2}, {2, 6001, 2}, {2, 7001, 2},
		{2, 8001, 1}, {98, 9001, 1}, {2, 10001, 1}, {2, 11001, 1}, {2, 12001, 1}, {2, 13001, 1},
		{2, 14001, 1}, {2, 15001, 1}, {98, 16001, 1}, {2, 17001, 1}, {2, 18001, 1}, {2, 19001, 1},
		{2, 20001, 1}, {2, 21001, 1}, {2, 22001, 1}, {98, 23001, 2},
	}
	next := uint32(4001)
	for _, s := range steps {
		d.wait(s.dt * time.Millisecond)
		d.in(ack, 1, 0, s.ackn, 257, nil)
		d.outData(next, 1000*s.n, 1, 1000)
		next += uint32(1000 * s.n)
	}
	if c, s := tcp.Window(d.c); c/1000 != 8 || s != 7000 {
		t.Fatalf("cwnd %d ssthresh %d, want 8 segments (and a fraction: ours counts bytes) and 7", c, s)
	}
}

// slow_start/slow-start-app-limited.pkt, -app-limited-9-packets-out.pkt,
// -ack-per-2pkt-send-5pkt.pkt and -send-6pkt.pkt: an application-limited
// sender grows cwnd in slow start only while cwnd is below twice what it
// had in flight (Linux's tcp_is_cwnd_limited): 10 segments out of 10
// take it to 20, 9 to 18, 6 to 12, and 5 leave it at 10.
func TestDrillSlowStartAppLimited(t *testing.T) {
	for _, c := range []struct{ segs, want int }{{10, 20}, {9, 18}, {6, 12}, {5, 10}} {
		d, _ := passive(t, "", optsMSSWscaleSACK(1000, 7), 32792, 100*time.Millisecond, 257)
		d.write(1000 * c.segs)
		d.outData(1, 1000*c.segs, 1, 1000)
		d.wantCwnd(10, -1, 1000)
		d.wait(105 * time.Millisecond)
		for a := 2; a < c.segs+2; a += 2 {
			d.in(ack, 1, 0, uint32(1+1000*min(a, c.segs)), 257, nil)
			d.wait(5 * time.Millisecond)
		}
		d.none()
		d.wantCwnd(c.want, -1, 1000)
	}
}

// slow_start/slow-start-ack-per-4pkt.pkt with CUBIC: an ACK of four
// segments in slow start grows cwnd by four (RFC 9406's L = 8 for a
// sender that does not pace, as Linux's tcp_slow_start), so eight go
// out; after ten segments ACKed cwnd is 20.
func TestDrillSlowStartStretchACK(t *testing.T) {
	d, _ := passive(t, cubicOpts, optsMSSWscaleSACK(1000, 7), 32792, 100*time.Millisecond, 257)
	d.write(30000)
	d.outData(1, 10000, 1, 1000)
	d.wait(110 * time.Millisecond)
	d.in(ack, 1, 0, 4001, 257, nil)
	d.outData(10001, 8000, 1, 1000)
	d.wait(10 * time.Millisecond)
	d.in(ack, 1, 0, 8001, 257, nil)
	d.outData(18001, 8000, 1, 1000)
	d.wait(5 * time.Millisecond)
	d.in(ack, 1, 0, 10001, 257, nil)
	d.outData(26001, 4000, 1, 1000)
	d.wantCwnd(20, -1, 1000)
}

// outSACK expects one ACK of ackn carrying exactly the SACK blocks given
// (the script's numbers of the peer's data; none: no SACK option).
func (d *drill) outSACK(ackn uint32, blocks ...uint32) {
	d.t.Helper()
	s := d.out(ack, 1, 0, ackn)
	var got []uint32
	for _, b := range s.parsed.SACK[:s.parsed.NumSACK] {
		got = append(got, b.Left-d.piss, b.Right-d.piss)
	}
	if fmt.Sprint(got) != fmt.Sprint(blocks) {
		d.t.Fatalf("ACK %d with SACK blocks %v, want %v", ackn, got, blocks)
	}
}

// tcp_dsack_mult.pkt (RFC 2018, RFC 2883): out-of-order segments are
// ACKed at once with SACK blocks, the latest first; a segment that fills
// the hole and covers held data reports the first range it duplicated
// as a DSACK before the remaining SACK block; a segment covering a held
// range, and an old one, each its duplicate.
func TestDrillDSACKMult(t *testing.T) {
	d, _ := passive(t, "", optsMSSWscaleSACK(1000, 7), 32792, 100*time.Millisecond, 1024)
	d.in(ack|psh, 1001, 1000, 1, 1024, nil)
	d.outSACK(1, 1001, 2001)
	d.in(ack|psh, 2001, 1000, 1, 1024, nil)
	d.outSACK(1, 1001, 3001)
	d.in(ack|psh, 4001, 1000, 1, 1024, nil)
	d.outSACK(1, 4001, 5001, 1001, 3001)
	d.in(ack|psh, 7001, 1000, 1, 1024, nil)
	d.outSACK(1, 7001, 8001, 4001, 5001, 1001, 3001)
	d.in(ack|psh, 1, 6000, 1, 1024, nil)
	d.outSACK(6001, 1001, 3001, 7001, 8001)
	d.in(ack|psh, 6001, 2000, 1, 1024, nil)
	d.outSACK(8001, 7001, 8001)
	d.in(ack|psh, 1, 1000, 1, 1024, nil)
	d.outSACK(8001, 1, 1001)
	d.read(8000)
}

// tcp_rcv_zero_wnd_fin.pkt: the window filled (the application does not
// read), the peer's FIN arrives anyway; it is taken and ACKed, window 0,
// so that a FIN/ACK loop cannot start (Linux's tcp_sequence lets a
// zero-length-in-window FIN at RCV.NXT in; RFC 9293 would refuse it).
func TestDrillZeroWindowFIN(t *testing.T) {
	d, _ := passive(t, ", receive_buffer: 16384, receive_buffer_initial: 16384, auto_tuning: false", optsMSSWscale(1000, 7), 32792, 0, 257)
	// Segments until an ACK offers window 0 (ACKed at once at first,
	// later each second one, or the delayed ACK).
	seq, next, closed := uint32(1), uint32(1), false
	for i := 0; i < 64 && !closed; i++ {
		d.in(ack|psh, next, 1000, 1, 257, nil)
		next += 1000
		got := d.p.read()
		if len(got) == 0 {
			d.wait(50 * time.Millisecond)
			got = d.p.read()
		}
		for _, a := range got {
			seq, closed = d.rel(a).ack, a.wnd == 0
		}
	}
	if n := tcp.Buffered(d.c); !closed || uint32(n) != seq-1 {
		t.Fatalf("buffered %d, window closed %v at %d", n, closed, seq)
	}
	d.in(fin|ack, seq, 0, 1, 257, nil)
	s := d.out(ack, 1, 0, seq+1)
	if s.wnd != 0 {
		t.Fatalf("window %d after the FIN, want 0", s.wnd)
	}
	wantState(t, d.c, "CLOSE-WAIT")
}

// fast_recovery/prr-ss-30pkt-lost1_4.pkt: segments 1–4 of 10 lost; the
// third SACK starts recovery, each SACK after it lets PRR (slow-start
// reduction bound, pipe below ssthresh 7) resend one lost segment; once
// everything is ACKed a new write goes out as ssthresh's 7 segments.
func TestDrillPRR30pktLost1to4(t *testing.T) {
	d, _ := passive(t, cubicOpts, optsMSSWscaleSACK(1000, 7), 32792, 10*time.Millisecond, 320)
	d.write(10000)
	d.outData(1, 10000, 1, 1000)
	d.wait(10 * time.Millisecond)
	d.in(ack, 1, 0, 1, 320, d.sack(4001, 5001))
	d.wait(2 * time.Millisecond)
	d.in(ack, 1, 0, 1, 320, d.sack(4001, 6001))
	d.none()
	d.in(ack, 1, 0, 1, 320, d.sack(4001, 7001))
	d.out(ack, 1, 1000, 1)
	for i := uint32(0); i < 3; i++ {
		d.in(ack, 1, 0, 1, 320, d.sack(4001, 8001+1000*i))
		d.out(ack, 1001+1000*i, 1000, 1)
	}
	d.wait(10 * time.Millisecond)
	for _, a := range []uint32{1001, 2001, 3001} {
		d.in(ack, 1, 0, a, 320, d.sack(4001, 10001))
	}
	d.in(ack, 1, 0, 10001, 320, nil)
	d.none()
	d.wait(10 * time.Millisecond)
	d.write(10000)
	d.outData(10001, 7000, 1, 1000)
}

// sack/sack-route-refresh-ip-tos.pkt, without its IP_TOS setsockopts (no
// Go counterpart; they force Linux to refresh the route): a SACK of
// 16061:17521 and 20441:26281 above a cumulative ACK resends exactly the
// two holes, never a SACKed segment.
func TestDrillSACKHolesOnly(t *testing.T) {
	d, _ := active(t, "", optsMSSWscaleSACK(1460, 2), 65535, 10*time.Millisecond)
	d.wait(10 * time.Millisecond)
	d.write(5840)
	d.outData(1, 5840, 1, 1460)
	d.wait(10 * time.Millisecond)
	d.in(ack, 1, 0, 5841, 65535, nil)
	d.wait(10 * time.Millisecond)
	d.write(5840)
	d.outData(5841, 5840, 1, 1460)
	d.wait(10 * time.Millisecond)
	d.in(ack, 1, 0, 11681, 65535, nil)
	d.wait(10 * time.Millisecond)
	d.write(14600)
	d.outData(11681, 14600, 1, 1460)
	d.wait(10 * time.Millisecond)
	d.in(ack, 1, 0, 13141, 65535, d.sack(16061, 17521, 20441, 26281))
	got := d.p.read()
	if len(got) != 4 {
		t.Fatalf("want 13141:16061 and 17521:20441, got %v", d.rels(got))
	}
	for i, seq := range []uint32{13141, 14601, 17521, 18981} {
		d.check(got[i], ack, seq, 1460, 1)
	}
	d.wait(10 * time.Millisecond)
	d.in(ack, 1, 0, 26281, 65535, nil)
	d.none()
}

// fast_recovery/prr-ss-ack-below-snd_una-cubic.pkt, its point: in
// recovery an ACK reordered behind a later one (its ACK below SND.UNA)
// still carries news in its SACK blocks, and what they free is sent
// (Linux's tcp_ack takes the SACK blocks of an old ACK). The script's
// ACK of 4001 lets Linux send three segments, ours two (README: where
// we differ), so what the old ACK then frees is ours: the two lost
// segments left, 7001:8001 and 9001:10001.
func TestDrillPRRACKBelowSndUna(t *testing.T) {
	d, _ := passive(t, cubicOpts, optsMSSWscaleSACK(1000, 8), 32792, 10*time.Millisecond, 320)
	d.write(10000)
	d.outData(1, 10000, 1, 1000)
	d.wait(10 * time.Millisecond)
	d.in(ack, 1, 0, 1, 320, d.sack(1001, 2001))
	d.in(ack, 1, 0, 1, 320, d.sack(1001, 3001))
	d.in(ack, 1, 0, 1, 320, d.sack(1001, 3001, 8001, 9001))
	d.out(ack, 1, 1000, 1)
	d.wait(12 * time.Millisecond)
	d.in(ack, 1, 0, 4001, 320, d.sack(8001, 9001))
	d.outData(4001, 2000, 1, 1000) // Linux: 4001:7001
	d.write(10000)
	d.none()
	d.wait(2 * time.Millisecond)
	d.in(ack, 1, 0, 3001, 320, d.sack(5001, 7001))
	got := d.p.read()
	if len(got) != 2 {
		t.Fatalf("after an old ACK with new SACK blocks: %v", d.rels(got))
	}
	d.check(got[0], ack, 7001, 1000, 1)
	d.check(got[1], ack, 9001, 1000, 1)
}
