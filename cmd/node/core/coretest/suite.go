// Package coretest is the one test suite of the core API: Run exercises
// every operation through an API value, and the local node and the socket
// client both pass it (kubo's coreiface/tests plays this part).
package coretest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/opinions"
	"github.com/lebowski-dist/lebowski/store"
)

// Harness is one node under test.
type Harness struct {
	API      core.API
	Identity *attest.Identity // the node's builder key
	Net      *FakeNetwork
	Subs     *FakeSubscriber
}

// NewFunc makes a fresh node with cfg (Defaults applied) and the fakes,
// behind the API implementation under test.
type NewFunc func(t *testing.T, cfg *config.Config, h *Harness)

// Run runs the suite. newNode must fill h.API.
func Run(t *testing.T, newNode NewFunc) {
	mk := func(t *testing.T, mod func(*config.Config)) *Harness {
		t.Helper()
		cfg := &config.Config{DataDir: t.TempDir()}
		if mod != nil {
			mod(cfg)
		}
		cfg.Defaults()
		require.NoError(t, cfg.Validate())
		h := &Harness{Identity: attesttest.Fresh(t, 1)[0], Net: &FakeNetwork{}, Subs: &FakeSubscriber{}}
		newNode(t, cfg, h)
		require.NotNil(t, h.API)
		return h
	}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, func(*testing.T, func(*config.Config)) *Harness)
	}{
		{"InfoEmptyAndBadInput", testInfoEmpty},
		{"ImportClaims", testImportClaims},
		{"ConsensusAndVerify", testConsensusAndVerify},
		{"Decide", testDecide},
		{"UnvettedKeysDoNotCount", testUnvetted},
		{"SybilFloodDoesNotDisplaceTrustedRecipe", testSybilRanking},
		{"VerifyPinsOpinionContent", testOpinionCID},
		{"TrustedKeysFromConfig", testConfigTrust},
		{"TrustHopsCertification", testTrustHops},
		{"CertifyAndAnnounceKey", testCertifyKey},
		{"KeyRevocationAndRotation", testRevocation},
		{"RotationChain", testRotationChain},
		{"RotationHijack", testRotationHijack},
		{"RevocationBeatsCertification", testRevocationBeatsCertification},
		{"RevokeOwnKey", testRevokeOwnKey},
		{"Equivocation", testEquivocation},
		{"Keys", testKeys},
		{"KeyEvents", testKeyEvents},
		{"Blobs", testBlobs},
		{"RecordBuild", testRecordBuild},
		{"RecordBuildRefusals", testRecordRefusals},
		{"StatusPeersSubscriptions", testStatus},
		{"Claims", testClaims},
		{"Events", testEvents},
		{"OpinionByNameAndCID", testOpinion},
		{"ClaimEvidenceAndInToto", testClaimEvidence},
		{"RedFlags", testRedFlags},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, mk) })
	}
}

var ctx = context.Background()

func wires(t *testing.T, claims ...*attest.Claim) [][]byte {
	var out [][]byte
	for _, c := range claims {
		out = append(out, attesttest.Wire(t, c))
	}
	return out
}

func statuses(res []core.ImportResult) []string {
	var out []string
	for _, r := range res {
		out = append(out, r.Status)
	}
	return out
}

// importTrusted imports one claim per identity and trusts each key.
func importTrusted(t *testing.T, api core.API, ids []*attest.Identity, mods ...func(*attest.Statement)) {
	t.Helper()
	for _, id := range ids {
		res, err := api.ImportClaims(ctx, wires(t, attesttest.Claim(t, id, mods...)))
		require.NoError(t, err)
		require.Equal(t, "new", res[0].Status, res[0].Error)
		require.NoError(t, api.SetTrust(ctx, id.Fingerprint(), attest.TrustTrusted, "test"))
	}
}

func testInfoEmpty(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	_, err := h.API.Info(ctx, core.InfoQuery{Package: "hello"})
	assert.True(t, core.IsNotFound(err), "empty store: %v", err)
	assert.Contains(t, err.Error(), "no claims for hello")
	for _, q := range []core.InfoQuery{{Package: "Hello"}, {Package: "hello", Opinion: "no-nls"}, {Package: "hello", DebianVersion: "x y"}} {
		_, err := h.API.Info(ctx, q)
		assert.True(t, core.IsInvalid(err), "%+v: %v", q, err)
	}
	v, err := h.API.Verify(ctx, core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: attesttest.DebName, SHA256: attesttest.Hex("deb")})
	require.NoError(t, err)
	assert.Equal(t, consensus.Unverified, v.Verdict)
	_, err = h.API.Verify(ctx, core.VerifyRequest{Package: "hello", FileName: "x.deb", SHA256: "nothex"})
	assert.True(t, core.IsInvalid(err), "%v", err)
}

