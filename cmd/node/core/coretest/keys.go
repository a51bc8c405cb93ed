package coretest

import (
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

// certifiedBy returns target's public key certified by signers.
func certifiedBy(t *testing.T, target *attest.Identity, signers ...*attest.Identity) []byte {
	t.Helper()
	return certifiedKey(t, target.PublicKey(), signers...)
}

// certifiedKey returns the key pub certified by signers.
func certifiedKey(t *testing.T, pub []byte, signers ...*attest.Identity) []byte {
	t.Helper()
	return signedKey(t, pub, attest.Certify, signers...)
}

// signedKey returns the key pub signed by signers with sign
// (attest.Certify or attest.AcknowledgeRotation).
func signedKey(t *testing.T, pub []byte, sign func(*attest.Identity, *openpgp.Entity) error, signers ...*attest.Identity) []byte {
	t.Helper()
	e, err := attest.ParsePublicKey(pub)
	require.NoError(t, err)
	for _, s := range signers {
		require.NoError(t, sign(s, e))
	}
	b, err := attest.SerializeKey(e)
	require.NoError(t, err)
	return b
}

// revokedKey returns id's public key revoked at `at`, naming successor.
func revokedKey(t *testing.T, id *attest.Identity, successor string, at time.Time) []byte {
	t.Helper()
	b, err := attest.Revoke(id, successor, "test", false, at)
	require.NoError(t, err)
	return b
}

// acknowledged returns the key pub carrying successor's acknowledgement
// of the rotation (attest.AcknowledgeRotation).
func acknowledged(t *testing.T, pub []byte, successor *attest.Identity) []byte {
	t.Helper()
	return signedKey(t, pub, attest.AcknowledgeRotation, successor)
}

// trustedGroup is the sorted fingerprints of the trusted keys in the
// consensus group of hello's best recipe (nil without a consensus).
func trustedGroup(t *testing.T, api core.API) []string {
	t.Helper()
	info, err := api.Info(ctx, core.InfoQuery{Package: "hello"})
	require.NoError(t, err)
	g := info.Recipes[0].Report.Consensus
	if g == nil {
		return nil
	}
	var out []string
	for _, k := range g.Trusted {
		out = append(out, k.Fingerprint)
	}
	sort.Strings(out)
	return out
}

func sortedFprs(ids ...*attest.Identity) []string {
	var out []string
	for _, id := range ids {
		out = append(out, id.Fingerprint())
	}
	sort.Strings(out)
	return out
}

func testCertifyKey(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	other := attesttest.Fresh(t, 1)[0]
	_, err := h.API.ImportKey(ctx, other.PublicKey(), attest.TrustUnvetted, "keyserver")
	require.NoError(t, err)
	res, err := h.API.CertifyKey(ctx, strings.ToLower(other.Fingerprint()))
	require.NoError(t, err)
	assert.True(t, res.Published)
	assert.Equal(t, other.Fingerprint(), res.Fingerprint)
	assert.Equal(t, attest.TrustCertified, res.Trust, "certified by the node's own key, one hop")
	assert.Equal(t, []string{h.Identity.Fingerprint()}, res.Via)
	assert.Equal(t, attest.TrustUnvetted, res.Stored, "the stored level is unchanged")
	keys := h.Net.PublishedKeys()
	require.Len(t, keys, 1)
	pub, err := attest.ParsePublicKey(keys[0])
	require.NoError(t, err)
	own, err := attest.ParsePublicKey(h.Identity.PublicKey())
	require.NoError(t, err)
	assert.True(t, attest.CertifiedWithin(pub, map[string]*openpgp.Entity{h.Identity.Fingerprint(): own}, nil, 1),
		"the published key carries the node's certification")

	// Announce: the own key, any stored key.
	res, err = h.API.AnnounceKey(ctx, "")
	require.NoError(t, err)
	assert.True(t, res.Published)
	assert.Equal(t, h.Identity.Fingerprint(), res.Fingerprint)
	res, err = h.API.AnnounceKey(ctx, other.Fingerprint())
	require.NoError(t, err)
	assert.True(t, res.Published)
	assert.Len(t, h.Net.PublishedKeys(), 3)

	for _, tc := range []struct {
		desc string
		err  error
		want func(error) bool
	}{
		{"certify own key", func() error { _, err := h.API.CertifyKey(ctx, h.Identity.Fingerprint()); return err }(), core.IsInvalid},
		{"certify unknown key", func() error { _, err := h.API.CertifyKey(ctx, strings.Repeat("AB", 20)); return err }(), core.IsNotFound},
		{"certify bad fingerprint", func() error { _, err := h.API.CertifyKey(ctx, "zz"); return err }(), core.IsInvalid},
		{"announce unknown key", func() error { _, err := h.API.AnnounceKey(ctx, strings.Repeat("CD", 20)); return err }(), core.IsNotFound},
		{"announce bad fingerprint", func() error { _, err := h.API.AnnounceKey(ctx, "nope"); return err }(), core.IsInvalid},
	} {
		assert.True(t, tc.err != nil && tc.want(tc.err), "%s: %v", tc.desc, tc.err)
	}

	// The network failing: the certification is stored, not published.
	h.Net.Fail = errors.New("no peers")
	defer func() { h.Net.Fail = nil }()
	third := attesttest.Fresh(t, 1)[0]
	_, err = h.API.ImportKey(ctx, third.PublicKey(), attest.TrustUnvetted, "keyserver")
	require.NoError(t, err)
	res, err = h.API.CertifyKey(ctx, third.Fingerprint())
	require.NoError(t, err)
	assert.False(t, res.Published)
	assert.Equal(t, attest.TrustCertified, res.Trust)
	_, err = h.API.AnnounceKey(ctx, "")
	assert.Error(t, err, "announce says it could not publish")
}

// A revoked key's claims stop counting; a rotation lets its claims signed
// before the revocation count as the successor's, only when the
// revocation names the successor and the successor votes here.
func testRevocation(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	ids := attesttest.Fresh(t, 4)
	a, b, k, s := ids[0], ids[1], ids[2], ids[3]
	// The three conditions of a rotation K → S: the revocation names S, K
	// voted here before it, S certifies K (acknowledges the rotation).
	// Without the last two a stranger's key K could name a trusted key
	// as its successor and have its claims counted as that key's.
	for _, tc := range []struct {
		desc      string
		successor string
		sLevel    string // trusted, certified (by a), unvetted
		after     bool   // k's claim is signed after the revocation
		kNever    bool   // k never voted here (unvetted: a stranger's key)
		noAck     bool   // s does not acknowledge the rotation
		plainCert bool   // s certified k, but as an ordinary certification
		want      []*attest.Identity
		rotatedTo string
	}{
		{"revoked, no successor", "", "trusted", false, false, false, false, []*attest.Identity{a, b}, ""},
		{"rotation to a trusted successor", s.Fingerprint(), "trusted", false, false, false, false, []*attest.Identity{a, b, s}, s.Fingerprint()},
		{"rotation to a certified successor", s.Fingerprint(), "certified", false, false, false, false, []*attest.Identity{a, b, s}, s.Fingerprint()},
		{"rotation to an unvetted successor", s.Fingerprint(), "unvetted", false, false, false, false, []*attest.Identity{a, b}, ""},
		{"claims signed after the revocation", s.Fingerprint(), "trusted", true, false, false, false, []*attest.Identity{a, b}, s.Fingerprint()},
		{"successor does not acknowledge", s.Fingerprint(), "trusted", false, false, true, false, []*attest.Identity{a, b}, ""},
		// s once vouched for k (key certify): that is no consent to k's
		// claims counting as s's (they would displace s's own vote).
		{"an ordinary certification by the successor is no acknowledgement", s.Fingerprint(), "trusted", false, false, true, true, []*attest.Identity{a, b}, ""},
		{"hijack: a stranger's key names a trusted successor", a.Fingerprint(), "trusted", false, true, true, false, []*attest.Identity{a, b}, ""},
		{"hijack: the successor even acknowledges the stranger", s.Fingerprint(), "trusted", false, true, false, false, []*attest.Identity{a, b}, ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			h := mk(t, nil)
			importTrusted(t, h.API, []*attest.Identity{a, b})
			revokedAt := time.Now().Add(-30 * time.Second).Truncate(time.Second)
			ts := revokedAt.Add(-time.Hour)
			if tc.after {
				ts = revokedAt.Add(10 * time.Second)
			}
			res, err := h.API.ImportClaims(ctx, wires(t, attesttest.Claim(t, k, func(st *attest.Statement) { st.Timestamp = ts })))
			require.NoError(t, err)
			require.Equal(t, "new", res[0].Status, res[0].Error)
			if !tc.kNever {
				require.NoError(t, h.API.SetTrust(ctx, k.Fingerprint(), attest.TrustTrusted, "before"))
				assert.Equal(t, sortedFprs(a, b, k), trustedGroup(t, h.API), "k counts before its revocation")
			}

			switch tc.sLevel {
			case "trusted":
				_, err = h.API.ImportKey(ctx, s.PublicKey(), attest.TrustTrusted, "operator")
			case "certified":
				_, err = h.API.ImportKey(ctx, certifiedBy(t, s, a), attest.TrustUnvetted, "keyserver")
				// a's key must be stored for its certification to be checked.
				require.NoError(t, err)
				_, err = h.API.ImportKey(ctx, a.PublicKey(), attest.TrustTrusted, "operator")
			default:
				_, err = h.API.ImportKey(ctx, s.PublicKey(), attest.TrustUnvetted, "keyserver")
			}
			require.NoError(t, err)
			// The revocation arrives (an import here, an announcement on the
			// network): the operator's level is kept, the key stops voting.
			kLevel := attest.TrustTrusted
			if tc.kNever {
				kLevel = attest.TrustUnvetted
			}
			rev := revokedKey(t, k, tc.successor, revokedAt)
			if tc.successor != "" && !tc.noAck {
				rev = acknowledged(t, rev, s)
			}
			if tc.plainCert {
				rev = certifiedKey(t, rev, s)
			}
			_, err = h.API.ImportKey(ctx, rev, kLevel, "revocation")
			require.NoError(t, err)
			ki, err := h.API.Key(ctx, k.Fingerprint())
			require.NoError(t, err)
			assert.Equal(t, attest.TrustDistrusted, ki.Trust)
			assert.Equal(t, kLevel, ki.Stored)
			require.NotNil(t, ki.Revocation)
			assert.Equal(t, tc.successor, ki.Revocation.Successor)
			assert.Equal(t, tc.rotatedTo, ki.RotatedTo)
			assert.Equal(t, sortedFprs(tc.want...), trustedGroup(t, h.API))
		})
	}
}

