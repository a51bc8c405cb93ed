// Package p2p is Lebowski's network layer (DESIGN §7): a libp2p host with
// a persisted identity, gossipsub topics carrying signed claims (one topic
// per opinion), a validator that verifies every claim before it is
// forwarded, the /lebowski/sync/1 catch-up protocol and the
// /lebowski/blob/1 content-addressed blob protocol. See docs/NETWORK.md.
package p2p

import "errors"

// Sentinel errors. Errors caused by a peer sending bad bytes unwrap to
// ErrProtocol.
var (
	ErrProtocol     = errors.New("p2p protocol violation")
	ErrTooLarge     = errors.New("message too large")
	ErrBadTopic     = errors.New("invalid topic")
	ErrNotFound     = errors.New("not found")
	ErrBlobMismatch = errors.New("blob does not match its CID")
	ErrClosed       = errors.New("p2p node closed")
	ErrConfig       = errors.New("invalid p2p config")
)
