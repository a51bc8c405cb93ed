package daemons

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder/buildertest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/daemon/daemontest"
)

// TestRepoServesVerifiedPackages: three nodes build hello/o3 (real .deb
// files) and agree; a fourth node that builds nothing is asked to mirror
// hello/o3: it fetches the .deb from a peer by hash, checks it against the
// consensus and serves it in its apt repository with a signed InRelease.
// A node whose repository is off says how to turn it on.
func TestRepoServesVerifiedPackages(t *testing.T) {
	ds := daemontest.Start(t, 4, daemontest.Options{Config: func(i int, c *config.Config) {
		if i == 3 {
			off := false
			c.Builds.Enabled = &off
			c.Subscribe = nil
			c.Repo.Addr = "127.0.0.1:0"
		}
	}, Builder: func(_ int, fb *buildertest.Fake) { fb.RealDebs = t }})
	mirrorNode := ds[3]
	api := mirrorNode.API()
	ctx := context.Background()

	var res *core.MirrorResult
	require.Eventually(t, func() bool {
		var err error
		res, err = api.Mirror(ctx, "hello/o3")
		require.NoError(t, err)
		if len(res.Packages) != 1 {
			t.Logf("not yet: %s", res.Reason)
		}
		return len(res.Packages) == 1
	}, 60*time.Second, time.Second, "mirror never served hello/o3")
	require.Zero(t, mirrorNode.Builder.Builds.Load(), "the mirror built nothing itself")
	p := res.Packages[0]
	cid, err := vocab.CIDOfSHA256Hex(p.SHA256)
	require.NoError(t, err)
	held, err := mirrorNode.API().Store().HasBlob(cid)
	require.NoError(t, err)
	require.True(t, held, "fetched from a peer and kept")

	get := func(path string) string {
		resp, err := http.Get(res.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		return string(b)
	}
	require.Contains(t, get("/dists/lebowski/InRelease"), "BEGIN PGP SIGNED MESSAGE")
	pk := get("/dists/lebowski/main/binary-amd64/Packages")
	require.Contains(t, pk, "Package: hello\n")
	require.Contains(t, pk, "SHA256: "+p.SHA256)
	var pool string
	for _, l := range strings.Split(pk, "\n") {
		if f, ok := strings.CutPrefix(l, "Filename: "); ok {
			pool = f
		}
	}
	require.Equal(t, p.SHA256, vocab.SHA256Hex([]byte(get("/"+pool))))

	// A node without repo.addr refuses with the fix.
	_, err = ds[0].API().Mirror(ctx, "hello/o3")
	require.ErrorContains(t, err, "set repo.addr")
	// Nothing agreed on for another package: nothing served, and why.
	res, err = api.Mirror(ctx, "nano")
	require.NoError(t, err)
	require.Empty(t, res.Packages)
	require.Contains(t, res.Reason, "no claims for nano")
}