func testImportClaims(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	ids := attesttest.Identities(t, 3)
	cs := []*attest.Claim{attesttest.Claim(t, ids[0]), attesttest.Claim(t, ids[1]), attesttest.Claim(t, ids[2])}
	res, err := h.API.ImportClaims(ctx, wires(t, cs...))
	require.NoError(t, err)
	assert.Equal(t, []string{"new", "new", "new"}, statuses(res))
	for i, r := range res {
		assert.Equal(t, cs[i].ID, r.ID)
	}
	res, err = h.API.ImportClaims(ctx, wires(t, cs...))
	require.NoError(t, err)
	assert.Equal(t, []string{"duplicate", "duplicate", "duplicate"}, statuses(res))

	// A valid envelope carrying another claim's signature.
	var env map[string]any
	require.NoError(t, json.Unmarshal(attesttest.Wire(t, attesttest.Claim(t, ids[0], attesttest.Artifact(attesttest.Hex("x")))), &env))
	env["signature"] = cs[0].Envelope.Signature
	tampered, err := json.Marshal(env)
	require.NoError(t, err)
	future := attesttest.Claim(t, ids[1], func(s *attest.Statement) { s.Timestamp = time.Now().Add(24 * time.Hour) })
	res, err = h.API.ImportClaims(ctx, [][]byte{[]byte("garbage"), tampered, attesttest.Wire(t, future)})
	require.NoError(t, err)
	assert.Equal(t, []string{"rejected", "rejected", "rejected"}, statuses(res))
	for _, r := range res {
		assert.NotEmpty(t, r.Error)
	}
	rows, err := h.API.Claims(ctx, core.ClaimsQuery{Package: "hello"})
	require.NoError(t, err)
	assert.Len(t, rows, 3, "rejected claims are not stored")
}

func testConsensusAndVerify(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	importTrusted(t, h.API, attesttest.Identities(t, 3))
	info, err := h.API.Info(ctx, core.InfoQuery{Package: "hello"})
	require.NoError(t, err)
	require.Len(t, info.Recipes, 1)
	ri := info.Recipes[0]
	require.NotNil(t, ri.Report.Consensus)
	assert.Len(t, ri.Report.Consensus.Trusted, 3)
	assert.Contains(t, ri.Bar, "/10")
	assert.False(t, ri.Own)
	for _, tc := range []struct {
		desc string
		req  core.VerifyRequest
		want consensus.Verdict
	}{
		{"the agreed hash", core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: attesttest.DebName, SHA256: attesttest.Hex("deb")}, consensus.Safe},
		{"another hash", core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: attesttest.DebName, SHA256: attesttest.Hex("evil")}, consensus.DoNotInstall},
		{"vanilla has no claims", core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", FileName: "hello_2.10-3_amd64.deb", SHA256: attesttest.Hex("deb")}, consensus.Unverified},
		{"another package", core.VerifyRequest{Package: "nano", DebianVersion: "7.2-1", FileName: "nano_7.2-1_amd64.deb", SHA256: attesttest.Hex("deb")}, consensus.Unverified},
		{"a recipe nobody built", core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", RecipeID: attesttest.Hex("other"), FileName: attesttest.DebName, SHA256: attesttest.Hex("deb")}, consensus.Unverified},
		{"bare hash of the agreed file", core.VerifyRequest{SHA256: attesttest.Hex("deb")}, consensus.Safe},
		{"bare hash nobody attests", core.VerifyRequest{SHA256: attesttest.Hex("evil")}, consensus.Unverified},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			v, err := h.API.Verify(ctx, tc.req)
			require.NoError(t, err)
			assert.Equal(t, tc.want, v.Verdict, "%v", v.Reasons)
			assert.NotEmpty(t, v.Reasons)
			if tc.want != consensus.Unverified {
				assert.Equal(t, attesttest.Hex("deb"), v.Expected)
			}
			if tc.req.Package == "" && tc.want == consensus.Safe {
				assert.Equal(t, attesttest.DebName, v.File, "a bare hash names the attested file")
			}
		})
	}
}

func testUnvetted(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	for _, id := range attesttest.Identities(t, 5) {
		_, err := h.API.ImportClaims(ctx, wires(t, attesttest.Claim(t, id)))
		require.NoError(t, err)
	}
	v, err := h.API.Verify(ctx, core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: attesttest.DebName, SHA256: attesttest.Hex("deb")})
	require.NoError(t, err)
	assert.Equal(t, consensus.Unverified, v.Verdict)
	info, err := h.API.Info(ctx, core.InfoQuery{Package: "hello"})
	require.NoError(t, err)
	assert.Len(t, info.Recipes[0].Report.Groups[0].Unvetted, 5)
}

func testSybilRanking(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	importTrusted(t, h.API, attesttest.Identities(t, 2))
	evilImage := func(s *attest.Statement) { s.ContainerDigest = "sha256:" + attesttest.Hex("evil image") }
	var flood [][]byte
	for _, id := range attesttest.Fresh(t, 12) {
		flood = append(flood, attesttest.Wire(t, attesttest.Claim(t, id, evilImage, attesttest.Artifact(attesttest.Hex("evil")))))
	}
	_, err := h.API.ImportClaims(ctx, flood)
	require.NoError(t, err)
	info, err := h.API.Info(ctx, core.InfoQuery{Package: "hello"})
	require.NoError(t, err)
	require.Len(t, info.Recipes, 1, "only the best recipe without All")
	assert.Equal(t, "sha256:"+attesttest.Hex("img"), info.Recipes[0].Recipe.ImageDigest, "the trusted recipe comes first")
	all, err := h.API.Info(ctx, core.InfoQuery{Package: "hello", All: true})
	require.NoError(t, err)
	assert.Len(t, all.Recipes, 2)
	v, err := h.API.Verify(ctx, core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: attesttest.DebName, SHA256: attesttest.Hex("evil")})
	require.NoError(t, err)
	assert.Equal(t, consensus.DoNotInstall, v.Verdict)
}

