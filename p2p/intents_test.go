package p2p

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/p2p/p2ptest"
)

// memIntents is an IntentSink that remembers what it was given.
type memIntents struct {
	mu  sync.Mutex
	got []*attest.Intent
}

func (m *memIntents) Intent(in *attest.Intent, _ string, _ time.Time) {
	m.mu.Lock()
	m.got = append(m.got, in)
	m.mu.Unlock()
}

func (m *memIntents) count() int { m.mu.Lock(); defer m.mu.Unlock(); return len(m.got) }

// renewer counts RenewIntents calls.
type renewer struct {
	memIntents
	renewals atomic.Int32
	mu       sync.Mutex
	at       []time.Time // when each renewal was asked for
}

func (r *renewer) RenewIntents() {
	r.mu.Lock()
	r.at = append(r.at, time.Now())
	r.mu.Unlock()
	r.renewals.Add(1)
}

func intentNode(t *testing.T, sink p2ptest.IntentSink, keys ...*attest.Identity) *Node {
	t.Helper()
	st := p2ptest.NewMemStore()
	for _, id := range keys {
		st.PutKey(pubOf(t, id))
	}
	d := Deps{Claims: st, Blobs: st, Inlet: p2ptest.Inlet{MemStore: st, Intents: sink}}
	n, err := New(context.Background(), Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, SyncInterval: -1, KeyAnnounceInterval: -1}, d)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// TestIntentsTravel: a signed intent goes a → b → c; a node that does not
// know the builder's key neither counts nor forwards it; garbage costs
// its sender score.
func TestIntentsTravel(t *testing.T) {
	ids := attesttest.Fresh(t, 1)
	sc, sd := &memIntents{}, &memIntents{}
	a := intentNode(t, nil, ids[0])
	b := intentNode(t, nil, ids[0]) // relays only
	c := intentNode(t, sc, ids[0])
	d := intentNode(t, sd) // does not know the key
	ctx := context.Background()
	require.NoError(t, a.Connect(ctx, b.AddrInfo()))
	require.NoError(t, c.Connect(ctx, b.AddrInfo()))
	require.NoError(t, d.Connect(ctx, a.AddrInfo()))
	se := &memIntents{}
	e := intentNode(t, se, ids[0]) // knows the key, but hears only through d
	require.NoError(t, e.Connect(ctx, d.AddrInfo()))
	attesttest.Eventually(t, 20*time.Second, "intents meshes", func() bool {
		return len(a.MeshPeers(IntentsTopic)) == 2 && len(b.MeshPeers(IntentsTopic)) == 2 && len(c.MeshPeers(IntentsTopic)) == 1 &&
			len(d.MeshPeers(IntentsTopic)) == 2 && len(e.MeshPeers(IntentsTopic)) == 1
	})
	now := time.Now()
	data, err := attest.SignIntent(ids[0], attest.Intent{Package: "hello", Opinion: "o3", OpinionCID: vocab.CID([]byte("o3")),
		State: attest.IntentBuilding, Started: now, Issued: now, TTL: 600, Expect: 60})
	require.NoError(t, err)
	require.NoError(t, a.PublishIntent(ctx, data))
	attesttest.Eventually(t, 10*time.Second, "intent at c", func() bool { return sc.count() == 1 })
	assert.Equal(t, ids[0].Fingerprint(), sc.got[0].Builder)
	time.Sleep(300 * time.Millisecond)
	assert.Zero(t, sd.count(), "a node without the key does not count the intent")
	assert.Zero(t, se.count(), "… nor forward it")

	publishUntilScoredDown(t, b, IntentsTopic, []byte(`{"payload_type":"x"}`))
	assert.Equal(t, 1, sc.count(), "nothing but the real intent reached c")
}

