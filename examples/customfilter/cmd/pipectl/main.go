// Command pipectl is pipectl with the example's custom filter modules
// (filter.match.prefixfile, filter.target.dscp) linked in: the stock main
// plus one blank import.
package main

import (
	"os"

	_ "github.com/pipestack/pipestack/examples/customfilter"
	_ "github.com/pipestack/pipestack/modules/standard"
	"github.com/pipestack/pipestack/pipectl/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
