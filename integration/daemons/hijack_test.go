package daemons

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/builder/buildertest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/core/rpc"
	"github.com/lebowski-dist/lebowski/cmd/node/daemon/daemontest"
	"github.com/lebowski-dist/lebowski/p2p"
	"github.com/lebowski-dist/lebowski/p2p/p2ptest"
)

// TestAttackRotationHijack is issue 20's hijack against running daemons:
// two daemons trust three builder keys T0..T2 that never signed anything.
// An attacker peer, connected to node 0 only, gossips claims by three
// fresh keys naming its own .deb, then announces their revocations naming
// T0..T2 as successors. Node 1 hears of it only through node 0 (relay and
// sync). Before the rotation rule asked for the revoked key's vote and the
// successor's acknowledgement, both nodes answered SAFE TO INSTALL for the
// attacker's file (3/3 trusted builders); now the rotations count nowhere.
func TestAttackRotationHijack(t *testing.T) {
	victims := attesttest.Fresh(t, 3)
	ds := daemontest.Start(t, 2, daemontest.Options{Config: func(_ int, c *config.Config) {
		c.Subscribe = []string{"hello/o3"}
		for _, v := range victims {
			c.TrustedKeys = append(c.TrustedKeys, v.Fingerprint())
		}
	}, Builder: func(_ int, fb *buildertest.Fake) { fb.NotApplicable = true }}) // no success claim of their own
	ctx := context.Background()
	clients := []*rpc.Client{ds[0].Client(t), ds[1].Client(t)}
	for i, v := range victims { // the operators imported the keys they trust
		for _, c := range clients {
			_, err := c.ImportKey(ctx, v.PublicKey(), attest.TrustTrusted, "operator")
			require.NoError(t, err, "victim %d", i)
		}
	}

	attacker, err := p2p.New(ctx, p2p.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, SyncInterval: -1, Subscribe: []string{"hello/o3"}},
		p2p.Deps{Claims: p2ptest.NewMemStore(), Keys: p2ptest.NewMemStore()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = attacker.Close() })
	st0, err := clients[0].Status(ctx)
	require.NoError(t, err)
	ai, err := peer.AddrInfoFromString(st0.Addrs[0])
	require.NoError(t, err)
	require.NoError(t, attacker.Connect(ctx, *ai))
	time.Sleep(2 * time.Second) // mesh forms

	evil := attesttest.Hex("attacker deb")
	fresh := attesttest.Fresh(t, 3)
	revokedAt := time.Now().Add(-5 * time.Minute).Truncate(time.Second)
	for _, x := range fresh {
		require.NoError(t, attacker.Publish(ctx, signFor(t, x, attacker.ID().String(), evil, revokedAt.Add(-time.Hour), nil)))
	}
	for i, c := range clients {
		require.Eventually(t, func() bool {
			for _, x := range fresh {
				if _, err := c.Key(ctx, x.Fingerprint()); err != nil {
					return false
				}
			}
			return true
		}, 30*time.Second, 100*time.Millisecond, "node %d stores the attacker's claims and keys", i)
	}
	for i, x := range fresh {
		pub, err := attest.Revoke(x, victims[i].Fingerprint(), "rotated", false, revokedAt)
		require.NoError(t, err)
		require.NoError(t, attacker.PublishKey(ctx, pub))
	}
	for i, c := range clients {
		require.Eventually(t, func() bool {
			for _, x := range fresh {
				if ki, err := c.Key(ctx, x.Fingerprint()); err != nil || ki.Revocation == nil {
					return false
				}
			}
			return true
		}, 30*time.Second, 100*time.Millisecond, "node %d learns the revocations", i)
		for _, x := range fresh {
			ki, err := c.Key(ctx, x.Fingerprint())
			require.NoError(t, err)
			assert.Empty(t, ki.RotatedTo, "node %d: a stranger's key passes on no vote", i)
		}
		vr := verify(t, c, evil)
		assert.NotEqual(t, consensus.Safe, vr.Verdict, "node %d: %v", i, vr.Reasons)
		info, err := c.Info(ctx, core.InfoQuery{Package: "hello", Opinion: "o3"})
		require.NoError(t, err)
		assert.Nil(t, info.Recipes[0].Report.Consensus, "node %d: no trusted builder agrees on anything", i)
	}
}