func testOpinionCID(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	importTrusted(t, h.API, attesttest.Identities(t, 3))
	req := core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: attesttest.DebName, SHA256: attesttest.Hex("deb")}
	req.OpinionCID = attesttest.OpinionCID
	v, err := h.API.Verify(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, consensus.Safe, v.Verdict)
	req.OpinionCID = vocab.CID([]byte("a tampered opinion called o3"))
	v, err = h.API.Verify(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, consensus.Unverified, v.Verdict, "claims about other opinion content never decide")
	assert.Contains(t, strings.Join(v.Reasons, " "), req.OpinionCID)
}

func testConfigTrust(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	ids := attesttest.Identities(t, 3)
	h := mk(t, func(c *config.Config) {
		for _, id := range ids {
			c.TrustedKeys = append(c.TrustedKeys, id.Fingerprint())
		}
	})
	_, err := h.API.ImportClaims(ctx, wires(t, attesttest.Claim(t, ids[0]), attesttest.Claim(t, ids[1]), attesttest.Claim(t, ids[2])))
	require.NoError(t, err)
	v, err := h.API.Verify(ctx, core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: attesttest.DebName, SHA256: attesttest.Hex("deb")})
	require.NoError(t, err)
	assert.Equal(t, consensus.Safe, v.Verdict)
	keys, err := h.API.Keys(ctx)
	require.NoError(t, err)
	for _, k := range keys {
		assert.Equal(t, attest.TrustTrusted, k.Trust, k.Fingerprint)
		assert.Contains(t, k.Note, "config")
	}
	// The operator's distrust wins over the config.
	require.NoError(t, h.API.SetTrust(ctx, ids[0].Fingerprint(), attest.TrustDistrusted, "lost the key"))
	k, err := h.API.Key(ctx, ids[0].Fingerprint())
	require.NoError(t, err)
	assert.Equal(t, attest.TrustDistrusted, k.Trust)
}

func testTrustHops(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	ids := attesttest.Fresh(t, 4) // root trusted, a certified by root, b certified by a, c certified by an unvetted key
	root, a, b, c := ids[0], ids[1], ids[2], ids[3]
	unvetted := attesttest.Fresh(t, 1)[0]
	require.NoError(t, attest.Certify(root, a.Entity))
	require.NoError(t, attest.Certify(a, b.Entity))
	require.NoError(t, attest.Certify(unvetted, c.Entity))
	for _, tc := range []struct {
		hops    int
		a, b, c attest.Trust
	}{
		{0, attest.TrustUnvetted, attest.TrustUnvetted, attest.TrustUnvetted},
		{1, attest.TrustCertified, attest.TrustUnvetted, attest.TrustUnvetted},
		{2, attest.TrustCertified, attest.TrustCertified, attest.TrustUnvetted},
	} {
		t.Run("hops="+string(rune('0'+tc.hops)), func(t *testing.T) {
			h := mk(t, func(cfg *config.Config) {
				cfg.TrustHops = &tc.hops
				cfg.Budget.ClaimsPerKey = 2 // keys that do not vote: two claims
			})
			_, err := h.API.ImportKey(ctx, root.PublicKey(), attest.TrustTrusted, "operator")
			require.NoError(t, err)
			for _, id := range []*attest.Identity{unvetted, a, b, c} {
				arm, err := attest.ArmorPublicKey(id.Entity)
				require.NoError(t, err)
				_, err = h.API.ImportKey(ctx, []byte(arm), attest.TrustUnvetted, "keyserver")
				require.NoError(t, err)
			}
			for _, want := range []struct {
				id   *attest.Identity
				want attest.Trust
				via  []string
			}{{a, tc.a, []string{root.Fingerprint()}}, {b, tc.b, []string{root.Fingerprint(), a.Fingerprint()}}, {c, tc.c, nil}} {
				k, err := h.API.Key(ctx, want.id.Fingerprint())
				require.NoError(t, err)
				assert.Equal(t, want.want, k.Trust, "key %s", want.id.Fingerprint())
				if want.want == attest.TrustCertified {
					assert.Equal(t, want.via, k.Via)
				}
			}
			// A certified key's claim counts as trusted.
			_, err = h.API.ImportClaims(ctx, wires(t, attesttest.Claim(t, root), attesttest.Claim(t, a)))
			require.NoError(t, err)
			info, err := h.API.Info(ctx, core.InfoQuery{Package: "hello"})
			require.NoError(t, err)
			want := 1
			if tc.hops > 0 {
				want = 2
			}
			assert.Len(t, info.Recipes[0].Report.Groups[0].Trusted, want)
			// info says how the certified builder is trusted.
			if tc.hops > 0 {
				assert.Equal(t, map[string][]string{a.Fingerprint(): {root.Fingerprint()}}, info.Recipes[0].Via)
			} else {
				assert.Empty(t, info.Recipes[0].Via)
			}
			// A certified key votes, so the budget of keys that do not
			// vote (two claims here) does not stop it; c's third is refused.
			for who, id := range map[string]*attest.Identity{"a": a, "c": c} {
				var ws [][]byte
				for i := range 3 {
					ws = append(ws, attesttest.Wire(t, attesttest.Claim(t, id, func(s *attest.Statement) {
						s.Timestamp = s.Timestamp.Add(time.Duration(i+1) * time.Minute)
					})))
				}
				res, err := h.API.ImportClaims(ctx, ws)
				require.NoError(t, err)
				over := 0
				for _, r := range res {
					if r.Status == store.StatusOverBudget.String() {
						over++
					}
				}
				wantOver := 0
				if who == "c" || tc.hops == 0 {
					wantOver = 1
					if who == "a" {
						wantOver = 2 // its first claim above already took one of two
					}
				}
				assert.Equal(t, wantOver, over, "key %s, hops %d: over-budget claims", who, tc.hops)
			}
		})
	}
}

