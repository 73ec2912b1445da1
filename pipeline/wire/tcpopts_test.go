package wire

import (
	"bytes"
	"testing"
)

func TestTCPOptionsDeconstruct(t *testing.T) {
	_, seg := l4Of(frameTCPSyn)
	o, ok := ParseTCPOptions(TCP(seg).Options())
	if !ok {
		t.Fatal("captured SYN options refused")
	}
	want := TCPOptions{HasMSS: true, MSS: 1360, SACKPermitted: true, HasTimestamps: true, TSVal: 0x97d9585a,
		HasWindowScale: true, WindowScale: 10}
	if o != want {
		t.Fatalf("got %+v\nwant %+v", o, want)
	}
}

func TestTCPOptionsConstruct(t *testing.T) {
	var w TCPOptionsBuilder
	if !w.AddMSS(1360) || !w.AddSACKPermittedTimestamps(0x97d9585a, 0) || !w.AddWindowScale(10) {
		t.Fatal("SYN options do not fit")
	}
	// Linux's SYN layout: MSS, SACK-permitted, TS, NOP, WS.
	if got := w.Bytes(); !bytes.Equal(got, tcpSynOptions) {
		t.Fatalf("built % x\nwant  % x", got, tcpSynOptions)
	}
	var d TCPOptionsBuilder
	if !d.AddTimestamps(1, 2) {
		t.Fatal("timestamps")
	}
	blocks := []TCPSACKBlock{{1, 2}, {3, 4}, {5, 6}, {7, 8}}
	if n := d.AddSACK(blocks); n != 3 {
		t.Fatalf("%d SACK blocks after timestamps, want 3", n)
	}
	if d.Len() != 40 {
		t.Fatalf("len %d", d.Len())
	}
	o, ok := ParseTCPOptions(d.Bytes())
	if !ok || !o.HasTimestamps || o.TSVal != 1 || o.TSEcr != 2 || o.NumSACK != 3 || o.SACK[2] != (TCPSACKBlock{5, 6}) {
		t.Fatalf("round trip %+v", o)
	}
	var e TCPOptionsBuilder
	if n := e.AddSACK(blocks); n != 4 {
		t.Fatalf("%d SACK blocks alone, want 4", n)
	}
	if e.AddTimestamps(1, 2) || e.AddSACKPermittedTimestamps(1, 2) || !e.AddMSS(1) || e.AddMSS(1) {
		t.Fatal("options beyond 40 bytes accepted")
	}
}

func TestTCPOptionsImpossibleLength(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"kind without length", []byte{TCPOptionMSS}},
		{"length 0", []byte{TCPOptionMSS, 0, 1, 2}},
		{"length 1", []byte{TCPOptionTimestamps, 1}},
		{"length past the end", []byte{TCPOptionTimestamps, 10, 0, 0, 0, 0}},
		{"SACK past the end", []byte{TCPOptionSACK, 34, 0, 0}},
	} {
		if _, ok := ParseTCPOptions(c.b); ok {
			t.Errorf("%s: accepted", c.name)
		}
	}
	// What came before a malformed option stays.
	o, ok := ParseTCPOptions([]byte{TCPOptionMSS, 4, 5, 0xb4, TCPOptionWindowScale, 9})
	if ok || !o.HasMSS || o.MSS != 1460 || o.HasWindowScale {
		t.Fatalf("%+v %v", o, ok)
	}
}

func TestTCPOptionsParse(t *testing.T) {
	// Wrong lengths for a kind are ignored; unknown kinds skipped; EOL ends.
	b := []byte{
		TCPOptionMSS, 3, 0, // MSS of length 3: ignored
		TCPOptionNOP,
		254, 4, 0xaa, 0xbb, // experimental: skipped
		TCPOptionWindowScale, 3, 20, // shift beyond 14: reported as sent
		TCPOptionSACK, 6, 0, 0, 0, 0, // SACK of length 6: ignored
		TCPOptionEOL, TCPOptionMSS, 4, 1, 1,
	}
	o, ok := ParseTCPOptions(b)
	if !ok {
		t.Fatal("refused")
	}
	if o.HasMSS || !o.HasWindowScale || o.WindowScale != 20 || o.NumSACK != 0 {
		t.Fatalf("%+v", o)
	}
	if o, ok := ParseTCPOptions(nil); !ok || o != (TCPOptions{}) {
		t.Fatal("empty options")
	}
}

func TestTCPOptionsEmit(t *testing.T) {
	var w TCPOptionsBuilder
	for i := range w.buf {
		w.buf[i] = 0xa5
	}
	w.AddMSS(1460)
	w.AddWindowScale(7)
	w.AddSACKPermitted()
	got := w.Bytes()
	want := []byte{2, 4, 5, 0xb4, 1, 3, 3, 7, 1, 1, 4, 2}
	if !bytes.Equal(got, want) {
		t.Fatalf("% x\nwant % x", got, want)
	}
	// Padding is zero (EOL), never left over bytes.
	var p TCPOptionsBuilder
	for i := range p.buf {
		p.buf[i] = 0xa5
	}
	p.n = 3
	copy(p.buf[:], []byte{TCPOptionWindowScale, 3, 7})
	if got := p.Bytes(); !bytes.Equal(got, []byte{3, 3, 7, 0}) {
		t.Fatalf("padding % x", got)
	}
}

func FuzzParseTCPOptions(f *testing.F) {
	f.Add(tcpSynOptions)
	_, seg := l4Of(frameTCPSynAck)
	f.Add([]byte(TCP(seg).Options()))
	f.Add([]byte{1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		o, _ := ParseTCPOptions(data)
		if !bytes.Equal(in, data) {
			t.Fatal("input modified")
		}
		if o.NumSACK < 0 || o.NumSACK > TCPMaxSACKBlocks {
			t.Fatalf("%d SACK blocks", o.NumSACK)
		}
		// What parses re-encodes and parses to the same values.
		var w TCPOptionsBuilder
		if o.HasMSS {
			w.AddMSS(o.MSS)
		}
		if o.HasWindowScale {
			w.AddWindowScale(o.WindowScale)
		}
		if o.HasTimestamps {
			w.AddTimestamps(o.TSVal, o.TSEcr)
		}
		k := w.AddSACK(o.SACK[:o.NumSACK])
		r, ok := ParseTCPOptions(w.Bytes())
		if !ok || r.MSS != o.MSS || r.WindowScale != o.WindowScale || r.TSVal != o.TSVal || r.TSEcr != o.TSEcr || r.NumSACK != k {
			t.Fatalf("round trip %+v -> %+v", o, r)
		}
	})
}
