package cli

import "github.com/lebowski-dist/lebowski/cmd/internal/node"

// layout is the data directory layout shared with the daemon.
func (g *globals) layout() node.Layout { return node.Layout{Dir: g.dataDir} }
