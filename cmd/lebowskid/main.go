// Command lebowskid is the Lebowski peer-to-peer verification daemon.
// See docs/DAEMON.md.
package main

import (
	"os"

	"github.com/lebowski-dist/lebowski/cmd/node/daemon"
)

func main() { os.Exit(daemon.Main(os.Args[1:])) }