func testEquivocation(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	ids := attesttest.Identities(t, 3)
	importTrusted(t, h.API, ids)
	res, err := h.API.ImportClaims(ctx, wires(t, attesttest.Claim(t, ids[0], attesttest.Artifact(attesttest.Hex("other")))))
	require.NoError(t, err)
	assert.Equal(t, []string{"equivocation"}, statuses(res))
	info, err := h.API.Info(ctx, core.InfoQuery{Package: "hello"})
	require.NoError(t, err)
	assert.Equal(t, []string{ids[0].Fingerprint()}, info.Recipes[0].Report.Equivocators)
	k, err := h.API.Key(ctx, ids[0].Fingerprint())
	require.NoError(t, err)
	assert.True(t, k.Equivocating)
}

func testKeys(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	other := attesttest.Fresh(t, 1)[0]
	arm, err := other.ArmoredPublicKey()
	require.NoError(t, err)
	ki, err := h.API.ImportKey(ctx, []byte(arm), attest.TrustUnvetted, "import test")
	require.NoError(t, err)
	assert.Equal(t, other.Fingerprint(), ki.Fingerprint)
	assert.Equal(t, attest.TrustUnvetted, ki.Trust)
	require.NoError(t, h.API.SetTrust(ctx, strings.ToLower(other.Fingerprint()), attest.TrustTrusted, "met in person"))
	keys, err := h.API.Keys(ctx)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assert.Equal(t, attest.TrustTrusted, keys[0].Trust)
	assert.Equal(t, "met in person", keys[0].Note)
	assert.Empty(t, keys[0].PublicKey, "listings carry no key material")
	k, err := h.API.Key(ctx, other.Fingerprint())
	require.NoError(t, err)
	parsed, err := attest.ParsePublicKey(k.PublicKey)
	require.NoError(t, err)
	assert.Equal(t, other.Fingerprint(), attest.Fingerprint(parsed))

	for _, tc := range []struct {
		desc string
		err  error
		want func(error) bool
	}{
		{"unknown key", h.API.SetTrust(ctx, strings.Repeat("AB", 20), attest.TrustTrusted, ""), core.IsNotFound},
		{"bad fingerprint", h.API.SetTrust(ctx, "xyz", attest.TrustTrusted, ""), core.IsInvalid},
		{"derived level", h.API.SetTrust(ctx, other.Fingerprint(), attest.TrustCertified, ""), core.IsInvalid},
		{"own key", h.API.SetTrust(ctx, h.Identity.Fingerprint(), attest.TrustDistrusted, ""), core.IsInvalid},
		{"import own level", func() error { _, err := h.API.ImportKey(ctx, []byte(arm), attest.TrustOwn, ""); return err }(), core.IsInvalid},
		{"import garbage", func() error {
			_, err := h.API.ImportKey(ctx, []byte("not a key"), attest.TrustUnvetted, "")
			return err
		}(), core.IsInvalid},
		{"get unknown", func() error { _, err := h.API.Key(ctx, strings.Repeat("CD", 20)); return err }(), core.IsNotFound},
		{"get malformed", func() error { _, err := h.API.Key(ctx, "nope"); return err }(), core.IsInvalid},
	} {
		assert.True(t, tc.err != nil && tc.want(tc.err), "%s: %v", tc.desc, tc.err)
	}
}

func testBlobs(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	for _, data := range [][]byte{[]byte("a build log"), bytes.Repeat([]byte("large "), 300_000)} {
		c, err := h.API.PutBlob(ctx, data)
		require.NoError(t, err)
		assert.Equal(t, vocab.CID(data), c)
		got, err := h.API.GetBlob(ctx, c)
		require.NoError(t, err)
		assert.Equal(t, data, got)
	}
	_, err := h.API.GetBlob(ctx, vocab.CID([]byte("nobody has this")))
	assert.True(t, core.IsNotFound(err), "%v", err)
	_, err = h.API.FetchBlob(ctx, vocab.CID([]byte("nobody has this")))
	assert.True(t, core.IsNotFound(err), "%v", err)
	// A blob only a peer holds is fetched, then held here.
	far := h.Net.SetBlob([]byte("a peer's build log"))
	_, err = h.API.GetBlob(ctx, far)
	assert.True(t, core.IsNotFound(err), "not held before: %v", err)
	got, err := h.API.FetchBlob(ctx, far)
	require.NoError(t, err)
	assert.Equal(t, "a peer's build log", string(got))
	got, err = h.API.GetBlob(ctx, far)
	require.NoError(t, err, "kept after the fetch")
	assert.Equal(t, "a peer's build log", string(got))
	_, err = h.API.GetBlob(ctx, "../../etc/passwd")
	assert.True(t, core.IsInvalid(err), "%v", err)
}

