package attest

import (
	"bytes"
	"crypto"
	"crypto/dsa" //nolint:staticcheck // building a hostile DSA key
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/elgamal"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// RSA keys take seconds to generate, so the RSA keys the tests and
// benchmarks parse are checked in (public keys only). Regenerate them with
//
//	go test ./attest -run TestKeyCostTestdata -update-keycost
var updateKeyCost = flag.Bool("update-keycost", false, "regenerate attest/testdata/keys (RSA keys, slow)")

const keyCostDir = "testdata/keys"

// keyTime is the creation time of generated test keys: fixed, so that the
// checked-in keys do not depend on when they were made.
var keyTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func cfgAt(t time.Time, algo packet.PublicKeyAlgorithm, curve packet.Curve) *packet.Config {
	return &packet.Config{Algorithm: algo, Curve: curve, DefaultHash: crypto.SHA256, Time: func() time.Time { return t }}
}

func edConfig() *packet.Config { return cfgAt(keyTime, packet.PubKeyAlgoEdDSA, packet.Curve25519) }

// TestKeyCostTestdata regenerates the checked-in RSA keys: rsaN.pgp (an
// RSA-N primary key, one user ID, one RSA-N encryption subkey, as GnuPG
// lays out an RSA key); rsaN-costliest.pgp, the costliest RSA-N keys the
// rules accept (ReservedRevocations key revocations and self-signatures
// up to MaxKeyVerifyCost: 4 RSA-4096 verifications, 8 RSA-3072 ones;
// third-party certifications up to MaxKeySignatures); and
// rsa4096-over-budget.pgp, an RSA-4096 key with one user ID more than
// the budget leaves room for.
func TestKeyCostTestdata(t *testing.T) {
	if !*updateKeyCost {
		t.Skip("run with -update-keycost to regenerate " + keyCostDir)
	}
	if err := os.MkdirAll(keyCostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, bits := range []int{2048, 3072, 4096} {
		priv, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		writeKey(t, fmt.Sprintf("rsa%d.pgp", bits), rsaEntity(t, priv, 1, 1), true)
		half := map[int]int{3072: 3, 4096: 1}[bits] // user IDs, and as many subkeys
		if half == 0 {
			continue
		}
		e := rsaEntity(t, priv, half, half)
		revoke(t, e, ReservedRevocations)
		writeKey(t, fmt.Sprintf("rsa%d-costliest.pgp", bits), withCerts(t, e, MaxKeySignatures-2*half-ReservedRevocations, 0), true)
		if bits == 4096 {
			writeKey(t, "rsa4096-over-budget.pgp", rsaEntity(t, priv, half+1, half), false)
		}
	}
}

// revoke adds n key revocations to e.
func revoke(t testing.TB, e *openpgp.Entity, n int) *openpgp.Entity {
	t.Helper()
	for i := range n {
		if err := e.RevokeKey(packet.KeyRetired, fmt.Sprintf("retired %d", i), cfgAt(keyTime.Add(time.Hour), e.PrimaryKey.PubKeyAlgo, "")); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func edConfigAt(t time.Time) *packet.Config {
	return cfgAt(t, packet.PubKeyAlgoEdDSA, packet.Curve25519)
}

func writeKey(t *testing.T, name string, e *openpgp.Entity, accepted bool) {
	t.Helper()
	b := serializeKey(t, e)
	if _, err := ParsePublicKey(b); (err == nil) != accepted {
		t.Fatalf("%s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(keyCostDir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d bytes", name, len(b))
}

// rsaEntity makes a key from one RSA private key: the primary key, uids
// user IDs and subs encryption subkeys (the same key material, created a
// second apart, so each packet differs), every self-signature by priv.
func rsaEntity(t testing.TB, priv *rsa.PrivateKey, uids, subs int) *openpgp.Entity {
	t.Helper()
	bits := priv.N.BitLen()
	primary := packet.NewRSAPrivateKey(keyTime, priv)
	e := &openpgp.Entity{PrimaryKey: &primary.PublicKey, PrivateKey: primary, Identities: map[string]*openpgp.Identity{}}
	cfg := cfgAt(keyTime, packet.PubKeyAlgoRSA, "")
	for i := range uids {
		if err := e.AddUserId(fmt.Sprintf("RSA-%d builder %d", bits, i), "", fmt.Sprintf("rsa%d@example.org", i), cfg); err != nil {
			t.Fatal(err)
		}
	}
	for i := range subs {
		at := keyTime.Add(time.Duration(i+1) * time.Second)
		sub := packet.NewRSAPrivateKey(at, priv)
		sub.IsSubkey = true
		sig := &packet.Signature{
			Version: 4, SigType: packet.SigTypeSubkeyBinding, PubKeyAlgo: packet.PubKeyAlgoRSA, Hash: crypto.SHA256,
			CreationTime: at, IssuerKeyId: &e.PrimaryKey.KeyId, IssuerKeyVersion: 4, IssuerFingerprint: e.PrimaryKey.Fingerprint,
			FlagsValid: true, FlagEncryptCommunications: true, FlagEncryptStorage: true,
		}
		if err := sig.SignKey(&sub.PublicKey, e.PrivateKey, cfg); err != nil {
			t.Fatal(err)
		}
		e.Subkeys = append(e.Subkeys, openpgp.Subkey{PublicKey: &sub.PublicKey, PrivateKey: sub, Sig: sig})
	}
	return e
}

// certifierAt is an Ed25519 key created at t, to certify others.
func certifierAt(t testing.TB, at time.Time) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity("certifier", "", "certifier@example.org", edConfigAt(at))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func serializeKey(t testing.TB, e *openpgp.Entity) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func readTestKey(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(keyCostDir, name))
	if err != nil {
		t.Fatalf("%v (regenerate with go test ./attest -run TestKeyCostTestdata -update-keycost)", err)
	}
	return b
}

// newKey makes an Ed25519 key with a cv25519 encryption subkey (what
// openpgp.NewEntity and GnuPG make), or with cfg's algorithm.
func newKey(t testing.TB, cfg *packet.Config) *openpgp.Entity {
	t.Helper()
	if cfg == nil {
		cfg = edConfig()
	}
	e, err := openpgp.NewEntity("Mallory", "", "mallory@example.org", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func onlyIdentity(e *openpgp.Entity) *openpgp.Identity {
	for _, id := range e.Identities {
		return id
	}
	return nil
}

// selfSigs adds n more distinct self-signatures over e's user ID.
func selfSigs(t testing.TB, e *openpgp.Entity, n int) *openpgp.Entity {
	t.Helper()
	id := onlyIdentity(e)
	for i := range n {
		s := &packet.Signature{
			Version: 4, SigType: packet.SigTypePositiveCert, PubKeyAlgo: e.PrimaryKey.PubKeyAlgo, Hash: crypto.SHA256,
			CreationTime: keyTime.Add(time.Duration(i+1) * time.Second),
			IssuerKeyId:  &e.PrimaryKey.KeyId, IssuerKeyVersion: 4, IssuerFingerprint: e.PrimaryKey.Fingerprint,
		}
		if err := s.SignUserId(id.Name, e.PrimaryKey, e.PrivateKey, edConfig()); err != nil {
			t.Fatal(err)
		}
		id.Signatures = append(id.Signatures, s)
	}
	return e
}

// certs adds n distinct third-party certifications over e's user IDs,
// each with a notation of pad bytes.
func certs(t testing.TB, e *openpgp.Entity, n, pad int) *openpgp.Entity {
	t.Helper()
	return withCerts(t, e, n, pad)
}

func withCerts(t testing.TB, e *openpgp.Entity, n, pad int) *openpgp.Entity {
	t.Helper()
	certifier := certifierAt(t, keyTime.Add(-time.Hour))
	var names []string
	for name := range e.Identities {
		names = append(names, name)
	}
	sort.Strings(names)
	for i := range n {
		cfg := edConfigAt(keyTime.Add(time.Duration(i) * time.Second))
		if pad > 0 {
			cfg.SignatureNotations = []*packet.Notation{{Name: "pad@example.org", Value: bytes.Repeat([]byte{byte(i)}, pad)}}
		}
		if err := e.SignIdentity(names[i%len(names)], certifier, cfg); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// edAtBounds is an Ed25519 key at every count bound: MaxKeyUserIDs user
// IDs, cv25519 subkeys and ReservedRevocations key revocations up to
// MaxKeyVerifications, and third-party certifications of pad notation
// bytes up to MaxKeySignatures.
func edAtBounds(t testing.TB, pad int) *openpgp.Entity {
	t.Helper()
	e := newKey(t, nil)
	for i := 1; i < MaxKeyUserIDs; i++ {
		if err := e.AddUserId(fmt.Sprintf("alias %d", i), "", "", edConfig()); err != nil {
			t.Fatal(err)
		}
	}
	for len(e.Subkeys) < MaxKeyVerifications-ReservedRevocations-MaxKeyUserIDs {
		if err := e.AddEncryptionSubkey(edConfig()); err != nil {
			t.Fatal(err)
		}
	}
	revoke(t, e, ReservedRevocations)
	return withCerts(t, e, MaxKeySignatures-MaxKeyVerifications, pad)
}

// repeatSelfSig repeats e's self-signature byte for byte until it appears
// n times: the attack of issue 20 (go-crypto verifies every copy).
func repeatSelfSig(e *openpgp.Entity, n int) *openpgp.Entity {
	id := onlyIdentity(e)
	for len(id.Signatures) < n {
		id.Signatures = append(id.Signatures, id.SelfSignature)
	}
	return e
}

// rawKey serializes a key packet followed by a user ID and no
// signature: enough for refusals that come at the key packet.
func rawKey(t testing.TB, pk *packet.PublicKey) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := pk.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	if err := packet.NewUserId("mallory", "", "").Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func bigOf(t testing.TB, bits int) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits)))
	if err != nil {
		t.Fatal(err)
	}
	return n.SetBit(n, bits-1, 1).SetBit(n, 0, 1)
}

// packetOf frames body as one new-format packet.
func packetOf(tag byte, body []byte) []byte {
	b := []byte{0xc0 | tag, 0xff, byte(len(body) >> 24), byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	return append(b, body...)
}

// brainpoolFlood is the key of issue 20: ECDSA on brainpoolP512r1, its
// self-signature repeated 139 times (38 KB, 1.1-1.4 s to parse before
// the rules).
func brainpoolFlood(t testing.TB) []byte {
	t.Helper()
	return serializeKey(t, repeatSelfSig(newKey(t, cfgAt(keyTime, packet.PubKeyAlgoECDSA, packet.CurveBrainpoolP512)), 139))
}

// Hostile keys are refused by checkKeyCost, before go-crypto verifies
// anything, with an error naming the rule; ParsePublicKey reports the
// same.
func TestParsePublicKeyRefusesCostlyKeys(t *testing.T) {
	ed := func() *openpgp.Entity { return newKey(t, nil) }
	noSub := func(e *openpgp.Entity) *openpgp.Entity { e.Subkeys = nil; return e }
	ecdsaKey := func(c packet.Curve) []byte {
		return serializeKey(t, newKey(t, cfgAt(keyTime, packet.PubKeyAlgoECDSA, c)))
	}
	withSubkey := func(signing bool, algo packet.PublicKeyAlgorithm, c packet.Curve) []byte {
		e := ed()
		var err error
		if signing {
			err = e.AddSigningSubkey(cfgAt(keyTime, algo, c))
		} else {
			err = e.AddEncryptionSubkey(cfgAt(keyTime, algo, c))
		}
		if err != nil {
			t.Fatal(err)
		}
		return serializeKey(t, e)
	}
	manyUIDs := ed()
	for i := range MaxKeyUserIDs {
		if err := manyUIDs.AddUserId(fmt.Sprintf("alias %d", i), "", "", edConfig()); err != nil {
			t.Fatal(err)
		}
	}
	manySubs := ed()
	for len(manySubs.Subkeys) <= MaxKeySubkeys {
		if err := manySubs.AddEncryptionSubkey(edConfig()); err != nil {
			t.Fatal(err)
		}
	}
	dupCert := certs(t, ed(), 1, 0)
	id := onlyIdentity(dupCert)
	id.Signatures = append(id.Signatures, id.Signatures[len(id.Signatures)-1])
	revoked := ed()
	for i := range MaxRevocations + 1 {
		if err := revoked.RevokeKey(packet.KeyRetired, fmt.Sprintf("retired %d", i), edConfig()); err != nil {
			t.Fatal(err)
		}
	}
	var priv bytes.Buffer
	if err := ed().SerializePrivate(&priv, nil); err != nil {
		t.Fatal(err)
	}
	var armoredPriv bytes.Buffer
	w, _ := armor.Encode(&armoredPriv, openpgp.PrivateKeyType, nil)
	w.Write(priv.Bytes())
	w.Close()
	ed448, err := openpgp.NewEntity("m", "", "", cfgAt(keyTime, packet.PubKeyAlgoEd448, ""))
	if err != nil {
		t.Fatal(err)
	}
	goodKey := serializeKey(t, ed())
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	longUID, err := openpgp.NewEntity(strings.Repeat("x", 1100), "", "", edConfig())
	if err != nil {
		t.Fatal(err)
	}
	x25519Primary := append([]byte{4, 0x69, 0x55, 0x6d, 0x80, 25}, bytes.Repeat([]byte{9}, 32)...)
	flood := brainpoolFlood(t)
	if len(flood) > 64<<10 {
		t.Fatalf("brainpool flood is %d bytes", len(flood))
	}
	for _, tc := range []struct {
		desc string
		data []byte
		want string
	}{
		// Algorithms.
		{"brainpoolP512r1 key, self-signature repeated 139x", flood, "primary key is ECDSA (algorithm 19) on brainpoolP512r1"},
		{"brainpoolP256r1", ecdsaKey(packet.CurveBrainpoolP256), "ECDSA (algorithm 19) on brainpoolP256r1"},
		{"brainpoolP384r1", ecdsaKey(packet.CurveBrainpoolP384), "ECDSA (algorithm 19) on brainpoolP384r1"},
		{"secp256k1", ecdsaKey(packet.CurveSecP256k1), "ECDSA (algorithm 19) on secp256k1"},
		{"NIST P-256", ecdsaKey(packet.CurveNistP256), "ECDSA (algorithm 19) on NIST P-256"},
		{"Ed448", serializeKey(t, ed448), "Ed448 (algorithm 28)"},
		{"DSA with 16,000-bit q", rawKey(t, packet.NewDSAPublicKey(keyTime, &dsa.PublicKey{Parameters: dsa.Parameters{P: bigOf(t, 16000), Q: bigOf(t, 16000), G: bigOf(t, 15000)}, Y: bigOf(t, 15000)})), "DSA (algorithm 17)"},
		{"DSA-3072", rawKey(t, packet.NewDSAPublicKey(keyTime, &dsa.PublicKey{Parameters: dsa.Parameters{P: bigOf(t, 3072), Q: bigOf(t, 256), G: bigOf(t, 3000)}, Y: bigOf(t, 3000)})), "DSA (algorithm 17)"},
		{"ElGamal", rawKey(t, packet.NewElGamalPublicKey(keyTime, &elgamal.PublicKey{G: big.NewInt(2), P: bigOf(t, 2048), Y: bigOf(t, 2000)})), "ElGamal (algorithm 16)"},
		{"RSA-1024", rawKey(t, packet.NewRSAPublicKey(keyTime, &rsa1024.PublicKey)), "RSA (algorithm 1) of 1024 bits"},
		{"RSA-8192", rawKey(t, packet.NewRSAPublicKey(keyTime, &rsa.PublicKey{N: bigOf(t, 8192), E: 65537})), "RSA (algorithm 1) of 8192 bits"},
		{"RSA-16384", rawKey(t, packet.NewRSAPublicKey(keyTime, &rsa.PublicKey{N: bigOf(t, 16384), E: 65537})), "of 16384 bits"},
		{"RSA with an even exponent", rawKey(t, packet.NewRSAPublicKey(keyTime, &rsa.PublicKey{N: bigOf(t, 2048), E: 65536})), "public exponent 65536"},
		{"RSA with exponent 1", rawKey(t, packet.NewRSAPublicKey(keyTime, &rsa.PublicKey{N: bigOf(t, 2048), E: 1})), "public exponent 1 "},
		{"X25519 primary key", packetOf(tagPublicKey, x25519Primary), "primary key is X25519 (algorithm 25)"},
		{"v3 key", packetOf(tagPublicKey, []byte{3, 0, 0, 0, 0, 0, 0, 1}), "version 3"},
		{"ECDSA brainpool signing subkey", withSubkey(true, packet.PubKeyAlgoECDSA, packet.CurveBrainpoolP512), "subkey is ECDSA (algorithm 19) on brainpoolP512r1"},
		{"ECDSA P-256 signing subkey", withSubkey(true, packet.PubKeyAlgoECDSA, packet.CurveNistP256), "subkey is ECDSA (algorithm 19) on NIST P-256"},
		{"ECDH brainpool encryption subkey", withSubkey(false, packet.PubKeyAlgoECDSA, packet.CurveBrainpoolP384), "subkey is ECDH (algorithm 18) on brainpoolP384r1"},
		{"Ed448 subkey", withSubkey(true, packet.PubKeyAlgoEd448, ""), "subkey is Ed448 (algorithm 28)"},
		// Packet counts.
		{"self-signature repeated 139x", serializeKey(t, repeatSelfSig(ed(), 139)), "repeated"},
		{"self-signature repeated once", serializeKey(t, repeatSelfSig(ed(), 2)), "repeated"},
		{"duplicate certification", serializeKey(t, dupCert), "repeated"},
		{"too many distinct self-signatures", serializeKey(t, selfSigs(t, noSub(ed()), MaxKeyVerifications-ReservedRevocations)), fmt.Sprintf("more than %d self-signatures", MaxKeyVerifications)},
		{"too many revocations for the self-signatures", serializeKey(t, revoke(t, selfSigs(t, noSub(ed()), MaxKeyVerifications-ReservedRevocations-1), ReservedRevocations+1)), fmt.Sprintf("more than %d self-signatures", MaxKeyVerifications)},
		{"too many user IDs", serializeKey(t, manyUIDs), fmt.Sprintf("more than %d user IDs", MaxKeyUserIDs)},
		{"too many subkeys", serializeKey(t, manySubs), fmt.Sprintf("more than %d subkeys", MaxKeySubkeys)},
		{"too many key revocations", serializeKey(t, revoked), fmt.Sprintf("more than %d key revocations", MaxRevocations)},
		{"too many signatures", serializeKey(t, certs(t, ed(), MaxKeySignatures-1, 0)), fmt.Sprintf("more than %d signatures", MaxKeySignatures)},
		{"long user ID", serializeKey(t, longUID), "user ID of 1100 bytes"},
		{"RSA-4096 over the verification budget", readTestKey(t, "rsa4096-over-budget.pgp"), fmt.Sprintf("weigh more than %d Ed25519 verifications", MaxKeyVerifyCost)},
		// Structure.
		{"two keys", append(bytes.Clone(goodKey), serializeKey(t, ed())...), "a second primary key: want exactly one key"},
		{"secret key", priv.Bytes(), "secret key material"},
		{"armored secret key", armoredPriv.Bytes(), "secret key material"},
		{"literal data packet", append(bytes.Clone(goodKey), packetOf(11, []byte("b\x00\x00\x00\x00\x00"))...), "packet of type 11"},
		{"partial body length", append(bytes.Clone(goodKey), 0xc2, 0xe1, 0, 0), "partial body length"},
		{"truncated packet", goodKey[:len(goodKey)-1], "truncated packet"},
		{"signature first", append(packetOf(tagSignature, []byte{4, 0x13}), goodKey...), "first packet (tag 2) is not a public key"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if !bytes.HasPrefix(tc.data, []byte("-----BEGIN")) {
				err := checkKeyCost(tc.data)
				if !errors.Is(err, ErrKeyNotAllowed) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("checkKeyCost: %v, want %q", err, tc.want)
				}
			}
			start := time.Now()
			_, err := ParsePublicKey(tc.data)
			if !errors.Is(err, ErrKeyNotAllowed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParsePublicKey: %v, want %q", err, tc.want)
			}
			t.Logf("%d bytes, refused in %s: %v", len(tc.data), time.Since(start), err)
		})
	}
}

// Keys within the rules parse: builder keys, GnuPG's default
// Ed25519/cv25519, RFC 9580 v6 Ed25519, RSA of 2048 to 4096 bits, keys at
// every bound.
func TestParsePublicKeyAcceptsBuilderKeys(t *testing.T) {
	builder := newID(t, "builder")
	arm, err := builder.ArmoredPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	v6, err := openpgp.NewEntity("v6", "", "v6@example.org", &packet.Config{Algorithm: packet.PubKeyAlgoEd25519, V6Keys: true, DefaultHash: crypto.SHA256, Time: func() time.Time { return keyTime }})
	if err != nil {
		t.Fatal(err)
	}
	ed := func() *openpgp.Entity { return newKey(t, nil) }
	maxUIDs, maxSubs := ed(), ed()
	for i := 1; i < MaxKeyUserIDs; i++ {
		if err := maxUIDs.AddUserId(fmt.Sprintf("alias %d", i), "", "", edConfig()); err != nil {
			t.Fatal(err)
		}
	}
	for len(maxSubs.Subkeys) < MaxKeySubkeys {
		if err := maxSubs.AddEncryptionSubkey(edConfig()); err != nil {
			t.Fatal(err)
		}
	}
	signingSub := ed()
	if err := signingSub.AddSigningSubkey(edConfig()); err != nil {
		t.Fatal(err)
	}
	maxRevs := ed()
	for i := range MaxRevocations {
		if err := maxRevs.RevokeKey(packet.KeyRetired, fmt.Sprintf("retired %d", i), edConfig()); err != nil {
			t.Fatal(err)
		}
	}
	noSub := func() *openpgp.Entity { e := ed(); e.Subkeys = nil; return e }
	for _, tc := range []struct {
		desc string
		data []byte
	}{
		{"GenerateIdentity key (Ed25519, Ed25519 signing subkey)", builder.PublicKey()},
		{"GenerateIdentity key, armored", []byte(arm)},
		{"Ed25519 with a cv25519 encryption subkey", serializeKey(t, ed())},
		{"Ed25519 with an Ed25519 signing subkey (back-signature)", serializeKey(t, signingSub)},
		{"v6 Ed25519 with an X25519 subkey", serializeKey(t, v6)},
		{"RSA-2048", readTestKey(t, "rsa2048.pgp")},
		{"RSA-3072", readTestKey(t, "rsa3072.pgp")},
		{"RSA-4096", readTestKey(t, "rsa4096.pgp")},
		{"RSA-4096 at the verification budget, revoked twice", readTestKey(t, "rsa4096-costliest.pgp")},
		{"RSA-3072 at the verification budget, revoked twice", readTestKey(t, "rsa3072-costliest.pgp")},
		{"Ed25519 at every count bound", serializeKey(t, edAtBounds(t, 0))},
		{fmt.Sprintf("%d self-signatures", MaxKeyVerifications-ReservedRevocations), serializeKey(t, selfSigs(t, noSub(), MaxKeyVerifications-ReservedRevocations-1))},
		{fmt.Sprintf("%d self-signatures and %d revocations", MaxKeyVerifications-ReservedRevocations, ReservedRevocations), serializeKey(t, revoke(t, selfSigs(t, noSub(), MaxKeyVerifications-ReservedRevocations-1), ReservedRevocations))},
		{fmt.Sprintf("%d user IDs", MaxKeyUserIDs), serializeKey(t, maxUIDs)},
		{fmt.Sprintf("%d subkeys", MaxKeySubkeys), serializeKey(t, maxSubs)},
		{fmt.Sprintf("%d key revocations", MaxRevocations), serializeKey(t, maxRevs)},
		{fmt.Sprintf("%d signatures", MaxKeySignatures), serializeKey(t, certs(t, ed(), MaxKeySignatures-2, 0))},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			start := time.Now()
			e, err := ParsePublicKey(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d bytes, %d user IDs, %d subkeys, parsed in %s", len(tc.data), len(e.Identities), len(e.Subkeys), time.Since(start))
			if bin := dearmored(t, tc.data); bin != nil {
				k, err := keyCostOf(bin)
				if err != nil {
					t.Fatal(err)
				}
				if v := verificationsOf(e); v > k.Verifications {
					t.Fatalf("go-crypto verified at least %d signatures, checkKeyCost counted %d", v, k.Verifications)
				}
			}
		})
	}
}

// The costliest accepted keys are what their names say: at the
// verification budget, or at every count bound.
func TestCostliestKeysAtBounds(t *testing.T) {
	for _, tc := range []struct {
		desc string
		in   []byte
		want keyCost
	}{
		{"RSA-4096", readTestKey(t, "rsa4096-costliest.pgp"), keyCost{UserIDs: 1, Subkeys: 1, Signatures: MaxKeySignatures, Verifications: 4, Weight: 28, Revocations: 2}},
		{"RSA-3072", readTestKey(t, "rsa3072-costliest.pgp"), keyCost{UserIDs: 3, Subkeys: 3, Signatures: MaxKeySignatures, Verifications: 8, Weight: MaxKeyVerifyCost, Revocations: 2}},
		{"Ed25519", serializeKey(t, edAtBounds(t, 0)), keyCost{UserIDs: MaxKeyUserIDs, Subkeys: 6, Signatures: MaxKeySignatures, Verifications: MaxKeyVerifications, Weight: MaxKeyVerifications, Revocations: 2}},
	} {
		got, err := keyCostOf(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.desc, got, err, tc.want)
		}
	}
	// One more RSA-4096 verification is over the budget.
	if MaxKeyVerifyCost-28 >= 7 {
		t.Fatal("rsa4096-costliest.pgp is not at the budget")
	}
}

// Keys GnuPG 2.2 (Debian 12) makes are accepted: its "default" (RSA-3072
// with an RSA-3072 encryption subkey) and "future-default" (Ed25519 with
// a cv25519 encryption subkey, the default of later GnuPG).
func TestParsePublicKeyGnuPGKeys(t *testing.T) {
	gpg := gpgHome(t)
	for _, algo := range []string{"default", "future-default"} {
		uid := "GnuPG " + algo + " <" + algo + "@example.org>"
		if out, err := gpg(nil, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", uid, algo, "default", "never"); err != nil {
			t.Fatalf("gpg --quick-gen-key %s: %v\n%s", algo, err, out)
		}
		file := filepath.Join(t.TempDir(), "key.gpg")
		if out, err := gpg(nil, "--output", file, "--export", uid); err != nil {
			t.Fatalf("gpg --export: %v\n%s", err, out)
		}
		pub, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		e, err := ParsePublicKey(pub)
		if err != nil {
			t.Fatalf("gpg %s key: %v", algo, err)
		}
		if len(e.Subkeys) != 1 {
			t.Fatalf("gpg %s key: %d subkeys, want gpg's encryption subkey", algo, len(e.Subkeys))
		}
		t.Logf("gpg %s: primary %s, subkey %s", algo, algoName(byte(e.PrimaryKey.PubKeyAlgo)), algoName(byte(e.Subkeys[0].PublicKey.PubKeyAlgo)))
	}
}

// Refusals by go-crypto of keys within the rules are remembered by hash
// (the same bytes cost one hash the second time); rule refusals, cheaper
// than the hash, and successes are not: each call returns a fresh entity.
func TestParsePublicKeyRefusalCache(t *testing.T) {
	badSig := bytes.Clone(readTestKey(t, "rsa2048.pgp"))
	badSig[len(badSig)-1] ^= 1 // the subkey binding's signature value
	_, err1 := ParsePublicKey(badSig)
	if err1 == nil || errors.Is(err1, ErrKeyNotAllowed) {
		t.Fatalf("bad subkey binding: %v", err1)
	}
	if got := refusedKeys.get(sha256.Sum256(badSig)); got != err1 {
		t.Fatalf("refusal not cached: %v", got)
	}
	_, err2 := ParsePublicKey(badSig)
	if err2 != err1 {
		t.Fatalf("second refusal %v is not the cached %v", err2, err1)
	}
	// The same key armored is the same binary key: the same entry.
	var arm bytes.Buffer
	w, _ := armor.Encode(&arm, openpgp.PublicKeyType, nil)
	w.Write(badSig)
	w.Close()
	if _, err3 := ParsePublicKey(arm.Bytes()); err3 != err1 {
		t.Fatalf("armored copy: %v, want the cached %v", err3, err1)
	}

	hostile := brainpoolFlood(t)
	if _, err := ParsePublicKey(hostile); !errors.Is(err, ErrKeyNotAllowed) {
		t.Fatal(err)
	}
	if refusedKeys.get(sha256.Sum256(hostile)) != nil {
		t.Fatal("a rule refusal is cached")
	}

	good := newID(t, "fresh").PublicKey()
	a, err := ParsePublicKey(good)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParsePublicKey(good)
	if err != nil {
		t.Fatal(err)
	}
	if a == b || a.PrimaryKey == b.PrimaryKey || onlyIdentity(a) == onlyIdentity(b) {
		t.Fatal("two parses share objects")
	}
	if refusedKeys.get(sha256.Sum256(good)) != nil {
		t.Fatal("a good key is cached as refused")
	}

	// The cache is an LRU of bounded size.
	c := newRefusalCache(2)
	h := func(i byte) [32]byte { return [32]byte{i} }
	e := func(i byte) error { return fmt.Errorf("refusal %d", i) }
	c.add(h(1), e(1))
	c.add(h(2), e(2))
	c.get(h(1)) // 1 is now the most recent
	c.add(h(3), e(3))
	if c.len() != 2 || c.get(h(2)) != nil || c.get(h(1)) == nil || c.get(h(3)) == nil {
		t.Fatalf("LRU: len %d, 1:%v 2:%v 3:%v", c.len(), c.get(h(1)), c.get(h(2)), c.get(h(3)))
	}
}

// nextRawPacket reads the header forms go-crypto writes (old and new
// format, every length encoding) and refuses indeterminate lengths.
func TestNextRawPacket(t *testing.T) {
	body := bytes.Repeat([]byte{7}, 300)
	for _, tc := range []struct {
		desc string
		in   []byte
		tag  int
		n    int
		err  string
	}{
		{"new, one-octet length", append([]byte{0xcd, 3}, "abc"...), tagUserID, 3, ""},
		{"new, two-octet length", append([]byte{0xcd, 0xc0, 300 - 192}, body...), tagUserID, 300, ""},
		{"new, five-octet length", packetOf(tagUserID, body), tagUserID, 300, ""},
		{"old, one-octet length", append([]byte{0xb4, 3}, "abc"...), tagUserID, 3, ""},
		{"old, two-octet length", append([]byte{0xb5, 1, 44}, body...), tagUserID, 300, ""},
		{"old, four-octet length", append([]byte{0xb6, 0, 0, 1, 44}, body...), tagUserID, 300, ""},
		{"old, indeterminate length", append([]byte{0xb7}, body...), 0, 0, "indeterminate length"},
		{"not a packet", []byte{0x13}, 0, 0, "not an OpenPGP packet"},
		{"huge length", []byte{0xcd, 0xff, 0x7f, 0, 0, 0}, 0, 0, "packet of 2130706432 bytes"},
		{"short body", []byte{0xcd, 5, 1}, 0, 0, "truncated packet"},
		{"short header", []byte{0xcd, 0xff, 0}, 0, 0, "truncated packet header"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p, rest, err := nextRawPacket(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || p.tag != tc.tag || len(p.body) != tc.n || len(rest) != 0 || len(p.all) != len(tc.in) {
				t.Fatalf("tag %d, %d bytes, rest %d, err %v", p.tag, len(p.body), len(rest), err)
			}
		})
	}
}

// dearmored returns the binary key of b, armored or not.
func dearmored(t testing.TB, b []byte) []byte {
	t.Helper()
	if !bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN")) {
		return b
	}
	block, err := armor.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := out.ReadFrom(block.Body); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// verificationsOf counts the signatures of a parsed key that ReadEntity
// must have verified (a lower bound: it keeps only the newest binding
// of each subkey): self-signatures over user IDs, subkey bindings and
// revocations and back-signatures, key revocations, a v6 direct-key
// signature.
func verificationsOf(e *openpgp.Entity) int {
	n := len(e.Revocations)
	if e.PrimaryKey.Version == 6 {
		n++
	}
	for _, id := range e.Identities {
		for _, sig := range id.Signatures {
			if sig.CheckKeyIdOrFingerprint(e.PrimaryKey) {
				n++
			}
		}
	}
	for _, sub := range e.Subkeys {
		n += 1 + len(sub.Revocations)
		if sub.Sig != nil && sub.Sig.FlagSign {
			n++
		}
	}
	return n
}

// What the review of the rules found: packets go-crypto reads past must
// not hide what it verifies, and a signature must name one issuer.
func TestKeyCostReviewCases(t *testing.T) {
	// Trust packets between the signatures: go-crypto skips them and
	// verifies every self-signature; the rules must count them all.
	over := serializeKey(t, selfSigs(t, newKeyNoSub(t), MaxKeyVerifications-ReservedRevocations))
	var hidden []byte
	for b := over; len(b) > 0; {
		p, rest, err := nextRawPacket(b)
		if err != nil {
			t.Fatal(err)
		}
		hidden = append(hidden, p.all...)
		hidden = append(hidden, packetOf(tagTrust, []byte{0, 0})...)
		b = rest
	}
	err := checkKeyCost(hidden)
	if !errors.Is(err, ErrKeyNotAllowed) || !strings.Contains(err.Error(), "self-signatures") {
		t.Fatalf("self-signatures behind trust packets: %v", err)
	}

	// A certification whose issuer key ID names the key while its issuer
	// fingerprint names its real signer.
	e := newKeyNoSub(t)
	forger := newKey(t, nil)
	if err := e.SignIdentity(onlyIdentity(e).Name, forger, edConfig()); err != nil {
		t.Fatal(err)
	}
	b := serializeKey(t, e)
	fid := forger.PrimaryKey.Fingerprint[12:]
	keyIDSub := append([]byte{9, 16}, fid...)
	i := bytes.Index(b, keyIDSub)
	if i < 0 {
		t.Skip("go-crypto wrote no issuer key ID subpacket")
	}
	patched := bytes.Clone(b)
	copy(patched[i+2:], e.PrimaryKey.Fingerprint[12:])
	err = checkKeyCost(patched)
	if !errors.Is(err, ErrKeyNotAllowed) || !strings.Contains(err.Error(), "issuer subpackets name different keys") {
		t.Fatalf("disagreeing issuers: %v", err)
	}
	if err := checkKeyCost(b); err != nil {
		t.Fatalf("the unpatched certification: %v", err)
	}
}

func newKeyNoSub(t testing.TB) *openpgp.Entity {
	e := newKey(t, nil)
	e.Subkeys = nil
	return e
}
