package wire

import "testing"

// segment builds a TCP segment with the given flags and payload length.
func segment(flags uint8, payload int) TCP {
	b := make(TCP, TCPMinimumSize+4+payload)
	b.Encode(&TCPFields{SrcPort: 40000, DstPort: 80, Seq: 0xfffffff0, Ack: 0x01020304, Flags: flags, Window: 512,
		Options: []byte{2, 4, 5, 0xb4}})
	return b
}

// Every flag combination, with and without payload: a reset is never
// answered; with ACK the reset takes SEG.ACK as its sequence number and
// carries no ACK; without, it acknowledges SEG.SEQ + SEG.LEN (payload, +1
// for SYN, +1 for FIN, modulo 2^32) from sequence number 0.
func TestTCPResetFields(t *testing.T) {
	for flags := 0; flags < 256; flags++ {
		for _, payload := range []int{0, 5} {
			seg := segment(uint8(flags), payload)
			f, ok := TCPResetFields(seg)
			if flags&int(TCPFlagRst) != 0 {
				if ok {
					t.Errorf("flags %#x: a reset was answered", flags)
				}
				continue
			}
			if !ok {
				t.Fatalf("flags %#x: not answered", flags)
			}
			if f.SrcPort != 80 || f.DstPort != 40000 || f.Window != 0 || f.Options != nil || f.UrgentPointer != 0 {
				t.Errorf("flags %#x: %+v", flags, f)
			}
			if flags&int(TCPFlagAck) != 0 {
				if f.Flags != TCPFlagRst || f.Seq != 0x01020304 || f.Ack != 0 {
					t.Errorf("flags %#x (ACK): %+v, want RST seq=SEG.ACK", flags, f)
				}
				continue
			}
			n := uint32(payload)
			if flags&int(TCPFlagSyn) != 0 {
				n++
			}
			if flags&int(TCPFlagFin) != 0 {
				n++
			}
			if f.Flags != TCPFlagRst|TCPFlagAck || f.Seq != 0 || f.Ack != 0xfffffff0+n {
				t.Errorf("flags %#x, %d bytes: %+v, want RST|ACK seq 0 ack %#x", flags, payload, f, 0xfffffff0+n)
			}
		}
	}
	// The cases spelt out: a SYN, a SYN|FIN with data (wrapping), data
	// with ACK.
	for _, c := range []struct {
		flags    uint8
		payload  int
		seq, ack uint32
		out      uint8
	}{
		{TCPFlagSyn, 0, 0, 0xfffffff1, TCPFlagRst | TCPFlagAck},
		{TCPFlagSyn | TCPFlagFin, 20, 0, 0x00000006, TCPFlagRst | TCPFlagAck},
		{TCPFlagFin, 0, 0, 0xfffffff1, TCPFlagRst | TCPFlagAck},
		{0, 3, 0, 0xfffffff3, TCPFlagRst | TCPFlagAck},
		{TCPFlagPsh | TCPFlagAck, 100, 0x01020304, 0, TCPFlagRst},
		{TCPFlagSyn | TCPFlagAck, 0, 0x01020304, 0, TCPFlagRst},
	} {
		f, _ := TCPResetFields(segment(c.flags, c.payload))
		if f.Seq != c.seq || f.Ack != c.ack || f.Flags != c.out {
			t.Errorf("flags %#x, %d bytes: seq %#x ack %#x flags %#x; want %#x %#x %#x", c.flags, c.payload, f.Seq, f.Ack, f.Flags, c.seq, c.ack, c.out)
		}
	}
}
