package attest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// reparse serializes e and parses it back, as the store and the network
// see it.
func reparse(t *testing.T, e *openpgp.Entity) *openpgp.Entity {
	t.Helper()
	b, err := SerializeKey(e)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func certCount(e *openpgp.Entity) int {
	n := 0
	for _, id := range e.Identities {
		for _, sig := range id.Signatures {
			if !sig.CheckKeyIdOrFingerprint(e.PrimaryKey) {
				n++
			}
		}
	}
	return n
}

func TestMergeKey(t *testing.T) {
	now := time.Now()
	root, target, stranger, revoked := newID(t, "root"), newID(t, "target"), newID(t, "stranger"), newID(t, "revoked")
	revokedPub, err := Revoke(revoked, "", "gone", false, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	revokedKey, err := ParsePublicKey(revokedPub)
	if err != nil {
		t.Fatal(err)
	}
	known := NewKeyring(pub(t, root.Entity), revokedKey)

	certBy := func(ids ...*Identity) *openpgp.Entity {
		e := pub(t, target.Entity)
		for _, id := range ids {
			mustCertify(t, id, e)
		}
		return reparse(t, e)
	}
	forged := certBy(stranger)
	for _, ident := range forged.Identities {
		for _, sig := range ident.Signatures {
			if sig.IssuerKeyId != nil && *sig.IssuerKeyId == stranger.Entity.PrimaryKey.KeyId {
				kid := root.Entity.PrimaryKey.KeyId
				sig.IssuerKeyId, sig.IssuerFingerprint = &kid, root.Entity.PrimaryKey.Fingerprint
			}
		}
	}
	targetRevokedPub, err := Revoke(target, "", "", false, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	targetRevoked, err := ParsePublicKey(targetRevokedPub)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		desc        string
		base, in    *openpgp.Entity
		wantChanged bool
		wantCerts   int
		wantCertBy  []string // fingerprints that must certify the result
		wantRevoked bool
		wantErr     error
	}{
		{"new key, no certifications", nil, pub(t, target.Entity), true, 0, nil, false, nil},
		{"certification by a known key is added", pub(t, target.Entity), certBy(root), true, 1, []string{root.Fingerprint()}, false, nil},
		{"the same certification again changes nothing", certBy(root), certBy(root), false, 1, nil, false, nil},
		{"certification by an unknown key is kept as a hint", pub(t, target.Entity), certBy(stranger), true, 1, nil, false, nil},
		{"forged certification by a known key is dropped", pub(t, target.Entity), forged, false, 0, nil, false, nil},
		{"certification by a revoked key is dropped", pub(t, target.Entity), certBy(revoked), false, 0, nil, false, nil},
		{"stored certification by a since-revoked key is dropped", certBy(revoked), pub(t, target.Entity), true, 0, nil, false, nil},
		{"revocation is merged", certBy(root), targetRevoked, true, 1, nil, true, nil},
		{"revocation twice changes nothing", targetRevoked, reparse(t, targetRevoked), false, 0, nil, true, nil},
		{"another key", pub(t, root.Entity), pub(t, target.Entity), false, 0, nil, false, ErrKeyMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, changed, err := MergeKey(tt.base, tt.in, known, now)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
			got = reparse(t, got)
			if n := certCount(got); n != tt.wantCerts {
				t.Errorf("%d third-party certifications, want %d", n, tt.wantCerts)
			}
			for _, f := range tt.wantCertBy {
				if !CertifiedWithin(got, map[string]*openpgp.Entity{f: known.Lookup(f)}, nil, 1) {
					t.Errorf("not certified by %s after merge", f)
				}
			}
			if (RevocationOf(got, now) != nil) != tt.wantRevoked {
				t.Errorf("revoked = %v, want %v", !tt.wantRevoked, tt.wantRevoked)
			}
		})
	}
}

// A key carries at most MaxCertifications, verified ones first; one per
// certifier, the newest.
func TestMergeKeyBounds(t *testing.T) {
	now := time.Now()
	root, target := newID(t, "root"), newID(t, "target")
	flood := pub(t, target.Entity)
	for i := range MaxCertifications + 5 {
		mustCertify(t, newID(t, fmt.Sprintf("sybil%d", i)), flood)
	}
	base, changed, err := MergeKey(pub(t, target.Entity), reparse(t, flood), nil, now)
	if err != nil || !changed {
		t.Fatalf("merge flood: changed %v, err %v", changed, err)
	}
	base = reparse(t, base)
	if n := certCount(base); n != MaxCertifications {
		t.Fatalf("%d certifications kept, want %d", n, MaxCertifications)
	}
	// A genuine certification by a known key still gets in: verified
	// ones go first.
	genuine := pub(t, target.Entity)
	mustCertify(t, root, genuine)
	known := NewKeyring(pub(t, root.Entity))
	merged, changed, err := MergeKey(base, reparse(t, genuine), known, now)
	if err != nil || !changed {
		t.Fatalf("merge genuine: changed %v, err %v", changed, err)
	}
	merged = reparse(t, merged)
	if n := certCount(merged); n != MaxCertifications {
		t.Fatalf("%d certifications kept, want %d", n, MaxCertifications)
	}
	if !CertifiedWithin(merged, map[string]*openpgp.Entity{root.Fingerprint(): known.Lookup(root.Fingerprint())}, nil, 1) {
		t.Fatal("the verified certification was pushed out by unverified ones")
	}
	// A newer certification by the same certifier replaces the older.
	again := pub(t, target.Entity)
	time.Sleep(1100 * time.Millisecond) // signature times have one-second resolution
	mustCertify(t, root, again)
	merged2, changed, err := MergeKey(reparse(t, merged), reparse(t, again), known, time.Now())
	if err != nil || !changed {
		t.Fatalf("merge newer: changed %v, err %v", changed, err)
	}
	if n := certCount(reparse(t, merged2)); n != MaxCertifications {
		t.Fatalf("%d certifications after a newer one by the same key, want %d", n, MaxCertifications)
	}
	b, _ := SerializeKey(merged2)
	if len(b) > 64<<10 {
		t.Fatalf("merged key is %d bytes", len(b))
	}
}

func TestRevokeAndRevocationOf(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	id, next := newID(t, "old"), newID(t, "new")
	if RevocationOf(pub(t, id.Entity), now) != nil {
		t.Fatal("fresh key reported revoked")
	}
	tests := []struct {
		desc              string
		successor, text   string
		compromised       bool
		reason, wantSucc  string
		wantText, wantErr string
	}{
		{"retired", "", "moved to another machine", false, "retired", "", "moved to another machine", ""},
		{"rotation", next.Fingerprint(), "yearly rotation", false, "superseded", next.Fingerprint(), "successor: " + next.Fingerprint() + "; yearly rotation", ""},
		{"rotation without text", next.Fingerprint(), "", false, "superseded", next.Fingerprint(), "successor: " + next.Fingerprint(), ""},
		{"compromised", "", "stolen laptop", true, "compromised", "", "stolen laptop", ""},
		{"compromised with a successor", next.Fingerprint(), "", true, "", "", "", "compromised key names no successor"},
		{"own successor", id.Fingerprint(), "", false, "", "", "", "its own successor"},
		{"bad successor", "ABC", "", false, "", "", "", "not a 40-digit"},
		{"lower-case successor", strings.ToLower(next.Fingerprint()), "", false, "", "", "", "not a 40-digit"},
		{"successor hidden in the text", "", "successor: " + next.Fingerprint(), false, "", "", "", "--successor"},
		{"two lines", "", "a\nb", false, "", "", "", "one line"},
		{"too long", "", strings.Repeat("x", MaxRevocationText+1), false, "", "", "", "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			b, err := Revoke(id, tt.successor, tt.text, tt.compromised, now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			e, err := ParsePublicKey(b)
			if err != nil {
				t.Fatal(err)
			}
			if e.PrivateKey != nil {
				t.Fatal("revoked key carries the private key")
			}
			r := RevocationOf(e, now)
			if r == nil {
				t.Fatal("not revoked")
			}
			if r.Reason != tt.reason || r.Successor != tt.wantSucc || r.Text != tt.wantText || !r.Time.Equal(now) {
				t.Fatalf("revocation %+v, want reason %q successor %q text %q at %s", r, tt.reason, tt.wantSucc, tt.wantText, now)
			}
			if tt.compromised != r.Compromised() {
				t.Fatalf("compromised = %v", r.Compromised())
			}
		})
	}
	if len(id.Entity.Revocations) != 0 {
		t.Fatal("Revoke changed the identity")
	}
	// Two revocations naming different successors name none.
	a, _ := Revoke(id, next.Fingerprint(), "", false, now)
	other := newID(t, "other")
	b, _ := Revoke(id, other.Fingerprint(), "", false, now)
	ea, _ := ParsePublicKey(a)
	eb, _ := ParsePublicKey(b)
	m, _, err := MergeKey(ea, eb, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if r := RevocationOf(reparse(t, m), now); r == nil || r.Successor != "" {
		t.Fatalf("ambiguous successors: %+v", r)
	}
	if CertifiedWithin(ea, map[string]*openpgp.Entity{id.Fingerprint(): ea}, nil, 0) {
		t.Fatal("a revoked key is trusted at 0 hops")
	}
}

func TestSuccessorOf(t *testing.T) {
	f := "0123456789ABCDEF0123456789ABCDEF01234567"
	for text, want := range map[string]string{
		"successor: " + f: f,
		"Successor:" + strings.ToLower(f) + "; rotated":                f,
		"successor: 0123 4567 89AB CDEF 0123 4567 89AB CDEF 0123 4567": f,
		"successor: " + f + "8":                                        "",
		"no successor here":                                            "",
		"successor: XYZ":                                               "",
	} {
		if got := SuccessorOf(text); got != want {
			t.Errorf("SuccessorOf(%q) = %q, want %q", text, got, want)
		}
	}
}

// A certification dated a little after now (the certifier's clock runs
// ahead) is kept; one dated beyond DefaultSkew is dropped.
func TestMergeKeyClockSkew(t *testing.T) {
	root, target := newID(t, "root"), newID(t, "target")
	certified := pub(t, target.Entity)
	mustCertify(t, root, certified)
	known := NewKeyring(pub(t, root.Entity))
	tests := []struct {
		desc  string
		ahead time.Duration // how far the certifier's clock is ahead of ours
		want  int
	}{
		{"same clock", 0, 1},
		{"one second ahead", time.Second, 1},
		{"within the skew", DefaultSkew - time.Minute, 1},
		{"beyond the skew", DefaultSkew + time.Minute, 0},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			now := time.Now().Add(-tt.ahead)
			got, _, err := MergeKey(pub(t, target.Entity), reparse(t, certified), known, now)
			if err != nil {
				t.Fatal(err)
			}
			if n := certCount(reparse(t, got)); n != tt.want {
				t.Errorf("%d certifications kept, want %d", n, tt.want)
			}
			trusted := map[string]*openpgp.Entity{root.Fingerprint(): known.Lookup(root.Fingerprint())}
			if ok := certifiedWithin(reparse(t, certified), trusted, nil, 1, now); ok != (tt.want == 1) {
				t.Errorf("certified within 1 hop = %v, want %v", ok, tt.want == 1)
			}
		})
	}
}

