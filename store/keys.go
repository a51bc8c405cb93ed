package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	bolt "go.etcd.io/bbolt"

	"github.com/lebowski-dist/lebowski/attest"
)

// KeyInfo is a `keys` record.
type KeyInfo struct {
	Fingerprint  string       `json:"fingerprint"`
	PublicKey    []byte       `json:"public_key"` // binary transferable public key
	Trust        attest.Trust `json:"trust"`
	Source       string       `json:"source"` // where it came from: "claim <id>", "import <file>", …
	FirstSeen    time.Time    `json:"first_seen"`
	Equivocating bool         `json:"equivocating"`
	Note         string       `json:"note,omitempty"`
	// Certifiers are the fingerprints that claim to certify the key
	// (attest.Certifiers: unverified, an index for the trust view).
	Certifiers []string `json:"certifiers,omitempty"`
	// Revocation is the key's own revocation signature in effect when the
	// record was written, or dated up to attest.DefaultSkew later (clocks
	// differ; attest.RevocationOf), nil if none.
	Revocation *attest.Revocation `json:"revocation,omitempty"`
}

func decodeKeyInfo(v []byte) (KeyInfo, error) {
	var k KeyInfo
	d := json.NewDecoder(bytes.NewReader(v))
	d.DisallowUnknownFields()
	if err := d.Decode(&k); err != nil {
		return k, fmt.Errorf("%w: key record: %v", ErrCorrupt, err)
	}
	if !k.Trust.Stored() {
		return k, fmt.Errorf("%w: key record: trust %q", ErrCorrupt, k.Trust)
	}
	if _, err := fprKey(k.Fingerprint); err != nil {
		return k, fmt.Errorf("%w: key record: %v", ErrCorrupt, err)
	}
	return k, nil
}

// PutKey stores a builder's public key (binary or armored) with a trust
// level. An existing record keeps FirstSeen and the equivocation flag; its
// trust and source are replaced, and its key material is merged with the
// new (attest.MergeKey): a revocation or certification once stored is
// never lost by importing an older copy of the key.
func (s *Store) PutKey(pub []byte, trust attest.Trust, source string) (KeyInfo, error) {
	if s.cfg.readOnly {
		return KeyInfo{}, fmt.Errorf("put key: %w", ErrReadOnly)
	}
	if !trust.Stored() {
		return KeyInfo{}, fmt.Errorf("put key: %w %q (want unknown, unvetted, trusted, own or distrusted)", attest.ErrInvalidTrust, trust)
	}
	for range 4 { // a key that does not parse fails the first attempt
		ki, retry, err := s.putKeyOnce(pub, trust, source)
		if !retry {
			return ki, err
		}
	}
	return KeyInfo{}, fmt.Errorf("put key: %w (gave up after 4 attempts)", ErrKeyConflict)
}

// putKeyOnce merges pub with the stored key material outside the write
// transaction, then writes only if the record's key material is still
// what it merged with (retry otherwise).
func (s *Store) putKeyOnce(pub []byte, trust attest.Trust, source string) (KeyInfo, bool, error) {
	e, err := attest.ParsePublicKey(pub)
	if err != nil {
		return KeyInfo{}, false, fmt.Errorf("put key: %w", err)
	}
	fpr := attest.Fingerprint(e)
	now := s.cfg.now()
	var was []byte // the stored key material merged with
	old, err := s.GetKey(fpr)
	existed := err == nil
	if existed {
		was = old.PublicKey
		if oe, err := attest.ParsePublicKey(old.PublicKey); err == nil {
			if e, _, err = attest.MergeKey(e, oe, s, now); err != nil {
				return KeyInfo{}, false, fmt.Errorf("put key: %w", err)
			}
		}
	} else if !errors.Is(err, ErrNotFound) {
		return KeyInfo{}, false, fmt.Errorf("put key: %w", err)
	}
	ki, _, retry, err := s.writeKey(fpr, existed, was, e, now, func(ki *KeyInfo, _ bool) {
		ki.Trust, ki.Source = trust, source
	})
	if err != nil {
		return KeyInfo{}, false, fmt.Errorf("put key %s: %w", fpr, err)
	}
	return ki, retry, nil
}

