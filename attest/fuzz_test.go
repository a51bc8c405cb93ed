package attest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// FuzzVerify feeds arbitrary bytes to Verify, with a keyring holding the
// signer (the store's path) and without (the embedded-key path). It must
// never panic, every error must unwrap to ErrInvalid, and anything it
// accepts must be a self-consistent claim.
func FuzzVerify(f *testing.F) {
	a, b := testIdentities(f)
	c := mustSign(f, a, nil)
	wire := mustWire(f, c)
	f.Add(wire)
	f.Add(c.Raw)
	f.Add(mustWire(f, mustSign(f, b, func(s *Statement) { s.Result = ResultFailed; s.Artifacts = nil })))
	for _, n := range []int{0, 1, 10, len(wire) / 3, len(wire) / 2, len(wire) - 1} {
		f.Add(wire[:n])
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"payload_type":"application/vnd.lebowski.rebuild.v1+json","payload":"e30=","signature":"x"}`))
	f.Add([]byte("\x00\xff garbage"))
	f.Add(bytes.Repeat([]byte("["), 1000))
	keys := NewKeyring(a.Entity)
	now := time.Now()
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, k := range []KeyLookup{keys, nil} {
			got, err := Verify(in, k, VerifyOptions{Now: now})
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("error does not unwrap to ErrInvalid: %v", err)
				}
				continue
			}
			if got.ID != ClaimID(got.Raw) {
				t.Fatal("accepted claim with inconsistent ID")
			}
			again, err := Verify(got.Raw, NewKeyring(got.Signer), VerifyOptions{Now: now})
			if err != nil || again.ID != got.ID {
				t.Fatalf("accepted claim does not re-verify from Raw: %v", err)
			}
		}
	})
}

// FuzzDecodeStatement: never panics; an accepted payload re-encodes to
// exactly the same bytes (one statement, one encoding).
func FuzzDecodeStatement(f *testing.F) {
	s := testStatement()
	canon := statementJSON(f, s)
	f.Add(canon)
	f.Add(canon[:len(canon)/2])
	f.Add([]byte(`{"type":"lebowski.rebuild/v1"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"artifacts":[{"name":1}]}`))
	f.Add([]byte(`{"timestamp":"2026-01-15T10:30:00.5+01:00"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		st, err := DecodeStatement(in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not unwrap to ErrInvalid: %v", err)
			}
			return
		}
		out, err := st.Canonical()
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("accepted payload does not re-encode identically: %v\nin  %q\nout %q", err, in, out)
		}
		_ = st.Validate(time.Now(), DefaultSkew) // must not panic
		_ = st.ArtifactKey()
		_ = st.Recipe().ID()
	})
}

// FuzzParsePublicKey: never panics on binary or armored input; a parsed
// key has a fingerprint of a valid form.
func FuzzParsePublicKey(f *testing.F) {
	a, _ := testIdentities(f)
	f.Add(a.PublicKey())
	arm, _ := a.ArmoredPublicKey()
	f.Add([]byte(arm))
	f.Add(a.PublicKey()[:len(a.PublicKey())/2])
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n=AAAA\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	f.Add([]byte{0x99, 0x00, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := ParsePublicKey(in)
		if err != nil {
			return
		}
		if vocab.CheckFingerprint(Fingerprint(e)) != nil {
			t.Fatalf("parsed key has malformed fingerprint %q", Fingerprint(e))
		}
		_, _ = ArmorPublicKey(e)
	})
}

// FuzzCheckKeyCost: the raw-packet rules never panic, and a key they let
// through parses (if at all) within their bounds: go-crypto verified no
// more signatures than checkKeyCost counted.
func FuzzCheckKeyCost(f *testing.F) {
	a, _ := testIdentities(f)
	f.Add(a.PublicKey())
	for _, e := range []*openpgp.Entity{
		newKey(f, nil),
		selfSigs(f, newKey(f, nil), 3),
		certs(f, newKey(f, nil), 3, 0),
		newKey(f, cfgAt(keyTime, packet.PubKeyAlgoECDSA, packet.CurveBrainpoolP256)),
	} {
		f.Add(serializeKey(f, e))
	}
	for _, name := range []string{"rsa2048.pgp", "rsa4096-over-budget.pgp"} {
		f.Add(readTestKey(f, name))
	}
	f.Add([]byte{0x99, 0x00, 0x01})
	f.Add([]byte{0xc6, 0xe1, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		k, err := keyCostOf(in)
		if err != nil {
			return
		}
		if k.UserIDs > MaxKeyUserIDs || k.Subkeys > MaxKeySubkeys || k.Signatures > MaxKeySignatures ||
			k.Verifications > MaxKeyVerifications || k.Weight > MaxKeyVerifyCost || k.Revocations > MaxRevocations {
			t.Fatalf("accepted beyond the bounds: %+v", k)
		}
		el, err := openpgp.ReadKeyRing(bytes.NewReader(in))
		if err != nil {
			return
		}
		if len(el) != 1 {
			t.Fatalf("checkKeyCost let %d keys through", len(el))
		}
		e := el[0]
		if len(e.Identities) > MaxKeyUserIDs || len(e.Subkeys) > MaxKeySubkeys || len(e.Revocations) > MaxRevocations {
			t.Fatalf("parsed key beyond the bounds: %d user IDs, %d subkeys, %d revocations", len(e.Identities), len(e.Subkeys), len(e.Revocations))
		}
		if v := verificationsOf(e); v > k.Verifications {
			t.Fatalf("go-crypto verified at least %d signatures, checkKeyCost counted %d", v, k.Verifications)
		}
	})
}
