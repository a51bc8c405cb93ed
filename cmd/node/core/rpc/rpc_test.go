package rpc_test

import (
	"net"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/core/coretest"
	"github.com/lebowski-dist/lebowski/cmd/node/core/rpc"
	"github.com/lebowski-dist/lebowski/store"
)

// TestSocketAPI runs the shared suite through a real unix socket: the
// client calls rpc.Handler serving an in-process node.
func TestSocketAPI(t *testing.T) {
	coretest.Run(t, func(t *testing.T, cfg *config.Config, h *coretest.Harness) {
		st, err := store.Open(filepath.Join(cfg.DataDir, "store.db"), core.StoreOptions(cfg)...)
		require.NoError(t, err)
		n := core.New(st, core.WithIdentity(h.Identity), core.WithConfig(cfg), core.WithNetwork(h.Net), core.WithSubscriber(h.Subs))
		sock := filepath.Join(cfg.DataDir, "api.sock")
		ln, err := net.Listen("unix", sock)
		require.NoError(t, err)
		srv := &http.Server{Handler: rpc.Handler(n)}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() {
			n.Close() // ends event streams, so Close does not wait on them
			_ = srv.Close()
			require.NoError(t, st.Close())
		})
		c, err := rpc.Dial(t.Context(), sock)
		require.NoError(t, err)
		h.API = c
	})
}

func TestDialNobody(t *testing.T) {
	_, err := rpc.Dial(t.Context(), filepath.Join(t.TempDir(), "none.sock"))
	require.ErrorIs(t, err, rpc.ErrNoDaemon)
}
