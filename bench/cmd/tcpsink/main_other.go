//go:build !linux

// Command tcpsink is Linux only (TUN devices and network namespaces); see
// main.go.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "tcpsink: linux only")
	os.Exit(1)
}
