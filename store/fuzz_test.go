package store

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
)

// FuzzDecodeRecords feeds arbitrary bytes to every decoder of stored
// records. The store only decodes bytes it wrote itself, but a damaged file
// must give ErrCorrupt, never a panic. Valid encodings must round-trip.
func FuzzDecodeRecords(f *testing.F) {
	fk, _ := fprKey("0123456789ABCDEF0123456789ABCDEF01234567")
	st := statement(spec{})
	akey, _ := hex.DecodeString(st.ArtifactKey())
	f.Add(encodeSummary(st, akey, fk))
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(encodeDigest(Digest{Count: 3}))
	ki, _ := json.Marshal(KeyInfo{Fingerprint: "0123456789ABCDEF0123456789ABCDEF01234567", Trust: attest.TrustTrusted, PublicKey: []byte{1}})
	f.Add(ki)
	rs, _ := json.Marshal(RecipeSummary{RecipeID: st.RecipeID, Package: "hello", Claims: 2})
	f.Add(rs)
	f.Add(encodeRecipeSummary(&RecipeSummary{RecipeID: st.RecipeID, Package: "hello", Claims: 2, Voters: 1, First: epoch}))
	f.Add(encodeVoter(fk, epoch))
	pr, _ := json.Marshal(Proof{Builder: "AB", ClaimA: "x", ClaimB: "y"})
	f.Add(pr)
	f.Add([]byte{blobFile, 0, 0, 0, 0, 0, 0, 0, 5})
	f.Add([]byte{blobInline, 'h', 'i'})
	f.Add([]byte{})
	c, err := attest.Sign(testKeys(f, 1)[0], st)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encodeClaimValue(c.Raw, nil))
	f.Add(encodeClaimValue(c.Raw, c.Statement))
	f.Add(append([]byte{claimVerbatim}, c.Raw...))
	f.Add([]byte("{\"trust\":\"own\"}"))

	f.Fuzz(func(t *testing.T, b []byte) {
		if sc, err := decodeSummary(b); err == nil {
			// re-encode from the decoded fields: must give the same bytes
			ak, _ := hex.DecodeString(sc.ArtifactKey)
			fk, err := fprKey(sc.Builder)
			if err != nil {
				t.Fatalf("decoded builder %q does not encode: %v", sc.Builder, err)
			}
			re := encodeSummary(&attest.Statement{Result: sc.Result, Timestamp: sc.Timestamp}, ak, fk)
			if string(re) != string(b) {
				t.Fatalf("summary round trip: %x != %x", re, b)
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("summary error does not wrap ErrCorrupt: %v", err)
		}
		if d, err := decodeDigest(b); err == nil {
			if string(encodeDigest(d)) != string(b) {
				t.Fatal("digest round trip")
			}
		}
		if _, err := decodeKeyInfo(b); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("key record error does not wrap ErrCorrupt: %v", err)
		}
		if r, err := decodeRecipeSummary(b); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("recipe summary error does not wrap ErrCorrupt: %v", err)
		} else if err == nil && b[0] == recipeSummaryV2 { // JSON (schema < 5) is only read
			again, err := decodeRecipeSummary(encodeRecipeSummary(&r))
			if err != nil || !reflect.DeepEqual(again, r) {
				t.Fatalf("recipe summary round trip: %v\n%+v\n%+v", err, r, again)
			}
		}
		for v := b; len(v) > 0; {
			_, _, rest, err := nextVoter(v)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("voter error does not wrap ErrCorrupt: %v", err)
				}
				break
			}
			v = rest
		}
		_, _ = decodeProof(b)
		_, _, _, _ = decodeClaimValue(b)
		if st, err := unpackStatement(b); err == nil {
			again, err := unpackStatement(packStatement(st))
			if err != nil || !reflect.DeepEqual(again, st) {
				t.Fatalf("packed statement round trip: %v\n%+v\n%+v", err, st, again)
			}
		}
		_, _ = decodeBlobValue(b, func() ([]byte, error) { return []byte("hello"), nil })
		if len(b) > 0 {
			_, _, _ = splitFprKey(b)
			_, _ = claimIDString(b)
		}
	})
}

func TestSummaryRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		fpr    string
		result attest.Result
	}{
		{"v4 fingerprint, success", "0123456789ABCDEF0123456789ABCDEF01234567", attest.ResultSuccess},
		{"v6 fingerprint, failed", "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF", attest.ResultFailed},
		{"unreproducible", "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", attest.ResultUnreproducible},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			st := statement(spec{result: tc.result, ts: 12345})
			fk, err := fprKey(tc.fpr)
			if err != nil {
				t.Fatal(err)
			}
			ak, _ := hex.DecodeString(st.ArtifactKey())
			sc, err := decodeSummary(encodeSummary(st, ak, fk))
			if err != nil {
				t.Fatal(err)
			}
			if sc.Builder != tc.fpr || sc.Result != tc.result || sc.ArtifactKey != st.ArtifactKey() || !sc.Timestamp.Equal(st.Timestamp) {
				t.Fatalf("round trip: %+v", sc)
			}
			if sc.Timestamp.Location() != time.UTC {
				t.Fatal("timestamps come back in UTC")
			}
		})
	}
}

func TestClaimIDStringFastPath(t *testing.T) {
	for _, data := range []string{"", "a", "claim"} {
		id := attest.ClaimID([]byte(data))
		k, err := claimKey(id)
		if err != nil {
			t.Fatal(err)
		}
		got, err := claimIDString(k)
		if err != nil || got != id {
			t.Fatalf("claimIDString(%x) = %q, %v; want %q", k, got, err, id)
		}
		in := newInterner()
		for i := 0; i < 2000; i++ { // crosses arena chunks
			if got, err := in.claimID(k); err != nil || got != id {
				t.Fatalf("interner.claimID(%x) = %q, %v; want %q", k, got, err, id)
			}
		}
	}
}
