package p2p

import (
	"context"
	"io"

	"github.com/lebowski-dist/lebowski/attest"
)

// ClaimStore is what the network layer needs from the node's claim store.
// The bbolt store (package store) is adapted to it by the daemon; MemStore
// (p2p/p2ptest) is an in-memory implementation for tests.
//
// Stored claims are the keyless canonical envelopes (attest.Claim.Raw). To
// let peers that have never seen a builder verify claims received through
// /lebowski/sync/1, the store must also keep the signer keys of the claims
// it ingested (claim.Signer) and return them from Lookup: the sync server
// sends each served claim's signer key beside it.
type ClaimStore interface {
	// Lookup returns the public key of a builder fingerprint, or nil. It is
	// also the keyring used to verify incoming claims (a known key is used
	// instead of the key embedded in an envelope).
	attest.KeyLookup
	// Ingest stores verified claims idempotently and returns, per claim,
	// whether it was new. It returns only after the claims are durable.
	Ingest(ctx context.Context, claims ...*attest.Claim) ([]bool, error)
	// Has reports whether the claim ID is stored.
	Has(id string) (bool, error)
	// GetRaw returns the canonical keyless envelope of a claim.
	GetRaw(id string) (raw []byte, ok bool, err error)
	// ClaimIDs returns the IDs of the claims about one source package,
	// sorted ascending (byte order).
	ClaimIDs(pkg string) ([]string, error)
	// Digests returns the attest.SetDigest of the claims held about each
	// source package. Peers compare digests to find packages that differ.
	Digests() (map[string]attest.SetDigest, error)
}

// BlobStore serves and keeps content-addressed blobs (buildinfo, build
// logs, diffoscope reports, build images) for /lebowski/blob/1.
type BlobStore interface {
	// GetBlob returns the bytes of a blob by CID string; ok is false when
	// the blob is not held.
	GetBlob(cid string) (data []byte, ok bool, err error)
	// PutBlob stores data and returns its CID (CIDv1, raw, sha2-256).
	PutBlob(data []byte) (cid string, err error)
}

// BlobOpener is optionally implemented by a BlobStore: the blob server
// then streams blobs (size known before any byte is read, content hashed
// from disk before it is sent) instead of loading them into memory.
type BlobOpener interface {
	// OpenBlob returns a reader over the blob and its size; ok is false
	// when the blob is not held.
	OpenBlob(cid string) (r io.ReadSeekCloser, size int64, ok bool, err error)
}
