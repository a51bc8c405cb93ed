package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/lebowski-dist/lebowski/attest"
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
