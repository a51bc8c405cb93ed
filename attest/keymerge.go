package attest

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Bounds on what one stored key carries after merging announcements.
const (
	// MaxCertifications bounds the third-party certifications kept on one
	// key (over all its user IDs, at most one per certifier and user ID).
	MaxCertifications = 100
	// MaxRevocations bounds the key revocation signatures kept.
	MaxRevocations = 8
)

// ErrKeyMismatch: the two keys given to MergeKey are not the same key.
var ErrKeyMismatch = errors.New("keys differ")

// VerifyCertification checks one third-party certification sig over
// target's user ID name against the certifier's primary key: a
// certification type (0x10–0x13), in force at now (certCurrent), issued by that key
// (key ID), and cryptographically valid. It is the one check behind
// CertifiedWithin and MergeKey.
func VerifyCertification(target *openpgp.Entity, name string, sig *packet.Signature, certifier *openpgp.Entity, now time.Time) error {
	switch {
	case target == nil || target.PrimaryKey == nil || certifier == nil || certifier.PrimaryKey == nil || sig == nil:
		return errors.New("certification: missing key or signature")
	case !isCertification(sig.SigType):
		return fmt.Errorf("certification: signature type %#x is not a certification", uint8(sig.SigType))
	case !certCurrent(sig, now):
		return fmt.Errorf("certification by %s: expired, or dated more than %s after %s", Fingerprint(certifier), DefaultSkew, now.UTC().Format(time.RFC3339))
	case certifier.PrimaryKey.KeyId != issuerKeyID(sig):
		return fmt.Errorf("certification: issuer key ID %016X is not %s", issuerKeyID(sig), Fingerprint(certifier))
	}
	if err := certifier.PrimaryKey.VerifyUserIdSignature(name, target.PrimaryKey, sig); err != nil {
		return fmt.Errorf("certification by %s of %s: %w", Fingerprint(certifier), Fingerprint(target), err)
	}
	return nil
}

// certCurrent reports whether a certification is in force at now: its
// lifetime, if it has one, has not passed, and it is dated no later than
// DefaultSkew after now. A certifier whose clock runs a little ahead of
// ours still certifies (claims and revocations allow the same skew); a
// strict "not valid yet" would drop a fresh certification from a peer
// whose clock is one second ahead.
func certCurrent(sig *packet.Signature, now time.Time) bool {
	if sig.CreationTime.Unix() > now.Add(DefaultSkew).Unix() {
		return false
	}
	// Within the skew, go-crypto's check at the later of the two times:
	// its lifetime rule as it is, without its strict "not valid yet".
	if sig.CreationTime.After(now) {
		now = sig.CreationTime
	}
	return !sig.SigExpired(now)
}

// MergeKey merges what an announced copy of a key adds to the stored copy
// and returns the result (base, changed in place) and whether anything
// changed. base and in must be the same key, each parsed freshly
// (ParsePublicKey, which has verified self-signatures and revocations);
// base may be nil for a key seen for the first time (in is then the
// result). go-crypto has no merge of its own (ReadKeyRing of concatenated
// copies yields two entities), so this works on its parsed objects:
//
//   - key revocation signatures of in are added (at most
//     ReservedRevocations, the room the key rules keep; a compromised one
//     replaces a soft one when full);
//   - third-party certifications of in over user IDs that base has are
//     added; new user IDs, subkeys and self-signatures are not (import the
//     key to replace it);
//   - one third-party certification is kept per certifier and user ID
//     (pickCertification): when lookup has the certifier's key, the newest
//     that verifies (VerifyCertification), none if the certifier is
//     revoked — a forged newer one never pushes out a valid one;
//     certifications whose certifier is unknown are kept as hints, the
//     newest (CertifiedWithin checks them when the certifier becomes
//     known); expired ones and other signature types (certification
//     revocations) are dropped;
//   - at most MaxCertifications are kept: verified ones first, then the
//     newest.
func MergeKey(base, in *openpgp.Entity, lookup KeyLookup, now time.Time) (*openpgp.Entity, bool, error) {
	if in == nil || in.PrimaryKey == nil {
		return nil, false, errors.New("merge key: no key given")
	}
	changed := false
	if base == nil {
		base, in, changed = in, nil, true
	} else if base.PrimaryKey == nil || !bytes.Equal(base.PrimaryKey.Fingerprint, in.PrimaryKey.Fingerprint) {
		return nil, false, fmt.Errorf("merge key: %w: %s and %s", ErrKeyMismatch, Fingerprint(base), Fingerprint(in))
	}
	if in != nil {
		for _, r := range in.Revocations {
			if r == nil || hasSig(base.Revocations, r) {
				continue
			}
			// Room for ReservedRevocations only, the room the key rules
			// always keep (a third would make the merged key unparseable,
			// so no revocation would spread); a compromised revocation
			// replaces a soft one when full, as it is the one that matters.
			switch i := softRevocation(base.Revocations); {
			case len(base.Revocations) < ReservedRevocations:
				base.Revocations = append(base.Revocations, r)
			case compromised(r) && i >= 0:
				base.Revocations[i] = r
			default:
				continue
			}
			changed = true
		}
	}
	self := base.PrimaryKey.KeyId
	var cands []cand
	for name, id := range base.Identities {
		if id == nil {
			continue
		}
		var own []*packet.Signature
		byIssuer := map[string][]*packet.Signature{} // issuer → its third-party certifications
		oldSigs := map[*packet.Signature]bool{}
		var all []*packet.Signature
		for _, sig := range id.Signatures {
			oldSigs[sig] = true
			all = append(all, sig)
		}
		if iid := identityOf(in, name); iid != nil {
			have := map[string]bool{}
			for _, sig := range id.Signatures {
				have[string(sigBytes(sig))] = true
			}
			for _, sig := range iid.Signatures {
				if b := sigBytes(sig); b != nil && !have[string(b)] {
					have[string(b)] = true
					all = append(all, sig)
				}
			}
		}
		for _, sig := range all {
			if sig == nil {
				continue
			}
			if sig.CheckKeyIdOrFingerprint(base.PrimaryKey) || issuerKeyID(sig) == self {
				if oldSigs[sig] {
					own = append(own, sig) // self-signatures stay as stored
				}
				continue
			}
			if !isCertification(sig.SigType) || !certCurrent(sig, now) {
				if oldSigs[sig] {
					changed = true
				}
				continue
			}
			k := issuerName(sig)
			if k == "" {
				if oldSigs[sig] {
					changed = true
				}
				continue
			}
			byIssuer[k] = append(byIssuer[k], sig)
		}
		id.Signatures = own
		for _, list := range byIssuer {
			c, dropped := pickCertification(base, name, list, oldSigs, lookup, now)
			changed = changed || dropped
			if c.sig != nil {
				cands = append(cands, c)
			}
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.verified != b.verified {
			return a.verified
		}
		if !a.sig.CreationTime.Equal(b.sig.CreationTime) {
			return a.sig.CreationTime.After(b.sig.CreationTime)
		}
		if a.name != b.name {
			return a.name < b.name
		}
		return issuerName(a.sig) < issuerName(b.sig)
	})
	for i, c := range cands {
		if i >= MaxCertifications {
			changed = changed || c.old
			continue
		}
		changed = changed || !c.old
		id := base.Identities[c.name]
		id.Signatures = append(id.Signatures, c.sig)
	}
	return base, changed, nil
}

