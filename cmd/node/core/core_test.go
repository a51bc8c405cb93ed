package core_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/core/coretest"
	"github.com/lebowski-dist/lebowski/store"
)

// newLocal is the in-process node behind the shared suite.
func newLocal(t *testing.T, cfg *config.Config, h *coretest.Harness) *core.Node {
	t.Helper()
	st, err := store.Open(filepath.Join(cfg.DataDir, "store.db"), core.StoreOptions(cfg)...)
	require.NoError(t, err)
	n := core.New(st, core.WithIdentity(h.Identity), core.WithConfig(cfg), core.WithNetwork(h.Net), core.WithSubscriber(h.Subs))
	t.Cleanup(func() {
		n.Close()
		require.NoError(t, st.Close())
	})
	return n
}

func TestLocalAPI(t *testing.T) {
	coretest.Run(t, func(t *testing.T, cfg *config.Config, h *coretest.Harness) {
		h.API = newLocal(t, cfg, h)
	})
}

func TestOfflineNode(t *testing.T) {
	cfg := &config.Config{DataDir: t.TempDir()}
	cfg.Defaults()
	st, err := store.Open(filepath.Join(cfg.DataDir, "store.db"))
	require.NoError(t, err)
	defer st.Close()
	n := core.New(st, core.WithConfig(cfg))
	ctx := context.Background()
	_, err = n.Peers(ctx)
	assert.ErrorIs(t, err, core.ErrOffline)
	_, err = n.Subscribe(ctx, "hello/o3", true)
	assert.ErrorIs(t, err, core.ErrOffline)
	st2, err := n.Status(ctx)
	require.NoError(t, err)
	assert.False(t, st2.Online)
	assert.Empty(t, st2.Builder)
	_, err = n.RecordBuild(ctx, core.BuildRecord{})
	assert.True(t, errors.Is(err, core.ErrNoIdentity), "%v", err)
}

// Without a network (the CLI without a daemon) certify and revoke store
// locally and say nothing was published; announce needs the daemon.
func TestOfflineKeyCommands(t *testing.T) {
	cfg := &config.Config{DataDir: t.TempDir()}
	cfg.Defaults()
	st, err := store.Open(filepath.Join(cfg.DataDir, "store.db"))
	require.NoError(t, err)
	defer st.Close()
	ids := attesttest.Fresh(t, 2)
	n := core.New(st, core.WithConfig(cfg), core.WithIdentity(ids[0]))
	ctx := context.Background()
	_, err = n.ImportKey(ctx, ids[1].PublicKey(), attest.TrustUnvetted, "test")
	require.NoError(t, err)
	res, err := n.CertifyKey(ctx, ids[1].Fingerprint())
	require.NoError(t, err)
	assert.False(t, res.Published)
	assert.Equal(t, attest.TrustCertified, res.Trust)
	_, err = n.AnnounceKey(ctx, "")
	assert.ErrorIs(t, err, core.ErrOffline)
	res, err = n.RevokeKey(ctx, core.RevokeRequest{Reason: "retired"})
	require.NoError(t, err)
	assert.False(t, res.Published)
	require.NotNil(t, res.Revocation)
	assert.Equal(t, "retired", res.Revocation.Reason)
	// The certification made before the revocation no longer counts.
	k, err := n.Key(ctx, ids[1].Fingerprint())
	require.NoError(t, err)
	assert.Equal(t, attest.TrustUnvetted, k.Trust)
}
