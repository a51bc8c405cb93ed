package store

import (
	"bytes"
	"encoding/json"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/lebowski-dist/lebowski/attest"
)

// votersFromClaims derives what Voters must return from the claim
// summaries: per recipe, the distinct builders of claims that are not
// mismatch reports, with the earliest such claim's timestamp.
func votersFromClaims(t *testing.T, s *Store, pkg, ver string) map[string]map[string]time.Time {
	t.Helper()
	rcs, err := s.ByPackage(pkg, ver)
	require.NoError(t, err)
	out := map[string]map[string]time.Time{}
	for _, rc := range rcs {
		m := map[string]time.Time{}
		for _, c := range rc.Claims {
			if c.Result == attest.ResultMismatch {
				continue
			}
			if t0, ok := m[c.Builder]; !ok || c.Timestamp.Before(t0) {
				m[c.Builder] = c.Timestamp
			}
		}
		out[rc.Recipe.RecipeID] = m
	}
	return out
}

func votersOf(t *testing.T, s *Store, pkg, ver string) map[string]map[string]time.Time {
	t.Helper()
	rvs, err := s.Voters(pkg, ver)
	require.NoError(t, err)
	out := map[string]map[string]time.Time{}
	for _, rv := range rvs {
		m := map[string]time.Time{}
		for _, v := range rv.Voters {
			_, dup := m[v.Builder]
			require.False(t, dup, "builder %s listed twice for %s", v.Builder, rv.Recipe.RecipeID)
			m[v.Builder] = v.First
		}
		assert.Equal(t, rv.Recipe.Voters, len(rv.Voters))
		out[rv.Recipe.RecipeID] = m
	}
	return out
}

// fillVoters stores claims that exercise the voter lists: more voters than
// one chunk holds, arriving one per transaction and many per transaction;
// repeated claims of a key; a key whose only claim is a mismatch report
// (no vote); a key that reports a mismatch, then votes; another Debian
// version.
func fillVoters(t *testing.T, s *Store) {
	t.Helper()
	keys := testKeys(t, 40)
	for i := 0; i < 10; i++ { // one per transaction
		mustIngest(t, s, mustSign(t, keys[i], spec{ts: 100 + i}))
	}
	var batch []*attest.Claim
	for i := 10; i < 40; i++ { // crosses the 32-entry chunk in one transaction
		batch = append(batch, mustSign(t, keys[i], spec{ts: 100 + i}))
	}
	batch = append(batch, mustSign(t, keys[0], spec{ts: 50}), mustSign(t, keys[1], spec{ts: 200, result: attest.ResultFailed}))
	mustIngest(t, s, batch...)
	mustIngest(t, s,
		mustSign(t, keys[39], spec{recipe: 1, ts: 10, result: attest.ResultMismatch}),
		mustSign(t, keys[38], spec{recipe: 1, ts: 11, result: attest.ResultMismatch}),
	)
	mustIngest(t, s,
		mustSign(t, keys[38], spec{recipe: 1, ts: 12, result: attest.ResultFailed}),
		mustSign(t, keys[37], spec{recipe: 1, ts: 13}),
		mustSign(t, keys[36], spec{debver: "2.10-4", ts: 14}),
	)
}

func TestVotersFollowClaims(t *testing.T) {
	s := mustOpenStore(t)
	fillVoters(t, s)
	for _, ver := range []string{"", "2.10-3", "2.10-4"} {
		want := votersFromClaims(t, s, "hello", ver)
		got := votersOf(t, s, "hello", ver)
		// First is the first voting claim *stored*: keys[0]'s ts 50 claim
		// came after its ts 100 one.
		k0 := testKeys(t, 1)[0].Fingerprint()
		for _, m := range want {
			if ts, ok := m[k0]; ok {
				require.True(t, ts.Equal(epoch.Add(50*time.Second)))
				m[k0] = epoch.Add(100 * time.Second)
			}
		}
		assert.Equal(t, want, got, "version %q", ver)
	}
	all := votersOf(t, s, "hello", "")
	require.Len(t, all, 3)
	sizes := []int{}
	for _, m := range all {
		sizes = append(sizes, len(m))
	}
	sort.Ints(sizes)
	assert.Equal(t, []int{1, 2, 40}, sizes, "40 voters on recipe 0 (chunks of 32), mismatch-only key not counted")
	rs, err := s.Recipes("hello")
	require.NoError(t, err)
	assert.Len(t, rs, 3, "voter chunks are not listed as recipes")
	rvs, err := s.Voters("nosuch", "")
	require.NoError(t, err)
	assert.Empty(t, rvs)
}

// A schema-4 file (JSON recipe summaries, no voter lists, heads without
// the voted flag) migrates to the same voter lists, and ingest goes on
// from them.
func TestVotersMigration(t *testing.T) {
	path := t.TempDir() + "/s.db"
	s := mustOpenPath(t, path)
	fillVoters(t, s)
	before := votersOf(t, s, "hello", "")
	require.NoError(t, s.Close())

	downgrade(t, path, 4, func(tx *bolt.Tx) error {
		bp, bb := tx.Bucket(bktByPackage), tx.Bucket(bktByBuilder)
		var chunks, sums [][]byte
		require.NoError(t, bp.ForEach(func(k, _ []byte) error {
			switch packageKeyKind(k) {
			case pkgKeyVoters:
				chunks = append(chunks, bytes.Clone(k))
			case pkgKeySummary:
				sums = append(sums, bytes.Clone(k))
			}
			return nil
		}))
		require.NotEmpty(t, chunks)
		for _, k := range chunks {
			require.NoError(t, bp.Delete(k))
		}
		for _, k := range sums {
			r, err := decodeRecipeSummary(bp.Get(k))
			require.NoError(t, err)
			r.Voters = 0
			v, err := json.Marshal(r)
			require.NoError(t, err)
			require.NoError(t, bp.Put(k, v))
		}
		var heads [][]byte
		require.NoError(t, bb.ForEach(func(k, _ []byte) error {
			if isBuilderHead(k) {
				heads = append(heads, bytes.Clone(k))
			}
			return nil
		}))
		for _, k := range heads {
			v := bytes.Clone(bb.Get(k))
			v[0] &^= brVoted
			require.NoError(t, bb.Put(k, v))
		}
		return nil
	})

	s = mustOpenPath(t, path)
	got := votersOf(t, s, "hello", "")
	// the migration takes the earliest voting claim, not the first stored
	assert.Equal(t, votersFromClaims(t, s, "hello", ""), got)
	for rid, m := range before {
		assert.Len(t, got[rid], len(m), "recipe %s", rid)
	}
	k := testKeys(t, 41)[40]
	mustIngest(t, s, mustSign(t, k, spec{ts: 300}), mustSign(t, testKeys(t, 1)[0], spec{ts: 301}))
	after := votersOf(t, s, "hello", "2.10-3")
	var biggest map[string]time.Time
	for _, m := range after {
		if len(m) > len(biggest) {
			biggest = m
		}
	}
	assert.Len(t, biggest, 41, "a new key appends to the migrated list; a migrated voter is not added again")
}
