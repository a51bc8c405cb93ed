package core

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/store"
)

// A rotated key's vote counts for its successor when one of its claims
// about the recipe was signed before the revocation, whatever the order
// the claims arrived in: ranking reads the key's vote span, not the time
// of its first stored claim.
func TestRankRotatedKeyBySpan(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "store.db"))
	require.NoError(t, err)
	defer st.Close()
	ids := attesttest.Identities(t, 4)
	old, succ, u1, u2 := ids[0], ids[1], ids[2], ids[3]
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	claim := func(id *attest.Identity, image string, at time.Duration) *attest.Claim {
		return attesttest.Claim(t, id, func(s *attest.Statement) {
			s.ContainerDigest = "sha256:" + attesttest.Hex(image)
			s.Timestamp = t0.Add(at)
		})
	}
	ctx := context.Background()
	// r1: the rotated key's claim after its revocation arrives first, the
	// one before it second. r2: two unvetted keys.
	for _, c := range []*attest.Claim{claim(old, "r1", 100*time.Second), claim(old, "r1", 10*time.Second), claim(u1, "r2", 0), claim(u2, "r2", 0)} {
		res, err := st.Ingest(ctx, c)
		require.NoError(t, err)
		require.Equal(t, store.StatusNew, res[0].Status)
	}
	rvs, err := st.Voters(attesttest.Package, "")
	require.NoError(t, err)
	require.Len(t, rvs, 2)
	tv := &trustView{
		levels:  map[string]attest.Trust{succ.Fingerprint(): attest.TrustTrusted, old.Fingerprint(): attest.TrustDistrusted},
		rotated: map[string]rotation{old.Fingerprint(): {To: succ.Fingerprint(), At: t0.Add(50 * time.Second)}},
	}
	n := New(st)
	defer n.Close()
	ranked, err := n.rank(rvs, tv)
	require.NoError(t, err)
	r1 := attesttest.Statement(func(s *attest.Statement) { s.ContainerDigest = "sha256:" + attesttest.Hex("r1") }).RecipeID
	assert.Equal(t, r1, ranked[0].Recipe.RecipeID, "the successor's trusted vote (the claim signed before the revocation) ranks r1 first")

	first, last, ok, err := st.VoteSpan(old.Fingerprint(), r1)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, t0.Add(10*time.Second), first)
	assert.Equal(t, t0.Add(100*time.Second), last)
	_, _, ok, err = st.VoteSpan(u1.Fingerprint(), r1)
	require.NoError(t, err)
	assert.False(t, ok, "no claim of that key about r1")
}
