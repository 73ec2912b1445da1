package conntrack

import (
	"syscall"
	"unsafe"
)

// adviseHuge asks the kernel to back the n bytes at p with transparent
// huge pages (where THP is in "madvise" mode), before they are first
// touched: the table's entries are read at random, and with 4 KiB pages
// each packet of a table of many flows misses the TLB too, which bounds how
// many of the batch pass's cache misses overlap.
func adviseHuge(p unsafe.Pointer, n uintptr) {
	const huge = 2 << 20
	start := (uintptr(p) + huge - 1) &^ (huge - 1)
	end := (uintptr(p) + n) &^ (huge - 1)
	if end <= start {
		return
	}
	_ = syscall.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, start-uintptr(p))), end-start), 14 /* MADV_HUGEPAGE */)
}
