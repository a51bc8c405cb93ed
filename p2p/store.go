package p2p

import (
	"context"
	"io"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
)

// ClaimStore is what the network layer reads from the node's claim store
// to serve /lebowski/sync/1 and to skip claims it holds: the bbolt store
// (package store) implements it; MemStore (p2p/p2ptest) is an in-memory
// implementation for tests. Nothing enters the store this way: what peers
// deliver goes through the Inlet.
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

// Inlet is the node's one door for what peers deliver: verified claims
// (gossip and sync), key announcements and build intents. The node's
// core implements it (cmd/node/core: it stores, decides what counts
// and emits the node's events); p2ptest.MemStore implements it for tests.
// Arguments are plain values so that the implementer needs no import of
// this package.
type Inlet interface {
	// IngestClaims stores claims this layer verified, idempotently, and
	// returns per claim whether it was new; it returns only after they
	// are durable. via is ViaGossip or ViaSync, peer the delivering peer.
	IngestClaims(ctx context.Context, via, peer string, claims ...*attest.Claim) ([]bool, error)
	// Votes reports whether a builder key votes on this node: its claims
	// are never ignored for a forwarding peer's gossip rate.
	Votes(fingerprint string) bool
	// MergeKey merges an announced key (already parsed once by the
	// validator): it never raises trust, it only adds verified
	// certifications and revocations (store.MergeKey). changed says the
	// stored key material changed.
	MergeKey(ctx context.Context, pub []byte, peer string) (changed bool, err error)
	// AnnounceKeys returns the keys this node re-announces on KeysTopic:
	// its own key as stored (with the certifications and revocations it
	// holds), so that nodes that joined since learn it. At most
	// maxAnnounceKeys are sent; nil announces nothing.
	AnnounceKeys() [][]byte
	// Intent is called once for every verified intent another node
	// published or relayed (replays are not delivered again); at is when
	// it arrived, but never later than its signing time plus
	// attest.DefaultSkew, so that counting it until at+TTL never exceeds
	// what its signer asked for.
	Intent(in *attest.Intent, peer string, at time.Time)
}

// How claims reached the node (Inlet.IngestClaims's via).
const (
	ViaGossip = "gossip"
	ViaSync   = "sync"
)

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
