//go:build !linux

package conntrack

import "unsafe"

// adviseHuge is a no-op where there are no transparent huge pages.
func adviseHuge(unsafe.Pointer, uintptr) {}
