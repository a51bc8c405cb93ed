package store

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

func TestPackStatement(t *testing.T) {
	cidStr := vocab.CID([]byte("a build log"))
	for name, edit := range map[string]func(*attest.Statement){
		"plain": func(*attest.Statement) {},
		"evidence": func(s *attest.Statement) {
			s.BuildinfoCID, s.LogCID, s.LockCID = cidStr, cidStr, vocab.CID([]byte("lock"))
		},
		"peer":       func(s *attest.Statement) { s.PeerID = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN" },
		"digits":     func(s *attest.Statement) { s.Version, s.DebianVersion = "2010", "2010" },
		"upper hex":  func(s *attest.Statement) { s.Reason = "ABCDEF0123" },
		"odd hex":    func(s *attest.Statement) { s.Reason = "ABC" },
		"mixed hex":  func(s *attest.Statement) { s.Reason = "AbCd" },
		"not a cid":  func(s *attest.Statement) { s.Opinion.CID = "bafkreio3" },
		"upper sha":  func(s *attest.Statement) { s.DebianSourceSHA256 = "ABCDEF" + s.DebianSourceSHA256[6:] },
		"unicode":    func(s *attest.Statement) { s.Reason = "tests failed: ünïcödé ✗" },
		"empty list": func(s *attest.Statement) { s.SecondArtifacts = []attest.Artifact{} },
		"unrepro":    func(s *attest.Statement) { s.SecondArtifacts = s.Artifacts; s.DiffoscopeCID = cidStr },
		"v6 builder": func(s *attest.Statement) {
			s.Builder = "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"
		},
		"old time":    func(s *attest.Statement) { s.Timestamp = s.Timestamp.AddDate(-60, 0, 0) },
		"long reason": func(s *attest.Statement) { s.Reason = string(make([]byte, 300)) },
	} {
		t.Run(name, func(t *testing.T) {
			st := statement(spec{ts: 7})
			edit(st)
			back, err := unpackStatement(packStatement(st))
			require.NoError(t, err)
			assert.Equal(t, st, back)
			want, err := st.Canonical()
			require.NoError(t, err)
			got, err := back.Canonical()
			require.NoError(t, err)
			assert.Equal(t, string(want), string(got))
		})
	}
	st := statement(spec{})
	p := packStatement(st)
	for n := 0; n < len(p); n++ {
		_, err := unpackStatement(p[:n])
		assert.Error(t, err, "truncated to %d bytes", n)
	}
	_, err := unpackStatement(append(p, 0))
	assert.Error(t, err, "trailing bytes")
}

// Statements reads packed records without the envelope and others as
// GetMany does; a damaged packed record is ErrCorrupt on every read path.
func TestStatements(t *testing.T) {
	s := mustOpenStore(t)
	keys := testKeys(t, 3)
	var ids []string
	var claims []*attest.Claim
	for i, k := range keys {
		c := mustSign(t, k, spec{ts: i})
		claims = append(claims, c)
		ids = append(ids, c.ID)
	}
	mustIngest(t, s, claims...)
	ck1, _ := claimKey(ids[1])
	require.NoError(t, s.DB().Update(func(tx *bolt.Tx) error { // an older store's compact record
		return tx.Bucket(bktClaims).Put(ck1, encodeClaimValue(claims[1].Raw, nil))
	}))
	got, err := s.Statements(append(ids, attest.ClaimID([]byte("unknown"))))
	require.NoError(t, err)
	require.Len(t, got, 3)
	for i, c := range got {
		assert.Equal(t, ids[i], c.ID)
		assert.Equal(t, claims[i].Statement, c.Statement)
	}

	ck0, _ := claimKey(ids[0])
	require.NoError(t, s.DB().Update(func(tx *bolt.Tx) error {
		v := bytes.Clone(tx.Bucket(bktClaims).Get(ck0))
		require.Equal(t, byte(claimPacked), v[0])
		v[len(v)/2] ^= 0x20 // one flipped bit
		return tx.Bucket(bktClaims).Put(ck0, v)
	}))
	_, err = s.Statements(ids[:1])
	assert.ErrorIs(t, err, ErrCorrupt)
	_, _, err = s.Get(ids[0])
	assert.ErrorIs(t, err, ErrCorrupt)
}
