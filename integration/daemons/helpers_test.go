package daemons

// Helpers of the multi-daemon tests (daemons_*_test.go), which run real
// daemons in-process with the harness of package daemontest.

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/builder/buildertest"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/core/rpc"
)

// The honest hello/o3 build: buildertest's, shared with the other
// package's multi-daemon tests.
var (
	helloO3      = buildertest.HelloO3
	honestResult = buildertest.HonestResult
	signFor      = buildertest.SignFor
)

// verify asks c for the verdict on a hello/o3 .deb with hash sha.
func verify(t *testing.T, c *rpc.Client, sha string) *core.VerifyResult {
	t.Helper()
	name := honestResult(t).Artifacts[0].Name
	vr, err := c.Verify(context.Background(), core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: name, SHA256: sha})
	require.NoError(t, err)
	return vr
}
