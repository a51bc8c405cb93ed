package p2p

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/p2p/p2ptest"
)

func TestLoadOrCreateIdentity(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "peer.key")
	sk1, err := LoadOrCreateIdentity(path)
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	sk2, err := LoadOrCreateIdentity(path)
	require.NoError(t, err)
	assert.True(t, sk1.Equals(sk2), "reloaded key differs")

	require.NoError(t, os.Chmod(path, 0o644))
	_, err = LoadOrCreateIdentity(path)
	assert.ErrorContains(t, err, "chmod 600")

	bad := filepath.Join(dir, "bad.key")
	require.NoError(t, os.WriteFile(bad, []byte("garbage"), 0o600))
	_, err = LoadOrCreateIdentity(bad)
	assert.Error(t, err)
}

func TestNewConfigErrors(t *testing.T) {
	tests := []struct {
		desc string
		cfg  Config
		deps Deps
	}{
		{"no store", Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}}, Deps{}},
		{"bad subscription", Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Subscribe: []string{"Bad Topic"}}, Deps{Claims: p2ptest.NewMemStore()}},
		{"bootstrap without peer id", Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, BootstrapPeers: []string{"/ip4/127.0.0.1/tcp/4001"}}, Deps{Claims: p2ptest.NewMemStore()}},
		{"bad listen addr", Config{ListenAddrs: []string{"not-an-addr"}}, Deps{Claims: p2ptest.NewMemStore()}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			n, err := New(context.Background(), tc.cfg, tc.deps)
			if n != nil {
				n.Close()
			}
			assert.Error(t, err)
		})
	}
}

func TestPersistentPeerID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peer.key")
	n1 := testNode(t, p2ptest.NewMemStore(), Config{IdentityPath: path})
	id := n1.ID()
	require.NoError(t, n1.Close())
	n2 := testNode(t, p2ptest.NewMemStore(), Config{IdentityPath: path})
	assert.Equal(t, id, n2.ID())
}