// TestRenewOnNewPeer: a node asks for its intents to be re-published
// shortly after a new peer is identified; a peer that arrives within
// intentRenewGap of the last renewal is served when the gap ends.
func TestRenewOnNewPeer(t *testing.T) {
	old := intentRenewGap
	intentRenewGap = 4 * time.Second
	t.Cleanup(func() { intentRenewGap = old })
	r := &renewer{}
	a := intentNode(t, r)
	ctx := context.Background()
	start := time.Now()
	require.NoError(t, intentNode(t, nil).Connect(ctx, a.AddrInfo()))
	attesttest.Eventually(t, 10*time.Second, "renewal after a new peer", func() bool { return r.renewals.Load() == 1 })
	first := time.Since(start)
	require.GreaterOrEqual(t, first, keyAnnounceDelay, "waits for the peer's subscriptions")
	require.NoError(t, intentNode(t, nil).Connect(ctx, a.AddrInfo()))
	require.NoError(t, intentNode(t, nil).Connect(ctx, a.AddrInfo()))
	attesttest.Eventually(t, 10*time.Second, "one more renewal for the two later peers", func() bool { return r.renewals.Load() == 2 })
	r.mu.Lock()
	gap := r.at[1].Sub(r.at[0])
	r.mu.Unlock()
	require.GreaterOrEqual(t, gap, intentRenewGap-100*time.Millisecond, "not before the gap ended")
	time.Sleep(keyAnnounceDelay + 500*time.Millisecond)
	require.Equal(t, int32(2), r.renewals.Load(), "one renewal served both")
}

// TestIntentsRateSparesTrustedBuilders: a forwarding peer over its rate
// is ignored, except for intents of builders the node trusts (a hub
// relays everyone's renewals).
func TestIntentsRateSparesTrustedBuilders(t *testing.T) {
	ids := attesttest.Fresh(t, 2)
	trusted, other := ids[0], ids[1]
	st := p2ptest.NewMemStore()
	st.PutKey(pubOf(t, other)) // known, so verifiable, but not trusted
	sink := &memIntents{}
	victim, err := New(context.Background(), Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, SyncInterval: -1, KeyAnnounceInterval: -1,
		Limits: Limits{IntentsPerSecond: 0.5, IntentsBurst: 2}},
		Deps{Claims: st, Blobs: st, Keys: attest.NewKeyring(pubOf(t, trusted)), Inlet: p2ptest.Inlet{MemStore: st, Intents: sink}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = victim.Close() })
	relay := intentNode(t, nil, trusted, other)
	ctx := context.Background()
	require.NoError(t, relay.Connect(ctx, victim.AddrInfo()))
	attesttest.Eventually(t, 20*time.Second, "mesh", func() bool { return len(relay.MeshPeers(IntentsTopic)) == 1 })
	now := time.Now()
	for i := range 20 {
		for _, id := range []*attest.Identity{trusted, other} {
			data, err := attest.SignIntent(id, attest.Intent{Package: fmt.Sprintf("p%d", i), Opinion: vocab.Vanilla,
				State: attest.IntentBuilding, Started: now, Issued: now, TTL: 600})
			require.NoError(t, err)
			require.NoError(t, relay.PublishIntent(ctx, data))
		}
	}
	byBuilder := func() map[string]int {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		m := map[string]int{}
		for _, in := range sink.got {
			m[in.Builder]++
		}
		return m
	}
	attesttest.Eventually(t, 10*time.Second, "every trusted builder's intent", func() bool { return byBuilder()[trusted.Fingerprint()] == 20 })
	time.Sleep(300 * time.Millisecond)
	got := byBuilder()[other.Fingerprint()]
	t.Logf("past the rate: %d of 20 trusted, %d of 20 untrusted intents delivered, %d refused", 20, got, victim.Refusals()[RefuseIntentsRate])
	require.Less(t, got, 10, "the untrusted builder's intents are held to the relay's rate")
	require.Positive(t, victim.Refusals()[RefuseIntentsRate])
}

// atIntents is an IntentSink that remembers the receipt times it was given.
type atIntents struct {
	mu  sync.Mutex
	got []*attest.Intent
	at  []time.Time
}

func (m *atIntents) Intent(in *attest.Intent, _ string, at time.Time) {
	m.mu.Lock()
	m.got = append(m.got, in)
	m.at = append(m.at, at)
	m.mu.Unlock()
}

