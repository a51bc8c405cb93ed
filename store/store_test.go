package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/lebowski-dist/lebowski/attest"
)

func TestIngestGetAndIndexes(t *testing.T) {
	s := mustOpenStore(t)
	keys := testKeys(t, 3)
	a, b, c := keys[0], keys[1], keys[2]
	claims := []*attest.Claim{
		mustSign(t, a, spec{}),                                           // hello 2.10-3 r0
		mustSign(t, b, spec{ts: 1}),                                      // hello 2.10-3 r0, agrees
		mustSign(t, c, spec{variant: 1, ts: 2}),                          // hello 2.10-3 r0, dissents
		mustSign(t, a, spec{recipe: 1, ts: 3}),                           // hello 2.10-3 r1
		mustSign(t, b, spec{debver: "2.10-4", ts: 4}),                    // hello 2.10-4
		mustSign(t, c, spec{pkg: "less", result: attest.ResultFailed}),   // less
		mustSign(t, a, spec{ts: 5, result: attest.ResultUnreproducible}), // a again on r0: second claim of a
	}
	res := mustIngest(t, s, claims...)
	for i, r := range res {
		require.Equal(t, StatusNew, r.Status, "claim %d: %v", i, r.Err)
		require.Equal(t, claims[i].ID, r.ID)
	}
	r0 := claims[0].Statement.RecipeID

	t.Run("get round trip", func(t *testing.T) {
		for _, want := range claims {
			got, ok, err := s.Get(want.ID)
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, want.Raw, got.Raw)
			wc, _ := want.Statement.Canonical()
			gc, _ := got.Statement.Canonical()
			assert.Equal(t, wc, gc)
			require.NotNil(t, got.Signer, "signer key recorded on ingest")
			assert.Equal(t, want.Statement.Builder, attest.Fingerprint(got.Signer))
		}
		_, ok, err := s.Get(attest.ClaimID([]byte("nope")))
		require.NoError(t, err)
		assert.False(t, ok)
		_, _, err = s.Get("not-a-cid")
		assert.Error(t, err)
	})

	t.Run("claims are stored compactly and read back exactly", func(t *testing.T) {
		require.NoError(t, s.DB().View(func(tx *bolt.Tx) error {
			for _, c := range claims {
				ck, _ := claimKey(c.ID)
				v := tx.Bucket(bktClaims).Get(ck)
				require.NotNil(t, v)
				assert.Equal(t, byte(claimPacked), v[0])
				assert.Less(t, len(v), len(c.Raw)/2)
				raw, _, st, err := decodeClaimValue(v)
				require.NoError(t, err)
				assert.Equal(t, c.Raw, raw)
				assert.Equal(t, c.Statement, st)
			}
			return nil
		}))
		// an envelope the compact form cannot reproduce is kept verbatim
		env := *claims[0].Envelope
		env.Signature += "\n"
		raw, err := env.WithoutKey().Encode()
		require.NoError(t, err)
		v := encodeClaimValue(raw, claims[0].Statement)
		assert.Equal(t, byte(claimVerbatim), v[0])
		got, _, _, err := decodeClaimValue(v)
		require.NoError(t, err)
		assert.Equal(t, raw, got)
		// a statement that is not the payload's is not packed
		v = encodeClaimValue(claims[1].Raw, claims[2].Statement)
		assert.Equal(t, byte(claimCompact), v[0])
		got, _, st, err := decodeClaimValue(v)
		require.NoError(t, err)
		assert.Equal(t, claims[1].Raw, got)
		assert.Nil(t, st)
		raw2, ok, err := s.GetRaw(claims[1].ID)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, claims[1].Raw, raw2)
	})

	t.Run("wire verifies without a keyring", func(t *testing.T) {
		w, ok, err := s.GetWire(claims[3].ID)
		require.NoError(t, err)
		require.True(t, ok)
		c, err := attest.Verify(w, nil, attest.VerifyOptions{})
		require.NoError(t, err)
		assert.Equal(t, claims[3].ID, c.ID)
	})

	idsOf := func(scs []StoredClaim) []string {
		var out []string
		for _, sc := range scs {
			out = append(out, sc.ID)
		}
		sort.Strings(out)
		return out
	}
	sorted := func(cs ...*attest.Claim) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		sort.Strings(out)
		return out
	}

	t.Run("by recipe summaries", func(t *testing.T) {
		got, err := s.ByRecipe(r0)
		require.NoError(t, err)
		assert.Equal(t, sorted(claims[0], claims[1], claims[2], claims[6]), idsOf(got))
		for _, sc := range got {
			var want *attest.Claim
			for _, c := range claims {
				if c.ID == sc.ID {
					want = c
				}
			}
			assert.Equal(t, want.Statement.Builder, sc.Builder)
			assert.Equal(t, want.Statement.Result, sc.Result)
			assert.Equal(t, want.Statement.ArtifactKey(), sc.ArtifactKey)
			assert.True(t, want.Statement.Timestamp.Equal(sc.Timestamp))
			assert.Equal(t, r0, sc.RecipeID)
		}
	})

	tests := []struct {
		desc     string
		pkg, ver string
		recipes  int
		claims   []string
	}{
		{"all versions", "hello", "", 3, sorted(claims[0], claims[1], claims[2], claims[3], claims[4], claims[6])},
		{"one version", "hello", "2.10-3", 2, sorted(claims[0], claims[1], claims[2], claims[3], claims[6])},
		{"other version", "hello", "2.10-4", 1, sorted(claims[4])},
		{"version prefix is not a match", "hello", "2.10", 0, nil},
		{"package prefix is not a match", "hell", "", 0, nil},
		{"other package", "less", "", 1, sorted(claims[5])},
		{"unknown package", "zsh", "", 0, nil},
	}
	for _, tc := range tests {
		t.Run("by package/"+tc.desc, func(t *testing.T) {
			got, err := s.ByPackage(tc.pkg, tc.ver)
			require.NoError(t, err)
			assert.Len(t, got, tc.recipes)
			var all []StoredClaim
			for _, rc := range got {
				assert.Equal(t, rc.Recipe.Claims, len(rc.Claims), "summary count = index count")
				all = append(all, rc.Claims...)
			}
			assert.Equal(t, tc.claims, idsOf(all))
			ids, err := s.ClaimIDs(tc.pkg)
			require.NoError(t, err)
			if tc.ver == "" {
				assert.Equal(t, tc.claims, ids)
			}
		})
	}

	t.Run("recipe summary", func(t *testing.T) {
		rs, err := s.Recipes("hello")
		require.NoError(t, err)
		var r RecipeSummary
		for _, x := range rs {
			if x.RecipeID == r0 {
				r = x
			}
		}
		assert.Equal(t, 4, r.Claims)
		assert.Equal(t, 3, r.Success)
		assert.Equal(t, 1, r.Unreproducible)
		assert.Equal(t, 3, r.Builders, "a signed twice: 3 distinct builders")
		assert.True(t, r.First.Equal(epoch))
		assert.True(t, r.Newest.Equal(epoch.Add(5*time.Second)))
		assert.Equal(t, "o3", r.Opinion.Name)
	})

	t.Run("by builder", func(t *testing.T) {
		got, err := s.ByBuilder(a.Fingerprint())
		require.NoError(t, err)
		assert.Equal(t, sorted(claims[0], claims[3], claims[6]), idsOf(got))
		got, err = s.ByBuilder(strings.Repeat("A", 40))
		require.NoError(t, err)
		assert.Empty(t, got)
		_, err = s.ByBuilder("xyz")
		assert.Error(t, err)
	})

	t.Run("by artifact", func(t *testing.T) {
		h := claims[0].Statement.Artifacts[0].SHA256
		got, err := s.ByArtifact(h)
		require.NoError(t, err)
		assert.Equal(t, sorted(claims[0], claims[1]), idsOf(got))
	})

	t.Run("stats", func(t *testing.T) {
		st, err := s.Stats()
		require.NoError(t, err)
		assert.Equal(t, uint64(len(claims)), st.Claims)
		assert.Equal(t, uint64(4), st.Recipes)
		assert.Equal(t, 2, st.Packages)
		assert.Equal(t, 3, st.Keys)
		assert.Equal(t, SchemaVersion(), st.Schema)
		assert.Positive(t, st.FileSize)
	})
}