// A chain of rotations K → S → S2: K's claims signed before K's
// revocation count as S2's once S2 votes (S, revoked in turn, passes them
// on); a chain that ends in a compromised revocation or in a cycle counts
// for nobody.
func testRotationChain(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	ids := attesttest.Fresh(t, 5)
	a, b, k, s, s2 := ids[0], ids[1], ids[2], ids[3], ids[4]
	for _, tc := range []struct {
		desc      string
		sRevoked  func(t *testing.T) []byte // S's revocation
		want      []*attest.Identity
		rotatedTo string
	}{
		{"S rotated to a trusted S2", func(t *testing.T) []byte {
			return acknowledged(t, revokedKey(t, s, s2.Fingerprint(), time.Now().Add(-time.Minute)), s2)
		}, []*attest.Identity{a, b, s2}, s2.Fingerprint()},
		{"S rotated to S2, which does not acknowledge it", func(t *testing.T) []byte {
			return revokedKey(t, s, s2.Fingerprint(), time.Now().Add(-time.Minute))
		}, []*attest.Identity{a, b}, ""},
		{"S rotated back to K (a cycle)", func(t *testing.T) []byte {
			return acknowledged(t, revokedKey(t, s, k.Fingerprint(), time.Now().Add(-time.Minute)), k)
		}, []*attest.Identity{a, b}, ""},
		{"S compromised", func(t *testing.T) []byte {
			pub, err := attest.Revoke(s, "", "stolen", true, time.Now().Add(-time.Minute))
			require.NoError(t, err)
			return pub
		}, []*attest.Identity{a, b}, ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			h := mk(t, nil)
			importTrusted(t, h.API, []*attest.Identity{a, b})
			_, err := h.API.ImportKey(ctx, s2.PublicKey(), attest.TrustTrusted, "operator") // S2 has no claim of its own
			require.NoError(t, err)
			revokedAt := time.Now().Add(-time.Hour).Truncate(time.Second)
			res, err := h.API.ImportClaims(ctx, wires(t, attesttest.Claim(t, k, func(st *attest.Statement) { st.Timestamp = revokedAt.Add(-time.Hour) })))
			require.NoError(t, err)
			require.Equal(t, "new", res[0].Status, res[0].Error)
			_, err = h.API.ImportKey(ctx, acknowledged(t, revokedKey(t, k, s.Fingerprint(), revokedAt), s), attest.TrustTrusted, "revocation")
			require.NoError(t, err)
			_, err = h.API.ImportKey(ctx, tc.sRevoked(t), attest.TrustTrusted, "revocation")
			require.NoError(t, err)
			ki, err := h.API.Key(ctx, k.Fingerprint())
			require.NoError(t, err)
			assert.Equal(t, tc.rotatedTo, ki.RotatedTo)
			assert.Equal(t, sortedFprs(tc.want...), trustedGroup(t, h.API))
		})
	}
}

