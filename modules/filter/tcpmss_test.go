package filter

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// synCtx is a SYN's context with a valid TCP checksum; tailroom false
// puts the packet at the very end of its buffer.
func synCtx(t *testing.T, v6 bool, opts []byte, payload int, tailroom bool) *pipeline.PacketContext {
	t.Helper()
	pc := pk{v6: v6, proto: 6, flags: 2, opts: opts, payload: payload, hook: pipeline.Forward}.ctx(t)
	if !tailroom {
		b := append([]byte(nil), pc.Pkt.NetworkHeader()...)
		pkt := pipeline.DefaultPool.Get(len(b))
		t.Cleanup(pkt.Release)
		room := pkt.Tailroom()
		if !pkt.SetData(append(make([]byte, room-len(b)), b...)) || !pkt.Pull(room-len(b)) {
			t.Fatal("cannot place the packet at the buffer's end")
		}
		pkt.SetNetworkHeader()
		pkt.NetProto = pc.Pkt.NetProto
		if pkt.Tailroom() != 0 {
			t.Fatalf("tailroom %d", pkt.Tailroom())
		}
		pc = &pipeline.PacketContext{Hook: pipeline.Forward, Pkt: pkt}
		if !pipeline.ParseTuple(nil, pkt, pc) {
			t.Fatal("parse")
		}
	}
	l4, _, _ := l4(pc)
	setTCPChecksum(pc.Pkt.NetworkHeader(), l4, v6)
	return pc
}

// checkSYN checks the IP and TCP lengths and checksums of pc's packet
// and returns its TCP header.
func checkSYN(t *testing.T, pc *pipeline.PacketContext, v6 bool) []byte {
	t.Helper()
	nh := pc.Pkt.NetworkHeader()
	if v6 {
		if int(wire.IPv6(nh).PayloadLength())+40 != len(nh) {
			t.Errorf("IPv6 payload length %d, packet %d", wire.IPv6(nh).PayloadLength(), len(nh))
		}
	} else {
		ip := wire.IPv4(nh)
		if int(ip.TotalLength()) != len(nh) || !ipv4SumOK(ip) {
			t.Errorf("IPv4 total length %d, packet %d, header checksum ok %v", ip.TotalLength(), len(nh), ipv4SumOK(ip))
		}
	}
	if pc.L4End != len(nh) {
		t.Errorf("L4End %d, packet %d", pc.L4End, len(nh))
	}
	seg := nh[pc.L4Off:]
	if !tcpChecksumOK(nh, seg, v6) {
		t.Error("TCP checksum wrong")
	}
	return seg
}

func ipv4SumOK(ip wire.IPv4) bool { return wire.Checksum(ip[:ip.HeaderLength()], 0) == 0xffff }

// TestTCPMSSInsert: a SYN without an MSS option, without data and with
// room in its header gets one, as Linux's xt_TCPMSS inserts it: first
// after the fixed header, at most 536 (IPv4) or 1220 (IPv6), the packet 4
// bytes longer with its IP length, data offset and checksums right; the
// rule after the target sees the option. With data, a full header, no
// tailroom: left as it is. A data offset past the segment drops.
func TestTCPMSSInsert(t *testing.T) {
	sackOK := []byte{4, 2, 1, 1} // SACK permitted, two no-ops
	for _, tc := range []struct {
		v6        bool
		set, want uint16
	}{{false, 1000, 536}, {false, 400, 400}, {true, 1000, 1000}, {true, 1400, 1220}} {
		m := mustLoad(t, "mangle:\n  forward:\n    rules:\n      - \"-p tcp --syn -j TCPMSS --set-mss "+itoa(int(tc.set))+"\"\n      - \"-p tcp --tcp-option 2 -j MARK --set-mark 7\"\n")
		pc := synCtx(t, tc.v6, sackOK, 0, true)
		before := pc.Pkt.Len()
		eval(m, pc)
		seg := checkSYN(t, pc, tc.v6)
		if pc.Pkt.Len() != before+4 || seg[12]>>4 != 7 {
			t.Errorf("v6 %v: length %d → %d, data offset %d words", tc.v6, before, pc.Pkt.Len(), seg[12]>>4)
		}
		if !bytes.Equal(seg[20:28], []byte{2, 4, byte(tc.want >> 8), byte(tc.want), 4, 2, 1, 1}) {
			t.Errorf("v6 %v set %d: options %x, want MSS %d then the old ones", tc.v6, tc.set, seg[20:], tc.want)
		}
		if pc.Pkt.Mark != 7 {
			t.Errorf("v6 %v: the rule after TCPMSS did not see the option", tc.v6)
		}
	}
	m := mustLoad(t, "mangle:\n  forward:\n    rules: [\"-p tcp --syn -j TCPMSS --set-mss 1000\"]\n")
	full := bytes.Repeat([]byte{1}, 40) // data offset 15: no room
	for _, tc := range []struct {
		name     string
		opts     []byte
		payload  int
		tailroom bool
	}{{"data", sackOK, 3, true}, {"full header", full, 0, true}, {"no tailroom", sackOK, 0, false}} {
		for _, v6 := range []bool{false, true} {
			pc := synCtx(t, v6, tc.opts, tc.payload, tc.tailroom)
			was := append([]byte(nil), pc.Pkt.NetworkHeader()...)
			if v := eval(m, pc); v != pipeline.VerdictAccept || !bytes.Equal(pc.Pkt.NetworkHeader(), was) {
				t.Errorf("%s v6 %v: %v, changed %v", tc.name, v6, v, !bytes.Equal(pc.Pkt.NetworkHeader(), was))
			}
		}
	}
	// A data offset past the segment is dropped, as Linux (-1: NF_DROP).
	pc := synCtx(t, false, nil, 0, true)
	l4b, _, _ := l4(pc)
	l4b[12] = 6 << 4
	if v := eval(m, pc); v != pipeline.VerdictDrop {
		t.Errorf("data offset past the segment: %v", v)
	}
}

// TestTCPMSSPartialChecksum: with a partial checksum (GSO.NeedsCsum, as a
// TUN with offloads delivers the host's SYNs) the field holds the
// pseudo-header sum: lowering an MSS leaves it, inserting one moves only
// its length; the checksum the device (or CompleteChecksum) finishes is
// right.
func TestTCPMSSPartialChecksum(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, opts := range [][]byte{{2, 4, 0x05, 0xb4}, {4, 2, 1, 1}} {
			m := mustLoad(t, "mangle:\n  forward:\n    rules: [\"-p tcp --syn -j TCPMSS --set-mss 500\"]\n")
			pc := synCtx(t, v6, opts, 0, true)
			nh := pc.Pkt.NetworkHeader()
			seg := nh[pc.L4Off:pc.L4End]
			binary.BigEndian.PutUint16(seg[16:], pseudo(nh, seg, v6)) // the pseudo-header sum, as a sender leaves it
			pc.Pkt.GSO = pipeline.GSO{NeedsCsum: true, CsumStart: uint16(pc.L4Off), CsumOffset: 16}
			eval(m, pc)
			if !pipeline.CompleteChecksum(pc.Pkt) {
				t.Fatal("complete")
			}
			seg = checkSYN(t, pc, v6)
			if !bytes.Equal(seg[20:24], []byte{2, 4, 0x01, 0xf4}) {
				t.Errorf("v6 %v opts %x: options %x", v6, opts, seg[20:])
			}
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