func TestIngestStatuses(t *testing.T) {
	keys := testKeys(t, 2)
	a, b := keys[0], keys[1]
	good := mustSign(t, a, spec{})
	tampered := *mustSign(t, b, spec{})
	tampered.ID = good.ID // ID does not match Raw
	wrongSigner := *mustSign(t, b, spec{ts: 9})
	wrongSigner.Signer = a.Entity
	badStmt := *mustSign(t, b, spec{ts: 10})
	st := *badStmt.Statement
	st.Package = "Bad Name"
	badStmt.Statement = &st

	tests := []struct {
		desc   string
		first  []*attest.Claim // ingested before
		claims []*attest.Claim
		want   []Status
	}{
		{"new", nil, []*attest.Claim{good}, []Status{StatusNew}},
		{"duplicate across calls", []*attest.Claim{good}, []*attest.Claim{good}, []Status{StatusDuplicate}},
		{"duplicate within a batch", nil, []*attest.Claim{good, good}, []Status{StatusNew, StatusDuplicate}},
		{"equivocation across calls", []*attest.Claim{good}, []*attest.Claim{mustSign(t, a, spec{variant: 1})}, []Status{StatusEquivocation}},
		{"equivocation within a batch", nil, []*attest.Claim{good, mustSign(t, a, spec{variant: 2, ts: 1})}, []Status{StatusNew, StatusEquivocation}},
		{"same builder, same artifacts again is agreement", []*attest.Claim{good}, []*attest.Claim{mustSign(t, a, spec{ts: 7})}, []Status{StatusNew}},
		{"failed after success is not equivocation", []*attest.Claim{good}, []*attest.Claim{mustSign(t, a, spec{result: attest.ResultFailed})}, []Status{StatusNew}},
		{"another builder dissenting is not equivocation", []*attest.Claim{good}, []*attest.Claim{mustSign(t, b, spec{variant: 1})}, []Status{StatusNew}},
		{"other recipe is not equivocation", []*attest.Claim{good}, []*attest.Claim{mustSign(t, a, spec{recipe: 1, variant: 1})}, []Status{StatusNew}},
		{"bad claims are skipped, the rest stored", nil,
			[]*attest.Claim{nil, &tampered, good, &wrongSigner, &badStmt, {Raw: []byte("x")}},
			[]Status{StatusRejected, StatusRejected, StatusNew, StatusRejected, StatusRejected, StatusRejected}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s := mustOpenStore(t)
			if tc.first != nil {
				mustIngest(t, s, tc.first...)
			}
			res := mustIngest(t, s, tc.claims...)
			assert.Equal(t, tc.want, statuses(res))
			for i, r := range res {
				if r.Status == StatusRejected {
					assert.ErrorIs(t, r.Err, ErrBadClaim)
					continue
				}
				assert.NoError(t, r.Err)
				_, ok, err := s.Get(tc.claims[i].ID)
				require.NoError(t, err)
				assert.True(t, ok, "claim %d stored", i)
			}
			// the store is consistent whatever came in
			st, err := s.Stats()
			require.NoError(t, err)
			n := 0
			require.NoError(t, s.DB().View(func(tx *bolt.Tx) error {
				n = tx.Bucket(bktClaims).Stats().KeyN
				return nil
			}))
			assert.Equal(t, uint64(n), st.Claims)
		})
	}
}

