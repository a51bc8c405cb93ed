package integration

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/p2p"
	"github.com/lebowski-dist/lebowski/p2p/p2ptest"
	"github.com/lebowski-dist/lebowski/store"
)

// storeKeys is the daemon's key adapter in miniature: announcements go to
// store.MergeKey (which never raises trust), the node re-announces its
// own key as stored.
type storeKeys struct {
	st  *store.Store
	own string // "" when the node has no builder key
}

func (k storeKeys) MergeKey(_ context.Context, pub []byte, from string) (bool, error) {
	_, out, err := k.st.MergeKey(pub, "announced by "+from)
	return out.Changed(), err
}

func (k storeKeys) AnnounceKeys() [][]byte {
	if k.own == "" {
		return nil
	}
	ki, err := k.st.GetKey(k.own)
	if err != nil {
		return nil
	}
	return [][]byte{ki.PublicKey}
}

// keyNodes starts n nodes whose keys topic is backed by a bbolt store
// each; own names the builder key a node runs (it re-announces it).
func keyNodes(t *testing.T, n int, own map[int]string) ([]*tnode, []*store.Store) {
	t.Helper()
	nodes := make([]*tnode, n)
	stores := make([]*store.Store, n)
	for i := range n {
		st, err := store.Open(filepath.Join(t.TempDir(), "keys.db"), store.WithNoSync())
		require.NoError(t, err)
		t.Cleanup(func() { st.Close() })
		stores[i] = st
		mem := p2ptest.NewMemStore()
		cfg := nodeConfig()
		nd, err := p2p.New(context.Background(), cfg, p2p.Deps{Claims: mem, Blobs: mem, Inlet: p2ptest.Inlet{MemStore: mem, Keys: storeKeys{st: st, own: own[i]}}},
			p2p.WithScoreInspectPeriod(200*time.Millisecond))
		require.NoError(t, err)
		t.Cleanup(func() { _ = nd.Close() })
		nodes[i] = &tnode{Node: nd, store: mem, cfg: cfg}
	}
	return nodes, stores
}

// countsCertified is the trust view's test for one key at one node: the
// store holds key b with a certification by trusted key r that verifies
// (attest.CertifiedWithin, as core's certify), and no revocation.
func countsCertified(st *store.Store, r, b string) bool {
	rk, bk := st.Lookup(r), st.Lookup(b)
	if rk == nil || bk == nil {
		return false
	}
	ki, err := st.GetKey(b)
	if err != nil || ki.Revocation != nil {
		return false
	}
	return attest.CertifiedWithin(bk, map[string]*openpgp.Entity{r: rk}, nil, 1)
}

// Trust travels: node 1 (operator of key R) certifies builder key B and
// publishes it on the keys topic; every node that trusts R counts B as
// certified within seconds, nodes that do not trust R keep nothing. Then
// B's operator (node 3) revokes B and publishes it: B stops counting
// everywhere within seconds. 12 nodes, sparsely connected; no claims.
func TestTrustTravels(t *testing.T) {
	const n = 12
	ids := attesttest.Fresh(t, 2)
	r, b := ids[0], ids[1]
	// Node 1 runs R, node 3 runs B; nodes 10 and 11 do not trust R.
	nodes, stores := keyNodes(t, n, map[int]string{1: r.Fingerprint(), 3: b.Fingerprint()})
	require.NoError(t, putKey(stores[1], r.PublicKey(), attest.TrustOwn))
	require.NoError(t, putKey(stores[3], b.PublicKey(), attest.TrustOwn))
	for i := range n {
		if i != 1 && i < 10 {
			require.NoError(t, putKey(stores[i], r.PublicKey(), attest.TrustTrusted))
		}
	}
	trusting := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	sparseConnect(t, nodes, 3, mrand.New(mrand.NewPCG(7, 13)))
	attesttest.Eventually(t, 60*time.Second, "keys topic meshes", func() bool {
		for _, nd := range nodes {
			tp := len(nd.TopicPeers(p2p.KeysTopic))
			if tp == 0 || len(nd.MeshPeers(p2p.KeysTopic)) < min(tp, 3) {
				return false
			}
		}
		return true
	})

	// R's operator certifies B (what `lebowski key certify` does) and
	// publishes the key as its store holds it.
	e, err := attest.ParsePublicKey(b.PublicKey())
	require.NoError(t, err)
	require.NoError(t, attest.Certify(r, e))
	pub, err := attest.SerializeKey(e)
	require.NoError(t, err)
	_, out, err := stores[1].MergeKey(pub, "certified by this node")
	require.NoError(t, err)
	require.Equal(t, store.MergeNew, out, "node 1 did not hold B: R's certification makes it wanted")
	ki, err := stores[1].GetKey(b.Fingerprint())
	require.NoError(t, err)
	require.NoError(t, nodes[1].PublishKey(context.Background(), ki.PublicKey))
	took := waitAll(t, "B certified", trusting, func(i int) bool { return countsCertified(stores[i], r.Fingerprint(), b.Fingerprint()) })
	t.Logf("certification of B reached all %d nodes that trust R: slowest %s (p50 %s) after publishing", len(trusting), took[len(took)-1], took[len(took)/2])
	for _, i := range trusting {
		if i == 1 || i == 3 {
			continue
		}
		k, err := stores[i].GetKey(b.Fingerprint())
		require.NoError(t, err)
		assert.Equal(t, attest.TrustUnknown, k.Trust, "node %d: an announcement never raises the stored level", i)
	}
	k3, err := stores[3].GetKey(b.Fingerprint())
	require.NoError(t, err)
	assert.Equal(t, attest.TrustOwn, k3.Trust, "B's own node keeps its level and gains the certification")
	for _, i := range []int{10, 11} {
		_, err := stores[i].GetKey(b.Fingerprint())
		assert.True(t, errors.Is(err, store.ErrNotFound), "node %d does not trust R and keeps nothing: %v", i, err)
	}

	// B's operator revokes B and publishes the revoked key.
	rev, err := attest.Revoke(b, "", "retired", false, time.Now())
	require.NoError(t, err)
	_, out, err = stores[3].MergeKey(rev, "own key")
	require.NoError(t, err)
	require.Equal(t, store.MergeUpdated, out)
	ki, err = stores[3].GetKey(b.Fingerprint())
	require.NoError(t, err)
	require.NoError(t, nodes[3].PublishKey(context.Background(), ki.PublicKey))
	took = waitAll(t, "B revoked", trusting, func(i int) bool {
		k, err := stores[i].GetKey(b.Fingerprint())
		return err == nil && k.Revocation != nil && !countsCertified(stores[i], r.Fingerprint(), b.Fingerprint())
	})
	t.Logf("revocation of B reached all %d nodes: slowest %s (p50 %s) after publishing", len(trusting), took[len(took)-1], took[len(took)/2])
}

func putKey(st *store.Store, pub []byte, level attest.Trust) error {
	_, err := st.PutKey(pub, level, "test")
	return err
}

// waitAll waits (10 s at most) until cond holds at every node of idx and
// returns, sorted, how long each took.
func waitAll(t *testing.T, what string, idx []int, cond func(i int) bool) []time.Duration {
	t.Helper()
	start := time.Now()
	seen := map[int]time.Duration{}
	attesttest.Eventually(t, 10*time.Second, what+" at every node", func() bool {
		for _, i := range idx {
			if _, ok := seen[i]; !ok && cond(i) {
				seen[i] = time.Since(start)
			}
		}
		return len(seen) == len(idx)
	})
	var out []time.Duration
	for _, d := range seen {
		out = append(out, d.Round(time.Millisecond))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
