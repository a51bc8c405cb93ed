package core

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/cmd/node/config"
)

// TestOpen: the one opener of a node over its own store (CLI and
// daemon): a read needs an existing node, a write makes one, the store is
// the node's (Close closes it), and a store in use is ErrStoreBusy, for
// Open and for Compact.
func TestOpen(t *testing.T) {
	cfg := &config.Config{DataDir: t.TempDir() + "/node"}
	cfg.Defaults()
	log := slog.New(slog.DiscardHandler)
	_, err := Open(cfg, ReadOnly, log)
	require.ErrorContains(t, err, "no Lebowski node", "reading a node that does not exist")
	_, statErr := os.Stat(cfg.DataDir)
	require.ErrorIs(t, statErr, os.ErrNotExist, "a read creates nothing")

	n, err := Open(cfg, ReadWrite, log)
	require.NoError(t, err)
	_, err = n.Status(context.Background())
	require.NoError(t, err)
	_, err = Open(cfg, ReadOnly, log)
	require.ErrorIs(t, err, ErrStoreBusy, "a second opener while the first holds it")
	_, err = Compact(cfg, log)
	require.ErrorIs(t, err, ErrStoreBusy)
	n.Close()
	n.Close() // twice is fine

	ro, err := Open(cfg, ReadOnly, log)
	require.NoError(t, err, "the store was released by Close")
	_, err = ro.PutBlob(context.Background(), []byte("x"))
	require.Error(t, err, "a read-only node refuses writes")
	ro.Close()
	res, err := Compact(cfg, log)
	require.NoError(t, err)
	require.Equal(t, cfg.Layout().StoreDB(), res.Path)
	require.False(t, errors.Is(err, ErrStoreBusy))
}