func TestEquivocationProof(t *testing.T) {
	s := mustOpenStore(t)
	keys := testKeys(t, 2)
	a, b := keys[0], keys[1]
	first := mustSign(t, a, spec{})
	second := mustSign(t, a, spec{variant: 1, ts: 60})
	third := mustSign(t, a, spec{variant: 2, ts: 120})
	mustIngest(t, s, first, mustSign(t, b, spec{}))
	res := mustIngest(t, s, second)
	require.Equal(t, StatusEquivocation, res[0].Status)
	want := Proof{Builder: a.Fingerprint(), RecipeID: first.Statement.RecipeID, ClaimA: first.ID, ClaimB: second.ID}
	got := *res[0].Proof
	got.Detected = time.Time{}
	assert.Equal(t, want, got)

	res = mustIngest(t, s, third)
	require.Equal(t, StatusEquivocation, res[0].Status)

	proofs, err := s.Equivocations(a.Fingerprint())
	require.NoError(t, err)
	assert.Len(t, proofs, 2)
	all, err := s.Equivocations("")
	require.NoError(t, err)
	assert.Len(t, all, 2)
	none, err := s.Equivocations(b.Fingerprint())
	require.NoError(t, err)
	assert.Empty(t, none)

	ka, err := s.GetKey(a.Fingerprint())
	require.NoError(t, err)
	assert.True(t, ka.Equivocating)
	kb, err := s.GetKey(b.Fingerprint())
	require.NoError(t, err)
	assert.False(t, kb.Equivocating)

	for _, c := range []*attest.Claim{first, second, third} {
		_, ok, err := s.Get(c.ID)
		require.NoError(t, err)
		assert.True(t, ok, "both sides of an equivocation are kept")
	}
}

