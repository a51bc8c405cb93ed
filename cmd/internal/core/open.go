package core

import (
	"github.com/lebowski-dist/lebowski/cmd/internal/config"
	"github.com/lebowski-dist/lebowski/store"
)

// StoreOptions are the store options the config implies: the budget for
// keys that do not vote, and trusted_keys exempt from it. Every opener of
// the store (daemon, CLI without a daemon, tests) uses them, so the CLI
// needs no config that knows the store.
func StoreOptions(c *config.Config) []store.Option {
	// config.Budget has store.Budget's fields in the same order: the
	// conversion stops compiling when either changes alone.
	return []store.Option{store.WithBudget(store.Budget(c.Budget)), store.WithExempt(c.TrustedKeys...)}
}