// cand is a certification MergeKey may keep.
type cand struct {
	name     string
	sig      *packet.Signature
	verified bool
	old      bool // already in base
}

// pickCertification chooses the one certification kept for an issuer
// over user ID name: with the issuer's key known, the newest that
// verifies — stored ones are always tried, at most MaxCertTries new ones
// (newest first), so a forged "newer" certification can neither push out
// a valid one nor cost more than a few checks — and none when the issuer
// is revoked; with the issuer unknown, the newest (a hint, checked when
// the key is known). dropped reports a stored one not kept.
func pickCertification(base *openpgp.Entity, name string, list []*packet.Signature, oldSigs map[*packet.Signature]bool, lookup KeyLookup, now time.Time) (c cand, dropped bool) {
	sort.SliceStable(list, func(i, j int) bool { return list[i].CreationTime.After(list[j].CreationTime) })
	var ce *openpgp.Entity
	if sig := list[0]; len(sig.IssuerFingerprint) > 0 && lookup != nil {
		ce = lookup.Lookup(fmt.Sprintf("%X", sig.IssuerFingerprint))
	}
	switch {
	case ce == nil:
		c = cand{name: name, sig: list[0], old: oldSigs[list[0]]}
	case !ce.Revoked(now):
		tries := 0
		for _, sig := range list {
			if !oldSigs[sig] {
				if tries++; tries > MaxCertTries {
					continue
				}
			}
			if VerifyCertification(base, name, sig, ce, now) == nil {
				c = cand{name: name, sig: sig, verified: true, old: oldSigs[sig]}
				break
			}
		}
	}
	for _, sig := range list {
		if oldSigs[sig] && sig != c.sig {
			dropped = true
		}
	}
	return c, dropped
}

// softRevocation is the index of a revocation that is not for a
// compromised key, -1 if none or if one is (it is never replaced).
func softRevocation(revs []*packet.Signature) int {
	soft := -1
	for i, r := range revs {
		if compromised(r) {
			return -1
		}
		if soft < 0 {
			soft = i
		}
	}
	return soft
}

func compromised(r *packet.Signature) bool {
	return r != nil && r.RevocationReason != nil && *r.RevocationReason == packet.KeyCompromised
}

func identityOf(e *openpgp.Entity, name string) *openpgp.Identity {
	if e == nil {
		return nil
	}
	return e.Identities[name]
}

// issuerName identifies a signature's issuer: its fingerprint, else its
// key ID, "" if it names none.
func issuerName(sig *packet.Signature) string {
	if len(sig.IssuerFingerprint) > 0 {
		return fmt.Sprintf("%X", sig.IssuerFingerprint)
	}
	if sig.IssuerKeyId != nil {
		return fmt.Sprintf("%016X", *sig.IssuerKeyId)
	}
	return ""
}

// hasSig reports whether sigs holds a signature with the same bytes as s.
func hasSig(sigs []*packet.Signature, s *packet.Signature) bool {
	sb := sigBytes(s)
	for _, x := range sigs {
		if x == s || (sb != nil && bytes.Equal(sigBytes(x), sb)) {
			return true
		}
	}
	return false
}

func sigBytes(s *packet.Signature) []byte {
	if s == nil {
		return nil
	}
	var b bytes.Buffer
	if err := s.Serialize(&b); err != nil {
		return nil
	}
	return b.Bytes()
}

// SerializeKey is the binary transferable public key of e.
func SerializeKey(e *openpgp.Entity) ([]byte, error) {
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		return nil, fmt.Errorf("serialize key %s: %w", Fingerprint(e), err)
	}
	return b.Bytes(), nil
}
