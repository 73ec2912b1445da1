//go:build !linux

// Command gvisorrouter is Linux only (TUN devices, AF_PACKET sockets and
// network namespaces); see main.go.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "gvisorrouter: linux only")
	os.Exit(1)
}
