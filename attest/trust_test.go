package attest

import (
	"fmt"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
)

func newID(t *testing.T, name string) *Identity {
	t.Helper()
	id, err := GenerateIdentity(name, name+"@example.org")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// pub returns a public-only copy of id's key, as a peer would import it.
func pub(t *testing.T, e *openpgp.Entity) *openpgp.Entity {
	t.Helper()
	arm, err := ArmorPublicKey(e)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePublicKey([]byte(arm))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustCertify(t *testing.T, signer *Identity, target *openpgp.Entity) {
	t.Helper()
	if err := Certify(signer, target); err != nil {
		t.Fatal(err)
	}
}

func TestCertifiedWithin(t *testing.T) {
	root := newID(t, "root")     // the operator's trusted key
	mid := newID(t, "mid")       // certified by root
	leaf := newID(t, "leaf")     // certified by mid
	direct := newID(t, "direct") // certified by root
	loner := newID(t, "loner")   // certified by nobody
	mallory := newID(t, "mallory")

	rootPub := pub(t, root.Entity)
	midPub := pub(t, mid.Entity)
	mustCertify(t, root, midPub)
	leafPub := pub(t, leaf.Entity)
	mustCertify(t, mid, leafPub)
	directPub := pub(t, direct.Entity)
	mustCertify(t, root, directPub)
	// Certifications must survive export and import.
	midPub, leafPub, directPub = pub(t, midPub), pub(t, leafPub), pub(t, directPub)

	// Forgery 1: mallory certifies loner, then relabels the issuer as
	// root. The issuer subpackets are hashed, so the relabelled copy no
	// longer matches the signed data.
	forged := pub(t, loner.Entity)
	mustCertify(t, mallory, forged)
	for _, ident := range forged.Identities {
		for _, sig := range ident.Signatures {
			if sig.IssuerKeyId != nil && *sig.IssuerKeyId == mallory.Entity.PrimaryKey.KeyId {
				kid := root.Entity.PrimaryKey.KeyId
				sig.IssuerKeyId = &kid
				sig.IssuerFingerprint = root.Entity.PrimaryKey.Fingerprint
			}
		}
	}
	// Forgery 2: root's genuine certification of direct, transplanted onto
	// loner's user ID.
	transplant := pub(t, loner.Entity)
	for _, src := range directPub.Identities {
		for _, dst := range transplant.Identities {
			dst.Signatures = append(dst.Signatures, src.Signatures...)
		}
	}

	trusted := map[string]*openpgp.Entity{Fingerprint(rootPub): rootPub}
	known := NewKeyring(rootPub, midPub, leafPub, directPub)

	tests := []struct {
		desc   string
		target *openpgp.Entity
		all    KeyLookup
		k      int
		want   bool
	}{
		{"0 hops: trusted key itself", rootPub, nil, 0, true},
		{"0 hops: certified key with k=0", directPub, known, 0, false},
		{"1 hop: certified by trusted", directPub, nil, 1, true},
		{"1 hop: k=2 also", directPub, known, 2, true},
		{"2 hops with k=1", leafPub, known, 1, false},
		{"2 hops with k=2", leafPub, known, 2, true},
		{"2 hops but the intermediate key is unknown", leafPub, NewKeyring(rootPub), 2, false},
		{"2 hops, nil lookup", leafPub, nil, 2, false},
		{"uncertified key", pub(t, loner.Entity), known, 5, false},
		{"forged issuer", forged, known, 3, false},
		{"certification transplanted to another key", transplant, known, 3, false},
		{"negative k", rootPub, known, -1, false},
		{"nil target", nil, known, 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if got := CertifiedWithin(tt.target, trusted, tt.all, tt.k); got != tt.want {
				t.Fatalf("CertifiedWithin = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCertifiedWithinCycleAndChain(t *testing.T) {
	// A chain root -> k1 -> k2 -> ... -> k5 plus a cycle k5 <-> x.
	root := newID(t, "root")
	ids := []*Identity{root}
	pubs := []*openpgp.Entity{pub(t, root.Entity)}
	for i := 1; i <= 5; i++ {
		id := newID(t, fmt.Sprintf("k%d", i))
		p := pub(t, id.Entity)
		mustCertify(t, ids[i-1], p)
		ids, pubs = append(ids, id), append(pubs, p)
	}
	x := newID(t, "x")
	xp := pub(t, x.Entity)
	mustCertify(t, ids[5], xp)
	mustCertify(t, x, pubs[5])
	known := NewKeyring(append(pubs, xp)...)
	trusted := map[string]*openpgp.Entity{Fingerprint(pubs[0]): pubs[0]}
	for k := 0; k <= 7; k++ {
		if got, want := CertifiedWithin(xp, trusted, known, k), k >= 6; got != want {
			t.Errorf("x is 6 hops away: k=%d got %v", k, got)
		}
	}
	// Without the root the cycle must terminate with false.
	if CertifiedWithin(xp, map[string]*openpgp.Entity{}, known, 100) {
		t.Error("cycle without a trusted key reported trusted")
	}
}

func TestCertifyErrors(t *testing.T) {
	a := newID(t, "a")
	if err := Certify(a, a.Entity); err == nil {
		t.Error("self-certification accepted")
	}
	if err := Certify(nil, a.Entity); err == nil {
		t.Error("nil signer accepted")
	}
	if err := Certify(a, nil); err == nil {
		t.Error("nil target accepted")
	}
}
