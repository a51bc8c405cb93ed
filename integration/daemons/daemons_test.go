package daemons

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/builder/buildertest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/core/rpc"
	"github.com/lebowski-dist/lebowski/cmd/node/daemon/daemontest"
	"github.com/lebowski-dist/lebowski/store"
)

func TestDaemonsRebuildGossipAndAgree(t *testing.T) {
	ds := daemontest.Start(t, 3, daemontest.Options{})
	ctx := context.Background()
	c, err := rpc.Dial(ctx, config.Layout{Dir: ds[0].Dir}.Socket())
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
		require.Equal(t, int32(1), d.Builder.Builds.Load(), "node %d builds exactly once (no rebuild loop on peer claims)", i)
	}
	a := rep.Consensus.Artifacts[0]
	vr, err := c.Verify(ctx, core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: a.Name, SHA256: a.SHA256})
	require.NoError(t, err)
	require.Equal(t, consensus.Safe, vr.Verdict, vr.Reasons)
	vr, err = c.Verify(ctx, core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: a.Name, SHA256: buildertest.Hex64("tampered")})
	require.NoError(t, err)
	require.Equal(t, consensus.DoNotInstall, vr.Verdict, vr.Reasons)

	// The node keeps its own artifact as a blob whose CID follows from the
	// sha256 in the claim.
	deb, err := ds[0].API().Store().GetBlob(store.BlobCID([]byte("deb of " + rep.RecipeID)))
	require.NoError(t, err)
	require.Equal(t, a.SHA256, buildertest.Hex64(string(deb)))

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
	ds := daemontest.Start(t, 4, daemontest.Options{Evil: map[int]bool{2: true}})
	ctx := context.Background()
	c, err := rpc.Dial(ctx, config.Layout{Dir: ds[0].Dir}.Socket())
	require.NoError(t, err)
	var info *core.InfoResult
	require.Eventually(t, func() bool {
		info, err = c.Info(ctx, core.InfoQuery{Package: "hello", Opinion: "o3"})
		return err == nil && len(info.Recipes[0].Report.Groups) == 2 && info.Recipes[0].Recipe.Builders == 4
	}, 60*time.Second, 200*time.Millisecond)
	rep := info.Recipes[0].Report
	require.True(t, rep.Conflict, "a trusted dissent is a conflict")
	require.NotEmpty(t, rep.Dissenters)
	evil := ds[2].Builder
	op := ds[2].Daemon.Opinion("hello/o3")
	res, _ := evil.Build(ctx, builder.Request{Package: "hello", Opinion: op})
	vr, err := c.Verify(ctx, core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: res.Artifacts[0].Name, SHA256: res.Artifacts[0].SHA256})
	require.NoError(t, err)
	require.Equal(t, consensus.DoNotInstall, vr.Verdict, vr.Reasons)
}

func TestDaemonRestartKeepsState(t *testing.T) {
	ds := daemontest.Start(t, 1, daemontest.Options{})
	ctx := context.Background()
	sock := config.Layout{Dir: ds[0].Dir}.Socket()
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
	require.NoError(t, ds[0].Stop())

	ds[0].Restart(t) // the same data dir and config, a fresh fake builder
	fb := ds[0].Builder
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
	ds := daemontest.Start(t, 1, daemontest.Options{})
	fi, err := os.Stat(config.Layout{Dir: ds[0].Dir}.Socket())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

// TestReloadRebuildsChangedOpinion: after an opinion file changes, SIGHUP
// (Reload) gives the subscription the new content's CID and a rebuild.
func TestReloadRebuildsChangedOpinion(t *testing.T) {
	ops := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(ops, "hello"), 0o755))
	for _, f := range []string{"o3.yaml", "o3.lock"} {
		b, err := os.ReadFile(filepath.Join(daemontest.Opinions(t), "hello", f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(ops, "hello", f), b, 0o644))
	}
	td := daemontest.StartOne(t, func(c *config.Config) { c.OpinionsDir = ops })
	attesttest.Eventually(t, 20*time.Second, "first build", func() bool { return td.Builder.Builds.Load() == 1 })
	before := td.Daemon.Opinion("hello/o3").CID()

	p := filepath.Join(ops, "hello", "o3.yaml")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(b), "revision: 1", "revision: 2", 1)), 0o644))
	td.Daemon.Reload(context.Background())
	attesttest.Eventually(t, 20*time.Second, "rebuild of the changed opinion", func() bool { return td.Builder.Builds.Load() == 2 })
	after := td.Daemon.Opinion("hello/o3")
	require.NotEqual(t, before, after.CID())
	require.Equal(t, 2, after.Revision)
	td.Daemon.Reload(context.Background()) // unchanged: no third build
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, int32(2), td.Builder.Builds.Load())
}
