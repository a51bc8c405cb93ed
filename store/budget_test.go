package store

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
)

func TestBudgetPerKey(t *testing.T) {
	keys := testKeys(t, 2)
	flood, trusted := keys[0], keys[1]
	for _, tc := range []struct {
		name   string
		budget Budget
		claims func() []*attest.Claim // by the flooding key
		stored int
		why    string
	}{
		{"claims per key", Budget{ClaimsPerKey: 3},
			func() []*attest.Claim {
				var out []*attest.Claim
				for i := range 5 {
					out = append(out, mustSign(t, flood, spec{ts: i}))
				}
				return out
			}, 3, "3 claims (budget 3 per key)"},
		{"recipes per key", Budget{RecipesPerKey: 2},
			func() []*attest.Claim {
				var out []*attest.Claim
				for i := range 4 {
					out = append(out, mustSign(t, flood, spec{recipe: i}))
				}
				// a new claim for a recipe already held still fits
				return append(out, mustSign(t, flood, spec{recipe: 1, ts: 9}))
			}, 3, "2 recipes (budget 2 per key)"},
		{"bytes per key", Budget{BytesPerKey: 1},
			func() []*attest.Claim { return []*attest.Claim{mustSign(t, flood, spec{})} }, 0, "bytes of claims (budget 1 per key)"},
		{"store bytes", Budget{StoreBytes: 1},
			func() []*attest.Claim { return []*attest.Claim{mustSign(t, flood, spec{})} }, 0, "budget 1 for keys that do not vote"},
		{"negative disables", Budget{ClaimsPerKey: -1, RecipesPerKey: -1, BytesPerKey: -1, StoreBytes: -1},
			func() []*attest.Claim {
				var out []*attest.Claim
				for i := range 5 {
					out = append(out, mustSign(t, flood, spec{ts: i}))
				}
				return out
			}, 5, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustOpenStore(t, WithBudget(tc.budget))
			_, err := s.PutKey(trusted.PublicKey(), attest.TrustTrusted, "test")
			require.NoError(t, err)

			res := mustIngest(t, s, tc.claims()...)
			stored := 0
			for _, r := range res {
				if r.Status.Stored() {
					stored++
					continue
				}
				require.Equal(t, StatusOverBudget, r.Status)
				require.True(t, errors.Is(r.Err, ErrOverBudget), r.Err)
				assert.Contains(t, r.Err.Error(), tc.why)
				_, ok, err := s.Get(r.ID)
				require.NoError(t, err)
				assert.False(t, ok, "a refused claim is not stored")
			}
			assert.Equal(t, tc.stored, stored)

			// A trusted key is never refused, whatever the budget.
			for i := range 4 {
				r := mustIngest(t, s, mustSign(t, trusted, spec{pkg: "tree", ts: 10 + i, recipe: i}))
				assert.Equal(t, StatusNew, r[0].Status, "trusted claim %d", i)
			}
			if tc.stored < len(res) {
				assert.NotZero(t, s.IngestCounts()["over_budget"])
			}
		})
	}
}

// Migration 3 → 4 counts what each key already holds, so a key cannot
// escape its budget by claims made before the upgrade.
func TestKeyCountsMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s := mustOpenPath(t, path)
	a := testKeys(t, 1)[0]
	mustIngest(t, s, mustSign(t, a, spec{}), mustSign(t, a, spec{ts: 1}), mustSign(t, a, spec{recipe: 1}))
	require.NoError(t, s.Close())
	downgrade(t, path, 3, func(tx *bolt.Tx) error { return tx.DeleteBucket(bktKeyCounts) })

	s = mustOpenPath(t, path, WithBudget(Budget{ClaimsPerKey: 4, RecipesPerKey: 2}))
	res, err := s.Ingest(context.Background(), mustSign(t, a, spec{recipe: 2}), mustSign(t, a, spec{ts: 5}), mustSign(t, a, spec{ts: 6}))
	require.NoError(t, err)
	assert.Equal(t, []Status{StatusOverBudget, StatusNew, StatusOverBudget}, statuses(res))
	assert.Contains(t, res[0].Err.Error(), "2 recipes")
	assert.Contains(t, res[2].Err.Error(), "4 claims")
}

