package p2ptest

import (
	"context"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
)

// MemStore is also a p2p.Inlet: delivered claims are stored, no key
// votes, announced keys and intents are relayed by the node and kept
// nowhere, and nothing is re-announced.

// IngestClaims implements p2p.Inlet.
func (s *MemStore) IngestClaims(ctx context.Context, _, _ string, claims ...*attest.Claim) ([]bool, error) {
	return s.Ingest(ctx, claims...)
}

// Votes implements p2p.Inlet: no key votes.
func (s *MemStore) Votes(string) bool { return false }

// MergeKey implements p2p.Inlet: announced keys are not kept.
func (s *MemStore) MergeKey(context.Context, []byte, string) (bool, error) { return false, nil }

// AnnounceKeys implements p2p.Inlet: nothing is re-announced.
func (s *MemStore) AnnounceKeys() [][]byte { return nil }

// Intent implements p2p.Inlet: intents are not kept.
func (s *MemStore) Intent(*attest.Intent, string, time.Time) {}

// KeyRecords receives the keys topic's announcements (Inlet.Keys).
type KeyRecords interface {
	MergeKey(ctx context.Context, pub []byte, peer string) (bool, error)
	AnnounceKeys() [][]byte
}

// IntentSink receives the intents topic's intents (Inlet.Intents).
type IntentSink interface {
	Intent(in *attest.Intent, peer string, at time.Time)
}

// Inlet is a MemStore's inlet with the keys and intents topics handed to
// test doubles; a nil field keeps MemStore's behaviour. When Intents also
// has RenewIntents, the node calls it (p2p.IntentRenewer).
type Inlet struct {
	*MemStore
	Keys    KeyRecords
	Intents IntentSink
}

// MergeKey implements p2p.Inlet.
func (in Inlet) MergeKey(ctx context.Context, pub []byte, peer string) (bool, error) {
	if in.Keys == nil {
		return in.MemStore.MergeKey(ctx, pub, peer)
	}
	return in.Keys.MergeKey(ctx, pub, peer)
}

// AnnounceKeys implements p2p.Inlet.
func (in Inlet) AnnounceKeys() [][]byte {
	if in.Keys == nil {
		return nil
	}
	return in.Keys.AnnounceKeys()
}

// Intent implements p2p.Inlet.
func (in Inlet) Intent(i *attest.Intent, peer string, at time.Time) {
	if in.Intents != nil {
		in.Intents.Intent(i, peer, at)
	}
}

// RenewIntents implements p2p.IntentRenewer when Intents does.
func (in Inlet) RenewIntents() {
	if r, ok := in.Intents.(interface{ RenewIntents() }); ok {
		r.RenewIntents()
	}
}
