package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/builder/buildertest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/core/rpc"
	"github.com/lebowski-dist/lebowski/store"
)

// fakeBuilder "builds" deterministically from the recipe (buildertest.Fake).
type fakeBuilder = buildertest.Fake

func hex64(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

type testDaemon struct {
	d      *Daemon
	fb     *fakeBuilder
	cancel context.CancelFunc
	done   chan error
	dir    string
}

// runDaemon runs d (built with fake builder fb on data dir dir) until
// the test ends: it returns once d is ready (every listener open) and
// stops it in the test's cleanup.
func runDaemon(t testing.TB, d *Daemon, fb *fakeBuilder, dir string) *testDaemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	td := &testDaemon{d: d, fb: fb, cancel: cancel, done: make(chan error, 1), dir: dir}
	go func() { td.done <- d.Run(ctx) }()
	select {
	case <-d.Ready():
	case err := <-td.done:
		t.Fatalf("daemon %s stopped: %v", dir, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("daemon %s not ready after 20s", dir)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-td.done:
			if err != nil {
				t.Errorf("daemon %s: %v", dir, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("daemon %s did not stop within 20s; goroutines:\n%s", dir, goroutines())
		}
	})
	return td
}

// goroutines is a dump of every goroutine's stack, for a daemon that does
// not stop (what it waits on).
func goroutines() string {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	return b.String()
}

func repoOpinions(t testing.TB) string {
	t.Helper()
	p, err := filepath.Abs("../../../opinions")
	require.NoError(t, err)
	return p
}

// startDaemons starts n daemons on loopback, each bootstrapping from the
// first, trusting all the others' keys.
func startDaemons(t *testing.T, n int, evil map[int]bool) []*testDaemon {
	t.Helper()
	return startDaemonsWith(t, n, evil, nil, nil)
}

// startDaemonsWith is startDaemons with each config and fake builder
// changed by mod and fbMod (either may be nil).
func startDaemonsWith(t testing.TB, n int, evil map[int]bool, mod func(i int, c *config.Config), fbMod func(i int, fb *fakeBuilder)) []*testDaemon {
	t.Helper()
	ids := make([]*attest.Identity, n)
	dirs := make([]string, n)
	for i := range n {
		dirs[i] = t.TempDir()
		id, _, err := core.LoadIdentity(config.Layout{Dir: dirs[i]}, true, fmt.Sprintf("node %d", i))
		require.NoError(t, err)
		ids[i] = id
	}
	var out []*testDaemon
	var boot []string
	for i := range n {
		cfg := &config.Config{DataDir: dirs[i], OpinionsDir: repoOpinions(t), Listen: []string{"/ip4/127.0.0.1/tcp/0"},
			Subscribe: []string{"hello/o3"}, Bootstrap: boot, SyncEvery: 2 * time.Second}
		f := false
		cfg.MDNS = &f
		for j := range n {
			if j != i {
				cfg.TrustedKeys = append(cfg.TrustedKeys, ids[j].Fingerprint())
			}
		}
		if mod != nil {
			mod(i, cfg)
		}
		fb := &fakeBuilder{Evil: evil[i]}
		if fbMod != nil {
			fbMod(i, fb)
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		d, err := New(context.Background(), cfg, log.With("node", i), WithBuilder(fb))
		require.NoError(t, err)
		td := runDaemon(t, d, fb, dirs[i])
		if i == 0 {
			st, err := d.Node().Status(context.Background())
			require.NoError(t, err)
			boot = st.Addrs[:1]
		}
		out = append(out, td)
	}
	return out
}

func TestDaemonsRebuildGossipAndAgree(t *testing.T) {
	ds := startDaemons(t, 3, nil)
	ctx := context.Background()
	c, err := rpc.Dial(ctx, config.Layout{Dir: ds[0].dir}.Socket())
	require.NoError(t, err)
	var info *core.InfoResult
	require.Eventually(t, func() bool {
		info, err = c.Info(ctx, core.InfoQuery{Package: "hello", Opinion: "o3"})
		return err == nil && info.Recipes[0].Report.Consensus != nil && len(info.Recipes[0].Report.Consensus.Trusted) == 3
	}, 60*time.Second, 200*time.Millisecond, "3/3 consensus at node 0")
	rep := info.Recipes[0].Report
	require.False(t, rep.Conflict)
	require.True(t, info.Recipes[0].Own)
	for i, d := range ds {
		require.Equal(t, int32(1), d.fb.Builds.Load(), "node %d builds exactly once (no rebuild loop on peer claims)", i)
	}
	a := rep.Consensus.Artifacts[0]
	vr, err := c.Verify(ctx, core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: a.Name, SHA256: a.SHA256})
	require.NoError(t, err)
	require.Equal(t, consensus.Safe, vr.Verdict, vr.Reasons)
	vr, err = c.Verify(ctx, core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: a.Name, SHA256: hex64("tampered")})
	require.NoError(t, err)
	require.Equal(t, consensus.DoNotInstall, vr.Verdict, vr.Reasons)

	// The node keeps its own artifact as a blob whose CID follows from the
	// sha256 in the claim.
	deb, err := ds[0].d.st.GetBlob(store.BlobCID([]byte("deb of " + rep.RecipeID)))
	require.NoError(t, err)
	require.Equal(t, a.SHA256, hex64(string(deb)))

	st, err := c.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, st.Claims)
	require.Equal(t, []string{"hello/o3"}, st.Subscriptions)
	peers, err := c.Peers(ctx)
	require.NoError(t, err)
	require.Len(t, peers, 2)
}

