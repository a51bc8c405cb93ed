package daemons

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/daemon/daemontest"
)

// TestRedFlagTravels: three nodes agree on hello/o3; node 0 is given a
// tampered copy of the .deb and signs a red flag (what `lebowski verify`
// does). Nodes 1 and 2 show it in info within seconds — the consensus and
// the honest file's SAFE verdict unchanged — and their verdict on the
// tampered hash names it.
func TestRedFlagTravels(t *testing.T) {
	ds := daemontest.Start(t, 3, daemontest.Options{})
	daemontest.WaitConsensus(t, ds, "hello/o3", 3)
	ctx := context.Background()
	info, err := ds[0].Client(t).Info(ctx, core.InfoQuery{Package: "hello", Opinion: "o3"})
	require.NoError(t, err)
	ri := info.Recipes[0]
	art := ri.Report.Consensus.Artifacts[0]
	tampered := attesttest.Hex("tampered copy")

	start := time.Now()
	rr, err := ds[0].Client(t).ReportMismatch(ctx, core.Mismatch{RecipeID: ri.Recipe.RecipeID, File: art.Name, Observed: tampered, Expected: art.SHA256, Reason: "verify: differs from the consensus"})
	require.NoError(t, err)
	require.True(t, rr.Published)
	for i := 1; i < 3; i++ {
		c := ds[i].Client(t)
		var got *core.InfoResult
		require.Eventually(t, func() bool {
			got, err = c.Info(ctx, core.InfoQuery{Package: "hello", Opinion: "o3"})
			return err == nil && len(got.Recipes[0].Report.RedFlags) == 1
		}, 10*time.Second, 50*time.Millisecond, "red flag at node %d", i)
		t.Logf("node %d shows the red flag %s after %s", i, rr.ID, time.Since(start).Round(time.Millisecond))
		rep := got.Recipes[0].Report
		require.Equal(t, attest.TrustTrusted, rep.RedFlags[0].Level)
		require.Equal(t, tampered, rep.RedFlags[0].Observed)
		require.Len(t, rep.Consensus.Trusted, 3, "the reporter's build still counts")
		v, err := c.Verify(ctx, core.VerifyRequest{Package: "hello", DebianVersion: ri.Recipe.DebianVersion, Opinion: "o3", FileName: art.Name, SHA256: art.SHA256})
		require.NoError(t, err)
		require.Equal(t, consensus.Safe, v.Verdict, "%v", v.Reasons)
		v, err = c.Verify(ctx, core.VerifyRequest{Package: "hello", DebianVersion: ri.Recipe.DebianVersion, Opinion: "o3", FileName: art.Name, SHA256: tampered})
		require.NoError(t, err)
		require.Equal(t, consensus.DoNotInstall, v.Verdict)
		require.Contains(t, v.Reasons[len(v.Reasons)-1], "RED FLAG")
	}
}
