package p2p

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/p2p/p2ptest"
)

// memKeys is a KeyRecords that remembers what it was given.
type memKeys struct {
	mu       sync.Mutex
	merged   map[string][]byte // fingerprint → last announced bytes
	from     map[string]peer.ID
	announce [][]byte
}

func newMemKeys(announce ...[]byte) *memKeys {
	return &memKeys{merged: map[string][]byte{}, from: map[string]peer.ID{}, announce: announce}
}

func (m *memKeys) MergeKey(_ context.Context, pub []byte, from string) (bool, error) {
	e, err := attest.ParsePublicKey(pub)
	if err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	f := attest.Fingerprint(e)
	changed := !bytes.Equal(m.merged[f], pub)
	id, err := peer.Decode(from)
	if err != nil {
		return false, err
	}
	m.merged[f], m.from[f] = pub, id
	return changed, nil
}

func (m *memKeys) AnnounceKeys() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]byte(nil), m.announce...)
}

func (m *memKeys) has(fpr string) (peer.ID, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.merged[fpr]
	return m.from[fpr], ok
}

func (m *memKeys) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.merged)
}

func keyNode(t testing.TB, keys p2ptest.KeyRecords, cfg Config, opts ...Option) *Node {
	t.Helper()
	if cfg.ListenAddrs == nil {
		cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = -1
	}
	st := p2ptest.NewMemStore()
	d := Deps{Claims: st, Blobs: st, Inlet: p2ptest.Inlet{MemStore: st, Keys: keys}}
	n, err := New(context.Background(), cfg, d, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func pubOf(t *testing.T, id *attest.Identity) *openpgp.Entity {
	t.Helper()
	e, err := attest.ParsePublicKey(id.PublicKey())
	require.NoError(t, err)
	return e
}

func TestParseKeyAnnouncement(t *testing.T) {
	ids := attesttest.Fresh(t, 2)
	arm, err := ids[0].ArmoredPublicKey()
	require.NoError(t, err)
	var priv bytes.Buffer
	require.NoError(t, ids[0].Entity.SerializePrivate(&priv, nil))
	revoked, err := attest.Revoke(ids[0], ids[1].Fingerprint(), "rotation", false, time.Now())
	require.NoError(t, err)
	e, err := attest.ParsePublicKey(ids[1].PublicKey())
	require.NoError(t, err)
	require.NoError(t, attest.Certify(ids[0], e))
	certified, err := attest.SerializeKey(e)
	require.NoError(t, err)
	two := append(append([]byte(nil), ids[0].PublicKey()...), ids[1].PublicKey()...)
	// A key with more signatures than an announcement may carry (each
	// self-signature costs a verification): its own key's self-signature
	// repeated.
	flood := pubOf(t, ids[0])
	for _, id := range flood.Identities {
		for len(id.Signatures) <= maxKeySignatures {
			id.Signatures = append(id.Signatures, id.SelfSignature)
		}
	}
	tooMany, err := attest.SerializeKey(flood)
	require.NoError(t, err)
	for _, tc := range []struct {
		desc string
		data []byte
		err  string
	}{
		{"a key", ids[0].PublicKey(), ""},
		{"a revoked key", revoked, ""},
		{"a certified key", certified, ""},
		{"empty", nil, "empty"},
		{"oversize", bytes.Repeat([]byte{0x99}, MaxKeyMessage+1), "max 65536"},
		{"armored", []byte(arm), "armored"},
		{"garbage", []byte{0x99, 0x01, 0x02, 0x03}, "parse public key"},
		{"truncated", ids[0].PublicKey()[:40], "parse public key"},
		{"two keys", two, "exactly one key"},
		{"secret key", priv.Bytes(), "secret key"},
		{"too many signatures", tooMany, "more than 140 signatures"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := ParseKeyAnnouncement(tc.data)
			if tc.err == "" {
				require.NoError(t, err)
				require.NotNil(t, got)
				return
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrBadKey), "%v", err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
}

// Announcements travel over a relay that keeps nothing; bad ones are
// rejected and cost their sender score.
func TestKeysTopicRelayAndReject(t *testing.T) {
	ids := attesttest.Fresh(t, 1)
	ka, kc := newMemKeys(), newMemKeys()
	a := keyNode(t, ka, Config{KeyAnnounceInterval: -1})
	b := keyNode(t, nil, Config{KeyAnnounceInterval: -1}) // relays only
	c := keyNode(t, kc, Config{KeyAnnounceInterval: -1})
	ctx := context.Background()
	require.NoError(t, a.Connect(ctx, b.AddrInfo()))
	require.NoError(t, c.Connect(ctx, b.AddrInfo()))
	attesttest.Eventually(t, 20*time.Second, "keys meshes", func() bool {
		return len(a.MeshPeers(KeysTopic)) == 1 && len(b.MeshPeers(KeysTopic)) == 2 && len(c.MeshPeers(KeysTopic)) == 1
	})
	start := time.Now()
	require.NoError(t, a.PublishKey(ctx, ids[0].PublicKey()))
	attesttest.Eventually(t, 10*time.Second, "key at c", func() bool { _, ok := kc.has(ids[0].Fingerprint()); return ok })
	from, _ := kc.has(ids[0].Fingerprint())
	assert.Equal(t, b.ID(), from, "c got it from the relay")
	t.Logf("key announcement a → b → c in %s", time.Since(start).Round(time.Millisecond))
	assert.Zero(t, ka.count(), "a's own announcement is not merged again")

	err := a.PublishKey(ctx, []byte("garbage"))
	require.ErrorIs(t, err, ErrBadKey)

	publishUntilScoredDown(t, b, KeysTopic, []byte{0x99, 0x00, 0x01})
	assert.Equal(t, 1, kc.count(), "nothing but the real key reached c")
}

// publishUntilScoredDown connects a hostile peer to victim that publishes
// garbage on topic by hand until victim's score of it is negative.
func publishUntilScoredDown(t *testing.T, victim *Node, topic string, garbage []byte) {
	t.Helper()
	ctx := context.Background()
	h := rawHost(t)
	ps, err := pubsub.NewGossipSub(ctx, h)
	require.NoError(t, err)
	top, err := ps.Join(topic)
	require.NoError(t, err)
	_, err = top.Subscribe()
	require.NoError(t, err)
	require.NoError(t, h.Connect(ctx, peer.AddrInfo{ID: victim.ID(), Addrs: victim.Host().Addrs()}))
	attesttest.Eventually(t, 20*time.Second, "hostile peer on the topic", func() bool {
		for _, p := range victim.TopicPeers(topic) {
			if p == h.ID() {
				return true
			}
		}
		return false
	})
	// (The first messages may be dropped by the hostile node's own router
	// before its first heartbeat: publish until the score drops.)
	attesttest.Eventually(t, 20*time.Second, "hostile peer scored down", func() bool {
		_ = top.Publish(ctx, garbage)
		s, ok := victim.PeerScore(h.ID())
		return ok && s < 0
	})
}

// A peer publishing more announcements than its rate: the excess is
// ignored before parsing and counted.
func TestKeysTopicRateLimit(t *testing.T) {
	ids := attesttest.Fresh(t, 40)
	kv := newMemKeys()
	victim := keyNode(t, kv, Config{KeyAnnounceInterval: -1, Limits: Limits{KeysPerSecond: 2, KeysBurst: 5}})
	flooder := keyNode(t, nil, Config{KeyAnnounceInterval: -1})
	ctx := context.Background()
	require.NoError(t, flooder.Connect(ctx, victim.AddrInfo()))
	attesttest.Eventually(t, 20*time.Second, "first heartbeat", func() bool { _, ok := flooder.PeerScore(victim.ID()); return ok })
	attesttest.Eventually(t, 20*time.Second, "topic peers", func() bool { return len(flooder.TopicPeers(KeysTopic)) == 1 })
	for _, id := range ids {
		require.NoError(t, flooder.PublishKey(ctx, id.PublicKey()))
	}
	attesttest.Eventually(t, 10*time.Second, "refusals counted", func() bool { return victim.Refusals()[RefuseKeysRate] > 0 })
	time.Sleep(300 * time.Millisecond)
	got := kv.count()
	t.Logf("%d announcements, %d merged, %d ignored for rate", len(ids), got, victim.Refusals()[RefuseKeysRate])
	assert.Less(t, got, len(ids)/2)
	assert.Positive(t, got)
}

// A node announces its own key shortly after a peer connects, and again
// for a peer that connects after the minimum gap.
func TestAnnounceOnConnect(t *testing.T) {
	setVar(t, &keyAnnounceDelay, 300*time.Millisecond)
	setVar(t, &keyAnnounceMinGap, time.Second)
	own := attesttest.Fresh(t, 1)[0]
	a := keyNode(t, newMemKeys(own.PublicKey()), Config{KeyAnnounceInterval: -1})
	kb, kc := newMemKeys(), newMemKeys()
	b := keyNode(t, kb, Config{KeyAnnounceInterval: -1})
	ctx := context.Background()
	start := time.Now()
	require.NoError(t, b.Connect(ctx, a.AddrInfo()))
	attesttest.Eventually(t, 10*time.Second, "own key at b", func() bool { _, ok := kb.has(own.Fingerprint()); return ok })
	t.Logf("b learned a's key %s after connecting", time.Since(start).Round(time.Millisecond))
	time.Sleep(1200 * time.Millisecond) // past the minimum gap
	c := keyNode(t, kc, Config{KeyAnnounceInterval: -1})
	start = time.Now()
	require.NoError(t, c.Connect(ctx, a.AddrInfo()))
	attesttest.Eventually(t, 10*time.Second, "own key at c", func() bool { _, ok := kc.has(own.Fingerprint()); return ok })
	t.Logf("c learned a's key %s after connecting", time.Since(start).Round(time.Millisecond))
}

// The periodic re-announcement reaches a peer that connected while
// announcements on connect were suppressed.
func TestAnnouncePeriodic(t *testing.T) {
	setVar(t, &keyAnnounceMinGap, time.Hour)
	setVar(t, &keyAnnounceDelay, 100*time.Millisecond)
	own := attesttest.Fresh(t, 1)[0]
	a := keyNode(t, newMemKeys(own.PublicKey()), Config{KeyAnnounceInterval: 2 * time.Second})
	kb := newMemKeys()
	b := keyNode(t, kb, Config{KeyAnnounceInterval: -1})
	c := keyNode(t, newMemKeys(), Config{KeyAnnounceInterval: -1})
	ctx := context.Background()
	require.NoError(t, c.Connect(ctx, a.AddrInfo())) // the first connection announces once
	time.Sleep(500 * time.Millisecond)
	require.NoError(t, b.Connect(ctx, a.AddrInfo())) // suppressed by the gap
	attesttest.Eventually(t, 10*time.Second, "periodic announcement at b", func() bool { _, ok := kb.has(own.Fingerprint()); return ok })
}

func FuzzParseKeyAnnouncement(f *testing.F) {
	ids := attesttest.Identities(f, 2)
	f.Add(ids[0].PublicKey())
	if r, err := attest.Revoke(ids[0], ids[1].Fingerprint(), "fuzz", false, time.Unix(1700000000, 0)); err == nil {
		f.Add(r)
	}
	e, _ := attest.ParsePublicKey(ids[1].PublicKey())
	if attest.Certify(ids[0], e) == nil {
		b, _ := attest.SerializeKey(e)
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{0x99, 0x00, 0x33})
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseKeyAnnouncement(data)
		if err != nil {
			if e != nil || !errors.Is(err, ErrBadKey) || !strings.HasPrefix(err.Error(), ErrBadKey.Error()) {
				t.Fatalf("unclean error: entity %v, err %v", e != nil, err)
			}
			return
		}
		if e == nil || e.PrivateKey != nil || len(data) > MaxKeyMessage {
			t.Fatalf("accepted %d bytes: entity %v", len(data), e)
		}
		// What the validator accepts, the store can merge.
		if _, _, err := attest.MergeKey(nil, e, nil, time.Now()); err != nil {
			t.Fatalf("accepted key does not merge: %v", err)
		}
	})
}
