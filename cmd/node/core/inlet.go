package core

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/store"
)

// The node's one ingest door (docs/ARCHITECTURE.md). Every claim enters
// the store through Node.ingest: a peer's (gossip and sync, through the
// Inlet), an imported one (ImportClaims), the node's own builds and red
// flags (signAndPublish). Each new claim is then put on the event stream
// and handed to the Observer, here and nowhere else. Keys from the
// network enter through Inlet.MergeKey, intents through Inlet.Intent.

// Observer hears what enters the node, synchronously and without loss
// (unlike Events, whose slow readers miss events): the daemon's build
// scheduler. Its methods must return quickly.
type Observer interface {
	// ClaimStored is called once for every claim stored as new (or as
	// evidence of equivocation); via is one of the store.Via* constants,
	// from the delivering peer for gossip and sync.
	ClaimStored(c *attest.Claim, via, from string)
	// Intent is called for every verified build intent a peer delivers.
	Intent(in *attest.Intent, from string, at time.Time)
	// RenewIntents asks for the node's live intents to be re-published
	// (a peer joined).
	RenewIntents()
}

// WithObserver sets the node's Observer.
func WithObserver(o Observer) Option { return func(n *Node) { n.obs = o } }

// ingest stores claims with their origin and announces the new ones.
func (n *Node) ingest(ctx context.Context, o store.Origin, claims ...*attest.Claim) ([]store.IngestResult, error) {
	res, err := n.st.Ingest(store.WithOrigin(ctx, o), claims...)
	if err != nil {
		return nil, err
	}
	for i := range res {
		res[i].Claim = claims[i]
	}
	n.announce(o, res)
	return res, nil
}

// ingestWires verifies wire envelopes (on all cores but one) and stores
// the valid ones with their origin, then announces the new ones.
func (n *Node) ingestWires(ctx context.Context, o store.Origin, wires [][]byte) ([]store.IngestResult, error) {
	res, err := n.st.VerifyAndIngest(store.WithOrigin(ctx, o), attest.VerifyOptions{Now: n.now()}, wires...)
	if err != nil {
		return nil, err
	}
	n.announce(o, res)
	return res, nil
}

// announce puts the new claims of res on the event stream and tells the
// observer.
func (n *Node) announce(o store.Origin, res []store.IngestResult) {
	from := o.Peer
	switch o.Via {
	case store.ViaOwn:
		from = "self"
	case store.ViaImport:
		from = "import"
	}
	for _, r := range res {
		if r.Claim == nil || (r.Status != store.StatusNew && r.Status != store.StatusEquivocation) {
			continue
		}
		st := r.Claim.Statement
		n.Emit(Event{Type: EventClaim, Package: st.Package, Opinion: st.Opinion.Name, ClaimID: r.Claim.ID, From: from})
		if n.obs != nil {
			n.obs.ClaimStored(r.Claim, o.Via, o.Peer)
		}
	}
}

// Inlet is the node's door for what peers deliver; it implements p2p's
// Inlet interface (without importing the transport).
type Inlet struct{ n *Node }

// Inlet returns the node's door for the network layer.
func (n *Node) Inlet() Inlet { return Inlet{n} }

// IngestClaims stores claims the network layer verified (gossip, sync).
func (in Inlet) IngestClaims(ctx context.Context, via, peer string, claims ...*attest.Claim) ([]bool, error) {
	res, err := in.n.ingest(ctx, store.Origin{Via: via, Peer: peer}, claims...)
	if err != nil {
		return nil, err
	}
	return store.Added(res), nil
}

// Votes: claims of keys that vote here (own, trusted in the store or by
// the config's trusted_keys, certified) pass a flooding peer's gossip
// rate.
func (in Inlet) Votes(fpr string) bool { return in.n.st.Votes(fpr) }

// MergeKey merges a key announced by a peer with store.MergeKey (which
// never raises trust) and puts a change on the event stream.
func (in Inlet) MergeKey(_ context.Context, pub []byte, peer string) (bool, error) {
	ki, out, err := in.n.st.MergeKey(pub, "announced by "+peer)
	if err != nil {
		return false, err
	}
	if out.Changed() {
		in.n.log.Info("key learned from the network", "key", ki.Fingerprint, "outcome", out.String(), "peer", peer,
			"certifiers", len(ki.Certifiers), "revoked", ki.Revocation != nil)
		in.n.KeyChanged(ki.Fingerprint, "from the network: "+out.String(), peer)
	}
	return out.Changed(), nil
}

// Intent hands a peer's verified build intent to the observer.
func (in Inlet) Intent(i *attest.Intent, peer string, at time.Time) {
	if in.n.obs != nil {
		in.n.obs.Intent(i, peer, at)
	}
}

// RenewIntents asks the observer to re-publish the node's live intents.
func (in Inlet) RenewIntents() {
	if in.n.obs != nil {
		in.n.obs.RenewIntents()
	}
}

// AnnounceKeys is the own key as stored, then up to announceCertified
// others picked at random each time: first one of this node's former
// keys, which carry their revocations (after `lebowski key rotate`, the
// revocation naming the new key travels this way), then keys this node
// certified, so a certification or revocation whose announcement some
// nodes missed reaches them later. A node without a builder key
// announces nothing.
func (in Inlet) AnnounceKeys() [][]byte {
	n := in.n
	if n.id == nil {
		return nil
	}
	own := n.id.Fingerprint()
	out := [][]byte{n.id.PublicKey()}
	ki, err := n.st.GetKey(own)
	switch {
	case err == nil:
		out[0] = ki.PublicKey
		if ki.Revocation != nil {
			return out // a revoked key's certifications no longer count
		}
	case !errors.Is(err, store.ErrNotFound):
		n.log.Warn("own key for announcement", "err", err)
	}
	keys, err := n.st.Keys()
	if err != nil {
		n.log.Warn("keys for announcement", "err", err)
		return out
	}
	var former, certified [][]byte
	for _, c := range keys {
		switch {
		case c.Fingerprint == own:
		case c.Trust == attest.TrustOwn && c.Revocation != nil:
			former = append(former, c.PublicKey)
		case slices.Contains(c.Certifiers, own):
			certified = append(certified, c.PublicKey)
		}
	}
	// One former key at a time, so that keys this node certified still
	// go out after many rotations.
	shuffle(former)
	shuffle(certified)
	extra := certified
	if len(former) > 0 {
		extra = append([][]byte{former[0]}, certified...)
	}
	return append(out, extra[:min(len(extra), announceCertified)]...)
}

func shuffle(keys [][]byte) {
	rand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
}

// announceCertified bounds the keys certified by this node re-announced
// with its own key.
const announceCertified = 3
