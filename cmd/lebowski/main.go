// Command lebowski verifies, rebuilds and inspects Lebowski packages.
// See docs/CLI.md.
package main

import (
	"os"

	"github.com/lebowski-dist/lebowski/cmd/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