// Keys the operator trusts by config (WithExempt) are never refused, even
// with no stored key record or trust level.
func TestBudgetExempt(t *testing.T) {
	keys := testKeys(t, 2)
	s := mustOpenStore(t, WithBudget(Budget{ClaimsPerKey: 1}), WithExempt(keys[0].Fingerprint()))
	assert.True(t, s.Exempt(keys[0].Fingerprint()))
	res := mustIngest(t, s, mustSign(t, keys[0], spec{}), mustSign(t, keys[0], spec{ts: 1}), mustSign(t, keys[1], spec{}), mustSign(t, keys[1], spec{ts: 1}))
	assert.Equal(t, []Status{StatusNew, StatusNew, StatusNew, StatusOverBudget}, statuses(res))
}

// TestBudgetVoters: keys the trust view says vote (certified) pass the
// budget while they are in the set, and are held to it once they leave.
func TestBudgetVoters(t *testing.T) {
	keys := testKeys(t, 2)
	s := mustOpenStore(t, WithBudget(Budget{ClaimsPerKey: 1}))
	s.SetVoters([]string{strings.ToLower(keys[1].Fingerprint())})
	assert.True(t, s.Exempt(keys[1].Fingerprint()))
	res := mustIngest(t, s, mustSign(t, keys[1], spec{}), mustSign(t, keys[1], spec{ts: 1}), mustSign(t, keys[0], spec{}), mustSign(t, keys[0], spec{ts: 1}))
	assert.Equal(t, []Status{StatusNew, StatusNew, StatusNew, StatusOverBudget}, statuses(res))
	s.SetVoters(nil) // certification revoked or out of trust_hops
	assert.False(t, s.Exempt(keys[1].Fingerprint()))
	res = mustIngest(t, s, mustSign(t, keys[1], spec{ts: 2}))
	assert.Equal(t, []Status{StatusOverBudget}, statuses(res))
}

// poolRefused checks that r was refused by the pool and not stored.
func poolRefused(t *testing.T, s *Store, r IngestResult, why string) {
	t.Helper()
	require.Equal(t, StatusOverBudget, r.Status, "%s", r.Err)
	require.ErrorIs(t, r.Err, ErrOverBudget)
	assert.Contains(t, r.Err.Error(), why)
	_, ok, err := s.Get(r.ID)
	require.NoError(t, err)
	assert.False(t, ok, "a refused claim is not stored")
}

// TestBudgetPool: keys that do not vote share one pool, so fresh keys,
// each within its own budget, cannot together fill the store; past the
// pool their claims are refused while keys that vote (stored trusted,
// exempt by config, certified) are still stored and do not count.
func TestBudgetPool(t *testing.T) {
	keys := testKeys(t, 15)
	fresh, trusted, exempt, certified := keys[:12], keys[12], keys[13], keys[14]
	for _, tc := range []struct {
		name   string
		budget Budget
		// claims by the fresh keys, in order: key i's claim j
		perKey, nKeys int
		stored        func(t *testing.T, res []IngestResult) // checks the fresh keys' results
		why           string
	}{
		{"bytes", Budget{PoolBytes: 20 << 10}, 5, 12, func(t *testing.T, res []IngestResult) {
			n := 0
			for _, r := range res {
				if r.Status.Stored() {
					n++
				}
			}
			// ~600 bytes a claim: 60 claims do not fit in 20 KiB
			t.Logf("%d of %d claims of %d fresh keys stored", n, len(res), 12)
			assert.Less(t, n, len(res), "some fresh claims refused")
			assert.Greater(t, n, 10, "the pool holds fresh claims up to its size")
		}, "(pool 20480)"},
		{"keys", Budget{PoolKeys: 3}, 2, 5, func(t *testing.T, res []IngestResult) {
			// key i's claim j is res[i*2+j]: keys 0-2 hold claims, 3 and 4 are refused
			assert.Equal(t, []Status{StatusNew, StatusNew, StatusNew, StatusNew, StatusNew, StatusNew,
				StatusOverBudget, StatusOverBudget, StatusOverBudget, StatusOverBudget}, statuses(res))
		}, "3 keys that do not vote hold claims (pool 3 keys)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustOpenStore(t, WithBudget(tc.budget), WithExempt(exempt.Fingerprint()))
			_, err := s.PutKey(trusted.PublicKey(), attest.TrustTrusted, "test")
			require.NoError(t, err)
			s.SetVoters([]string{certified.Fingerprint()})

			var res []IngestResult
			for i, k := range fresh[:tc.nKeys] {
				for j := range tc.perKey {
					// one claim per call, as gossip delivers them
					res = append(res, mustIngest(t, s, mustSign(t, k, spec{pkg: "p" + string(rune('a'+i)), ts: j, recipe: j}))...)
				}
			}
			tc.stored(t, res)
			for _, r := range res {
				if !r.Status.Stored() {
					poolRefused(t, s, r, tc.why)
					assert.Contains(t, r.Err.Error(), "keys that do not vote")
				}
			}
			held, n, err := s.PoolUsage()
			require.NoError(t, err)
			t.Logf("pool: %d bytes, %d keys", held, n)
			if tc.budget.PoolBytes > 0 {
				assert.LessOrEqual(t, held, tc.budget.PoolBytes)
			}
			if tc.budget.PoolKeys > 0 {
				assert.Equal(t, tc.budget.PoolKeys, n)
			}

			// Keys that vote are stored past the pool, and do not count in it.
			for i, k := range []*attest.Identity{trusted, exempt, certified} {
				for j := range 5 {
					r := mustIngest(t, s, mustSign(t, k, spec{pkg: "tree", ts: 10*i + j, recipe: j}))
					assert.Equal(t, StatusNew, r[0].Status, "voting key %d claim %d: %v", i, j, r[0].Err)
				}
			}
			held2, n2, err := s.PoolUsage()
			require.NoError(t, err)
			assert.Equal(t, []int64{held, n}, []int64{held2, n2}, "claims of keys that vote are not in the pool")
			// Still full for keys that do not vote.
			r := mustIngest(t, s, mustSign(t, fresh[11], spec{pkg: "late", ts: 99}))
			poolRefused(t, s, r[0], tc.why)
			assert.NotZero(t, s.IngestCounts()["over_budget"])
		})
	}
}

