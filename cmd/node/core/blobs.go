package core

import (
	"context"
	"errors"
	"fmt"

	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/store"
)

// MaxBlob bounds one blob put through the API.
const MaxBlob = 512 << 20

// PutBlob keeps data content-addressed and returns its CID.
func (n *Node) PutBlob(ctx context.Context, data []byte) (string, error) {
	if len(data) > MaxBlob {
		return "", Invalid(fmt.Errorf("blob of %d bytes (max %d)", len(data), MaxBlob))
	}
	return n.st.PutBlob(data)
}

// GetBlob returns a blob this node holds.
func (n *Node) GetBlob(ctx context.Context, cid string) ([]byte, error) {
	if _, err := vocab.ParseCID(cid); err != nil {
		return nil, Invalid(err)
	}
	b, err := n.st.GetBlob(cid)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: blob %s is not held by this node", ErrNotFound, cid)
	}
	return b, err
}

func (n *Node) hasBlob(cid string) (bool, error) { return n.st.HasBlob(cid) }

// MaxFetch bounds a blob fetched from peers through the API.
const MaxFetch = 64 << 20

// FetchBlob returns a blob held here, else asks the peers for it.
func (n *Node) FetchBlob(ctx context.Context, cid string) ([]byte, error) {
	b, err := n.GetBlob(ctx, cid)
	if err == nil || !IsNotFound(err) {
		return b, err
	}
	if n.net == nil {
		return nil, fmt.Errorf("%w: blob %s is not held by this node, and asking peers %w", ErrNotFound, cid, ErrOffline)
	}
	data, from, err := n.net.FetchBlob(ctx, cid, MaxFetch)
	if err != nil {
		return nil, fmt.Errorf("%w: blob %s: %v", ErrNotFound, cid, err)
	}
	n.log.Info("fetched blob from a peer", "cid", cid, "peer", from, "bytes", len(data))
	if _, err := n.st.PutBlob(data); err != nil {
		return nil, err
	}
	return data, nil
}
