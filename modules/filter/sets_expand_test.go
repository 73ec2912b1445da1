package filter

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSetPortRangeBound: an addr . port set's port ranges are expanded
// into its table; like prefix . port's, they are bounded (maxExpanded),
// else 1,048,576 elements of 65,536 ports each (pipectl set add, the
// file) would be 2^36 entries.
func TestSetPortRangeBound(t *testing.T) {
	decl := setDecl{name: "wide", typ: setIPPort, maxElem: defaultMaxElem}
	for i := 0; i <= maxExpanded/65536; i++ {
		decl.elems = append(decl.elems, fmt.Sprintf("10.0.%d.%d . 0-65535", i/256, i%256))
	}
	_, err := newSet(decl, time.Unix(1000, 0))
	if err == nil || !strings.Contains(err.Error(), "expand to more than") {
		t.Fatalf("newSet: %v, want the bound", err)
	}
	s, err := newSet(setDecl{name: "w", typ: setIPPort, maxElem: defaultMaxElem, elems: []string{"10.0.0.1 . 1-65535"}}, time.Unix(1000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !s.snap.Load().elems[0].key.lo.IsValid() || s.snap.Load().lookup(s.snap.Load().elems[0].key.lo, 80, 6, 0) < 0 {
		t.Fatal("a range within the bound is not looked up")
	}
}
