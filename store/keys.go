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

func serializeKey(e *openpgp.Entity) ([]byte, error) {
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
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
	if _, err := attest.ParsePublicKey(pub); err != nil {
		return KeyInfo{}, fmt.Errorf("put key: %w", err)
	}
	for range 4 {
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
	var was []byte // the stored key material merged with (nil: no record)
	if old, err := s.GetKey(fpr); err == nil {
		was = old.PublicKey
		if oe, err := attest.ParsePublicKey(old.PublicKey); err == nil {
			if e, _, err = attest.MergeKey(e, oe, s, s.cfg.now()); err != nil {
				return KeyInfo{}, false, fmt.Errorf("put key: %w", err)
			}
		}
	} else if !errors.Is(err, ErrNotFound) {
		return KeyInfo{}, false, fmt.Errorf("put key: %w", err)
	}
	bin, err := serializeKey(e)
	if err != nil {
		return KeyInfo{}, false, fmt.Errorf("put key: %w", err)
	}
	if e, err = attest.ParsePublicKey(bin); err != nil {
		return KeyInfo{}, false, fmt.Errorf("put key %s: merged key: %w", fpr, err)
	}
	var out KeyInfo
	retry := false
	err = s.db.Update(func(tx *bolt.Tx) error {
		fk, _ := fprKey(fpr)
		b := tx.Bucket(bktKeys)
		ki := KeyInfo{Fingerprint: fpr, FirstSeen: s.cfg.now().UTC().Truncate(time.Second)}
		if v := b.Get(fk); v != nil {
			old, err := decodeKeyInfo(v)
			if err != nil {
				return err
			}
			if !bytes.Equal(old.PublicKey, was) {
				retry = true // merged or written since we read it
				return nil
			}
			ki = old
		} else {
			if was != nil {
				retry = true
				return nil
			}
			// Proofs may predate the record (claims ingested without key material).
			k, _ := tx.Bucket(bktEquivocations).Cursor().Seek(fk)
			ki.Equivocating = k != nil && bytes.HasPrefix(k, fk)
		}
		ki.PublicKey, ki.Trust, ki.Source = bin, trust, source
		ki.Certifiers = attest.Certifiers(e)
		ki.Revocation = attest.RevocationOf(e, s.cfg.now().Add(attest.DefaultSkew))
		out = ki
		return putKeyInfo(b, fk, ki)
	})
	if err != nil {
		return KeyInfo{}, false, fmt.Errorf("put key %s: %w", fpr, err)
	}
	if retry {
		return KeyInfo{}, true, nil
	}
	s.keyMu.Lock()
	s.keyCache[fpr] = e
	s.keyMu.Unlock()
	s.keysVersion.Add(1)
	return out, false, nil
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