func TestDaemonCompromisedBuilderIsOutvoted(t *testing.T) {
	// Node 2 publishes a hash from a build with an injected change.
	ds := startDaemons(t, 4, map[int]bool{2: true})
	ctx := context.Background()
	c, err := rpc.Dial(ctx, config.Layout{Dir: ds[0].dir}.Socket())
	require.NoError(t, err)
	var info *core.InfoResult
	require.Eventually(t, func() bool {
		info, err = c.Info(ctx, core.InfoQuery{Package: "hello", Opinion: "o3"})
		return err == nil && len(info.Recipes[0].Report.Groups) == 2 && info.Recipes[0].Recipe.Builders == 4
	}, 60*time.Second, 200*time.Millisecond)
	rep := info.Recipes[0].Report
	require.True(t, rep.Conflict, "a trusted dissent is a conflict")
	require.NotEmpty(t, rep.Dissenters)
	evil := ds[2].fb
	op := ds[2].d.subs.Opinion("hello/o3")
	res, _ := evil.Build(ctx, builder.Request{Package: "hello", Opinion: op})
	vr, err := c.Verify(ctx, core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: res.Artifacts[0].Name, SHA256: res.Artifacts[0].SHA256})
	require.NoError(t, err)
	require.Equal(t, consensus.DoNotInstall, vr.Verdict, vr.Reasons)
}

func TestDaemonRestartKeepsState(t *testing.T) {
	ds := startDaemons(t, 1, nil)
	ctx := context.Background()
	sock := config.Layout{Dir: ds[0].dir}.Socket()
	c, err := rpc.Dial(ctx, sock)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err := c.Status(ctx)
		return err == nil && st.Claims == 1
	}, 30*time.Second, 100*time.Millisecond)
	_, err = c.Subscribe(ctx, "hello/greeting", true)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err := c.Status(ctx)
		return err == nil && st.Claims == 2
	}, 30*time.Second, 100*time.Millisecond, "greeting built")
	before, err := c.Status(ctx)
	require.NoError(t, err)
	ds[0].cancel()
	require.NoError(t, <-ds[0].done)
	ds[0].done <- nil // for the cleanup

	cfg := &config.Config{DataDir: ds[0].dir, OpinionsDir: repoOpinions(t), Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Subscribe: []string{"hello/o3"}}
	f := false
	cfg.MDNS = &f
	fb := &fakeBuilder{}
	d, err := New(ctx, cfg, slog.New(slog.DiscardHandler), WithBuilder(fb))
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(rctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	var c2 *rpc.Client
	require.Eventually(t, func() bool { c2, err = rpc.Dial(ctx, sock); return err == nil }, 20*time.Second, 50*time.Millisecond)
	after, err := c2.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, before.PeerID, after.PeerID, "persisted libp2p identity")
	require.Equal(t, []string{"hello/greeting", "hello/o3"}, after.Subscriptions, "a subscription made at runtime survives the restart")
	require.Equal(t, before.Builder, after.Builder, "persisted builder key")
	require.Equal(t, 2, after.Claims)
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, int32(0), fb.Builds.Load(), "own claims found: no rebuild after restart")
}

func TestSocketIsPrivate(t *testing.T) {
	ds := startDaemons(t, 1, nil)
	fi, err := os.Stat(config.Layout{Dir: ds[0].dir}.Socket())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestMainExitCodes(t *testing.T) {
	for _, tc := range []struct {
		desc string
		args []string
		code int
	}{
		{"version", []string{"--version"}, 0},
		{"unknown flag", []string{"--bogus"}, 2},
		{"stray argument", []string{"extra"}, 2},
		{"bad config value", []string{"--data-dir", t.TempDir(), "--log-level", "loud"}, 2},
		{"bad subscription", []string{"--data-dir", t.TempDir(), "--subscribe", "pv/no-nls"}, 2},
		{"missing config file", []string{"--config", "/nonexistent/lebowski.yaml"}, 2},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			require.Equal(t, tc.code, Main(tc.args))
		})
	}
}

// TestReloadRebuildsChangedOpinion: after an opinion file changes, SIGHUP
// (Reload) gives the subscription the new content's CID and a rebuild.
func TestReloadRebuildsChangedOpinion(t *testing.T) {
	ops := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(ops, "hello"), 0o755))
	for _, f := range []string{"o3.yaml", "o3.lock"} {
		b, err := os.ReadFile(filepath.Join(repoOpinions(t), "hello", f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(ops, "hello", f), b, 0o644))
	}
	td := startOne(t, func(c *config.Config) { c.OpinionsDir = ops })
	attesttest.Eventually(t, 20*time.Second, "first build", func() bool { return td.fb.Builds.Load() == 1 })
	before := td.d.subs.Opinion("hello/o3").CID()

	p := filepath.Join(ops, "hello", "o3.yaml")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(b), "revision: 1", "revision: 2", 1)), 0o644))
	td.d.subs.Reload(context.Background())
	attesttest.Eventually(t, 20*time.Second, "rebuild of the changed opinion", func() bool { return td.fb.Builds.Load() == 2 })
	after := td.d.subs.Opinion("hello/o3")
	require.NotEqual(t, before, after.CID())
	require.Equal(t, 2, after.Revision)
	td.d.subs.Reload(context.Background()) // unchanged: no third build
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, int32(2), td.fb.Builds.Load())
}
