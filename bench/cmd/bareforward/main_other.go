//go:build !linux

// Command bareforward is Linux only (TUN devices, AF_PACKET sockets and
// network namespaces); see main.go.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bareforward: linux only")
	os.Exit(1)
}
