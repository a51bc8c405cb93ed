package attest

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// MaxTrustSearch bounds the number of keys CertifiedWithin visits, so a
// flood of imported keys certifying each other cannot make a trust query
// expensive.
const MaxTrustSearch = 10000

// Certify makes signer certify every user ID of target (an OpenPGP
// third-party certification, signature type 0x10, as `gpg --sign-key`
// makes). The certifications are added to target in place; serialize it
// (ArmorPublicKey) to publish them.
func Certify(signer *Identity, target *openpgp.Entity) error {
	return certify(signer, target, pgpConfig())
}

// RotationNotation marks a certification as a successor's acknowledgement
// of a rotation: a notation in the signature's hashed area (so nobody can
// add it to another certification afterwards) whose value is the
// fingerprint of the key it replaces. An ordinary certification — say, S
// vouched for K years ago — is no acknowledgement: otherwise K could name
// S its successor and move K's claims onto S's vote (docs/TRUST.md).
const RotationNotation = "rotation@lebowski-dist"

// AcknowledgeRotation makes successor certify every user ID of old, the
// key it replaces, with the RotationNotation naming old: what `key
// rotate` and `key certify OLD` on the successor's node make.
func AcknowledgeRotation(successor *Identity, old *openpgp.Entity) error {
	if old == nil || old.PrimaryKey == nil {
		return errors.New("acknowledge rotation: the replaced key is required")
	}
	cfg := pgpConfig()
	cfg.SignatureNotations = []*packet.Notation{{Name: RotationNotation, Value: []byte(Fingerprint(old)), IsHumanReadable: true}}
	return certify(successor, old, cfg)
}

func certify(signer *Identity, target *openpgp.Entity, cfg *packet.Config) error {
	if signer == nil || signer.Entity == nil || target == nil {
		return errors.New("certify: signer and target keys are required")
	}
	if Fingerprint(signer.Entity) == Fingerprint(target) {
		return fmt.Errorf("certify: key %s cannot certify itself", Fingerprint(target))
	}
	if len(target.Identities) == 0 {
		return fmt.Errorf("certify: key %s has no user ID to certify", Fingerprint(target))
	}
	for name := range target.Identities {
		if err := target.SignIdentity(name, signer.Entity, cfg); err != nil {
			return fmt.Errorf("certify %s (%q) with %s: %w", Fingerprint(target), name, signer.Fingerprint(), err)
		}
	}
	return nil
}

// CertifiedWithin reports whether target is trusted within k
// certification hops: target is itself in trusted (0 hops), or one of its
// user IDs carries a valid certification by a trusted key (1 hop), or by
// a key that is itself certified within k-1 hops. Intermediate keys are
// found in trusted or all (all may be nil); each certification is
// verified cryptographically with go-crypto against the certifier's
// primary key (VerifyCertification), and expired certifications or
// revoked certifiers do not count; a revoked target is never certified
// (nor trusted). trusted is keyed by upper-case fingerprint (as
// Fingerprint).
func CertifiedWithin(target *openpgp.Entity, trusted map[string]*openpgp.Entity, all KeyLookup, k int) bool {
	return certifiedWithin(target, trusted, all, k, time.Now())
}

func certifiedWithin(target *openpgp.Entity, trusted map[string]*openpgp.Entity, all KeyLookup, k int, now time.Time) bool {
	if target == nil || target.PrimaryKey == nil || k < 0 || target.Revoked(now) {
		return false
	}
	if _, ok := trusted[Fingerprint(target)]; ok {
		return true
	}
	visited := map[string]bool{Fingerprint(target): true}
	frontier := []*openpgp.Entity{target}
	for hop := 1; hop <= k && len(frontier) > 0; hop++ {
		var next []*openpgp.Entity
		for _, e := range frontier {
			for _, c := range certifiers(e, trusted, all, now) {
				fpr := Fingerprint(c)
				if _, ok := trusted[fpr]; ok {
					return true
				}
				if !visited[fpr] && len(visited) < MaxTrustSearch {
					visited[fpr] = true
					next = append(next, c)
				}
			}
		}
		frontier = next
	}
	return false
}

// certifiers returns the keys (from trusted or all) that made a valid
// third-party certification over one of e's user IDs.
func certifiers(e *openpgp.Entity, trusted map[string]*openpgp.Entity, all KeyLookup, now time.Time) []*openpgp.Entity {
	self := Fingerprint(e)
	var out []*openpgp.Entity
	seen := map[string]bool{}
	for name, id := range e.Identities {
		if id == nil {
			continue
		}
		for _, sig := range id.Signatures {
			if sig == nil || !isCertification(sig.SigType) || !certCurrent(sig, now) {
				continue
			}
			c := issuer(sig, trusted, all)
			if c == nil || c.PrimaryKey == nil {
				continue
			}
			fpr := Fingerprint(c)
			if fpr == self || seen[fpr] || c.Revoked(now) {
				continue
			}
			if VerifyCertification(e, name, sig, c, now) != nil {
				continue
			}
			seen[fpr] = true
			out = append(out, c)
		}
	}
	return out
}

