package daemons

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/builder/buildertest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/daemon/daemontest"
)

// TestUnreproducibleAndNotApplicableAreSigned: node 0 runs with
// `rebuild: twice` and an unreproducible package: it signs
// "unreproducible" with both hash sets and the diffoscope report's CID,
// and node 1 fetches that report from node 0. Node 2's opinion does not
// apply: it signs a failed build with the reason instead of dropping it.
func TestUnreproducibleAndNotApplicableAreSigned(t *testing.T) {
	if _, err := exec.LookPath("diffoscope"); err != nil {
		t.Fatalf("diffoscope not installed (.ci/install-deps installs diffoscope-minimal): %v", err)
	}
	ds := daemontest.Start(t, 3, daemontest.Options{Config: func(i int, c *config.Config) {
		if i == 0 {
			c.Rebuild = "twice"
		}
	}, Builder: func(i int, fb *buildertest.Fake) {
		fb.Flaky = i == 0
		fb.NotApplicable = i == 2
	}})
	ctx := context.Background()
	claimOf := func(api core.API, builder string, want attest.Result) *attest.Statement {
		var st *attest.Statement
		require.Eventually(t, func() bool {
			rows, err := api.Claims(ctx, core.ClaimsQuery{Package: "hello"})
			if err != nil {
				return false
			}
			for _, r := range rows {
				if r.Builder == builder && r.Result == want {
					d, err := api.Claim(ctx, r.ID)
					if err == nil {
						st = d.Statement
						return true
					}
				}
			}
			return false
		}, 30*time.Second, 100*time.Millisecond, "no %s claim by %s", want, builder)
		return st
	}
	fpr := func(i int) string {
		st, err := ds[i].API().Status(ctx)
		require.NoError(t, err)
		return st.Builder
	}
	at1 := ds[1].API()

	st := claimOf(at1, fpr(0), attest.ResultUnreproducible)
	require.Len(t, st.Artifacts, 1)
	require.Len(t, st.SecondArtifacts, 1)
	require.NotEqual(t, st.Artifacts[0].SHA256, st.SecondArtifacts[0].SHA256)
	require.NotEmpty(t, st.DiffoscopeCID)
	require.Equal(t, int32(2), ds[0].Builder.Builds.Load(), "built twice")
	report, err := at1.FetchBlob(ctx, st.DiffoscopeCID)
	require.NoError(t, err, "node 1 fetches the diffoscope report from node 0")
	require.True(t, strings.Contains(string(report), "built at step"), "a diffoscope report of the two builds:\n%s", report)

	st = claimOf(at1, fpr(2), attest.ResultFailed)
	require.Contains(t, st.Reason, "does not apply")
}
