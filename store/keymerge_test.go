package store

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
)

// certified returns target's public key certified by signers.
func certified(t *testing.T, target *attest.Identity, signers ...*attest.Identity) []byte {
	t.Helper()
	e, err := attest.ParsePublicKey(target.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		if err := attest.Certify(s, e); err != nil {
			t.Fatal(err)
		}
	}
	b, err := attest.SerializeKey(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func revoked(t *testing.T, id *attest.Identity, successor string) []byte {
	t.Helper()
	b, err := attest.Revoke(id, successor, "test", false, time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMergeKey(t *testing.T) {
	ids := attesttest.Fresh(t, 6)
	root, unv, target, exempt, trusted, next := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]
	type step struct {
		pub         []byte
		want        MergeOutcome
		trust       attest.Trust // stored level afterwards ("" = no record)
		certifiers  []string
		revoked     bool
		errContains string
	}
	tests := []struct {
		desc  string
		steps []step
	}{
		{"unknown key nobody here certifies is ignored", []step{
			{pub: target.PublicKey(), want: MergeIgnored},
		}},
		{"certified by an unvetted key: ignored", []step{
			{pub: certified(t, target, unv), want: MergeIgnored},
		}},
		{"certified by a trusted key: stored as unknown", []step{
			{pub: certified(t, target, root), want: MergeNew, trust: attest.TrustUnknown, certifiers: []string{root.Fingerprint()}},
			{pub: certified(t, target, root), want: MergeUnchanged, trust: attest.TrustUnknown, certifiers: []string{root.Fingerprint()}},
		}},
		{"exempt (config-trusted) key is stored even uncertified", []step{
			{pub: exempt.PublicKey(), want: MergeNew, trust: attest.TrustUnknown},
		}},
		{"a trusted key gains certifications and keeps its level", []step{
			{pub: certified(t, trusted, unv), want: MergeUpdated, trust: attest.TrustTrusted, certifiers: []string{unv.Fingerprint()}},
			{pub: certified(t, trusted, root), want: MergeUpdated, trust: attest.TrustTrusted, certifiers: sorted(root.Fingerprint(), unv.Fingerprint())},
		}},
		{"a revocation is merged, the level kept", []step{
			{pub: revoked(t, trusted, next.Fingerprint()), want: MergeUpdated, trust: attest.TrustTrusted, revoked: true},
			{pub: revoked(t, trusted, next.Fingerprint()), want: MergeUpdated, trust: attest.TrustTrusted, revoked: true}, // another signature (go-crypto salts each one)
			{pub: trusted.PublicKey(), want: MergeUnchanged, trust: attest.TrustTrusted, revoked: true},
		}},
		{"garbage", []step{{pub: []byte("not a key"), errContains: "parse public key"}}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			s := mustOpenStore(t, WithExempt(exempt.Fingerprint()))
			for _, id := range []*attest.Identity{root, trusted} {
				if _, err := s.PutKey(id.PublicKey(), attest.TrustTrusted, "test"); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.PutKey(unv.PublicKey(), attest.TrustUnvetted, "test"); err != nil {
				t.Fatal(err)
			}
			for i, st := range tt.steps {
				v0 := s.KeysVersion()
				ki, out, err := s.MergeKey(st.pub, "announced by test")
				if st.errContains != "" {
					if err == nil || !strings.Contains(err.Error(), st.errContains) {
						t.Fatalf("step %d: err = %v, want %q", i, err, st.errContains)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if out != st.want {
					t.Fatalf("step %d: outcome %s, want %s", i, out, st.want)
				}
				if changed := s.KeysVersion() != v0; changed != out.Changed() {
					t.Errorf("step %d: keys version changed %v, outcome %s", i, changed, out)
				}
				e, err := attest.ParsePublicKey(st.pub)
				if err != nil {
					t.Fatal(err)
				}
				rec, err := s.GetKey(attest.Fingerprint(e))
				if st.trust == "" {
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("step %d: record stored: %+v, %v", i, rec, err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if rec.Trust != st.trust || ki.Trust != st.trust {
					t.Errorf("step %d: trust %s (returned %s), want %s", i, rec.Trust, ki.Trust, st.trust)
				}
				if strings.Join(rec.Certifiers, ",") != strings.Join(st.certifiers, ",") {
					t.Errorf("step %d: certifiers %v, want %v", i, rec.Certifiers, st.certifiers)
				}
				if (rec.Revocation != nil) != st.revoked {
					t.Errorf("step %d: revocation %+v, want revoked %v", i, rec.Revocation, st.revoked)
				}
				if st.revoked && rec.Revocation.Successor != next.Fingerprint() {
					t.Errorf("step %d: successor %q", i, rec.Revocation.Successor)
				}
				if out == MergeNew && !strings.HasPrefix(rec.Source, "announced by") {
					t.Errorf("step %d: source %q", i, rec.Source)
				}
				// Lookup serves the merged key (its cache is updated).
				le := s.Lookup(rec.Fingerprint)
				if le == nil || (attest.RevocationOf(le, time.Now()) != nil) != st.revoked || len(attest.Certifiers(le)) != len(st.certifiers) {
					t.Errorf("step %d: Lookup does not serve the merged key", i)
				}
			}
		})
	}
}

func sorted(fs ...string) []string {
	out := append([]string(nil), fs...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestMergeKeyReadOnlyAndImportedRevocation(t *testing.T) {
	ids := attesttest.Fresh(t, 1)
	path := t.TempDir() + "/store.db"
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// PutKey records a revocation the imported key carries.
	ki, err := s.PutKey(revoked(t, ids[0], ""), attest.TrustTrusted, "import")
	if err != nil {
		t.Fatal(err)
	}
	if ki.Revocation == nil || ki.Revocation.Reason != "retired" {
		t.Fatalf("imported revocation not recorded: %+v", ki.Revocation)
	}
	// Importing an older copy of the key (without the revocation) keeps it.
	ki, err = s.PutKey(ids[0].PublicKey(), attest.TrustTrusted, "import again")
	if err != nil {
		t.Fatal(err)
	}
	if ki.Revocation == nil || attest.RevocationOf(s.Lookup(ids[0].Fingerprint()), time.Now()) == nil {
		t.Fatal("re-import dropped the revocation")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro := mustOpenPath(t, path, WithReadOnly())
	if _, _, err := ro.MergeKey(ids[0].PublicKey(), "x"); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("read-only merge: %v", err)
	}
}

// A claim's embedded key that carries a revocation is stored with it.
func TestIngestRecordsRevocation(t *testing.T) {
	id := attesttest.Fresh(t, 1)[0]
	e, err := attest.ParsePublicKey(revoked(t, id, ""))
	if err != nil {
		t.Fatal(err)
	}
	s := mustOpenStore(t)
	c := attesttest.Claim(t, id)
	c.Signer = e
	c.Envelope.Key = nil
	res, err := s.Ingest(t.Context(), c)
	if err != nil || res[0].Err != nil {
		t.Fatalf("ingest: %v %v", err, res[0].Err)
	}
	ki, err := s.GetKey(id.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	if ki.Revocation == nil {
		t.Fatal("revocation of the signer key not recorded")
	}
}