func TestEquivocationWithoutKeyMaterial(t *testing.T) {
	s := mustOpenStore(t)
	a := testKeys(t, 1)[0]
	strip := func(c *attest.Claim) *attest.Claim {
		c.Signer, c.Envelope = nil, c.Envelope.WithoutKey()
		return c
	}
	mustIngest(t, s, strip(mustSign(t, a, spec{})))
	res := mustIngest(t, s, strip(mustSign(t, a, spec{variant: 1})))
	require.Equal(t, StatusEquivocation, res[0].Status)
	_, err := s.GetKey(a.Fingerprint())
	require.ErrorIs(t, err, ErrNotFound)
	ki, err := s.PutKey(a.PublicKey(), attest.TrustUnvetted, "import test")
	require.NoError(t, err)
	assert.True(t, ki.Equivocating, "PutKey picks up earlier proofs")
}

func TestKeysAndTrust(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	s := mustOpenStore(t, withClock(func() time.Time { return now }))
	keys := testKeys(t, 3)
	a, b, c := keys[0], keys[1], keys[2]
	claim := mustSign(t, a, spec{})
	mustIngest(t, s, claim)

	ka, err := s.GetKey(a.Fingerprint())
	require.NoError(t, err)
	assert.Equal(t, attest.TrustUnknown, ka.Trust, "keys learned from claims start unknown")
	assert.Equal(t, "claim "+claim.ID, ka.Source)
	assert.True(t, ka.FirstSeen.Equal(now))

	armored, err := b.ArmoredPublicKey()
	require.NoError(t, err)
	tests := []struct {
		desc    string
		pub     []byte
		trust   attest.Trust
		wantErr bool
	}{
		{"binary key, trusted", c.PublicKey(), attest.TrustTrusted, false},
		{"armored key, own", []byte(armored), attest.TrustOwn, false},
		{"unknown trust level", c.PublicKey(), attest.Trust("best"), true},
		{"derived level is never stored", c.PublicKey(), attest.TrustCertified, true},
		{"garbage key", []byte("not a key"), attest.TrustTrusted, true},
		{"empty key", nil, attest.TrustTrusted, true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			ki, err := s.PutKey(tc.pub, tc.trust, "test")
			if tc.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			got, err := s.GetKey(ki.Fingerprint)
			require.NoError(t, err)
			assert.Equal(t, tc.trust, got.Trust)
		})
	}

	later := now.Add(time.Hour)
	now = later
	_, err = s.PutKey(a.PublicKey(), attest.TrustTrusted, "operator")
	require.NoError(t, err)
	ka, err = s.GetKey(a.Fingerprint())
	require.NoError(t, err)
	assert.Equal(t, attest.TrustTrusted, ka.Trust)
	assert.True(t, ka.FirstSeen.Equal(now.Add(-time.Hour)), "first seen kept")

	require.NoError(t, s.SetTrust(a.Fingerprint(), attest.TrustDistrusted, "equivocated on irc"))
	ka, err = s.GetKey(a.Fingerprint())
	require.NoError(t, err)
	assert.Equal(t, attest.TrustDistrusted, ka.Trust)
	assert.Equal(t, "equivocated on irc", ka.Note)
	assert.ErrorIs(t, s.SetTrust(strings.Repeat("B", 40), attest.TrustTrusted, ""), ErrNotFound)
	assert.Error(t, s.SetTrust(a.Fingerprint(), "meh", ""))

	all, err := s.Keys()
	require.NoError(t, err)
	assert.Len(t, all, 3)

	// Lookup: the store is a KeyLookup for attest.Verify.
	require.NotNil(t, s.Lookup(a.Fingerprint()))
	assert.Nil(t, s.Lookup(strings.Repeat("C", 40)))
	wire, err := claim.Envelope.WithoutKey().Encode()
	require.NoError(t, err)
	_, err = attest.Verify(wire, s, attest.VerifyOptions{RequireKnownKey: true})
	require.NoError(t, err, "verifies with the stored key, no embedded key")
}

func TestLookupCachesAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	a := testKeys(t, 1)[0]
	s, err := Open(path)
	require.NoError(t, err)
	mustIngest(t, s, mustSign(t, a, spec{}))
	require.NoError(t, s.Close())
	s2 := mustOpenPath(t, path)
	e := s2.Lookup(a.Fingerprint())
	require.NotNil(t, e)
	assert.Same(t, e, s2.Lookup(a.Fingerprint()), "second lookup from the cache")
}

func TestBlobs(t *testing.T) {
	s := mustOpenStore(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), (1<<20)/16+1) // just over 1 MiB
	tests := []struct {
		desc   string
		data   []byte
		inFile bool
	}{
		{"small", []byte("buildinfo"), false},
		{"empty", []byte{}, false},
		{"exactly the inline limit", bytes.Repeat([]byte{7}, 1<<20), false},
		{"large goes to a file", big, true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			id, err := s.PutBlob(tc.data)
			require.NoError(t, err)
			assert.Equal(t, BlobCID(tc.data), id)
			id2, err := s.PutBlob(tc.data)
			require.NoError(t, err)
			assert.Equal(t, id, id2, "idempotent")
			ok, err := s.HasBlob(id)
			require.NoError(t, err)
			assert.True(t, ok)
			got, err := s.GetBlob(id)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(tc.data, got))
			_, statErr := os.Stat(filepath.Join(filepath.Dir(s.Path()), "blobs", id))
			assert.Equal(t, tc.inFile, statErr == nil, "file present: %v", statErr)
		})
	}

	t.Run("tampered file is refused", func(t *testing.T) {
		id, err := s.PutBlob(big)
		require.NoError(t, err)
		p := filepath.Join(filepath.Dir(s.Path()), "blobs", id)
		bad := bytes.Clone(big)
		bad[0] ^= 1
		require.NoError(t, os.WriteFile(p, bad, 0o600))
		_, err = s.GetBlob(id)
		assert.ErrorIs(t, err, ErrBlobMismatch)
		require.NoError(t, os.Remove(p))
		_, err = s.GetBlob(id)
		assert.ErrorIs(t, err, ErrCorrupt)
	})
	t.Run("unknown", func(t *testing.T) {
		_, err := s.GetBlob(BlobCID([]byte("never stored")))
		assert.ErrorIs(t, err, ErrNotFound)
		ok, err := s.HasBlob(BlobCID([]byte("never stored")))
		require.NoError(t, err)
		assert.False(t, ok)
		_, err = s.GetBlob("garbage")
		assert.Error(t, err)
	})
}