func (m *atIntents) count() int { m.mu.Lock(); defer m.mu.Unlock(); return len(m.got) }

// TestIntentReplays: a trusted builder's signed intent re-published by
// anyone (same bytes, or re-encoded) is ignored, one delivered late
// counts from its signing time plus the allowed skew at the latest (not
// from its receipt: a replay cannot stretch it), and a signer over its
// own rate is held back whoever relays it.
func TestIntentReplays(t *testing.T) {
	ids := attesttest.Fresh(t, 2)
	builder, other := ids[0], ids[1]
	st := p2ptest.NewMemStore()
	sink := &atIntents{}
	victim, err := New(context.Background(), Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, SyncInterval: -1, KeyAnnounceInterval: -1,
		Limits: Limits{IntentsPerSigner: 0.001, IntentsSignerBurst: 3}},
		Deps{Claims: st, Blobs: st, Keys: attest.NewKeyring(pubOf(t, builder), pubOf(t, other)), Inlet: p2ptest.Inlet{MemStore: st, Intents: sink}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = victim.Close() })
	relay := intentNode(t, nil, builder, other) // anyone holding the signed bytes
	ctx := context.Background()
	require.NoError(t, relay.Connect(ctx, victim.AddrInfo()))
	attesttest.Eventually(t, 20*time.Second, "mesh", func() bool { return len(relay.MeshPeers(IntentsTopic)) == 1 })

	sign := func(id *attest.Identity, pkg string, issued time.Time, ttl int64) []byte {
		data, err := attest.SignIntent(id, attest.Intent{Package: pkg, Opinion: vocab.Vanilla,
			State: attest.IntentBuilding, Started: issued, Issued: issued, TTL: ttl})
		require.NoError(t, err)
		return data
	}
	// Signed 11 minutes ago with a TTL of 6: still verifiable (issued +
	// TTL + skew is ahead), delivered now for the first time.
	issued := time.Now().Add(-11 * time.Minute)
	late := sign(builder, "hello", issued, 360)
	require.NoError(t, relay.PublishIntent(ctx, late))
	attesttest.Eventually(t, 10*time.Second, "the late intent delivered", func() bool { return sink.count() == 1 })
	sink.mu.Lock()
	at := sink.at[0]
	sink.mu.Unlock()
	counted := at.Add(360 * time.Second)
	t.Logf("late intent: counted until %s after its signing (TTL 6m, skew %s)", counted.Sub(sink.got[0].Issued).Round(time.Second), attest.DefaultSkew)
	assert.False(t, at.After(sink.got[0].Issued.Add(attest.DefaultSkew)), "counted from issued+skew at the latest, not from receipt")

	// Replays: the same bytes again (a new gossip message), and re-encoded.
	require.NoError(t, relay.PublishIntent(ctx, late))
	require.NoError(t, relay.PublishIntent(ctx, append(append([]byte(" "), late...), '\n')))
	attesttest.Eventually(t, 10*time.Second, "the replays seen and ignored", func() bool {
		return victim.Refusals()[RefuseIntentsReplay] == 2
	})
	assert.Equal(t, 1, sink.count(), "replays are not delivered again")

	// The signer's rate: burst 3, one used above; 6 more fresh intents →
	// 2 delivered, 4 ignored. Another signer is not held back.
	now := time.Now()
	for i := range 6 {
		require.NoError(t, relay.PublishIntent(ctx, sign(builder, fmt.Sprintf("p%d", i), now, 600)))
	}
	require.NoError(t, relay.PublishIntent(ctx, sign(other, "hello", now, 600)))
	attesttest.Eventually(t, 10*time.Second, "the signer held to its rate", func() bool {
		return victim.Refusals()[RefuseIntentsSigner] == 4 && sink.count() == 4
	})
	time.Sleep(200 * time.Millisecond)
	byBuilder := map[string]int{}
	sink.mu.Lock()
	for _, in := range sink.got {
		byBuilder[in.Builder]++
	}
	sink.mu.Unlock()
	assert.Equal(t, 3, byBuilder[builder.Fingerprint()])
	assert.Equal(t, 1, byBuilder[other.Fingerprint()])
}
