// Package p2ptest holds test doubles for the network layer: MemStore, an
// in-memory claim and blob store with the methods p2p.ClaimStore and
// p2p.BlobStore ask for. It does not import p2p, so p2p's own tests can use
// it too.
package p2ptest

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// MemStore is an in-memory ClaimStore and BlobStore, safe for concurrent
// use. It is meant for tests and benchmarks; it keeps everything in RAM.
type MemStore struct {
	mu     sync.RWMutex
	raw    map[string][]byte          // claim id → canonical keyless envelope
	byPkg  map[string]map[string]bool // package → claim ids
	digest map[string]attest.SetDigest
	keys   map[string]*openpgp.Entity // fingerprint → key
	blobs  map[string][]byte          // cid → bytes
	sorted map[string][]string        // cached sorted ids per package
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{
		raw:    make(map[string][]byte),
		byPkg:  make(map[string]map[string]bool),
		digest: make(map[string]attest.SetDigest),
		keys:   make(map[string]*openpgp.Entity),
		blobs:  make(map[string][]byte),
		sorted: make(map[string][]string),
	}
}

// Lookup implements attest.KeyLookup.
func (s *MemStore) Lookup(fpr string) *openpgp.Entity {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.keys[fpr]
}

// PutKey adds a builder key.
func (s *MemStore) PutKey(e *openpgp.Entity) {
	s.mu.Lock()
	s.keys[attest.Fingerprint(e)] = e
	s.mu.Unlock()
}

// Ingest implements p2p.ClaimStore.
func (s *MemStore) Ingest(ctx context.Context, claims ...*attest.Claim) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore ingest: %w", err)
	}
	added := make([]bool, len(claims))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range claims {
		if c == nil || c.Statement == nil || c.ID == "" || len(c.Raw) == 0 {
			return added, fmt.Errorf("memstore ingest: claim %d is incomplete (want a verified *attest.Claim)", i)
		}
		if _, ok := s.raw[c.ID]; ok {
			continue
		}
		s.raw[c.ID] = append([]byte(nil), c.Raw...)
		pkg := c.Statement.Package
		if s.byPkg[pkg] == nil {
			s.byPkg[pkg] = make(map[string]bool)
		}
		s.byPkg[pkg][c.ID] = true
		d := s.digest[pkg]
		d.Add(c.ID)
		s.digest[pkg] = d
		delete(s.sorted, pkg)
		if c.Signer != nil {
			fpr := attest.Fingerprint(c.Signer)
			if _, ok := s.keys[fpr]; !ok {
				s.keys[fpr] = c.Signer
			}
		}
		added[i] = true
	}
	return added, nil
}

// Has implements p2p.ClaimStore.
func (s *MemStore) Has(id string) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.raw[id]
	return ok, nil
}

// GetRaw implements p2p.ClaimStore.
func (s *MemStore) GetRaw(id string) ([]byte, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.raw[id]
	return b, ok, nil
}

// Len is the number of stored claims.
func (s *MemStore) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.raw)
}

// AllIDs returns every stored claim ID, sorted.
func (s *MemStore) AllIDs() []string {
	s.mu.RLock()
	ids := make([]string, 0, len(s.raw))
	for id := range s.raw {
		ids = append(ids, id)
	}
	s.mu.RUnlock()
	sort.Strings(ids)
	return ids
}

// ClaimIDs implements p2p.ClaimStore.
func (s *MemStore) ClaimIDs(pkg string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sortedLocked(pkg)...), nil
}

func (s *MemStore) sortedLocked(pkg string) []string {
	if ids, ok := s.sorted[pkg]; ok {
		return ids
	}
	ids := make([]string, 0, len(s.byPkg[pkg]))
	for id := range s.byPkg[pkg] {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	s.sorted[pkg] = ids
	return ids
}

// Digests implements p2p.ClaimStore.
func (s *MemStore) Digests() (map[string]attest.SetDigest, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]attest.SetDigest, len(s.digest))
	for pkg, d := range s.digest {
		out[pkg] = d
	}
	return out, nil
}

// GetBlob implements p2p.BlobStore.
func (s *MemStore) GetBlob(c string) ([]byte, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.blobs[c]
	return b, ok, nil
}

// PutBlob implements p2p.BlobStore.
func (s *MemStore) PutBlob(data []byte) (string, error) {
	c := vocab.CID(data)
	s.mu.Lock()
	s.blobs[c] = append([]byte(nil), data...)
	s.mu.Unlock()
	return c, nil
}

// SetBlobUnchecked stores data under any CID, without checking: a lying
// peer for tests of the blob protocol's checks.
func (s *MemStore) SetBlobUnchecked(c string, data []byte) {
	s.mu.Lock()
	s.blobs[c] = append([]byte(nil), data...)
	s.mu.Unlock()
}

// SetRawUnchecked replaces a stored claim's envelope bytes without
// checking: a lying peer for tests of the sync protocol's checks.
func (s *MemStore) SetRawUnchecked(id string, raw []byte) {
	s.mu.Lock()
	s.raw[id] = append([]byte(nil), raw...)
	s.mu.Unlock()
}