// recomputeDigests derives the digests from the claims bucket alone.
func recomputeDigests(t *testing.T, s *Store) map[string]Digest {
	t.Helper()
	out := map[string]Digest{}
	require.NoError(t, s.DB().View(func(tx *bolt.Tx) error {
		return tx.Bucket(bktClaims).ForEach(func(k, v []byte) error {
			id, err := claimIDString(k)
			if err != nil {
				return err
			}
			_, env, _, err := decodeClaimValue(v)
			if err != nil {
				return err
			}
			st, err := attest.DecodeStatement(env.Payload)
			if err != nil {
				return err
			}
			d := out[st.Package]
			h := sha256.Sum256([]byte(id))
			for i := range h {
				d.Hash[i] ^= h[i]
			}
			d.Count++
			out[st.Package] = d
			return nil
		})
	}))
	return out
}

func TestDigestsIncremental(t *testing.T) {
	keys := testKeys(t, 4)
	var claims []*attest.Claim
	for i := 0; i < 40; i++ {
		pkg := []string{"hello", "less", "nginx"}[i%3]
		claims = append(claims, mustSign(t, keys[i%4], spec{pkg: pkg, recipe: i % 5, ts: i}))
	}
	s1 := mustOpenStore(t)
	s2 := mustOpenStore(t)
	// s1: in small batches with duplicates; s2: reversed in one batch.
	for i := 0; i < len(claims); i += 7 {
		mustIngest(t, s1, claims[i:min(i+7, len(claims))]...)
		mustIngest(t, s1, claims[i]) // duplicate: no digest change
	}
	rev := make([]*attest.Claim, len(claims))
	for i, c := range claims {
		rev[len(claims)-1-i] = c
	}
	mustIngest(t, s2, rev...)

	d1, err := s1.Digests()
	require.NoError(t, err)
	d2, err := s2.Digests()
	require.NoError(t, err)
	assert.Equal(t, recomputeDigests(t, s1), d1, "incremental = recomputed")
	assert.Equal(t, d1, d2, "order independent")
	assert.Len(t, d1, 3)
	assert.Equal(t, uint64(14), d1["hello"].Count)

	// One more claim changes exactly one package's digest.
	extra := mustSign(t, keys[0], spec{pkg: "less", recipe: 9})
	mustIngest(t, s2, extra)
	d3, err := s2.Digests()
	require.NoError(t, err)
	assert.Equal(t, d1["hello"], d3["hello"])
	assert.NotEqual(t, d1["less"], d3["less"])
	ids, err := s2.ClaimIDs("less")
	require.NoError(t, err)
	assert.Len(t, ids, 14)
	assert.Contains(t, ids, extra.ID)
}

