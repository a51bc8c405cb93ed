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
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/core/rpc"
	"github.com/lebowski-dist/lebowski/opinions"
)

var o3Once struct {
	sync.Once
	o   *opinions.Opinion
	err error
}

// helloO3 returns a copy of the repository's hello/o3 opinion, as the
// daemons load it (read once: loading costs ~4 ms).
func helloO3(t *testing.T) *opinions.Opinion {
	t.Helper()
	o3Once.Do(func() { o3Once.o, o3Once.err = opinions.Find(repoOpinions(t), "hello/o3") })
	require.NoError(t, o3Once.err)
	c := *o3Once.o
	return &c
}

// honestResult is what every honest fake builder produces for hello/o3.
func honestResult(t *testing.T) *builder.Result {
	t.Helper()
	res, err := (&fakeBuilder{}).Build(context.Background(), builder.Request{Package: "hello", Opinion: helloO3(t)})
	require.NoError(t, err)
	return res
}

// signFor signs a success claim for the honest hello/o3 recipe with the
// given artifact hash; mod may change the result before signing.
func signFor(t *testing.T, id *attest.Identity, peerID, sha string, ts time.Time, mod func(*builder.Result, *opinions.Opinion)) *attest.Claim {
	t.Helper()
	res := honestResult(t)
	res.Artifacts = []builder.Output{{Name: res.Artifacts[0].Name, SHA256: sha}}
	o := helloO3(t)
	if mod != nil {
		mod(res, o)
	}
	st := &attest.Statement{Type: attest.TypeRebuildV1, Package: res.Recipe.Source, Version: res.BinaryVersion, DebianVersion: res.Recipe.DebianVersion,
		Suite: res.Recipe.Suite, Arch: res.Recipe.Arch, Opinion: core.OpinionRef(o), DebianSourceSHA256: res.Recipe.SourceSHA256,
		ContainerDigest: res.Recipe.ImageDigest, RecipeID: res.Recipe.ID(), Result: res.Status, PeerID: peerID, Timestamp: ts}
	for _, a := range res.Artifacts {
		st.Artifacts = append(st.Artifacts, attest.Artifact{Name: a.Name, SHA256: a.SHA256})
	}
	return attesttest.Sign(t, id, st)
}

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