// TestBudgetPoolKeysExisting: past PoolKeys, keys already in the pool keep
// storing claims (within the pool's bytes and their own budget); only new
// keys are refused.
func TestBudgetPoolKeysExisting(t *testing.T) {
	keys := testKeys(t, 3)
	s := mustOpenStore(t, WithBudget(Budget{PoolKeys: 2}))
	res := mustIngest(t, s, mustSign(t, keys[0], spec{}), mustSign(t, keys[1], spec{}), mustSign(t, keys[2], spec{}),
		mustSign(t, keys[0], spec{ts: 1}), mustSign(t, keys[1], spec{recipe: 1}))
	assert.Equal(t, []Status{StatusNew, StatusNew, StatusOverBudget, StatusNew, StatusNew}, statuses(res))
	poolRefused(t, s, res[2], "2 keys that do not vote hold claims (pool 2 keys)")
}

// TestBudgetPoolKeyStartsToVote: a key that comes to vote leaves the pool
// (its bytes are released) at its next claim, which makes room for fresh
// keys; a key that stops voting joins it again with all its bytes.
func TestBudgetPoolKeyStartsToVote(t *testing.T) {
	keys := testKeys(t, 2)
	a, b := keys[0], keys[1]
	path := filepath.Join(t.TempDir(), "s.db")
	s := mustOpenPath(t, path, WithBudget(Budget{PoolBytes: -1}))
	mustIngest(t, s, mustSign(t, a, spec{}), mustSign(t, a, spec{ts: 1}), mustSign(t, a, spec{ts: 2}))
	held, n, err := s.PoolUsage()
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	require.NoError(t, s.Close())

	// The pool is full with a's claims: b is refused.
	s = mustOpenPath(t, path, WithBudget(Budget{PoolBytes: held}))
	res := mustIngest(t, s, mustSign(t, b, spec{}))
	poolRefused(t, s, res[0], "keys that do not vote hold")

	require.NoError(t, s.SetTrust(a.Fingerprint(), attest.TrustTrusted, ""))
	res = mustIngest(t, s, mustSign(t, a, spec{ts: 3}), mustSign(t, b, spec{}))
	assert.Equal(t, []Status{StatusNew, StatusNew}, statuses(res))
	heldB, n, err := s.PoolUsage()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "only b is in the pool")
	assert.Less(t, heldB, held)

	// a stops voting: its next claim would put all its bytes back in the pool.
	require.NoError(t, s.SetTrust(a.Fingerprint(), attest.TrustUnvetted, ""))
	res = mustIngest(t, s, mustSign(t, a, spec{ts: 4}))
	poolRefused(t, s, res[0], "keys that do not vote hold")
}

