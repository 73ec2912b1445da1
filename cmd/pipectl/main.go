// Command pipectl runs and checks pipestack pipelines with every built-in
// module. It is a thin main over package pipectl/cli: a build with extra
// modules is this file plus their blank imports.
package main

import (
	"os"

	_ "github.com/pipestack/pipestack/modules/standard"
	"github.com/pipestack/pipestack/pipectl/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