func isCertification(t packet.SignatureType) bool {
	switch t {
	case packet.SigTypeGenericCert, packet.SigTypePersonaCert, packet.SigTypeCasualCert, packet.SigTypePositiveCert:
		return true
	}
	return false
}

func issuerKeyID(sig *packet.Signature) uint64 {
	if sig.IssuerKeyId != nil {
		return *sig.IssuerKeyId
	}
	if n := len(sig.IssuerFingerprint); n >= 8 { // v4: key ID = low 64 bits
		var id uint64
		for _, b := range sig.IssuerFingerprint[n-8:] {
			id = id<<8 | uint64(b)
		}
		return id
	}
	return 0
}

// issuer finds the key that made sig: by issuer fingerprint in trusted
// then all, or by key ID among the trusted keys.
func issuer(sig *packet.Signature, trusted map[string]*openpgp.Entity, all KeyLookup) *openpgp.Entity {
	if len(sig.IssuerFingerprint) > 0 {
		fpr := fmt.Sprintf("%X", sig.IssuerFingerprint)
		if e := trusted[fpr]; e != nil {
			return e
		}
		if all != nil {
			return all.Lookup(fpr)
		}
		return nil
	}
	if sig.IssuerKeyId == nil {
		return nil
	}
	for _, e := range trusted {
		if e != nil && e.PrimaryKey != nil && e.PrimaryKey.KeyId == *sig.IssuerKeyId {
			return e
		}
	}
	return nil
}

// Certifiers lists the fingerprints that claim to have certified one of
// e's user IDs (third-party certification signatures carrying an issuer
// fingerprint), sorted and without repeats. The signatures are NOT
// verified: this is an index hint for finding candidates quickly;
// CertifiedWithin does the cryptographic check.
func Certifiers(e *openpgp.Entity) []string {
	if e == nil || e.PrimaryKey == nil {
		return nil
	}
	self := Fingerprint(e)
	seen := map[string]bool{}
	var out []string
	for _, id := range e.Identities {
		if id == nil {
			continue
		}
		for _, sig := range id.Signatures {
			if sig == nil || !isCertification(sig.SigType) || len(sig.IssuerFingerprint) == 0 {
				continue
			}
			fpr := fmt.Sprintf("%X", sig.IssuerFingerprint)
			if fpr != self && !seen[fpr] {
				seen[fpr] = true
				out = append(out, fpr)
			}
		}
	}
	sort.Strings(out)
	return out
}

// MaxCertTries bounds the signatures CertifiedBy checks cryptographically
// for one certifier over one key: a stored key may carry signatures that
// only claim to be the certifier's (a claim's embedded key is stored as
// sent), and each check costs a signature verification.
const MaxCertTries = 4

// CertifiedBy reports whether one of target's user IDs carries a valid
// third-party certification by certifier's primary key, in force at now
// (VerifyCertification), and until when it is (zero: no expiry). With
// rotation set, only a certification carrying the RotationNotation that
// names target counts (AcknowledgeRotation). Unlike CertifiedWithin it
// ignores whether target or certifier is revoked: it answers "did
// certifier sign this key", which is what a rotation's acknowledgement
// and a revoked key's former standing ask. At most MaxCertTries
// signatures naming certifier are verified; others are not looked at.
func CertifiedBy(target, certifier *openpgp.Entity, now time.Time, rotation bool) (ok bool, until time.Time) {
	if target == nil || target.PrimaryKey == nil || certifier == nil || certifier.PrimaryKey == nil {
		return false, time.Time{}
	}
	want := Fingerprint(certifier)
	self := Fingerprint(target)
	if want == self {
		return false, time.Time{}
	}
	names := make([]string, 0, len(target.Identities))
	for name := range target.Identities {
		names = append(names, name)
	}
	sort.Strings(names) // the same signatures tried on every call
	tries := 0
	for _, name := range names {
		id := target.Identities[name]
		if id == nil {
			continue
		}
		for _, sig := range id.Signatures {
			if sig == nil || !isCertification(sig.SigType) || issuerKeyID(sig) != certifier.PrimaryKey.KeyId {
				continue
			}
			if len(sig.IssuerFingerprint) > 0 && fmt.Sprintf("%X", sig.IssuerFingerprint) != want {
				continue
			}
			if rotation && !acknowledges(sig, self) {
				continue
			}
			if tries++; tries > MaxCertTries {
				return false, time.Time{}
			}
			if VerifyCertification(target, name, sig, certifier, now) == nil {
				if sig.SigLifetimeSecs != nil && *sig.SigLifetimeSecs != 0 {
					until = sig.CreationTime.Add(time.Duration(*sig.SigLifetimeSecs) * time.Second)
				}
				return true, until
			}
		}
	}
	return false, time.Time{}
}

// acknowledges reports a RotationNotation naming fpr in sig's hashed area.
func acknowledges(sig *packet.Signature, fpr string) bool {
	for _, n := range sig.Notations {
		if n != nil && n.Name == RotationNotation && string(n.Value) == fpr {
			return true
		}
	}
	return false
}
