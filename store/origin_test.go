package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

func TestOriginAndResolveClaim(t *testing.T) {
	s := mustOpenStore(t)
	keys := testKeys(t, 2)
	a, b := mustSign(t, keys[0], spec{}), mustSign(t, keys[1], spec{ts: 1})
	ctx := WithOrigin(context.Background(), Origin{Via: ViaGossip, Peer: "12D3KooWPeer"})
	_, err := s.Ingest(ctx, a)
	require.NoError(t, err)
	_, err = s.Ingest(context.Background(), b)
	require.NoError(t, err)
	// A second arrival does not overwrite the first.
	_, err = s.Ingest(WithOrigin(context.Background(), Origin{Via: ViaSync, Peer: "other"}), a)
	require.NoError(t, err)

	o, ok, err := s.Origin(a.ID)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, ViaGossip, o.Via)
	assert.Equal(t, "12D3KooWPeer", o.Peer)
	assert.False(t, o.At.IsZero())
	o, ok, err = s.Origin(b.ID)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "", o.Via, "unknown origin")

	for _, tc := range []struct {
		prefix string
		want   []string
		err    bool
	}{
		{a.ID, []string{a.ID}, false},
		{a.ID[:20], []string{a.ID}, false},
		{a.ID[:MinClaimPrefix+3], []string{a.ID}, false},
		{"bafkrei", nil, true},
		{"bafkreiXXXXXXXXXX", nil, true},
		{"zzzzzzzzzzzzzzzz", nil, true},
	} {
		got, err := s.ResolveClaim(tc.prefix, 2)
		if tc.err {
			require.Error(t, err, tc.prefix)
			continue
		}
		require.NoError(t, err, tc.prefix)
		assert.Equal(t, tc.want, got, tc.prefix)
	}
}

// A schema-1 file (before origins) migrates: its claims have no origin,
// new ones do.
func TestOriginMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s := mustOpenPath(t, path)
	keys := testKeys(t, 1)
	old := mustSign(t, keys[0], spec{})
	mustIngest(t, s, old)
	require.NoError(t, s.Close())
	downgrade(t, path, 1, func(tx *bolt.Tx) error { return tx.DeleteBucket(bktOrigins) })

	s = mustOpenPath(t, path)
	_, ok, err := s.Origin(old.ID)
	require.NoError(t, err)
	assert.False(t, ok)
	fresh := mustSign(t, keys[0], spec{ts: 1, recipe: 1})
	_, err = s.Ingest(WithOrigin(context.Background(), Origin{Via: ViaImport}), fresh)
	require.NoError(t, err)
	o, ok, err := s.Origin(fresh.ID)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, ViaImport, o.Via)
}