func TestPublishReachesSubscriber(t *testing.T) {
	bid := testIdentity(t)
	sa, sb := p2ptest.NewMemStore(), p2ptest.NewMemStore()
	var mu sync.Mutex
	var got []peer.ID
	a := testNode(t, sa, Config{Subscribe: []string{"hello/o3"}})
	b := testNode(t, sb, Config{Subscribe: []string{"hello/o3"}}, WithOnClaim(func(c *attest.Claim, from peer.ID) {
		mu.Lock()
		got = append(got, from)
		mu.Unlock()
	}))
	ctx := context.Background()
	require.NoError(t, b.Connect(ctx, a.AddrInfo()))
	attesttest.Eventually(t, 20*time.Second, "topic peers", func() bool { return len(a.TopicPeers("hello/o3")) == 1 })

	c := testClaim(t, bid, "hello", "o3", 1)
	// Gossipsub drops publishes before its first heartbeat with a new
	// peer; wait until the publisher has scored the subscriber.
	attesttest.Eventually(t, 20*time.Second, "first heartbeat", func() bool { _, ok := a.PeerScore(b.ID()); return ok })
	require.NoError(t, a.Publish(ctx, c))
	has, _ := sa.Has(c.ID)
	assert.False(t, has, "Publish does not store: the caller stored the claim once already")
	time.Sleep(300 * time.Millisecond)
	has, _ = sa.Has(c.ID)
	assert.False(t, has, "the publisher's own message is not ingested when it comes back")
	attesttest.Eventually(t, 20*time.Second, "claim at subscriber", func() bool { ok, _ := sb.Has(c.ID); return ok })
	attesttest.Eventually(t, 5*time.Second, "OnClaim event", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	mu.Lock()
	assert.Equal(t, a.ID(), got[0])
	mu.Unlock()

	// The subscriber knows the builder's key from the claim now.
	assert.NotNil(t, sb.Lookup(bid.Fingerprint()))
	peers := b.Peers()
	require.Len(t, peers, 1)
	assert.Equal(t, a.ID(), peers[0].ID)
	assert.Contains(t, peers[0].Topics, "/lebowski/1/opinion/hello/o3")
	assert.False(t, peers[0].ConnectedSince.IsZero())
}

func TestSyncWith(t *testing.T) {
	ids := []*attest.Identity{testIdentity(t), testIdentity(t)}
	sa, sb := p2ptest.NewMemStore(), p2ptest.NewMemStore()
	ctx := context.Background()
	var first *attest.Claim
	for i := 0; i < 1200; i++ { // more than one batch
		pkg := []string{"hello", "nginx", "zlib"}[i%3]
		c := testClaim(t, ids[i%2], pkg, "o3", i)
		_, err := sa.Ingest(ctx, c)
		require.NoError(t, err)
		if i == 0 {
			first = c
		}
	}
	// b already has one of a's claims and one of its own; "zlib" is not
	// of interest to b.
	_, err := sb.Ingest(ctx, first, testClaim(t, ids[0], "hello", "o2", 0))
	require.NoError(t, err)
	a := testNode(t, sa, Config{})
	b := testNode(t, sb, Config{Subscribe: []string{"nginx/o3"}}, WithSyncBatch(100))
	require.NoError(t, b.Connect(ctx, a.AddrInfo()))
	// The on-connect sync may already be running; SyncWith until it settles.
	var st SyncStats
	attesttest.Eventually(t, 30*time.Second, "sync", func() bool {
		st, err = b.SyncWith(ctx, a.ID())
		return err == nil && sb.Len() == 801
	})
	da, _ := sa.Digests()
	db, _ := sb.Digests()
	assert.Equal(t, da["nginx"], db["nginx"])
	assert.NotContains(t, db, "zlib", "zlib is neither subscribed nor held")
	assert.Equal(t, 0, st.Invalid)
	// a learns b's extra claim when it syncs from b.
	_, err = a.SyncWith(ctx, b.ID())
	require.NoError(t, err)
	da, _ = sa.Digests()
	assert.Equal(t, da["hello"], db["hello"])
}

func TestSyncAll(t *testing.T) {
	id := testIdentity(t)
	sa, sb := p2ptest.NewMemStore(), p2ptest.NewMemStore()
	ctx := context.Background()
	for i := 0; i < 30; i++ {
		_, err := sa.Ingest(ctx, testClaim(t, id, "zlib", "", i))
		require.NoError(t, err)
	}
	a := testNode(t, sa, Config{})
	b := testNode(t, sb, Config{SyncAll: true})
	require.NoError(t, b.Connect(ctx, a.AddrInfo()))
	attesttest.Eventually(t, 30*time.Second, "on-connect sync", func() bool { return sb.Len() == 30 })
	assert.Equal(t, sa.AllIDs(), sb.AllIDs())
}

func TestBlob(t *testing.T) {
	sa, sb := p2ptest.NewMemStore(), p2ptest.NewMemStore()
	a := testNode(t, sa, Config{})
	b := testNode(t, sb, Config{MaxBlobSize: 1 << 20})
	ctx := context.Background()
	require.NoError(t, b.Connect(ctx, a.AddrInfo()))
	data := bytes.Repeat([]byte("build log line\n"), 1000)
	c, err := sa.PutBlob(data)
	require.NoError(t, err)
	big, err := sa.PutBlob(make([]byte, 2<<20))
	require.NoError(t, err)
	missing := vocab.CID([]byte("nobody has this"))

	got, err := b.FetchBlob(ctx, a.ID(), c)
	require.NoError(t, err)
	assert.Equal(t, data, got)
	kept, ok, _ := sb.GetBlob(c)
	assert.True(t, ok)
	assert.Equal(t, data, kept)

	_, err = b.FetchBlob(ctx, a.ID(), missing)
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = b.FetchBlob(ctx, a.ID(), big)
	assert.ErrorIs(t, err, ErrTooLarge, "client limit 1 MiB")
	_, err = b.FetchBlob(ctx, a.ID(), "QmNotACid")
	assert.ErrorIs(t, err, ErrProtocol)

	// A server holding wrong bytes under a CID is caught on arrival.
	sa.SetBlobUnchecked(c, []byte("tampered"))
	_, err = b.FetchBlob(ctx, a.ID(), c)
	assert.ErrorIs(t, err, ErrBlobMismatch)
	attesttest.Eventually(t, 10*time.Second, "the lying peer scored down", func() bool { sc, ok := b.PeerScore(a.ID()); return ok && sc < 0 })

	// FetchBlobAny asks every peer; a blob nobody has is ErrNotFound.
	_, _, err = b.FetchBlobAny(ctx, missing, 1<<20, true)
	assert.ErrorIs(t, err, ErrNotFound)
	got, from, err := b.FetchBlobAny(ctx, big, 1<<20, true)
	assert.ErrorIs(t, err, ErrTooLarge, "%v %v", got, from)
}

func TestBlockUnblock(t *testing.T) {
	a := testNode(t, p2ptest.NewMemStore(), Config{})
	b := testNode(t, p2ptest.NewMemStore(), Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, a.Connect(ctx, b.AddrInfo()))
	a.Block(b.ID())
	attesttest.Eventually(t, 10*time.Second, "disconnect", func() bool { return len(a.Peers()) == 0 })
	assert.Error(t, a.Connect(ctx, b.AddrInfo()), "outbound dial to a blocked peer")
	b.Host().Peerstore().AddAddrs(a.ID(), a.Host().Addrs(), time.Minute)
	// The dialer may finish its handshake before the listener's gater
	// drops the connection, so check the outcome, not the dial error.
	_ = b.Connect(ctx, a.AddrInfo())
	attesttest.Eventually(t, 10*time.Second, "inbound connection dropped", func() bool { return len(a.Peers()) == 0 && len(b.Peers()) == 0 })
	a.Unblock(b.ID())
	require.NoError(t, a.Connect(ctx, b.AddrInfo()))
	assert.Len(t, a.Peers(), 1)
}

func TestBootstrapReconnect(t *testing.T) {
	a := testNode(t, p2ptest.NewMemStore(), Config{})
	boot := a.Addrs()[0].String()
	b := testNode(t, p2ptest.NewMemStore(), Config{BootstrapPeers: []string{boot}, ReconnectInterval: 200 * time.Millisecond})
	attesttest.Eventually(t, 20*time.Second, "bootstrap connection", func() bool { return len(b.Peers()) == 1 })
	require.NoError(t, b.Host().Network().ClosePeer(a.ID()))
	attesttest.Eventually(t, 20*time.Second, "reconnection", func() bool { return len(b.Peers()) == 1 })
}

// A lying sync peer: its store serves a claim whose payload was altered
// after signing. The client verifies every claim, stores only the valid
// ones and counts the forgery.
func TestSyncRejectsForgedClaims(t *testing.T) {
	id := testIdentity(t)
	sa, sb := p2ptest.NewMemStore(), p2ptest.NewMemStore()
	ctx := context.Background()
	var good []*attest.Claim
	for i := 0; i < 3; i++ {
		c := testClaim(t, id, "hello", "o3", i)
		good = append(good, c)
	}
	_, err := sa.Ingest(ctx, good...)
	require.NoError(t, err)
	forged := testClaim(t, id, "hello", "o3", 99)
	_, err = sa.Ingest(ctx, forged)
	require.NoError(t, err)
	sa.SetRawUnchecked(forged.ID, bytes.Replace(forged.Raw, []byte(`"signature":"`), []byte(`"signature":"x`), 1))

	a := testNode(t, sa, Config{})
	b := testNode(t, sb, Config{Subscribe: []string{"hello/o3"}})
	b.Host().Peerstore().AddAddrs(a.ID(), a.Host().Addrs(), time.Minute)
	var st SyncStats
	attesttest.Eventually(t, 20*time.Second, "sync", func() bool {
		st, err = b.SyncWith(ctx, a.ID())
		return err == nil
	})
	assert.Equal(t, 1, st.Invalid)
	for _, c := range good {
		ok, _ := sb.Has(c.ID)
		assert.True(t, ok)
	}
	ok, _ := sb.Has(forged.ID)
	assert.False(t, ok, "forged claim stored")
}

// With the DHT on, nodes start, find each other through the bootstrap
// peer and deliver gossip (the DHT is used for topic peer discovery).
func TestDHTEnabled(t *testing.T) {
	bid := testIdentity(t)
	sa, sb := p2ptest.NewMemStore(), p2ptest.NewMemStore()
	a := testNode(t, sa, Config{DHT: true, Subscribe: []string{"hello/o3"}})
	b := testNode(t, sb, Config{DHT: true, Subscribe: []string{"hello/o3"}, BootstrapPeers: []string{a.Addrs()[0].String()}})
	attesttest.Eventually(t, 30*time.Second, "mesh via bootstrap", func() bool { return len(a.MeshPeers("hello/o3")) == 1 })
	c := testClaim(t, bid, "hello", "o3", 1)
	require.NoError(t, a.Publish(context.Background(), c))
	attesttest.Eventually(t, 20*time.Second, "claim over DHT-enabled nodes", func() bool { ok, _ := sb.Has(c.ID); return ok })
	require.NoError(t, b.Close())
	require.NoError(t, a.Close())
}
