package p2p

import "context"

// Arrival says how the claims handed to ClaimStore.Ingest reached this
// node: the store may record it as the claims' origin (evidence for
// `lebowski claims show`).
type Arrival struct {
	Via  string // "gossip" or "sync"
	Peer string // the peer that delivered them
}

type arrivalKey struct{}

func withArrival(ctx context.Context, via, peer string) context.Context {
	return context.WithValue(ctx, arrivalKey{}, Arrival{Via: via, Peer: peer})
}

// ArrivalFrom returns the Arrival of an Ingest call's context.
func ArrivalFrom(ctx context.Context) (Arrival, bool) {
	a, ok := ctx.Value(arrivalKey{}).(Arrival)
	return a, ok
}
