package attest

import (
	"crypto/sha256"
	"encoding/hex"
)

// SetDigest summarises a set of claim IDs: how many, and the XOR of
// sha256(ID) over them. It does not depend on order, and it is updated in
// O(1) as claims arrive (Add), so the store keeps one per package. Two
// nodes holding the same set have equal digests; /lebowski/sync/1 compares
// them per package to find the packages whose claims differ. This is the
// one definition the store, the network layer and the test stores share.
type SetDigest struct {
	Count uint64
	Hash  [32]byte
}

// Add folds one claim ID into the digest. Adding an ID twice is the
// caller's bug (the store adds only new claims).
func (d *SetDigest) Add(id string) {
	h := sha256.Sum256([]byte(id))
	for i := range d.Hash {
		d.Hash[i] ^= h[i]
	}
	d.Count++
}

// HexHash is the hash in lower-case hex, as the sync protocol carries it.
func (d SetDigest) HexHash() string { return hex.EncodeToString(d.Hash[:]) }

// DigestOf computes the digest of a set of distinct claim IDs.
func DigestOf(ids []string) SetDigest {
	var d SetDigest
	for _, id := range ids {
		d.Add(id)
	}
	return d
}