// fakeResult writes a successful build's artifact into dir.
func fakeResult(t *testing.T, content string) *builder.Result {
	t.Helper()
	p := filepath.Join(t.TempDir(), attesttest.DebName)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	st := attesttest.Statement()
	return &builder.Result{
		Recipe: st.Recipe(), BinaryVersion: st.Version, Status: attest.ResultSuccess,
		Artifacts: []builder.Output{{Name: attesttest.DebName, SHA256: attesttest.Hex(content), Path: p, Size: int64(len(content))}},
		Buildinfo: []byte("Format: 1.0\nSource: hello\n"), Log: []byte("dpkg-buildpackage: info: full log"),
	}
}

func testRecordBuild(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	events, err := h.API.Events(ctx)
	require.NoError(t, err)
	res := fakeResult(t, "deb")
	res.Recipe.OpinionCID = "" // vanilla recipe: no opinion file needed
	res.Lock = &opinions.Lock{Package: "hello", Suite: "bookworm", Arch: "amd64", MirrorDate: time.Date(2026, 7, 11, 10, 16, 37, 0, time.UTC), ImageEpoch: 1686355200,
		Source: opinions.LockSource{Version: "2.10-3", Directory: "pool/main/h/hello", Dsc: opinions.LockFile{Name: "hello_2.10-3.dsc", Size: 1, SHA256: attesttest.Hex("src")},
			Files: []opinions.LockFile{{Name: "hello_2.10.orig.tar.gz", Size: 1, SHA256: attesttest.Hex("orig")}}},
		Image: []opinions.LockDeb{{Name: "libc6", Version: "2.36-9", Arch: "amd64", Filename: "pool/main/g/glibc/libc6_2.36-9_amd64.deb", Size: 1, SHA256: attesttest.Hex("libc6")}}}
	res.Lock.Normalize()
	rr, err := core.Record(ctx, h.API, res, nil)
	require.NoError(t, err)
	c, err := attest.Verify(rr.Wire, nil, attest.VerifyOptions{})
	require.NoError(t, err)
	assert.Equal(t, rr.ID, c.ID)
	st := c.Statement
	assert.Equal(t, h.Identity.Fingerprint(), st.Builder)
	assert.Equal(t, vocab.CID(res.Buildinfo), st.BuildinfoCID)
	assert.Equal(t, vocab.CID(res.Log), st.LogCID)
	assert.Equal(t, vocab.CID(res.Lock.Canonical()), st.LockCID, "the lock the build ran from")
	assert.Equal(t, h.Net.PeerID(), st.PeerID)
	assert.Equal(t, res.Recipe.ID(), st.RecipeID)
	assert.True(t, rr.Published)
	assert.Equal(t, []string{rr.ID}, h.Net.PublishedIDs(), "published once")

	// Every blob the claim names is held, so peers can fetch it.
	for _, cid := range []string{st.BuildinfoCID, st.LogCID, st.LockCID, vocab.CID([]byte("deb"))} {
		_, err := h.API.GetBlob(ctx, cid)
		assert.NoError(t, err, cid)
	}
	// Stored once, as the node's own build.
	rows, err := h.API.Claims(ctx, core.ClaimsQuery{Package: "hello"})
	require.NoError(t, err)
	require.Len(t, rows, 1)
	info, err := h.API.Info(ctx, core.InfoQuery{Package: "hello", Opinion: "vanilla"})
	require.NoError(t, err)
	assert.True(t, info.Recipes[0].Own)
	require.Len(t, info.Recipes[0].Report.Groups, 1)
	assert.Equal(t, attest.TrustOwn, info.Recipes[0].Report.Groups[0].Trusted[0].Level)
	select {
	case ev := <-events:
		assert.Equal(t, core.EventClaim, ev.Type)
		assert.Equal(t, rr.ID, ev.ClaimID)
	case <-time.After(5 * time.Second):
		t.Fatal("no claim event")
	}
	// A failed build is signed too, without artifacts.
	failed := fakeResult(t, "deb")
	failed.Recipe.OpinionCID = ""
	failed.Status, failed.FailReason, failed.Artifacts = attest.ResultFailed, "test suite failed", nil
	rr2, err := core.Record(ctx, h.API, failed, nil)
	require.NoError(t, err)
	c2, err := attest.Verify(rr2.Wire, nil, attest.VerifyOptions{})
	require.NoError(t, err)
	assert.Equal(t, attest.ResultFailed, c2.Statement.Result)
	assert.Empty(t, c2.Statement.Artifacts)
}