// certCurrent: a lifetime ends a certification; a date within the skew
// ahead does not start it late.
func TestCertCurrent(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	life := func(s uint32) *uint32 { return &s }
	for _, tc := range []struct {
		desc    string
		created time.Time
		life    *uint32
		at      time.Time
		want    bool
	}{
		{"no lifetime, years later", t0, nil, t0.AddDate(5, 0, 0), true},
		{"lifetime 0 means none", t0, life(0), t0.AddDate(5, 0, 0), true},
		{"within its lifetime", t0, life(60), t0.Add(60 * time.Second), true},
		{"past its lifetime", t0, life(60), t0.Add(61 * time.Second), false},
		{"dated 5 min ahead, with a lifetime", t0.Add(5 * time.Minute), life(60), t0, true},
		{"dated beyond the skew", t0.Add(DefaultSkew + time.Second), nil, t0, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			sig := &packet.Signature{CreationTime: tc.created, SigLifetimeSecs: tc.life}
			if got := certCurrent(sig, tc.at); got != tc.want {
				t.Errorf("certCurrent = %v, want %v", got, tc.want)
			}
		})
	}
}

// A forged certification that claims to be the certifier's and is newer
// than its real one does not push the real one out (review of issue 20:
// one unauthenticated announcement could strip the certification, or a
// rotation's acknowledgement, that makes a key vote).
func TestMergeKeyForgedNewerCertification(t *testing.T) {
	now := time.Now()
	certifier, target, forger := newID(t, "certifier"), newID(t, "target"), newID(t, "forger")
	known := NewKeyring(pub(t, certifier.Entity))
	real := pub(t, target.Entity)
	mustCertify(t, certifier, real)
	base := reparse(t, real)

	// The forger certifies later and readdresses its certification to the
	// certifier (issuer fingerprint in the hashed area: it cannot verify).
	time.Sleep(1100 * time.Millisecond) // a later creation time, whole seconds
	fake := pub(t, target.Entity)
	mustCertify(t, forger, fake)
	b, err := SerializeKey(fake)
	if err != nil {
		t.Fatal(err)
	}
	ff, cf := forger.Entity.PrimaryKey.Fingerprint, certifier.Entity.PrimaryKey.Fingerprint
	b = bytes.ReplaceAll(b, ff, cf)
	b = bytes.ReplaceAll(b, ff[12:], cf[12:])
	in, err := ParsePublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	merged, _, err := MergeKey(base, in, known, now.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := CertifiedBy(reparse(t, merged), pub(t, certifier.Entity), now.Add(2*time.Second), false); !ok {
		t.Fatal("the real certification was dropped for a forged newer one")
	}
}

// At most ReservedRevocations revocations are merged in (the room the key
// rules keep); a compromised revocation replaces a soft one when full.
func TestMergeKeyRevocationRoom(t *testing.T) {
	id := newID(t, "rotating")
	now := time.Now()
	revoked := func(at time.Time, compromised bool) *openpgp.Entity {
		b, err := Revoke(id, "", fmt.Sprint("r", at.Unix()), compromised, at)
		if err != nil {
			t.Fatal(err)
		}
		e, err := ParsePublicKey(b)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	base := revoked(now.Add(-3*time.Hour), false)
	base, _, err := MergeKey(base, revoked(now.Add(-2*time.Hour), false), nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(base.Revocations) != ReservedRevocations {
		t.Fatalf("%d revocations, want %d", len(base.Revocations), ReservedRevocations)
	}
	_, changed, err := MergeKey(base, revoked(now.Add(-time.Hour), false), nil, now)
	if err != nil || changed {
		t.Fatalf("a third soft revocation: changed %v, %v", changed, err)
	}
	base, changed, err = MergeKey(base, revoked(now.Add(-time.Hour), true), nil, now)
	if err != nil || !changed || len(base.Revocations) != ReservedRevocations {
		t.Fatalf("a compromised revocation: changed %v, %d kept, %v", changed, len(base.Revocations), err)
	}
	if r := RevocationOf(reparse(t, base), now); r == nil || !r.Compromised() {
		t.Fatalf("after the merge: %+v, want compromised", r)
	}
}