func TestSchemaVersions(t *testing.T) {
	t.Run("new store has the current schema", func(t *testing.T) {
		s := mustOpenStore(t)
		st, err := s.Stats()
		require.NoError(t, err)
		assert.Equal(t, SchemaVersion(), st.Schema)
	})

	t.Run("a newer file is refused", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s.db")
		s, err := Open(path)
		require.NoError(t, err)
		require.NoError(t, s.Close())
		setSchema(t, path, SchemaVersion()+1)
		_, err = Open(path)
		require.ErrorIs(t, err, ErrSchemaTooNew)
		assert.Contains(t, err.Error(), "upgrade lebowski")
	})

	t.Run("pending migrations run once, in order, in one transaction", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s.db")
		s, err := Open(path)
		require.NoError(t, err)
		require.NoError(t, s.Close())

		saved := migrations
		t.Cleanup(func() { migrations = saved })
		var ran []int
		migrations = append(append([]func(*bolt.Tx) error{}, saved...),
			func(tx *bolt.Tx) error {
				ran = append(ran, 1)
				return tx.Bucket(bktMeta).Put([]byte("m1"), []byte("x"))
			},
			func(tx *bolt.Tx) error { ran = append(ran, 2); return nil },
		)
		_, err = Open(path, WithReadOnly())
		require.ErrorIs(t, err, ErrNeedsMigration)

		s = mustOpenPath(t, path)
		assert.Equal(t, []int{1, 2}, ran)
		st, err := s.Stats()
		require.NoError(t, err)
		assert.Equal(t, uint64(len(saved)+2), st.Schema)
		require.NoError(t, s.Close())
		s = mustOpenPath(t, path)
		assert.Equal(t, []int{1, 2}, ran, "not run again")
	})

	t.Run("a failing migration leaves the file at its old version", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s.db")
		s, err := Open(path)
		require.NoError(t, err)
		require.NoError(t, s.Close())
		saved := migrations
		t.Cleanup(func() { migrations = saved })
		migrations = append(append([]func(*bolt.Tx) error{}, saved...),
			func(tx *bolt.Tx) error {
				_ = tx.Bucket(bktMeta).Put([]byte("half"), []byte("x"))
				return errors.New("boom")
			})
		_, err = Open(path)
		require.ErrorContains(t, err, "boom")
		migrations = saved
		s = mustOpenPath(t, path)
		require.NoError(t, s.DB().View(func(tx *bolt.Tx) error {
			assert.Nil(t, tx.Bucket(bktMeta).Get([]byte("half")), "rolled back")
			return nil
		}))
	})
}

func setSchema(t *testing.T, path string, v uint64) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { return putUint(tx.Bucket(bktMeta), metaSchema, v) }))
	require.NoError(t, db.Close())
}

func TestOpenLockedFailsFast(t *testing.T) {
	s := mustOpenStore(t)
	start := time.Now()
	_, err := Open(s.Path(), WithTimeout(200*time.Millisecond))
	took := time.Since(start)
	require.ErrorIs(t, err, ErrLocked)
	assert.Less(t, took, 2*time.Second)
	assert.Contains(t, err.Error(), "process "+strconv.Itoa(os.Getpid()), "names the holder")
	t.Log(err)
}

func TestReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	a := testKeys(t, 1)[0]
	c := mustSign(t, a, spec{})
	s, err := Open(path)
	require.NoError(t, err)
	mustIngest(t, s, c)
	require.NoError(t, s.Close())

	ro := mustOpenPath(t, path, WithReadOnly())
	ro2 := mustOpenPath(t, path, WithReadOnly()) // readers share the lock
	_, ok, err := ro2.Get(c.ID)
	require.NoError(t, err)
	assert.True(t, ok)
	_, err = ro.Ingest(context.Background(), c)
	assert.ErrorIs(t, err, ErrReadOnly)
	_, err = ro.PutBlob([]byte("x"))
	assert.ErrorIs(t, err, ErrReadOnly)
	_, err = ro.PutKey(a.PublicKey(), attest.TrustTrusted, "")
	assert.ErrorIs(t, err, ErrReadOnly)
	assert.ErrorIs(t, ro.MarkOwn(c.ID), ErrReadOnly)
}

func TestOwn(t *testing.T) {
	s := mustOpenStore(t)
	keys := testKeys(t, 2)
	mine := mustSign(t, keys[0], spec{})
	mineOther := mustSign(t, keys[0], spec{recipe: 1})
	theirs := mustSign(t, keys[1], spec{})
	mustIngest(t, s, mine, mineOther, theirs)
	require.NoError(t, s.MarkOwn(mine.ID))
	require.NoError(t, s.MarkOwn(mineOther.ID))
	require.NoError(t, s.MarkOwn(mine.ID)) // idempotent
	assert.ErrorIs(t, s.MarkOwn(attest.ClaimID([]byte("x"))), ErrNotFound)

	got, err := s.Own(mine.Statement.RecipeID)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, mine.ID, got[0].ID)
	all, err := s.Own("")
	require.NoError(t, err)
	assert.Len(t, all, 2)
}

