package cli

import "github.com/lebowski-dist/lebowski/cmd/internal/node"

// DefaultDataDir and friends forward to package node so the daemon and the
// CLI agree on the layout.
func DefaultDataDir() string           { return node.DefaultDataDir() }
func DefaultOpinionsDir() string       { return node.DefaultOpinionsDir() }
func SocketPath(dataDir string) string { return node.Layout{Dir: dataDir}.Socket() }

func (g *globals) layout() node.Layout { return node.Layout{Dir: g.dataDir} }
