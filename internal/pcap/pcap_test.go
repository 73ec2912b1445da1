package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"
)

func TestWriteRead(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, LinkTypeRaw, 8)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 123456000, time.UTC)
	if err := w.Write(t0, []byte{0x45, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(t0.Add(time.Second), []byte{0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9}); err != nil {
		t.Fatal(err)
	}
	// The header as libpcap writes it.
	h := buf.Bytes()[:24]
	if binary.LittleEndian.Uint32(h) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(h[20:]) != LinkTypeRaw || binary.LittleEndian.Uint32(h[16:]) != 8 {
		t.Fatalf("file header % x", h)
	}
	r, err := NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType != LinkTypeRaw || r.Snaplen != 8 {
		t.Fatalf("link type %d snaplen %d", r.LinkType, r.Snaplen)
	}
	a, err := r.Next()
	if err != nil || !a.Time.Equal(t0) || !bytes.Equal(a.Data, []byte{0x45, 1, 2, 3}) || a.OrigLen != 4 {
		t.Fatalf("first record %+v, %v", a, err)
	}
	b, err := r.Next()
	if err != nil || !b.Time.Equal(t0.Add(time.Second)) || len(b.Data) != 8 || b.OrigLen != 10 {
		t.Fatalf("second record %+v, %v (want cut to 8 of 10)", b, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last record: %v, want EOF", err)
	}
}

// TestReadBigEndianNano: a big-endian file with nanosecond timestamps.
func TestReadBigEndianNano(t *testing.T) {
	be := binary.BigEndian
	f := make([]byte, 24+16+2)
	be.PutUint32(f[0:], 0xa1b23c4d)
	be.PutUint16(f[4:], 2)
	be.PutUint16(f[6:], 4)
	be.PutUint32(f[16:], 65535)
	be.PutUint32(f[20:], LinkTypeEthernet)
	be.PutUint32(f[24:], 100)
	be.PutUint32(f[28:], 999999999)
	be.PutUint32(f[32:], 2)
	be.PutUint32(f[36:], 60)
	f[40], f[41] = 0xaa, 0xbb
	r, err := NewReader(bytes.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := r.Next()
	if err != nil || r.LinkType != LinkTypeEthernet || rec.Time.UnixNano() != 100*1e9+999999999 || rec.OrigLen != 60 || !bytes.Equal(rec.Data, []byte{0xaa, 0xbb}) {
		t.Fatalf("%+v %v", rec, err)
	}
}

// TestMalformed: truncated and impossible files are errors wrapping
// ErrFormat, never a panic or a huge allocation.
func TestMalformed(t *testing.T) {
	var good bytes.Buffer
	w, _ := NewWriter(&good, LinkTypeEthernet, 0)
	w.Write(time.Unix(1, 0), make([]byte, 20))
	g := good.Bytes()
	huge := append([]byte(nil), g...)
	binary.LittleEndian.PutUint32(huge[24+8:], 1<<31)
	badUsec := append([]byte(nil), g...)
	binary.LittleEndian.PutUint32(badUsec[24+4:], 1e6)
	pcapng := append([]byte{0x0a, 0x0d, 0x0d, 0x0a}, g[4:]...)
	for name, f := range map[string][]byte{
		"short header": g[:10], "pcapng": pcapng, "truncated record header": g[:30],
		"truncated body": g[:len(g)-1], "huge record": huge, "bad microseconds": badUsec,
	} {
		r, err := NewReader(bytes.NewReader(f))
		if err == nil {
			_, err = r.Next()
		}
		if !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v, want ErrFormat", name, err)
		}
	}
}

func FuzzReader(f *testing.F) {
	var good bytes.Buffer
	w, _ := NewWriter(&good, LinkTypeRaw, 0)
	w.Write(time.Unix(1, 0), []byte{0x45, 0, 0, 20})
	f.Add(good.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		for i := 0; i < 100; i++ {
			if _, err := r.Next(); err != nil {
				return
			}
		}
	})
}