func TestConcurrentIngestAndClose(t *testing.T) {
	s := mustOpenStore(t, WithMaxBatch(7))
	keys := testKeys(t, 8)
	var claims []*attest.Claim
	for i := 0; i < 160; i++ {
		claims = append(claims, mustSign(t, keys[i%8], spec{pkg: fmt.Sprintf("pkg%d", i%10), ts: i}))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]bool{}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; i < len(claims); i += 8 {
				// mixed sizes: single claims and a chunk bigger than MaxBatch
				batch := claims[i : i+1]
				if i%5 == 0 && i+12 <= len(claims) {
					batch = claims[i : i+12]
				}
				res, err := s.Ingest(context.Background(), batch...)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, r := range res {
					if !r.Status.Stored() {
						t.Errorf("claim %s: %v", r.ID, r.Err)
					}
					acked[r.ID] = true
				}
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	assert.Len(t, acked, len(claims))
	st, err := s.Stats()
	require.NoError(t, err)
	assert.Equal(t, uint64(len(claims)), st.Claims)

	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "second close is harmless")
	_, err = s.Ingest(context.Background(), claims[0])
	assert.ErrorIs(t, err, ErrClosed)
}

func TestIngestContextCancelled(t *testing.T) {
	s := mustOpenStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Ingest(ctx, mustSign(t, testKeys(t, 1)[0], spec{}))
	// Either the writer took the request first (then it committed) or the
	// cancellation won; never a hang.
	if err != nil {
		assert.ErrorIs(t, err, context.Canceled)
	}
}

func TestVerifyAndIngest(t *testing.T) {
	s := mustOpenStore(t)
	a := testKeys(t, 1)[0]
	c := mustSign(t, a, spec{})
	wire, err := c.Wire()
	require.NoError(t, err)
	res, err := s.VerifyAndIngest(context.Background(), attest.VerifyOptions{}, []byte("{}"), wire, wire)
	require.NoError(t, err)
	assert.Equal(t, []Status{StatusRejected, StatusNew, StatusDuplicate}, statuses(res))
	assert.ErrorIs(t, res[0].Err, attest.ErrInvalid)
	ki, err := s.GetKey(a.Fingerprint())
	require.NoError(t, err)
	assert.Equal(t, attest.TrustUnknown, ki.Trust)
}

func TestKeysVersionCertifiersAndIngestCounts(t *testing.T) {
	s := mustOpenStore(t)
	ids := testKeys(t, 2)
	v0 := s.KeysVersion()
	c := mustSign(t, ids[0], spec{})
	mustIngest(t, s, c)
	v1 := s.KeysVersion()
	assert.Greater(t, v1, v0, "a key learned from a claim moves the version")
	mustIngest(t, s, c)
	assert.Equal(t, v1, s.KeysVersion(), "a duplicate changes no key")
	assert.Equal(t, uint64(1), s.IngestCounts()["new"])
	assert.Equal(t, uint64(1), s.IngestCounts()["duplicate"])

	// A certified key records its certifier; the version moves on import and trust.
	target, err := attest.GenerateIdentity("certified", "")
	require.NoError(t, err)
	require.NoError(t, attest.Certify(ids[1], target.Entity))
	arm, err := attest.ArmorPublicKey(target.Entity)
	require.NoError(t, err)
	ki, err := s.PutKey([]byte(arm), attest.TrustUnvetted, "test")
	require.NoError(t, err)
	assert.Equal(t, []string{ids[1].Fingerprint()}, ki.Certifiers)
	v2 := s.KeysVersion()
	assert.Greater(t, v2, v1)
	require.NoError(t, s.SetTrust(target.Fingerprint(), attest.TrustTrusted, ""))
	assert.Greater(t, s.KeysVersion(), v2)
}
