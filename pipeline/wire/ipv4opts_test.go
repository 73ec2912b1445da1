package wire

import (
	"bytes"
	"testing"
)

// hdrWithOptions builds a 20-byte header followed by opts (len a multiple of 4).
func hdrWithOptions(opts []byte) IPv4 {
	b := make([]byte, IPv4HeaderSize(len(opts))+8)
	IPv4(b).Encode(&IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: ProtocolUDP,
		Src: [4]byte{10, 0, 0, 1}, Dst: [4]byte{10, 0, 0, 2}, Options: opts})
	return IPv4(b)
}

// Deconstruct: well-formed options of every kind pass and are recognised.
func TestIPv4OptionsDeconstruct(t *testing.T) {
	rr := []byte{IPv4OptionRecordRoute, 7, 4, 0, 0, 0, 0, IPv4OptionNOP}
	ra := []byte{IPv4OptionRouterAlert, 4, 0, 0}
	lsrr := []byte{IPv4OptionLSRR, 7, 4, 10, 0, 0, 9, IPv4OptionEOL}
	ts := []byte{IPv4OptionTimestamp, 8, 5, 0, 0, 0, 0, 0}
	for _, tc := range []struct {
		name     string
		opts     []byte
		srcRoute bool
	}{
		{"none", nil, false},
		{"nops", []byte{1, 1, 1, 1}, false},
		{"rr", rr, false},
		{"router alert", ra, false},
		{"lsrr", lsrr, true},
		{"timestamp", ts, false},
		{"eol then garbage", []byte{0, 0xff, 0xff, 0xff}, false},
	} {
		h := hdrWithOptions(tc.opts)
		if err := h.Check(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if p := h.OptionsError(); p != -1 {
			t.Errorf("%s: OptionsError = %d, want -1", tc.name, p)
		}
		if h.SourceRouted() != tc.srcRoute {
			t.Errorf("%s: SourceRouted = %v", tc.name, h.SourceRouted())
		}
	}
}

// Impossible lengths: each malformed option is pointed at its offending byte.
func TestIPv4OptionsImpossibleLength(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []byte
		want int
	}{
		{"length past header", []byte{IPv4OptionRouterAlert, 8, 0, 0}, 21},
		{"length below 2", []byte{IPv4OptionRouterAlert, 1, 0, 0}, 21},
		{"length byte missing", []byte{1, 1, 1, IPv4OptionRouterAlert}, 23},
		{"rr pointer below 4", []byte{IPv4OptionRecordRoute, 3, 3, 0}, 22},
		{"rr too short", []byte{IPv4OptionRecordRoute, 2, 1, 0}, 21},
		{"ts pointer below 5", []byte{IPv4OptionTimestamp, 4, 4, 0}, 22},
		{"second option bad", []byte{1, IPv4OptionRouterAlert, 9, 0}, 22},
	} {
		h := hdrWithOptions(tc.opts)
		if got := h.OptionsError(); got != tc.want {
			t.Errorf("%s: OptionsError = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// Parse + emit: fragment options keep only copied ones, padded, in a buffer
// pre-filled with 0xa5 so unwritten bytes show.
func TestIPv4FragmentOptionsEmit(t *testing.T) {
	opts := []byte{
		IPv4OptionRecordRoute, 7, 4, 0, 0, 0, 0, // not copied
		IPv4OptionNOP,
		IPv4OptionRouterAlert, 4, 0, 0, // copied
		IPv4OptionLSRR, 7, 4, 10, 0, 0, 9, // copied
		IPv4OptionEOL,
	}
	dst := bytes.Repeat([]byte{0xa5}, len(opts)+3)
	n := IPv4FragmentOptions(dst, opts)
	want := []byte{IPv4OptionRouterAlert, 4, 0, 0, IPv4OptionLSRR, 7, 4, 10, 0, 0, 9, 0}
	if n != len(want) || !bytes.Equal(dst[:n], want) {
		t.Fatalf("got %d % x, want % x", n, dst[:n], want)
	}
	if dst[n] != 0xa5 {
		t.Errorf("wrote past the end")
	}
	if n := IPv4FragmentOptions(dst, []byte{IPv4OptionRecordRoute, 3, 4, 0}); n != 0 {
		t.Errorf("nothing to copy wrote %d bytes", n)
	}
}

func TestIPv4FragmentPayloadSize(t *testing.T) {
	for _, tc := range []struct{ mtu, hl, want int }{
		{1500, 20, 1480}, {1400, 20, 1376}, {1400, 24, 1376}, {68, 60, 8}, {67, 60, 0}, {576, 20, 552},
	} {
		if got := IPv4FragmentPayloadSize(tc.mtu, tc.hl); got != tc.want {
			t.Errorf("mtu %d hl %d: %d, want %d", tc.mtu, tc.hl, got, tc.want)
		}
	}
}

// Parse of a real header: the fixtures carry no options.
func TestIPv4OptionsParseFixtures(t *testing.T) {
	for _, fr := range allFrames {
		ip := IPv4(fr[EthernetHeaderSize:])
		if len(fr) < EthernetHeaderSize || ip.Check() != nil {
			continue
		}
		if ip.OptionsError() != -1 || ip.SourceRouted() {
			t.Errorf("fixture header refused")
		}
	}
}

func FuzzIPv4Options(f *testing.F) {
	f.Add([]byte{IPv4OptionRecordRoute, 7, 4, 0, 0, 0, 0, 1})
	f.Add([]byte{IPv4OptionLSRR, 200, 4, 0})
	f.Add([]byte{1, 1, 1, 148})
	f.Fuzz(func(t *testing.T, opts []byte) {
		if len(opts) > 40 {
			opts = opts[:40]
		}
		h := hdrWithOptions(opts)
		p := h.OptionsError()
		if p != -1 && (p < IPv4MinimumSize || p >= h.HeaderLength()) {
			t.Fatalf("pointer %d outside the options", p)
		}
		_ = h.SourceRouted()
		if p == -1 {
			dst := make([]byte, len(h.Options())+3)
			n := IPv4FragmentOptions(dst, h.Options())
			if n%4 != 0 || n > len(h.Options())+3 {
				t.Fatalf("fragment options length %d", n)
			}
		}
	})
}
