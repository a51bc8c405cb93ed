package config

import "time"

// Limits bound what one remote peer can make this node do: rates per peer
// on gossip, sync and blob requests, concurrency per peer and in total,
// and deadlines on every stream. The defaults (docs/SECURITY.md) are far
// above what an honest peer needs: claims are rare (a build takes
// minutes), a catch-up is one session, a blob fetch is one stream.
//
// It is the `limits:` section as plain values: the daemon converts it to
// p2p.Limits (the same fields, in the same order), whose defaults fill
// the zero or negative fields (Validate refuses negative ones).
type Limits struct {
	// GossipPerSecond is the claims per second accepted from one
	// forwarding peer (token bucket of GossipBurst). Past it, claims are
	// ignored before any signature is checked (no score reward, no
	// penalty), except claims of builders the node trusts; a peer that
	// keeps overflowing is penalized.
	GossipPerSecond float64 `yaml:"gossip_per_second"`
	GossipBurst     int     `yaml:"gossip_burst"`
	// KeysPerSecond is the key announcements per second accepted from one
	// forwarding peer on the keys topic (token bucket of KeysBurst); past
	// it they are ignored before they are parsed.
	KeysPerSecond float64 `yaml:"keys_per_second"`
	KeysBurst     int     `yaml:"keys_burst"`
	// IntentsPerSecond is the build intents per second accepted from one
	// forwarding peer on the intents topic (token bucket of IntentsBurst).
	IntentsPerSecond float64 `yaml:"intents_per_second"`
	IntentsBurst     int     `yaml:"intents_burst"`
	// IntentsPerSigner is the build intents per second accepted from one
	// signing key, whoever forwards them (token bucket of
	// IntentsSignerBurst), counted after the signature is checked (a
	// forgery cannot spend a builder's tokens). It holds back builders the
	// node trusts too, whose intents pass the forwarders' rate.
	IntentsPerSigner   float64 `yaml:"intents_per_signer"`
	IntentsSignerBurst int     `yaml:"intents_signer_burst"`
	// SyncSessionsPerMinute is how many inbound catch-up sessions one peer
	// may open per minute (burst 5): a peer syncing every 2 s fits.
	SyncSessionsPerMinute float64 `yaml:"sync_sessions_per_minute"`
	// SyncSessionTimeout bounds one inbound catch-up session, however
	// active; SyncRequestsPerSession bounds its round trips.
	SyncSessionTimeout     time.Duration `yaml:"sync_session_timeout"`
	SyncRequestsPerSession int           `yaml:"sync_requests_per_session"`
	// BlobsPerPeer is how many blob streams one peer may have open at
	// once; BlobRequestsPerMinute how many it may start per minute.
	BlobsPerPeer          int     `yaml:"blobs_per_peer"`
	BlobRequestsPerMinute float64 `yaml:"blob_requests_per_minute"`
}

// Budget bounds what keys that do not vote (unknown, unvetted) can make the
// store hold: anyone can make fresh keys, so without it a flood of valid
// claims fills the disk. Keys that vote (own, trusted, certified, the
// config's trusted_keys) are never refused and nothing is ever evicted: a
// budget only stops new claims. Zero fields take the defaults (the
// store's DefaultBudget); a negative field disables that limit.
//
// It is the `budget:` section as plain values: core.StoreOptions converts
// it to store.Budget (the same fields, in the same order).
type Budget struct {
	// ClaimsPerKey, RecipesPerKey and BytesPerKey bound one non-voting
	// key's claims, distinct recipes and envelope bytes.
	ClaimsPerKey  int64 `yaml:"claims_per_key"`
	RecipesPerKey int64 `yaml:"recipes_per_key"`
	BytesPerKey   int64 `yaml:"bytes_per_key"`
	// PoolBytes and PoolKeys bound what all keys that do not vote hold
	// together (the pool): bytes of stored claims, and keys with stored
	// claims. Fresh keys cost nothing to make, so the per-key limits
	// alone do not bound them.
	PoolBytes int64 `yaml:"pool_bytes"`
	PoolKeys  int64 `yaml:"pool_keys"`
	// StoreBytes is the database size after which claims of non-voting
	// keys are refused while the node keeps serving and storing the
	// claims of keys that vote.
	StoreBytes int64 `yaml:"store_bytes"`
}
