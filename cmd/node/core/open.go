package core

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/lebowski-dist/lebowski/cmd/node/config"
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

// ErrStoreBusy: another process (a running lebowskid, or a compaction)
// holds the node's store.
var ErrStoreBusy = errors.New("the node's store is in use by another process")

// Access says what a node is opened for.
type Access int

const (
	// ReadOnly opens an existing node's store for reading only.
	ReadOnly Access = iota
	// ReadWrite opens the store for writing, creating the node's data
	// dir and store when missing.
	ReadWrite
)

// Open opens the node of cfg's data dir over its own store: the CLI
// when no daemon answers, and lebowskid. The node owns the store: Close
// closes it.
func Open(cfg *config.Config, a Access, log *slog.Logger, opts ...Option) (*Node, error) {
	l := cfg.Layout()
	sopts := append([]store.Option{store.WithLogger(log.With("sub", "store"))}, StoreOptions(cfg)...)
	if a == ReadOnly {
		if err := l.CheckExists(); err != nil {
			return nil, err
		}
		sopts = append(sopts, store.WithReadOnly())
	} else if err := l.Ensure(); err != nil {
		return nil, err
	}
	st, err := store.Open(l.StoreDB(), sopts...)
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%w (%v)", ErrStoreBusy, err)
	}
	if err != nil {
		return nil, err
	}
	n := New(st, append([]Option{WithConfig(cfg), WithLogger(log)}, opts...)...)
	n.ownsStore = true
	return n, nil
}

// CompactResult reports a compaction.
type CompactResult = store.CompactResult

// Compact rewrites the store of cfg's node without its unused space
// (store.Compact); the node must not be open anywhere (ErrStoreBusy).
func Compact(cfg *config.Config, log *slog.Logger) (*CompactResult, error) {
	l := cfg.Layout()
	if err := l.CheckExists(); err != nil {
		return nil, err
	}
	res, err := store.Compact(l.StoreDB(), append([]store.Option{store.WithLogger(log)}, StoreOptions(cfg)...)...)
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%w (%v)", ErrStoreBusy, err)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}
