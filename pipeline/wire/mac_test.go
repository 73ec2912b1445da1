package wire

import "testing"

func TestMACString(t *testing.T) {
	if got := (MAC{0x02, 0, 0, 0, 0, 0x01}).String(); got != "02:00:00:00:00:01" {
		t.Errorf("got %q", got)
	}
	if got := BroadcastMAC.String(); got != "ff:ff:ff:ff:ff:ff" {
		t.Errorf("got %q", got)
	}
}

func TestParseMAC(t *testing.T) {
	good := map[string]MAC{
		"02:00:00:00:00:01": {0x02, 0, 0, 0, 0, 0x01},
		"02-FC-00-00-00-0a": {0x02, 0xfc, 0, 0, 0, 0x0a},
		"ff:ff:ff:ff:ff:ff": BroadcastMAC,
		"AB:cd:EF:01:23:45": {0xab, 0xcd, 0xef, 0x01, 0x23, 0x45},
	}
	for s, want := range good {
		got, err := ParseMAC(s)
		if err != nil || got != want {
			t.Errorf("ParseMAC(%q) = %v, %v; want %v", s, got, err, want)
		}
		if s2, _ := ParseMAC(got.String()); s2 != got {
			t.Errorf("round trip of %q", s)
		}
	}
	bad := []string{
		"", "02:00:00:00:00", "02:00:00:00:00:01:", "02:00:00:00:00:1",
		"2:00:00:00:00:01", "02:00-00:00:00:01", "02.00.00.00.00.01",
		"0200.0000.0001", "02:00:00:00:00:0g", "02:00:00:00:00:01:02",
		"020000000001", " 2:00:00:00:00:01", "+2:00:00:00:00:01",
	}
	for _, s := range bad {
		if m, err := ParseMAC(s); err == nil {
			t.Errorf("ParseMAC(%q) = %v, want error", s, m)
		}
	}
}

func TestMACPredicates(t *testing.T) {
	tests := []struct {
		m                    MAC
		bcast, mcast, isZero bool
	}{
		{BroadcastMAC, true, true, false},
		{MAC{0x01, 0x00, 0x5e, 0, 0, 1}, false, true, false},
		{MAC{0x33, 0x33, 0, 0, 0, 1}, false, true, false},
		{MAC{0x02, 0xfc, 0, 0, 0, 1}, false, false, false},
		{MAC{}, false, false, true},
	}
	for _, tt := range tests {
		if tt.m.IsBroadcast() != tt.bcast || tt.m.IsMulticast() != tt.mcast || tt.m.IsZero() != tt.isZero {
			t.Errorf("%v: broadcast %v multicast %v zero %v", tt.m, tt.m.IsBroadcast(), tt.m.IsMulticast(), tt.m.IsZero())
		}
	}
}
