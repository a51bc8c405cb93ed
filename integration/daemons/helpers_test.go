package daemons

// Helpers of the multi-daemon tests (daemons_*_test.go), which run real
// daemons in-process with the harness of package daemontest.

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/builder/buildertest"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/core/rpc"
	"github.com/lebowski-dist/lebowski/cmd/node/daemon/daemontest"
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
	o3Once.Do(func() { o3Once.o, o3Once.err = opinions.Find(daemontest.Opinions(t), "hello/o3") })
	require.NoError(t, o3Once.err)
	c := *o3Once.o
	return &c
}

// honestResult is what every honest fake builder produces for hello/o3.
func honestResult(t *testing.T) *builder.Result {
	t.Helper()
	res, err := (&buildertest.Fake{}).Build(context.Background(), builder.Request{Package: "hello", Opinion: helloO3(t)})
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

// verify asks c for the verdict on a hello/o3 .deb with hash sha.
func verify(t *testing.T, c *rpc.Client, sha string) *core.VerifyResult {
	t.Helper()
	name := honestResult(t).Artifacts[0].Name
	vr, err := c.Verify(context.Background(), core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: name, SHA256: sha})
	require.NoError(t, err)
	return vr
}
