package daemon

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder/source"
	"github.com/lebowski-dist/lebowski/cmd/internal/core"
	"github.com/lebowski-dist/lebowski/p2p"
	"github.com/lebowski-dist/lebowski/store"
)

// storeAdapter lets the network layer use the bbolt store. Blobs the
// store lacks are looked up in the build cache (sources and .debs by
// sha256), so the node serves everything it built with.
type storeAdapter struct {
	*store.Store
	sourceCache string // <cache_dir>/sources
}

var (
	_ p2p.ClaimStore      = storeAdapter{}
	_ p2p.BlobStore       = storeAdapter{}
	_ p2p.BlobOpener      = storeAdapter{}
	_ p2p.TrustedBuilders = storeAdapter{}
)

// TrustedBuilder: claims of keys that vote (own, trusted in the store or
// by the config's trusted_keys, certified) pass a flooding peer's gossip
// rate.
func (s storeAdapter) TrustedBuilder(fpr string) bool { return s.Store.Votes(fpr) }

// OpenBlob streams a blob from the store, else from the build cache.
func (s storeAdapter) OpenBlob(cid string) (io.ReadSeekCloser, int64, bool, error) {
	r, size, err := s.Store.OpenBlob(cid)
	if err == nil {
		return r, size, true, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, 0, false, err
	}
	p, ok := s.cachedFile(cid)
	if !ok {
		return nil, 0, false, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, false, err
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, false, fmt.Errorf("build cache file %s: not a readable regular file (%v)", p, err)
	}
	return f, fi.Size(), true, nil
}

func (s storeAdapter) Ingest(ctx context.Context, claims ...*attest.Claim) ([]bool, error) {
	if a, ok := p2p.ArrivalFrom(ctx); ok {
		ctx = store.WithOrigin(ctx, store.Origin{Via: a.Via, Peer: a.Peer})
	}
	res, err := s.Store.Ingest(ctx, claims...)
	if err != nil {
		return nil, err
	}
	return store.Added(res), nil
}

func (s storeAdapter) GetBlob(cid string) ([]byte, bool, error) {
	b, err := s.Store.GetBlob(cid)
	if errors.Is(err, store.ErrNotFound) {
		p, ok := s.cachedFile(cid)
		if !ok {
			return nil, false, nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, false, err
		}
		return b, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}

// cachedFile is the build cache's file (sources and .debs, by sha256) for
// a blob CID the store does not hold.
func (s storeAdapter) cachedFile(cid string) (string, bool) {
	sum, err := vocab.ParseCID(cid)
	if err != nil || s.sourceCache == "" {
		return "", false
	}
	return source.CachedFile(s.sourceCache, hex.EncodeToString(sum[:]))
}

// keyAdapter lets the keys topic use the store: announced keys are merged
// with store.MergeKey (which never raises trust), and the node
// re-announces its own key as stored (with the certifications others
// made of it and its revocation, if any).
type keyAdapter struct {
	d      *Daemon // for the event stream, once ready
	st     *store.Store
	own    string // the node's builder key fingerprint
	ownPub []byte // its public key, until the store holds it
	log    *slog.Logger
}

var _ p2p.KeyRecords = keyAdapter{}

func (d *Daemon) keyRecords() keyAdapter {
	return keyAdapter{d: d, st: d.st, own: d.id.Fingerprint(), ownPub: d.id.PublicKey(), log: d.log.With("sub", "keys")}
}

func (k keyAdapter) MergeKey(_ context.Context, pub []byte, from peer.ID) (bool, error) {
	ki, out, err := k.st.MergeKey(pub, "announced by "+from.String())
	if err != nil {
		return false, err
	}
	if out.Changed() {
		k.log.Info("key learned from the network", "key", ki.Fingerprint, "outcome", out.String(), "peer", from,
			"certifiers", len(ki.Certifiers), "revoked", ki.Revocation != nil)
		if k.d != nil {
			select {
			case <-k.d.ready: // d.node is set
				k.d.node.KeyChanged(ki.Fingerprint, "from the network: "+out.String(), from.String())
			default:
			}
		}
	}
	return out.Changed(), nil
}

// AnnounceKeys is the own key as stored, then up to announceCertified
// others picked at random each time: first one of this node's former
// keys, which carry their revocations (after `lebowski key rotate`, the
// revocation naming the new key travels this way), then keys this node
// certified, so a certification or revocation whose announcement some
// nodes missed reaches them later.
func (k keyAdapter) AnnounceKeys() [][]byte {
	out := [][]byte{k.ownPub}
	ki, err := k.st.GetKey(k.own)
	switch {
	case err == nil:
		out[0] = ki.PublicKey
		if ki.Revocation != nil {
			return out // a revoked key's certifications no longer count
		}
	case !errors.Is(err, store.ErrNotFound):
		k.log.Warn("own key for announcement", "err", err)
	}
	keys, err := k.st.Keys()
	if err != nil {
		k.log.Warn("keys for announcement", "err", err)
		return out
	}
	var former, certified [][]byte
	for _, c := range keys {
		switch {
		case c.Fingerprint == k.own:
		case c.Trust == attest.TrustOwn && c.Revocation != nil:
			former = append(former, c.PublicKey)
		case slices.Contains(c.Certifiers, k.own):
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

// network lets the core node use the libp2p node.
type network struct{ n *p2p.Node }

var _ core.Network = network{}

func (w network) PeerID() string  { return w.n.ID().String() }
func (w network) Addrs() []string { return addrStrings(w.n) }
func (w network) Publish(ctx context.Context, c *attest.Claim) error {
	return w.n.Publish(ctx, c)
}
func (w network) PublishKey(ctx context.Context, pub []byte) error { return w.n.PublishKey(ctx, pub) }
func (w network) FetchBlob(ctx context.Context, cid string, maxSize int64) ([]byte, string, error) {
	data, p, err := w.n.FetchBlobAny(ctx, cid, maxSize, true)
	return data, p.String(), err
}

// peerInputs fetches locked build inputs (.debs, source files) from peers
// for the builder; they go to the build cache, not the store.
type peerInputs struct{ n *p2p.Node }

func (w peerInputs) FetchBlob(ctx context.Context, cid string, maxSize int64) ([]byte, string, error) {
	data, p, err := w.n.FetchBlobAny(ctx, cid, maxSize, false)
	return data, p.String(), err
}
func (w network) Peers() []core.PeerInfo {
	var out []core.PeerInfo
	for _, p := range w.n.Peers() {
		pi := core.PeerInfo{ID: p.ID.String(), Topics: p.Topics, Score: p.Score, Connected: p.ConnectedSince}
		for _, a := range p.Addrs {
			pi.Addrs = append(pi.Addrs, a.String())
		}
		out = append(out, pi)
	}
	return out
}
