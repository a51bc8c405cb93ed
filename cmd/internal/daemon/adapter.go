package daemon

import (
	"context"
	"errors"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/p2p"
	"github.com/lebowski-dist/lebowski/store"
)

// storeAdapter lets the network layer use the bbolt store.
type storeAdapter struct{ *store.Store }

var (
	_ p2p.ClaimStore = storeAdapter{}
	_ p2p.BlobStore  = storeAdapter{}
)

func (s storeAdapter) Ingest(ctx context.Context, claims ...*attest.Claim) ([]bool, error) {
	res, err := s.Store.Ingest(ctx, claims...)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(res))
	for i, r := range res {
		out[i] = r.Status == store.StatusNew || r.Status == store.StatusEquivocation
	}
	return out, nil
}

func (s storeAdapter) GetBlob(cid string) ([]byte, bool, error) {
	b, err := s.Store.GetBlob(cid)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}
