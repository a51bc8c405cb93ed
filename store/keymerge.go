package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/lebowski-dist/lebowski/attest"
)

// MergeOutcome says what MergeKey did with an announced key.
type MergeOutcome int

const (
	// MergeIgnored: a key the store does not hold and that no key which
	// votes here certifies (nor the config trusts): it cannot change
	// this node's trust view, so it is not stored.
	MergeIgnored MergeOutcome = iota
	// MergeUnchanged: the stored key already carries everything the
	// announcement does.
	MergeUnchanged
	// MergeNew: a new key, stored with attest.TrustUnknown.
	MergeNew
	// MergeUpdated: certifications or revocations were added to (or
	// invalid ones dropped from) the stored key.
	MergeUpdated
)

func (o MergeOutcome) String() string {
	switch o {
	case MergeUnchanged:
		return "unchanged"
	case MergeNew:
		return "new"
	case MergeUpdated:
		return "updated"
	}
	return "ignored"
}

// Changed reports a new or updated key record.
func (o MergeOutcome) Changed() bool { return o == MergeNew || o == MergeUpdated }

// ErrKeyConflict: the stored key kept changing while a merge ran (retried
// a few times first).
var ErrKeyConflict = errors.New("key changed concurrently")

// MergeKey merges an announced public key (binary or armored: the key
// with its self-signatures, certifications by other keys and revocation
// signatures) into the store with attest.MergeKey. It never raises
// trust: a stored key keeps its level, source and first-seen time and
// only gains certifications and revocation signatures (each verified
// where the certifier's key is stored; at most attest.MaxCertifications
// per key). A key the store does not hold is stored (level unknown,
// counted as unvetted) only when a key that votes here — stored as
// trusted or own, or exempt (the config's trusted_keys, or certified by
// the trust view) — certifies it, or when it is itself exempt; anything
// else could not change the trust view and is ignored. source says where
// it came from ("announced by <peer>").
func (s *Store) MergeKey(pub []byte, source string) (KeyInfo, MergeOutcome, error) {
	if s.cfg.readOnly {
		return KeyInfo{}, MergeIgnored, fmt.Errorf("merge key: %w", ErrReadOnly)
	}
	for range 4 { // a key that does not parse fails the first attempt
		ki, out, retry, err := s.mergeKeyOnce(pub, source)
		if !retry {
			return ki, out, err
		}
	}
	return KeyInfo{}, MergeIgnored, fmt.Errorf("merge key: %w (gave up after 4 attempts)", ErrKeyConflict)
}

// mergeKeyOnce does the crypto work outside the write transaction (a bbolt
// read inside a write transaction of the same goroutine can deadlock), then
// writes only if the record is still what it merged with.
func (s *Store) mergeKeyOnce(pub []byte, source string) (KeyInfo, MergeOutcome, bool, error) {
	in, err := attest.ParsePublicKey(pub) // fresh objects: MergeKey changes them
	if err != nil {
		return KeyInfo{}, MergeIgnored, false, fmt.Errorf("merge key: %w", err)
	}
	fpr := attest.Fingerprint(in)
	now := s.cfg.now()
	old, err := s.GetKey(fpr)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return KeyInfo{}, MergeIgnored, false, fmt.Errorf("merge key %s: %w", fpr, err)
	}
	var base *openpgp.Entity
	if exists {
		if base, err = attest.ParsePublicKey(old.PublicKey); err != nil {
			return KeyInfo{}, MergeIgnored, false, fmt.Errorf("merge key %s: stored key: %w", fpr, err)
		}
	}
	merged, changed, err := attest.MergeKey(base, in, s, now)
	if err != nil {
		return KeyInfo{}, MergeIgnored, false, fmt.Errorf("merge key %s: %w", fpr, err)
	}
	if exists && !changed {
		return old, MergeUnchanged, false, nil
	}
	if !exists && !s.wanted(merged, now) {
		return KeyInfo{}, MergeIgnored, false, nil
	}
	ki, created, retry, err := s.writeKey(fpr, exists, old.PublicKey, merged, now, func(ki *KeyInfo, created bool) {
		if created {
			ki.Trust, ki.Source = attest.TrustUnknown, source
		}
	})
	if err != nil {
		return KeyInfo{}, MergeIgnored, false, fmt.Errorf("merge key %s: %w", fpr, err)
	}
	if retry {
		return KeyInfo{}, MergeIgnored, true, nil
	}
	if created {
		return ki, MergeNew, false, nil
	}
	return ki, MergeUpdated, false, nil
}

// wanted reports whether a key the store does not hold may change the
// trust view: it is exempt itself, or a key that votes certified it.
func (s *Store) wanted(e *openpgp.Entity, now time.Time) bool {
	if s.Exempt(attest.Fingerprint(e)) {
		return true
	}
	if e.Revoked(now) {
		return false
	}
	for _, c := range attest.Certifiers(e) {
		if !s.Votes(c) {
			continue
		}
		// The trust view's check (attest.CertifiedBy): at most
		// attest.MaxCertTries signatures naming c are verified, however
		// many an announced key carries.
		if ce := s.Lookup(c); ce != nil && !ce.Revoked(now) {
			if ok, _ := attest.CertifiedBy(e, ce, now, false); ok {
				return true
			}
		}
	}
	return false
}

// Votes reports a key that votes as the store knows it: exempt (the
// config's trusted_keys, keys certified by the trust view), or stored with
// a level that votes and not revoked.
func (s *Store) Votes(fpr string) bool {
	if s.Exempt(fpr) {
		return true
	}
	ki, err := s.GetKey(fpr)
	return err == nil && ki.Trust.Normalize().Votes() && ki.Revocation == nil
}
