package p2p

import (
	"context"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDigestOf(t *testing.T) {
	tests := []struct {
		desc  string
		a, b  []string
		equal bool
	}{
		{"order does not matter", []string{"b1", "b2", "b3"}, []string{"b3", "b1", "b2"}, true},
		{"different sets differ", []string{"b1", "b2"}, []string{"b1", "b3"}, false},
		{"subset differs", []string{"b1", "b2"}, []string{"b1"}, false},
		{"no concatenation ambiguity", []string{"ab", "c"}, []string{"a", "bc"}, false},
		{"empty sets equal", nil, []string{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			in := slices.Clone(tc.b)
			da, db := DigestOf(tc.a), DigestOf(tc.b)
			assert.Equal(t, tc.equal, da == db)
			assert.Equal(t, len(tc.a), da.Count)
			assert.Equal(t, in, tc.b, "input not modified")
		})
	}
}

func TestMemStore(t *testing.T) {
	id := testIdentity(t)
	st := NewMemStore()
	ctx := context.Background()
	c1, c2 := testClaim(t, id, "hello", "o3", 1), testClaim(t, id, "nginx", "", 2)
	added, err := st.Ingest(ctx, c1, c2, c1)
	require.NoError(t, err)
	assert.Equal(t, []bool{true, true, false}, added, "same claim twice in one call is stored once")
	added, err = st.Ingest(ctx, c1)
	require.NoError(t, err)
	assert.Equal(t, []bool{false}, added)
	ids, err := st.ClaimIDs("hello")
	require.NoError(t, err)
	assert.Equal(t, []string{c1.ID}, ids)
	d, err := st.Digests()
	require.NoError(t, err)
	assert.Equal(t, DigestOf([]string{c1.ID}), d["hello"])
	raw, ok, err := st.GetRaw(c2.ID)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, c2.Raw, raw)
	assert.NotNil(t, st.Lookup(id.Fingerprint()), "signer key kept")
	_, err = st.Ingest(ctx, nil)
	assert.Error(t, err)
}