// A revocation wins over any certification path and any level: a
// certified key that is revoked is distrusted, the keys a revoked key
// certified are no longer certified, and a config-trusted key or the
// operator's trusted key is distrusted once revoked.
func testRevocationBeatsCertification(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	ids := attesttest.Fresh(t, 4)
	root, x, y, cfgKey := ids[0], ids[1], ids[2], ids[3]
	two := 2
	h := mk(t, func(c *config.Config) {
		c.TrustHops = &two
		c.TrustedKeys = []string{cfgKey.Fingerprint()}
	})
	_, err := h.API.ImportKey(ctx, root.PublicKey(), attest.TrustTrusted, "operator")
	require.NoError(t, err)
	_, err = h.API.ImportKey(ctx, certifiedBy(t, x, root), attest.TrustUnvetted, "keyserver")
	require.NoError(t, err)
	_, err = h.API.ImportKey(ctx, certifiedBy(t, y, x), attest.TrustUnvetted, "keyserver")
	require.NoError(t, err)
	_, err = h.API.ImportKey(ctx, cfgKey.PublicKey(), attest.TrustUnvetted, "keyserver")
	require.NoError(t, err)
	level := func(id *attest.Identity) attest.Trust {
		k, err := h.API.Key(ctx, id.Fingerprint())
		require.NoError(t, err)
		return k.Trust
	}
	assert.Equal(t, attest.TrustCertified, level(x))
	assert.Equal(t, attest.TrustCertified, level(y))
	assert.Equal(t, attest.TrustTrusted, level(cfgKey))

	// x revoked: distrusted although root certifies it, and y (certified
	// only through x) is no longer certified.
	_, err = h.API.ImportKey(ctx, revokedKey(t, x, "", time.Now().Add(-time.Second)), attest.TrustUnvetted, "revocation")
	require.NoError(t, err)
	assert.Equal(t, attest.TrustDistrusted, level(x))
	assert.Equal(t, attest.TrustUnvetted, level(y))

	// The operator's trusted root revoked: distrusted.
	_, err = h.API.ImportKey(ctx, revokedKey(t, root, "", time.Now().Add(-time.Second)), attest.TrustTrusted, "revocation")
	require.NoError(t, err)
	assert.Equal(t, attest.TrustDistrusted, level(root))
	// A config-trusted key revoked: distrusted.
	_, err = h.API.ImportKey(ctx, revokedKey(t, cfgKey, "", time.Now().Add(-time.Second)), attest.TrustUnvetted, "revocation")
	require.NoError(t, err)
	assert.Equal(t, attest.TrustDistrusted, level(cfgKey))
	// Importing the old, unrevoked copy again does not undo a revocation.
	_, err = h.API.ImportKey(ctx, root.PublicKey(), attest.TrustTrusted, "old copy")
	require.NoError(t, err)
	assert.Equal(t, attest.TrustDistrusted, level(root))
}

