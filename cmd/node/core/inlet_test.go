package core

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/store"
)

// The node re-announces its own key as stored, plus at most 3 others:
// its former (revoked) own keys, then keys it certified; a revoked own key
// goes out alone.
func TestInletAnnounceKeys(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "store.db"), store.WithNoSync())
	require.NoError(t, err)
	defer st.Close()
	ids := attesttest.Fresh(t, 6)
	own := ids[0]
	k := New(st, WithIdentity(own)).Inlet()
	got := k.AnnounceKeys()
	require.Equal(t, [][]byte{own.PublicKey()}, got, "before the store holds it: the identity's key")
	_, err = st.PutKey(own.PublicKey(), attest.TrustOwn, "own key")
	require.NoError(t, err)
	for _, out := range certifyInStore(t, st, own, ids[1:5]) {
		require.Equal(t, store.MergeNew, out)
	}
	_, err = st.PutKey(ids[5].PublicKey(), attest.TrustUnvetted, "not certified")
	require.NoError(t, err)
	got = k.AnnounceKeys()
	require.Len(t, got, 1+announceCertified)
	for i, pub := range got {
		e, err := attest.ParsePublicKey(pub)
		require.NoError(t, err)
		if i == 0 {
			require.Equal(t, own.Fingerprint(), attest.Fingerprint(e))
		} else {
			require.Contains(t, attest.Certifiers(e), own.Fingerprint())
		}
	}
	rev, err := attest.Revoke(own, "", "", false, time.Now())
	require.NoError(t, err)
	_, _, err = st.MergeKey(rev, "own key")
	require.NoError(t, err)
	got = k.AnnounceKeys()
	require.Len(t, got, 1)
	e, err := attest.ParsePublicKey(got[0])
	require.NoError(t, err)
	require.NotNil(t, attest.RevocationOf(e, time.Now()))

	// After a rotation (`key rotate`) the node runs with the successor:
	// the former own key, with the revocation naming it, goes out too
	// (the keys certified so far were certified by the former key, not
	// by this one: they are not re-announced).
	next := attesttest.Fresh(t, 1)[0]
	_, err = st.PutKey(next.PublicKey(), attest.TrustOwn, "own key")
	require.NoError(t, err)
	k = New(st, WithIdentity(next)).Inlet()
	got = k.AnnounceKeys()
	require.Len(t, got, 2)
	e, err = attest.ParsePublicKey(got[1])
	require.NoError(t, err)
	require.Equal(t, own.Fingerprint(), attest.Fingerprint(e), "the former own key goes out with the own key")
	require.NotNil(t, attest.RevocationOf(e, time.Now()))
	// Former own keys go before the keys this node certified.
	certifyInStore(t, st, next, ids[1:5])
	for range 5 {
		got = k.AnnounceKeys()
		require.Len(t, got, 1+announceCertified)
		e, err = attest.ParsePublicKey(got[1])
		require.NoError(t, err)
		require.Equal(t, own.Fingerprint(), attest.Fingerprint(e))
	}
	// After many rotations, one former key per announcement: the keys
	// this node certified still go out.
	for _, f := range attesttest.Fresh(t, 3) {
		_, err = st.PutKey(f.PublicKey(), attest.TrustOwn, "own key")
		require.NoError(t, err)
		rev, err := attest.Revoke(f, "", "", false, time.Now())
		require.NoError(t, err)
		_, _, err = st.MergeKey(rev, "own key")
		require.NoError(t, err)
	}
	for range 5 {
		got = k.AnnounceKeys()
		require.Len(t, got, 1+announceCertified)
		formers := 0
		for _, pub := range got[1:] {
			e, err := attest.ParsePublicKey(pub)
			require.NoError(t, err)
			if attest.RevocationOf(e, time.Now()) != nil {
				formers++
			} else {
				require.Contains(t, attest.Certifiers(e), next.Fingerprint())
			}
		}
		require.Equal(t, 1, formers)
	}
}

// certifyInStore certifies each key of ids with by and merges it into st,
// as `lebowski key certify` does; it returns the merge outcomes.
func certifyInStore(t *testing.T, st *store.Store, by *attest.Identity, ids []*attest.Identity) []store.MergeOutcome {
	t.Helper()
	var outs []store.MergeOutcome
	for _, id := range ids {
		e, err := attest.ParsePublicKey(id.PublicKey())
		require.NoError(t, err)
		require.NoError(t, attest.Certify(by, e))
		pub, err := attest.SerializeKey(e)
		require.NoError(t, err)
		_, out, err := st.MergeKey(pub, "certified by this node")
		require.NoError(t, err)
		outs = append(outs, out)
	}
	return outs
}
