package wire

import (
	"errors"
	"testing"
)

func TestParseError(t *testing.T) {
	tests := []struct {
		err    ParseError
		reason string
	}{
		{ErrTooShort, "too_short"},
		{ErrBadVersion, "bad_version"},
		{ErrBadHeaderLength, "bad_header_length"},
		{ErrBadTotalLength, "bad_total_length"},
		{ErrBadChecksum, "bad_checksum"},
		{ErrBadLength, "bad_length"},
		{ErrBadDataOffset, "bad_data_offset"},
		{ErrBadARPFormat, "bad_arp_format"},
		{ErrBadPayloadLength, "bad_payload_length"},
		{ErrExtHeaderTruncated, "ext_header_truncated"},
		{0, "unknown"},
		{200, "unknown"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		if got := tt.err.Reason(); got != tt.reason {
			t.Errorf("%d.Reason() = %q, want %q", tt.err, got, tt.reason)
		}
		if tt.err.Error() != "wire: "+tt.err.String() {
			t.Errorf("%d: Error %q String %q", tt.err, tt.err.Error(), tt.err.String())
		}
		if tt.reason != "unknown" {
			if seen[tt.err.Error()] {
				t.Errorf("duplicate message %q", tt.err.Error())
			}
			seen[tt.err.Error()] = true
		}
	}
	var err error = IPv4(nil).Check()
	var pe ParseError
	if !errors.As(err, &pe) || pe != ErrTooShort || !errors.Is(err, ErrTooShort) {
		t.Errorf("errors.As/Is: %v", err)
	}
}