// writeKey is the one write of merged key material (PutKey, MergeKey):
// it serializes e, checks that it parses back as Lookup will read it, and
// writes the record only if its key material is still was (existed: a
// record was read; retry=true otherwise, nothing written). fill sets the
// record's own fields (created: no record before, FirstSeen and the
// equivocation flag are set already); the key material, certifier index
// and revocation are derived from e here.
func (s *Store) writeKey(fpr string, existed bool, was []byte, e *openpgp.Entity, now time.Time, fill func(ki *KeyInfo, created bool)) (out KeyInfo, created, retry bool, err error) {
	bin, err := attest.SerializeKey(e)
	if err != nil {
		return KeyInfo{}, false, false, err
	}
	if e, err = attest.ParsePublicKey(bin); err != nil {
		return KeyInfo{}, false, false, fmt.Errorf("merged key: %w", err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		fk, _ := fprKey(fpr)
		b := tx.Bucket(bktKeys)
		v := b.Get(fk)
		var ki KeyInfo
		switch {
		case (v == nil) == existed:
			retry = true // created or deleted since we read it
			return nil
		case v == nil:
			created = true
			ki = KeyInfo{Fingerprint: fpr, FirstSeen: now.UTC().Truncate(time.Second)}
			// Proofs may predate the record (claims ingested without key material).
			k, _ := tx.Bucket(bktEquivocations).Cursor().Seek(fk)
			ki.Equivocating = k != nil && bytes.HasPrefix(k, fk)
		default:
			cur, err := decodeKeyInfo(v)
			if err != nil {
				return err
			}
			if !bytes.Equal(cur.PublicKey, was) {
				retry = true // merged or written since we read it
				return nil
			}
			ki = cur
		}
		fill(&ki, created)
		ki.PublicKey = bin
		ki.Certifiers = attest.Certifiers(e)
		ki.Revocation = attest.RevocationOf(e, now.Add(attest.DefaultSkew))
		out = ki
		return putKeyInfo(b, fk, ki)
	})
	if err != nil || retry {
		return KeyInfo{}, false, retry, err
	}
	s.keyMu.Lock()
	s.keyCache[fpr] = e
	s.keyMu.Unlock()
	s.keysVersion.Add(1)
	return out, created, false, nil
}

func putKeyInfo(b *bolt.Bucket, fk []byte, ki KeyInfo) error {
	v, err := json.Marshal(ki)
	if err != nil {
		return err
	}
	return b.Put(fk, v)
}

// GetKey returns the record for fpr, or an error wrapping ErrNotFound.
func (s *Store) GetKey(fpr string) (KeyInfo, error) {
	fk, err := fprKey(fpr)
	if err != nil {
		return KeyInfo{}, fmt.Errorf("get key: %w", err)
	}
	var ki KeyInfo
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bktKeys).Get(fk)
		if v == nil {
			return fmt.Errorf("%w: no key %s (import it with `lebowski key import`)", ErrNotFound, fpr)
		}
		ki, err = decodeKeyInfo(v) // decodes (copies) inside the tx
		return err
	})
	if err != nil {
		return KeyInfo{}, fmt.Errorf("get key: %w", err)
	}
	return ki, nil
}

// SetTrust changes a stored key's trust level and note.
func (s *Store) SetTrust(fpr string, trust attest.Trust, note string) error {
	if s.cfg.readOnly {
		return fmt.Errorf("set trust: %w", ErrReadOnly)
	}
	if !trust.Stored() {
		return fmt.Errorf("set trust: %w %q (want unknown, unvetted, trusted, own or distrusted)", attest.ErrInvalidTrust, trust)
	}
	fk, err := fprKey(fpr)
	if err != nil {
		return fmt.Errorf("set trust: %w", err)
	}
	return s.updateKey(fk, fpr, func(ki *KeyInfo) { ki.Trust, ki.Note = trust, note })
}

func (s *Store) updateKey(fk []byte, fpr string, f func(*KeyInfo)) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktKeys)
		v := b.Get(fk)
		if v == nil {
			return fmt.Errorf("%w: no key %s", ErrNotFound, fpr)
		}
		ki, err := decodeKeyInfo(v)
		if err != nil {
			return err
		}
		f(&ki)
		return putKeyInfo(b, fk, ki)
	})
	if err != nil {
		return fmt.Errorf("update key %s: %w", fpr, err)
	}
	s.keysVersion.Add(1)
	return nil
}

// Keys lists all key records, ordered by fingerprint bytes.
func (s *Store) Keys() ([]KeyInfo, error) {
	var out []KeyInfo
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bktKeys).ForEach(func(_, v []byte) error {
			ki, err := decodeKeyInfo(v)
			if err != nil {
				return err
			}
			out = append(out, ki)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return out, nil
}

// Lookup implements attest.KeyLookup from the `keys` bucket, with an
// in-memory cache of parsed entities. It returns nil for unknown keys and
// for records that do not parse (logged).
func (s *Store) Lookup(fpr string) *openpgp.Entity {
	s.keyMu.RLock()
	e := s.keyCache[fpr]
	s.keyMu.RUnlock()
	if e != nil {
		return e
	}
	ki, err := s.GetKey(fpr)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			s.log.Warn("key lookup failed", "fingerprint", fpr, "err", err)
		}
		return nil
	}
	e, err = attest.ParsePublicKey(ki.PublicKey)
	if err != nil || attest.Fingerprint(e) != fpr {
		s.log.Warn("stored key does not parse", "fingerprint", fpr, "err", err)
		return nil
	}
	s.keyMu.Lock()
	s.keyCache[fpr] = e
	s.keyMu.Unlock()
	return e
}

var _ attest.KeyLookup = (*Store)(nil)
