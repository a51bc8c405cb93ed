package daemon

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder/source"
	"github.com/lebowski-dist/lebowski/cmd/internal/builds"
	"github.com/lebowski-dist/lebowski/cmd/internal/subs"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/p2p"
	"github.com/lebowski-dist/lebowski/store"
)

// blobSource serves blobs to peers: the store's, else the build cache's
// (sources and .debs by sha256), so the node serves everything it built
// with. What peers send is kept in the store.
type blobSource struct {
	st          *store.Store
	sourceCache string // <cache_dir>/sources
}

var (
	_ p2p.BlobStore  = blobSource{}
	_ p2p.BlobOpener = blobSource{}
)

// PutBlob keeps a fetched blob in the store.
func (s blobSource) PutBlob(data []byte) (string, error) { return s.st.PutBlob(data) }

// OpenBlob streams a blob from the store, else from the build cache.
func (s blobSource) OpenBlob(cid string) (io.ReadSeekCloser, int64, bool, error) {
	r, size, err := s.st.OpenBlob(cid)
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

func (s blobSource) GetBlob(cid string) ([]byte, bool, error) {
	b, err := s.st.GetBlob(cid)
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
func (s blobSource) cachedFile(cid string) (string, bool) {
	sum, err := vocab.ParseCID(cid)
	if err != nil || s.sourceCache == "" {
		return "", false
	}
	return source.CachedFile(s.sourceCache, hex.EncodeToString(sum[:]))
}

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
// for the builder; they go to the build cache, not the store. The network
// is the daemon's once Run started it (builds only run then).
type peerInputs struct{ d *Daemon }

func (w peerInputs) FetchBlob(ctx context.Context, cid string, maxSize int64) ([]byte, string, error) {
	data, p, err := w.d.net.FetchBlobAny(ctx, cid, maxSize, false)
	return data, p.String(), err
}

// intentNet gossips the build service's intents on the daemon's network
// (started by Run, before any build).
type intentNet struct{ d *Daemon }

var _ builds.Publisher = intentNet{}

// PublishIntent: a closed network (the daemon is stopping) is no error
// worth a warning.
func (w intentNet) PublishIntent(ctx context.Context, signed []byte) error {
	if err := w.d.net.PublishIntent(ctx, signed); !errors.Is(err, p2p.ErrClosed) {
		return err
	}
	return nil
}

func (w intentNet) HasPeers() bool { return len(w.d.net.Peers()) > 0 }

// topics joins the subscriptions' topics on the daemon's network (started
// by Run before the subscriptions, and before the API serves).
type topics struct{ d *Daemon }

var _ subs.Topics = topics{}

func (w topics) Subscribe(topic string) error   { return w.d.net.Subscribe(topic) }
func (w topics) Unsubscribe(topic string) error { return w.d.net.Unsubscribe(topic) }
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
