package daemons

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/cmd/node/daemon/daemontest"
)

// TestHarnessConnectsAndRestarts checks the daemontest harness itself:
// three nodes connect (to node 0, their bootstrap) and agree on hello/o3; node 2, restarted, keeps its
// builder key and rejoins through node 0.
func TestHarnessConnectsAndRestarts(t *testing.T) {
	ds := daemontest.Start(t, 3, daemontest.Options{})
	daemontest.WaitConnected(t, ds, 1) // each bootstrapped from node 0
	daemontest.WaitConsensus(t, ds, "hello/o3", 3)
	fpr := ds[2].Identity().Fingerprint()
	ds[2].Restart(t)
	require.Equal(t, fpr, ds[2].Identity().Fingerprint(), "the same data dir, the same key")
	daemontest.WaitConnected(t, ds[2:], 1)
	daemontest.WaitConsensus(t, ds[2:], "hello/o3", 3)
}
