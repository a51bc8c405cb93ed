package buildertest

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/opinions"
)

// The honest hello/o3 build of the multi-daemon tests (package daemon's
// and integration/daemons'): one copy of the opinion, the result every
// honest Fake produces, and claims signed for it.

// RepoOpinions is the repository's opinions directory: the test's working
// directory, then its parents up to the one holding go.mod.
func RepoOpinions(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "opinions")
		}
		up := filepath.Dir(dir)
		require.NotEqual(t, dir, up, "no go.mod above the test's directory")
		dir = up
	}
}

var o3Once struct {
	sync.Once
	o   *opinions.Opinion
	err error
}

// HelloO3 returns a copy of the repository's hello/o3 opinion, as the
// daemons load it (read once per test binary: loading costs ~4 ms).
func HelloO3(t testing.TB) *opinions.Opinion {
	t.Helper()
	o3Once.Do(func() { o3Once.o, o3Once.err = opinions.Find(RepoOpinions(t), "hello/o3") })
	require.NoError(t, o3Once.err)
	c := *o3Once.o
	return &c
}

// HonestResult is what every honest Fake produces for hello/o3.
func HonestResult(t testing.TB) *builder.Result {
	t.Helper()
	res, err := (&Fake{}).Build(context.Background(), builder.Request{Package: "hello", Opinion: HelloO3(t)})
	require.NoError(t, err)
	return res
}

// SignFor signs a success claim for the honest hello/o3 recipe with the
// given artifact hash; mod may change the result and the opinion before
// signing.
func SignFor(t testing.TB, id *attest.Identity, peerID, sha string, ts time.Time, mod func(*builder.Result, *opinions.Opinion)) *attest.Claim {
	t.Helper()
	res := HonestResult(t)
	res.Artifacts = []builder.Output{{Name: res.Artifacts[0].Name, SHA256: sha}}
	o := HelloO3(t)
	if mod != nil {
		mod(res, o)
	}
	st := &attest.Statement{Type: attest.TypeRebuildV1, Package: res.Recipe.Source, Version: res.BinaryVersion, DebianVersion: res.Recipe.DebianVersion,
		Suite: res.Recipe.Suite, Arch: res.Recipe.Arch, Opinion: builder.OpinionRef(o), DebianSourceSHA256: res.Recipe.SourceSHA256,
		ContainerDigest: res.Recipe.ImageDigest, RecipeID: res.Recipe.ID(), Result: res.Status, PeerID: peerID, Timestamp: ts}
	for _, a := range res.Artifacts {
		st.Artifacts = append(st.Artifacts, attest.Artifact{Name: a.Name, SHA256: a.SHA256})
	}
	return attesttest.Sign(t, id, st)
}