// TestBudgetPoolSurvivesReopen: the pool's totals are stored with the
// claims, so a restart does not give fresh keys a new pool.
func TestBudgetPoolSurvivesReopen(t *testing.T) {
	keys := testKeys(t, 12)
	budget := WithBudget(Budget{PoolBytes: 8 << 10})
	path := filepath.Join(t.TempDir(), "s.db")
	s := mustOpenPath(t, path, budget)
	stored := 0
	for i, k := range keys[:11] {
		for j := range 3 {
			r := mustIngest(t, s, mustSign(t, k, spec{ts: j, recipe: i}))
			if r[0].Status.Stored() {
				stored++
			}
		}
	}
	held, n, err := s.PoolUsage()
	require.NoError(t, err)
	require.Less(t, stored, 33, "the pool filled")
	require.NoError(t, s.Close())

	s = mustOpenPath(t, path, budget)
	held2, n2, err := s.PoolUsage()
	require.NoError(t, err)
	assert.Equal(t, []int64{held, n}, []int64{held2, n2})
	res := mustIngest(t, s, mustSign(t, keys[11], spec{pkg: "after"}), mustSign(t, keys[0], spec{pkg: "after"}))
	poolRefused(t, s, res[0], "(pool 8192)")
	poolRefused(t, s, res[1], "(pool 8192)")
}

// Migration 5 → 6 sums what the keys whose record does not vote hold, so
// an upgraded store starts with its pool as full as it is.
func TestBudgetPoolMigration(t *testing.T) {
	keys := testKeys(t, 4)
	trusted, fresh := keys[0], keys[1:]
	path := filepath.Join(t.TempDir(), "s.db")
	s := mustOpenPath(t, path)
	_, err := s.PutKey(trusted.PublicKey(), attest.TrustTrusted, "test")
	require.NoError(t, err)
	for i, k := range keys {
		mustIngest(t, s, mustSign(t, k, spec{ts: i}), mustSign(t, k, spec{recipe: 1, ts: i}))
	}
	held, n, err := s.PoolUsage()
	require.NoError(t, err)
	require.Equal(t, int64(3), n)
	require.NoError(t, s.Close())
	downgrade(t, path, 5, func(tx *bolt.Tx) error {
		kc := tx.Bucket(bktKeyCounts)
		var ks [][]byte
		require.NoError(t, kc.ForEach(func(k, _ []byte) error { ks = append(ks, bytes.Clone(k)); return nil }))
		for _, k := range ks {
			require.NoError(t, kc.Put(k, kc.Get(k)[:24])) // schema 5: no flags
		}
		require.NoError(t, tx.Bucket(bktMeta).Delete(metaPoolBytes))
		return tx.Bucket(bktMeta).Delete(metaPoolKeys)
	})

	s = mustOpenPath(t, path, WithBudget(Budget{PoolBytes: held}))
	held2, n2, err := s.PoolUsage()
	require.NoError(t, err)
	assert.Equal(t, []int64{held, 3}, []int64{held2, n2})
	res := mustIngest(t, s, mustSign(t, fresh[0], spec{pkg: "after"}), mustSign(t, trusted, spec{pkg: "after"}))
	poolRefused(t, s, res[0], "keys that do not vote hold")
	assert.Equal(t, StatusNew, res[1].Status)
}

// A claim that brings a key the store does not hold charges the key's
// record to the key (and so to the pool): a fresh key's bytes are not free.
func TestBudgetChargesKeyBytes(t *testing.T) {
	id := attesttest.Fresh(t, 1)[0]
	s := mustOpenStore(t)
	wire := attesttest.Wire(t, attesttest.Claim(t, id))
	res, err := s.VerifyAndIngest(context.Background(), attest.VerifyOptions{}, wire)
	require.NoError(t, err)
	require.Equal(t, StatusNew, res[0].Status, "%v", res[0].Err)
	held, n, err := s.PoolUsage()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	ki, err := s.GetKey(id.Fingerprint())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, held, int64(len(ki.PublicKey)), "the key record counts")
	assert.Greater(t, held, int64(len(ki.PublicKey)), "and the claim too")
	// A second claim of the same key charges only the claim.
	wire2 := attesttest.Wire(t, attesttest.Claim(t, id, func(st *attest.Statement) { st.Timestamp = st.Timestamp.Add(-time.Hour) }))
	res, err = s.VerifyAndIngest(context.Background(), attest.VerifyOptions{}, wire2)
	require.NoError(t, err)
	require.Equal(t, StatusNew, res[0].Status, "%v", res[0].Err)
	held2, _, err := s.PoolUsage()
	require.NoError(t, err)
	assert.Less(t, held2-held, int64(len(ki.PublicKey)), "the key is charged once")
}