func testRecordRefusals(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	res := fakeResult(t, "deb")
	rec := core.BuildRecord{Recipe: res.Recipe, BinaryVersion: res.BinaryVersion, Opinion: attest.OpinionRef{Name: "o3", CID: res.Recipe.OpinionCID, Purity: vocab.PurityPureCompilation},
		Status: attest.ResultSuccess, Artifacts: []attest.Artifact{{Name: attesttest.DebName, SHA256: attesttest.Hex("deb")}}}
	_, err := h.API.RecordBuild(ctx, rec)
	assert.True(t, core.IsInvalid(err), "artifact blob not held: %v", err)
	assert.Contains(t, err.Error(), "not held")
	bad := rec
	bad.BinaryVersion = "not a version"
	_, err = h.API.RecordBuild(ctx, bad)
	assert.True(t, core.IsInvalid(err), "%v", err)
	bad = rec
	bad.Opinion.CID = vocab.CID([]byte("other"))
	_, err = h.API.RecordBuild(ctx, bad)
	assert.True(t, core.IsInvalid(err), "opinion CID differs from the recipe's: %v", err)
	assert.Empty(t, h.Net.PublishedIDs())
	rows, err := h.API.Claims(ctx, core.ClaimsQuery{})
	require.NoError(t, err)
	assert.Empty(t, rows)
}

func testStatus(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	h.Net.SetPeers([]core.PeerInfo{{ID: "12D3KooWpeer", Addrs: []string{"/ip4/127.0.0.1/tcp/4001"}, Score: 1.5}})
	_, err := h.API.ImportClaims(ctx, wires(t, attesttest.Claim(t, attesttest.Identities(t, 1)[0])))
	require.NoError(t, err)
	st, err := h.API.Status(ctx)
	require.NoError(t, err)
	assert.True(t, st.Online)
	assert.Equal(t, h.Identity.Fingerprint(), st.Builder)
	assert.Equal(t, h.Net.PeerID(), st.PeerID)
	assert.Equal(t, 1, st.Peers)
	assert.Equal(t, 1, st.Claims)
	peers, err := h.API.Peers(ctx)
	require.NoError(t, err)
	require.Len(t, peers, 1)
	assert.Equal(t, 1.5, peers[0].Score)

	subs, err := h.API.Subscribe(ctx, "hello/o3", true)
	require.NoError(t, err)
	assert.Equal(t, []string{"hello/o3"}, subs)
	subs, err = h.API.Subscribe(ctx, "pv", true)
	require.NoError(t, err)
	assert.Equal(t, []string{"hello/o3", "pv/vanilla"}, subs)
	for _, bad := range []string{"Hello/o3", "pv/no-nls", "", "hello/o3/x"} {
		_, err := h.API.Subscribe(ctx, bad, true)
		assert.True(t, core.IsInvalid(err), "%q: %v", bad, err)
	}
	subs, err = h.API.Subscribe(ctx, "hello/o3", false)
	require.NoError(t, err)
	assert.Equal(t, []string{"pv/vanilla"}, subs)
	st, err = h.API.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"pv/vanilla"}, st.Subscriptions)
}

func testClaims(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	id := attesttest.Identities(t, 1)[0]
	pv := func(s *attest.Statement) {
		s.Package, s.Version, s.DebianVersion = "pv", "1.6.20-1", "1.6.20-1"
		s.Opinion = attest.OpinionRef{}
		s.Artifacts = []attest.Artifact{{Name: "pv_1.6.20-1_amd64.deb", SHA256: attesttest.Hex("pv")}}
	}
	_, err := h.API.ImportClaims(ctx, wires(t, attesttest.Claim(t, id), attesttest.Claim(t, id, pv)))
	require.NoError(t, err)
	all, err := h.API.Claims(ctx, core.ClaimsQuery{})
	require.NoError(t, err)
	var pkgs []string
	for _, r := range all {
		pkgs = append(pkgs, r.Package+"/"+r.Opinion)
		assert.Equal(t, id.Fingerprint(), r.Builder)
	}
	sort.Strings(pkgs)
	assert.Equal(t, []string{"hello/o3", "pv/"}, pkgs)
	one, err := h.API.Claims(ctx, core.ClaimsQuery{Package: "pv"})
	require.NoError(t, err)
	require.Len(t, one, 1)
	none, err := h.API.Claims(ctx, core.ClaimsQuery{Package: "nano"})
	require.NoError(t, err)
	assert.Empty(t, none)
	b, err := json.Marshal(none)
	require.NoError(t, err)
	assert.Equal(t, "[]", string(b), "an empty listing is [] in --json")
	_, err = h.API.Claims(ctx, core.ClaimsQuery{Package: "Bad Name"})
	assert.True(t, core.IsInvalid(err), "%v", err)
}

// testKeyEvents: key changes made here are on the event stream, with the
// level the key has after the change.
func testKeyEvents(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := h.API.Events(cctx)
	require.NoError(t, err)
	other := attesttest.Fresh(t, 1)[0]
	_, err = h.API.ImportKey(ctx, other.PublicKey(), attest.TrustUnvetted, "events test")
	require.NoError(t, err)
	// The stream may attach a moment after Events returns over a socket:
	// change the trust until the event shows up.
	deadline := time.After(10 * time.Second)
	levels := []attest.Trust{attest.TrustTrusted, attest.TrustDistrusted}
	for i := 0; ; i++ {
		lvl := levels[i%2]
		require.NoError(t, h.API.SetTrust(ctx, other.Fingerprint(), lvl, ""))
		wait := time.After(200 * time.Millisecond)
		for waiting := true; waiting; {
			select {
			case ev := <-events:
				if ev.Type != core.EventKey || ev.Key != other.Fingerprint() || ev.From != "self" {
					continue
				}
				var d map[string]string
				require.NoError(t, json.Unmarshal(ev.Data, &d))
				if d["change"] == "trust set to "+string(lvl) {
					assert.Equal(t, string(lvl), d["trust"])
					return
				}
			case <-wait:
				waiting = false
			case <-deadline:
				t.Fatal("no key event within 10s")
			}
		}
	}
}

