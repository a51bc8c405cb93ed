package daemon

// Helpers of the tests that stayed in package daemon when the multi-daemon
// tests moved to integration/ (which has its own, on package daemontest).

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/builder/buildertest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core/rpc"
)

// The honest hello/o3 build: buildertest's, shared with the other
// package's multi-daemon tests.
var (
	helloO3      = buildertest.HelloO3
	honestResult = buildertest.HonestResult
	signFor      = buildertest.SignFor
)

func dial(t testing.TB, td *testDaemon) *rpc.Client {
	t.Helper()
	c, err := rpc.Dial(context.Background(), config.Layout{Dir: td.dir}.Socket())
	require.NoError(t, err)
	return c
}

var sybilOnce struct {
	sync.Once
	ids []*attest.Identity
}

// sybilKeys returns 1,000 fresh builder keys, made once per test binary
// (≈ 9 ms each on the 2-core CI machine).
func sybilKeys(t *testing.T) []*attest.Identity {
	t.Helper()
	sybilOnce.Do(func() { sybilOnce.ids = attesttest.Fresh(t, 1000) })
	require.Len(t, sybilOnce.ids, 1000)
	return sybilOnce.ids
}

// startOne starts a single daemon whose config mod may change.
func startOne(t *testing.T, mod func(*config.Config)) *testDaemon {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{DataDir: dir, OpinionsDir: repoOpinions(t), Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Subscribe: []string{"hello/o3"}}
	f := false
	cfg.MDNS = &f
	if mod != nil {
		mod(cfg)
	}
	fb := &fakeBuilder{}
	d, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler), WithBuilder(fb))
	require.NoError(t, err)
	return runDaemon(t, d, fb, dir)
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}

func runtimeGC() {
	runtime.GC()
	runtime.GC()
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