func testRevokeOwnKey(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	next := attesttest.Fresh(t, 1)[0]
	for _, tc := range []struct {
		desc string
		req  core.RevokeRequest
	}{
		{"bad successor", core.RevokeRequest{Successor: "xyz"}},
		{"own key as successor", core.RevokeRequest{Successor: h.Identity.Fingerprint()}},
		{"compromised with a successor", core.RevokeRequest{Successor: next.Fingerprint(), Compromised: true}},
		{"two-line reason", core.RevokeRequest{Reason: "a\nb"}},
	} {
		_, err := h.API.RevokeKey(ctx, tc.req)
		assert.True(t, core.IsInvalid(err), "%s: %v", tc.desc, err)
	}
	assert.Empty(t, h.Net.PublishedKeys(), "nothing published for refused requests")

	res, err := h.API.RevokeKey(ctx, core.RevokeRequest{Successor: strings.ToLower(next.Fingerprint()), Reason: "yearly rotation"})
	require.NoError(t, err)
	assert.True(t, res.Published)
	assert.Equal(t, h.Identity.Fingerprint(), res.Fingerprint)
	assert.Equal(t, attest.TrustDistrusted, res.Trust, "a revoked own key does not vote either")
	require.NotNil(t, res.Revocation)
	assert.Equal(t, "superseded", res.Revocation.Reason)
	assert.Equal(t, next.Fingerprint(), res.Revocation.Successor)
	assert.Contains(t, res.Revocation.Text, "yearly rotation")
	keys := h.Net.PublishedKeys()
	require.Len(t, keys, 1)
	pub, err := attest.ParsePublicKey(keys[0])
	require.NoError(t, err)
	assert.NotNil(t, attest.RevocationOf(pub, time.Now()), "the published key carries the revocation")

	// The node signs nothing with a revoked key.
	res2 := fakeResult(t, "deb")
	res2.Recipe.OpinionCID = ""
	_, err = core.Record(ctx, h.API, res2, nil)
	assert.True(t, errors.Is(err, core.ErrNoIdentity), "%v", err)
	other := attesttest.Fresh(t, 1)[0]
	_, err = h.API.ImportKey(ctx, other.PublicKey(), attest.TrustUnvetted, "keyserver")
	require.NoError(t, err)
	_, err = h.API.CertifyKey(ctx, other.Fingerprint())
	assert.True(t, errors.Is(err, core.ErrNoIdentity), "%v", err)
}