func testEvents(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	cctx, cancel := context.WithCancel(ctx)
	events, err := h.API.Events(cctx)
	require.NoError(t, err)
	// The stream may attach a moment after Events returns over a socket:
	// import until the event shows up.
	deadline := time.After(10 * time.Second)
	got := false
	for !got {
		_, err := h.API.ImportClaims(ctx, wires(t, attesttest.Claim(t, attesttest.Fresh(t, 1)[0])))
		require.NoError(t, err)
		select {
		case ev := <-events:
			assert.Equal(t, core.EventClaim, ev.Type)
			got = true
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("no event within 10s")
		}
	}
	cancel()
	for range events { // the stream ends with its context
	}
}

// FakeNetwork records published claims and keys and reports fixed peers.
type FakeNetwork struct {
	mu        sync.Mutex
	peers     []core.PeerInfo
	published []string
	keys      [][]byte
	Fail      error             // Publish returns it when set
	Blobs     map[string][]byte // what the fake peers serve, by CID
}

// FetchBlob serves Blobs, as if one peer had them.
func (f *FakeNetwork) FetchBlob(_ context.Context, cid string, max int64) ([]byte, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.Blobs[cid]
	if !ok {
		return nil, "", errors.New("none of 1 connected peers has it")
	}
	return b, "12D3KooWFakePeer", nil
}

// SetBlob makes the fake peers serve data.
func (f *FakeNetwork) SetBlob(data []byte) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Blobs == nil {
		f.Blobs = map[string][]byte{}
	}
	c := vocab.CID(data)
	f.Blobs[c] = data
	return c
}

func (f *FakeNetwork) PeerID() string { return "12D3KooWFakeNetworkPeer" }
func (f *FakeNetwork) Addrs() []string {
	return []string{"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWFakeNetworkPeer"}
}
func (f *FakeNetwork) Peers() []core.PeerInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]core.PeerInfo(nil), f.peers...)
}
func (f *FakeNetwork) SetPeers(p []core.PeerInfo) { f.mu.Lock(); f.peers = p; f.mu.Unlock() }
func (f *FakeNetwork) Publish(_ context.Context, c *attest.Claim) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Fail != nil {
		return f.Fail
	}
	f.published = append(f.published, c.ID)
	return nil
}

// PublishKey records an announced key (Fail makes it fail).
func (f *FakeNetwork) PublishKey(_ context.Context, pub []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Fail != nil {
		return f.Fail
	}
	f.keys = append(f.keys, append([]byte(nil), pub...))
	return nil
}

// PublishedKeys are the keys announced, in order.
func (f *FakeNetwork) PublishedKeys() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.keys...)
}

// PublishedIDs are the claims published, in order.
func (f *FakeNetwork) PublishedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.published...)
}

// FakeSubscriber keeps subscriptions in memory.
type FakeSubscriber struct {
	mu   sync.Mutex
	subs map[string]bool
}

func (f *FakeSubscriber) Subscribe(_ context.Context, r vocab.Ref, on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == nil {
		f.subs = map[string]bool{}
	}
	if on {
		f.subs[r.String()] = true
	} else if !f.subs[r.String()] {
		return core.Invalid(errors.New("not subscribed to " + r.String()))
	} else {
		delete(f.subs, r.String())
	}
	return nil
}

