package daemon

import (
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/p2p"
)

// The config holds plain values and imports no transport; here they become
// the network's. (Its budget becomes the store's in core.StoreOptions,
// which the CLI uses too.) convert_test.go checks that the defaults the
// config shows are the network's, the store's and consensus's.

// p2pLimits is the config's limits section for the network: config.Limits
// has p2p.Limits's fields in the same order, so the conversion stops
// compiling when either changes alone. Zero fields take p2p's defaults.
func p2pLimits(l config.Limits) p2p.Limits { return p2p.Limits(l) }