// The rotation hijack (issue 20): fresh keys sign claims naming an
// attacker's file, then publish revocations naming keys this node trusts
// as their successors. Before the fix their claims counted as the trusted
// keys' and the attacker's file was SAFE TO INSTALL. Input from keys that
// do not vote here must change no verdict: the attacker's file stays
// DO NOT INSTALL or UNVERIFIED, never SAFE, and trusted keys that signed
// nothing are not made equivocating by someone else's claims.
func testRotationHijack(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	evil := attesttest.Hex("attacker deb")
	verify := func(t *testing.T, api core.API, sha string) core.VerifyResult {
		t.Helper()
		v, err := api.Verify(ctx, core.VerifyRequest{Package: "hello", DebianVersion: attesttest.DebianVersion, Opinion: attesttest.Opinion, FileName: attesttest.DebName, SHA256: sha})
		require.NoError(t, err)
		return *v
	}
	attack := func(t *testing.T, h *Harness, victims []string, mods ...func(*attest.Statement)) {
		t.Helper()
		attackers := attesttest.Fresh(t, len(victims))
		revokedAt := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
		for i, x := range attackers {
			mods := append([]func(*attest.Statement){attesttest.Artifact(evil), func(st *attest.Statement) { st.Timestamp = revokedAt.Add(-time.Hour) }}, mods...)
			res, err := h.API.ImportClaims(ctx, wires(t, attesttest.Claim(t, x, mods...)))
			require.NoError(t, err)
			require.Equal(t, "new", res[0].Status, res[0].Error)
			_, err = h.API.ImportKey(ctx, revokedKey(t, x, victims[i], revokedAt), attest.TrustUnvetted, "announced by a stranger")
			require.NoError(t, err)
			ki, err := h.API.Key(ctx, x.Fingerprint())
			require.NoError(t, err)
			assert.Empty(t, ki.RotatedTo, "a key that never voted here passes on no vote")
		}
	}

	t.Run("trusted keys that signed nothing", func(t *testing.T) {
		h := mk(t, nil)
		victims := attesttest.Fresh(t, 3)
		for _, v := range victims {
			_, err := h.API.ImportKey(ctx, v.PublicKey(), attest.TrustTrusted, "operator")
			require.NoError(t, err)
		}
		attack(t, h, []string{victims[0].Fingerprint(), victims[1].Fingerprint(), victims[2].Fingerprint()})
		v := verify(t, h.API, evil)
		assert.NotEqual(t, consensus.Safe, v.Verdict, "%v", v.Reasons)
		assert.Nil(t, trustedGroup(t, h.API), "no trusted key signed anything")
	})
	t.Run("trusted keys that agree on the honest file", func(t *testing.T) {
		h := mk(t, nil)
		victims := attesttest.Fresh(t, 3)
		importTrusted(t, h.API, victims)
		attack(t, h, []string{victims[0].Fingerprint(), victims[1].Fingerprint(), victims[2].Fingerprint()})
		assert.Equal(t, consensus.Safe, verify(t, h.API, attesttest.Hex("deb")).Verdict, "the honest file stays SAFE")
		assert.Equal(t, consensus.DoNotInstall, verify(t, h.API, evil).Verdict)
		for _, v := range victims {
			ki, err := h.API.Key(ctx, v.Fingerprint())
			require.NoError(t, err)
			assert.False(t, ki.Equivocating, "a stranger's claims make no trusted key equivocate")
		}
	})
	t.Run("a competing recipe with another image", func(t *testing.T) {
		h := mk(t, nil)
		victims := attesttest.Fresh(t, 3)
		importTrusted(t, h.API, victims)
		attack(t, h, []string{victims[0].Fingerprint(), victims[1].Fingerprint(), victims[2].Fingerprint()},
			func(st *attest.Statement) { st.ContainerDigest = "sha256:" + attesttest.Hex("attacker image") })
		assert.Equal(t, consensus.Safe, verify(t, h.API, attesttest.Hex("deb")).Verdict, "the honest file stays SAFE")
		assert.NotEqual(t, consensus.Safe, verify(t, h.API, evil).Verdict)
	})
	t.Run("the node's own key as the successor", func(t *testing.T) {
		h := mk(t, nil)
		attack(t, h, []string{h.Identity.Fingerprint()})
		assert.NotEqual(t, consensus.Safe, verify(t, h.API, evil).Verdict)
	})
}