func (f *FakeSubscriber) Subscriptions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for s := range f.subs {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func testOpinion(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	_, err := h.API.Opinion(ctx, core.OpinionQuery{Package: "hello", Name: "o3"})
	assert.True(t, core.IsNotFound(err), "no claims yet: %v", err)
	_, err = h.API.Opinion(ctx, core.OpinionQuery{Package: "hello", Name: "no-nls"})
	assert.True(t, core.IsInvalid(err), "%v", err)

	honest := []byte(`{"an":"honest bundle"}`)
	flood := []byte(`{"a":"sybil bundle"}`)
	hc, fc := h.Net.SetBlob(honest), h.Net.SetBlob(flood)
	importTrusted(t, h.API, attesttest.Identities(t, 2), func(s *attest.Statement) { s.Opinion.CID = hc })
	var sybil [][]byte
	for _, id := range attesttest.Fresh(t, 6) {
		sybil = append(sybil, attesttest.Wire(t, attesttest.Claim(t, id, func(s *attest.Statement) { s.Opinion.CID = fc })))
	}
	_, err = h.API.ImportClaims(ctx, sybil)
	require.NoError(t, err)
	b, err := h.API.Opinion(ctx, core.OpinionQuery{Package: "hello", Name: "o3"})
	require.NoError(t, err)
	assert.Equal(t, hc, b.CID, "the content trusted builders built wins over an unvetted flood")
	assert.Equal(t, honest, b.Data)
	assert.Equal(t, 2, b.Claims)
	b, err = h.API.Opinion(ctx, core.OpinionQuery{CID: fc})
	require.NoError(t, err)
	assert.Equal(t, flood, b.Data, "by CID: exactly that content")
}

func testClaimEvidence(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	peer := attesttest.Fresh(t, 1)[0]
	theirs := attesttest.Claim(t, peer, func(s *attest.Statement) { s.LogCID = vocab.CID([]byte("their log")) })
	res, err := h.API.ImportClaims(ctx, wires(t, theirs))
	require.NoError(t, err)
	require.Equal(t, "new", res[0].Status)

	d, err := h.API.Claim(ctx, theirs.ID[:20])
	require.NoError(t, err)
	assert.Equal(t, theirs.ID, d.ID)
	assert.Equal(t, peer.Fingerprint(), d.Signer.Fingerprint)
	assert.Equal(t, attest.TrustUnvetted, d.Signer.Trust)
	require.NotNil(t, d.Origin)
	assert.Equal(t, "import", d.Origin.Via)
	assert.Equal(t, []core.Evidence{{Kind: "build log", CID: vocab.CID([]byte("their log")), Held: false}}, d.Evidence)
	// The evidence checks without the node: the wire re-verifies, the
	// payload is what was signed.
	c, err := attest.Verify(d.Wire, nil, attest.VerifyOptions{})
	require.NoError(t, err)
	assert.Equal(t, theirs.ID, c.ID)
	assert.Equal(t, theirs.Envelope.Payload, d.Payload)
	assert.Contains(t, d.SignerKey, "BEGIN PGP PUBLIC KEY BLOCK")

	_, err = h.API.Claim(ctx, attesttest.Claim(t, peer, func(s *attest.Statement) { s.Package = "nano" }).ID)
	assert.True(t, core.IsNotFound(err), "%v", err)
	_, err = h.API.Claim(ctx, "bafk")
	assert.True(t, core.IsInvalid(err), "%v", err)

	// in-toto: only own claims, signed by the node key.
	_, err = h.API.InToto(ctx, theirs.ID)
	assert.True(t, core.IsInvalid(err), "%v", err)
	r := fakeResult(t, "deb")
	r.Recipe.OpinionCID = ""
	rr, err := core.Record(ctx, h.API, r, nil)
	require.NoError(t, err)
	own, err := h.API.Claim(ctx, rr.ID)
	require.NoError(t, err)
	assert.Equal(t, "own build", own.Origin.Via)
	for _, e := range own.Evidence {
		assert.True(t, e.Held, "own build's %s is held", e.Kind)
	}
	env, err := h.API.InToto(ctx, rr.ID)
	require.NoError(t, err)
	payload, err := attest.VerifyDSSE(env, h.Identity.Entity)
	require.NoError(t, err)
	assert.Contains(t, string(payload), `"https://in-toto.io/Statement/v1"`)
	assert.Contains(t, string(payload), rr.ID)
}

func testRedFlags(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	importTrusted(t, h.API, attesttest.Identities(t, 3))
	info, err := h.API.Info(ctx, core.InfoQuery{Package: "hello"})
	require.NoError(t, err)
	recipe := info.Recipes[0].Recipe.RecipeID
	honest, tampered := attesttest.Hex("deb"), attesttest.Hex("tampered")

	rr, err := h.API.ReportMismatch(ctx, core.Mismatch{RecipeID: recipe, File: attesttest.DebName, Observed: tampered, Expected: honest, Reason: "verify:\nfile differs"})
	require.NoError(t, err)
	assert.Contains(t, h.Net.PublishedIDs(), rr.ID, "the red flag is published")
	c, err := attest.Verify(rr.Wire, nil, attest.VerifyOptions{})
	require.NoError(t, err)
	assert.Equal(t, attest.ResultMismatch, c.Statement.Result)
	assert.Equal(t, "verify: file differs", c.Statement.Reason, "one line")

	info, err = h.API.Info(ctx, core.InfoQuery{Package: "hello"})
	require.NoError(t, err)
	ri := info.Recipes[0]
	assert.False(t, ri.Own, "a red flag is not a build")
	require.Len(t, ri.Report.RedFlags, 1)
	assert.Equal(t, attest.TrustOwn, ri.Report.RedFlags[0].Level)
	assert.Len(t, ri.Report.Consensus.Trusted, 3)

	v, err := h.API.Verify(ctx, core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: attesttest.DebName, SHA256: tampered})
	require.NoError(t, err)
	assert.Equal(t, consensus.DoNotInstall, v.Verdict)
	assert.Contains(t, strings.Join(v.Reasons, "\n"), "RED FLAG")
	v, err = h.API.Verify(ctx, core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", FileName: attesttest.DebName, SHA256: honest})
	require.NoError(t, err)
	assert.Equal(t, consensus.Safe, v.Verdict)

	_, err = h.API.ReportMismatch(ctx, core.Mismatch{RecipeID: attesttest.Hex("nope"), File: attesttest.DebName, Observed: tampered, Expected: honest})
	assert.True(t, core.IsNotFound(err), "%v", err)
	_, err = h.API.ReportMismatch(ctx, core.Mismatch{RecipeID: recipe, File: attesttest.DebName, Observed: honest, Expected: honest})
	assert.True(t, core.IsInvalid(err), "%v", err)
}
