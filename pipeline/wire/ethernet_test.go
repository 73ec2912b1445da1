package wire

import (
	"bytes"
	"testing"
)

var ethEchoFields = EthernetFields{
	Dst:  MAC{0x02, 0xfc, 0, 0, 0, 0x05},
	Src:  MAC{0x02, 0xfc, 0, 0, 0, 0x01},
	Type: EtherTypeIPv4,
}

func TestEthernetDeconstruct(t *testing.T) {
	b := Ethernet(frameICMPEcho)
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
	if b.Dst() != ethEchoFields.Dst || b.Src() != ethEchoFields.Src {
		t.Errorf("dst %v src %v", b.Dst(), b.Src())
	}
	if b.Dst().String() != "02:fc:00:00:00:05" {
		t.Errorf("dst string %q", b.Dst())
	}
	if b.Type() != EtherTypeIPv4 {
		t.Errorf("type %#04x", b.Type())
	}
	if !bytes.Equal(b.Payload(), frameICMPEcho[14:]) {
		t.Error("payload")
	}
}

func TestEthernetConstruct(t *testing.T) {
	b := Ethernet(make([]byte, EthernetHeaderSize))
	b.Encode(&ethEchoFields)
	if !bytes.Equal(b, frameICMPEcho[:14]) {
		t.Errorf("got % x\nwant % x", []byte(b), frameICMPEcho[:14])
	}
	// setters produce the same bytes
	c := Ethernet(make([]byte, EthernetHeaderSize))
	c.SetDst(ethEchoFields.Dst)
	c.SetSrc(ethEchoFields.Src)
	c.SetType(EtherTypeIPv4)
	if !bytes.Equal(b, c) {
		t.Errorf("setters: % x", []byte(c))
	}
}

func TestEthernetImpossibleLength(t *testing.T) {
	for n := 0; n < len(frameICMPEcho); n++ {
		err := Ethernet(frameICMPEcho[:n]).Check()
		if n < EthernetHeaderSize && err != ErrTooShort {
			t.Errorf("len %d: %v, want ErrTooShort", n, err)
		}
		if n >= EthernetHeaderSize {
			if err != nil {
				t.Errorf("len %d: %v", n, err)
			}
			if len(Ethernet(frameICMPEcho[:n]).Payload()) != n-14 {
				t.Errorf("len %d: payload", n)
			}
		}
	}
}

func TestEthernetParse(t *testing.T) {
	for i, f := range allFrames {
		b := Ethernet(f)
		if err := b.Check(); err != nil {
			t.Errorf("frame %d: %v", i, err)
		}
		if b.Type() != EtherTypeIPv4 {
			t.Errorf("frame %d: type %#04x", i, b.Type())
		}
	}
	// a broadcast ARP request header
	arp := Ethernet(mustHex("ffffffffffff 02fc00000001 0806"))
	if err := arp.Check(); err != nil || !arp.Dst().IsBroadcast() || arp.Type() != EtherTypeARP || len(arp.Payload()) != 0 {
		t.Errorf("arp: %v %v %#04x", err, arp.Dst(), arp.Type())
	}
}

func TestEthernetEmit(t *testing.T) {
	buf := filled(64)
	Ethernet(buf).Encode(&ethEchoFields)
	if !bytes.Equal(buf[:14], frameICMPEcho[:14]) {
		t.Errorf("header % x", buf[:14])
	}
	if i := firstWritten(buf, 14); i >= 0 {
		t.Errorf("byte %d written beyond the header", i)
	}
}
