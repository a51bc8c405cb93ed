package daemons

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/daemon/daemontest"
	"github.com/lebowski-dist/lebowski/p2p"
	"github.com/lebowski-dist/lebowski/store"
)

// TestTrustTravelsBetweenDaemons: node 0 trusts node 1's key R; node 1
// certifies node 2's key B through its API (`lebowski key certify`) and
// node 0's trust view counts B as certified via R within seconds, without
// any import. Node 2 then revokes its key (`lebowski key revoke`) and
// node 0 sees B distrusted within seconds.
func TestTrustTravelsBetweenDaemons(t *testing.T) {
	ds := daemontest.Start(t, 3, daemontest.Options{Config: func(_ int, c *config.Config) {
		c.TrustedKeys = nil // trust comes from the key store only
		c.Subscribe = nil   // no rebuilds: keys only
	}})
	ctx := context.Background()
	r, b := ds[1].Identity(), ds[2].Identity()
	c0, c1, c2 := ds[0].Client(t), ds[1].Client(t), ds[2].Client(t)
	_, err := c0.ImportKey(ctx, r.PublicKey(), attest.TrustTrusted, "met node 1's operator")
	require.NoError(t, err)
	_, err = c1.ImportKey(ctx, b.PublicKey(), attest.TrustUnvetted, "node 2's key")
	require.NoError(t, err)
	// Gossipsub drops a publication to a peer before its first heartbeat
	// with it: wait for the score and the topic subscription.
	for _, i := range []int{1, 2} {
		require.Eventually(t, func() bool {
			if _, ok := ds[i].Daemon.Network().PeerScore(ds[0].Daemon.Network().ID()); !ok {
				return false
			}
			for _, p := range ds[i].Daemon.Network().TopicPeers(p2p.KeysTopic) {
				if p == ds[0].Daemon.Network().ID() {
					return true
				}
			}
			return false
		}, 20*time.Second, 20*time.Millisecond, "node %d sees node 0 on the keys topic", i)
	}

	evctx, stopEvents := context.WithCancel(ctx)
	defer stopEvents()
	events, err := c0.Events(evctx)
	require.NoError(t, err)
	start := time.Now()
	res, err := c1.CertifyKey(ctx, b.Fingerprint())
	require.NoError(t, err)
	require.True(t, res.Published)
	var k *core.KeyInfo
	require.Eventually(t, func() bool {
		k, err = c0.Key(ctx, b.Fingerprint())
		return err == nil && k.Trust == attest.TrustCertified
	}, 10*time.Second, 10*time.Millisecond, "B certified at node 0")
	t.Logf("node 0 counts B as certified %s after node 1 certified it", time.Since(start).Round(time.Millisecond))
	require.Equal(t, []string{r.Fingerprint()}, k.Via)
	require.Equal(t, attest.TrustUnknown, k.Stored, "learned from the network: the stored level is not raised")
	// The change is on node 0's event stream, with the peer it came from.
	var ev core.Event
	require.Eventually(t, func() bool {
		for {
			select {
			case ev = <-events:
				if ev.Type == core.EventKey && ev.Key == b.Fingerprint() {
					return true
				}
			default:
				return false
			}
		}
	}, 10*time.Second, 10*time.Millisecond, "key event at node 0")
	require.Equal(t, ds[1].Daemon.Network().ID().String(), ev.From)
	require.JSONEq(t, `{"change":"from the network: `+keyOutcome(t, ev)+`","trust":"certified"}`, string(ev.Data))

	start = time.Now()
	res, err = c2.RevokeKey(ctx, core.RevokeRequest{Reason: "retired"})
	require.NoError(t, err)
	require.True(t, res.Published)
	require.Eventually(t, func() bool {
		k, err = c0.Key(ctx, b.Fingerprint())
		return err == nil && k.Trust == attest.TrustDistrusted && k.Revocation != nil
	}, 10*time.Second, 10*time.Millisecond, "B revoked at node 0")
	t.Logf("node 0 sees B revoked %s after node 2 revoked it", time.Since(start).Round(time.Millisecond))
}

// keyOutcome is the store's merge outcome named in a key event's change.
func keyOutcome(t *testing.T, ev core.Event) string {
	t.Helper()
	var d map[string]string
	require.NoError(t, json.Unmarshal(ev.Data, &d))
	out, ok := strings.CutPrefix(d["change"], "from the network: ")
	require.True(t, ok, "change %q", d["change"])
	require.NotEmpty(t, out)
	return out
}

// TestOfflineRotationTravels: node 0 is stopped and its key K rotated
// offline (what `lebowski key rotate` does: K revoked naming S, S
// installed as builder.key). When node 0 starts again it announces S and,
// with it, K carrying the revocation: node 1, which trusts K and S, counts
// K's earlier claims as S's without any import.
func TestOfflineRotationTravels(t *testing.T) {
	ds := daemontest.Start(t, 2, daemontest.Options{Config: func(_ int, c *config.Config) { c.Subscribe = nil }})
	ctx := context.Background()
	k := ds[0].Identity()
	s := attesttest.Fresh(t, 1)[0]
	c1 := ds[1].Client(t)
	_, err := c1.ImportKey(ctx, s.PublicKey(), attest.TrustTrusted, "node 0's next key, met its operator")
	require.NoError(t, err)

	// Stop node 0 (its cleanup from daemontest.Start then does nothing).
	require.NoError(t, ds[0].Stop())
	l := config.Layout{Dir: ds[0].Dir}
	st, err := store.Open(l.StoreDB())
	require.NoError(t, err)
	_, err = st.PutKey(k.PublicKey(), attest.TrustOwn, "own key") // as key rotate's RevokeKey stores it
	require.NoError(t, err)
	rev, err := attest.Revoke(k, s.Fingerprint(), "rotated offline", false, time.Now())
	require.NoError(t, err)
	_, _, err = st.MergeKey(rev, "own key")
	require.NoError(t, err)
	// S acknowledges the rotation (key rotate's step 5).
	e, err := attest.ParsePublicKey(rev)
	require.NoError(t, err)
	require.NoError(t, attest.AcknowledgeRotation(s, e))
	ack, err := attest.SerializeKey(e)
	require.NoError(t, err)
	_, _, err = st.MergeKey(ack, "own key")
	require.NoError(t, err)
	require.NoError(t, st.Close())
	require.NoError(t, s.Save(l.BuilderKey(), true))

	st1, err := ds[1].API().Status(ctx)
	require.NoError(t, err)
	// Node 0 starts again, with the new key, bootstrapping from node 1.
	ds[0].RestartWith(t, func(c *config.Config) { c.Bootstrap = st1.Addrs[:1] })
	require.Equal(t, s.Fingerprint(), ds[0].Identity().Fingerprint(), "node 0 runs with the new key")
	start := time.Now()
	var ki *core.KeyInfo
	attesttest.Eventually(t, 30*time.Second, "K's rotation at node 1", func() bool {
		ki, err = c1.Key(ctx, k.Fingerprint())
		return err == nil && ki.Revocation != nil
	})
	t.Logf("node 1 learned the offline rotation %s after node 0 restarted", time.Since(start).Round(time.Millisecond))
	require.Equal(t, attest.TrustDistrusted, ki.Trust)
	require.Equal(t, s.Fingerprint(), ki.RotatedTo, "K's earlier claims count as S's at node 1")
}
