package p2p

import (
	"context"
	"testing"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/p2p/p2ptest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemStore(t *testing.T) {
	id := testIdentity(t)
	st := p2ptest.NewMemStore()
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
	assert.Equal(t, attest.DigestOf([]string{c1.ID}), d["hello"])
	raw, ok, err := st.GetRaw(c2.ID)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, c2.Raw, raw)
	assert.NotNil(t, st.Lookup(id.Fingerprint()), "signer key kept")
	_, err = st.Ingest(ctx, nil)
	assert.Error(t, err)
}
