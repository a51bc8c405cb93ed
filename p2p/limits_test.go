package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/p2p/p2ptest"
)

// rawHost is a bare libp2p host on loopback: a hostile peer that speaks
// the protocols by hand.
func rawHost(t testing.TB) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func setVar[T any](t *testing.T, p *T, v T) {
	old := *p
	*p = v
	t.Cleanup(func() { *p = old })
}

func (n *Node) penaltyOf(t *testing.T, h host.Host) float64 {
	n.penMu.Lock()
	defer n.penMu.Unlock()
	return n.penalties[h.ID()].at(time.Now())
}

// ascendingID is the i-th of well-formed claim IDs in ascending order.
func ascendingID(i int) string {
	b := []byte("baaaaaaaaaaaa")
	for j := len(b) - 1; i > 0 && j > 0; j-- {
		b[j] = byte('a' + i%26)
		i /= 26
	}
	return string(b)
}

// A sync server that answers "more" forever: the client stops paging at
// what the peer's digest announced, or at maxMissingPerSync when the
// announced count is huge, so its memory stays bounded; a response that
// breaks the protocol penalizes the peer.
func TestSyncClientBoundsPaging(t *testing.T) {
	for _, tc := range []struct {
		name      string
		announced int
		badGet    bool // answer "get" with claims nobody asked for
		pages     int
	}{
		{"pages beyond the announced count", 10, false, 1},
		{"an announced count too large to list", 1 << 30, false, maxMissingPerSync/MaxIDsPerPage + 1},
		{"a get answer that breaks the protocol", 10, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			liar := rawHost(t)
			var lastPages atomic.Int64 // pages listed in the latest session
			liar.SetStreamHandler(SyncProtocol, func(s network.Stream) {
				defer s.Reset()
				r := bufio.NewReader(s)
				next := 0
				lastPages.Store(0)
				for {
					var req SyncRequest
					if err := readMsg(r, MaxSyncRequest, &req); err != nil {
						return
					}
					var resp SyncResponse
					switch req.Op {
					case OpDigests:
						resp.Digests = map[string]Digest{"hello": {Count: tc.announced, Hash: fmt.Sprintf("%064x", 1)}}
					case OpIDs:
						lastPages.Add(1)
						ids := make([]string, MaxIDsPerPage)
						for i := range ids {
							ids[i] = ascendingID(next)
							next++
						}
						resp.IDs, resp.More = ids, true
					case OpGet:
						if tc.badGet {
							resp.Unknown = []string{ascendingID(1 << 40)} // not requested
						} else {
							resp.Error = "no"
						}
					}
					if err := writeMsg(s, &resp, MaxSyncResponse); err != nil {
						return
					}
				}
			})
			victim := testNode(t, p2ptest.NewMemStore(), Config{SyncAll: true})
			require.NoError(t, liar.Connect(context.Background(), victim.AddrInfo()))
			var st SyncStats
			var err error
			for { // the on-connect sync may be running
				if st, err = victim.SyncWith(context.Background(), liar.ID()); !errors.Is(err, errSyncBusy) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			require.Error(t, err)
			assert.Equal(t, int64(tc.pages), lastPages.Load(), "pages listed")
			assert.LessOrEqual(t, st.Missing, max(MaxIDsPerPage, maxMissingPerSync))
			if tc.badGet {
				assert.ErrorIs(t, err, ErrProtocol)
				assert.Greater(t, victim.penaltyOf(t, liar), 0.0, "a lying sync peer is penalized")
				assert.NotZero(t, victim.Refusals()[RefuseSyncInvalid])
			} else {
				assert.Contains(t, err.Error(), `peer error: "no"`)
				assert.Zero(t, victim.penaltyOf(t, liar), "an error answer is not a protocol fault")
			}
		})
	}
}

// Peers holding every inbound sync slot their share allows (a session
// each, kept open and idle) do not keep a newcomer from catching up: past
// syncIdleEvict the longest idle session is ended for it. A peer opening
// sessions too fast is refused, and a session ends at its request budget.
func TestSyncServerSlots(t *testing.T) {
	setVar(t, &syncIdleEvict, 300*time.Millisecond)
	const share = maxInboundSyncs - reservedSyncs // what peers that are not valued may hold
	owner := testIdentity(t)
	sv := p2ptest.NewMemStore()
	for i := range 5 {
		_, err := sv.Ingest(context.Background(), testClaim(t, owner, "hello", "o3", i))
		require.NoError(t, err)
	}
	victim := testNode(t, sv, Config{Limits: Limits{SyncRequestsPerSession: 50}})
	ctx := context.Background()

	// share holders, each keeping a session open.
	var wg sync.WaitGroup
	// The holders keep their sessions idle (sessions end idle only after
	// 15 s) until the eviction is checked, then spend their budgets: had
	// they spent them from the start (2.5 s), a slot could come free
	// before the honest peer arrives on a slow machine, and nothing would
	// be evicted.
	stop, spend := make(chan struct{}), make(chan struct{})
	var ended sync.Map
	for i := range share {
		h := rawHost(t)
		require.NoError(t, h.Connect(ctx, victim.AddrInfo()))
		s, err := h.NewStream(ctx, victim.ID(), SyncProtocol)
		require.NoError(t, err)
		r := bufio.NewReader(s)
		require.NoError(t, writeMsg(s, &SyncRequest{Op: OpDigests}, MaxSyncRequest))
		var resp SyncResponse
		require.NoError(t, readMsg(r, MaxSyncResponse, &resp))
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Reset()
			select {
			case <-stop:
				return
			case <-spend:
			}
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if err := writeMsg(s, &SyncRequest{Op: OpDigests}, MaxSyncRequest); err != nil {
					ended.Store(i, true)
					return
				}
				if err := readMsg(r, MaxSyncResponse, &resp); err != nil {
					ended.Store(i, true)
					return
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	attesttest.Eventually(t, 5*time.Second, "every slot of the share taken", func() bool {
		victim.mu.Lock()
		defer victim.mu.Unlock()
		return len(victim.inbound) == share
	})

	time.Sleep(2 * syncIdleEvict) // the holders' sessions are idle long enough to evict
	newcomer := rawHost(t)
	require.NoError(t, newcomer.Connect(ctx, victim.AddrInfo()))
	s, err := newcomer.NewStream(ctx, victim.ID(), SyncProtocol)
	require.NoError(t, err)
	require.NoError(t, writeMsg(s, &SyncRequest{Op: OpDigests}, MaxSyncRequest))
	var resp SyncResponse
	require.NoError(t, readMsg(bufio.NewReader(s), MaxSyncResponse, &resp), "a newcomer is served")
	_ = s.Close()
	assert.NotZero(t, victim.Refusals()[RefuseSyncEvicted], "an idle holder was evicted")

	honest := testNode(t, p2ptest.NewMemStore(), Config{SyncAll: true})
	require.NoError(t, honest.Connect(ctx, victim.AddrInfo()))
	attesttest.Eventually(t, 10*time.Second, "honest peer caught up", func() bool {
		_, err := honest.SyncWith(ctx, victim.ID())
		return err == nil && honestLen(honest) == 5
	})
	close(spend)

	// The holders' sessions also end at their request budget (50).
	attesttest.Eventually(t, 10*time.Second, "sessions end at their request budget", func() bool {
		n := 0
		ended.Range(func(any, any) bool { n++; return true })
		return n == share
	})
	assert.NotZero(t, victim.Refusals()[RefuseSyncBudget])

	// One peer opening sessions in a loop is refused past its rate.
	h := rawHost(t)
	require.NoError(t, h.Connect(ctx, victim.AddrInfo()))
	refused := 0
	for range 10 {
		s, err := h.NewStream(ctx, victim.ID(), SyncProtocol)
		if err != nil {
			refused++
			continue
		}
		_ = writeMsg(s, &SyncRequest{Op: OpDigests}, MaxSyncRequest)
		var resp SyncResponse
		if readMsg(bufio.NewReader(s), MaxSyncResponse, &resp) != nil {
			refused++
		}
		_ = s.Close()
	}
	assert.GreaterOrEqual(t, refused, 4, "burst of 5 sessions, then refused")
	assert.NotZero(t, victim.Refusals()[RefuseSyncRate])
}

func honestLen(n *Node) int {
	if ms, ok := n.deps.Claims.(*p2ptest.MemStore); ok {
		return ms.Len()
	}
	return 0
}

// Idle blob streams from one peer take at most BlobsPerPeer slots and are
// cut at the header deadline; an honest peer is served meanwhile.
func TestBlobServerIdleStreams(t *testing.T) {
	setVar(t, &blobHeaderTimeout, 500*time.Millisecond)
	sv := p2ptest.NewMemStore()
	data := []byte("buildinfo")
	c, err := sv.PutBlob(data)
	require.NoError(t, err)
	victim := testNode(t, sv, Config{})
	ctx := context.Background()

	idler := rawHost(t)
	require.NoError(t, idler.Connect(ctx, victim.AddrInfo()))
	var streams []network.Stream
	for range maxInboundBlobs + 4 {
		s, err := idler.NewStream(ctx, victim.ID(), BlobProtocol)
		require.NoError(t, err)
		_, err = s.Write([]byte{5}) // a header that announces 5 bytes, then silence
		require.NoError(t, err)
		streams = append(streams, s)
	}
	attesttest.Eventually(t, 5*time.Second, "extra idle streams refused", func() bool {
		return victim.Refusals()[RefuseBlobBusy] >= uint64(maxInboundBlobs+4-DefaultBlobsPerPeer)
	})
	assert.LessOrEqual(t, victim.blobStreamsHeld(), DefaultBlobsPerPeer)

	honest := testNode(t, p2ptest.NewMemStore(), Config{})
	require.NoError(t, honest.Connect(ctx, victim.AddrInfo()))
	start := time.Now()
	got, err := honest.FetchBlob(ctx, victim.ID(), c)
	require.NoError(t, err)
	assert.Equal(t, data, got)
	assert.Less(t, time.Since(start), 2*time.Second, "served while the idler holds its streams")

	// The idle streams are cut at the header deadline.
	for _, s := range streams {
		_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.ReadAll(s)
		assert.Error(t, err, "reset, not answered")
	}
	attesttest.Eventually(t, 5*time.Second, "slots released", func() bool { return victim.blobStreamsHeld() == 0 })
}

// A flood of valid claims from one peer: past its rate the claims are
// ignored before verification and the flooder is penalized (then
// graylisted), while claims of a trusted builder published by another
// peer during the flood are all stored.
func TestGossipFloodBounded(t *testing.T) {
	trusted := testIdentity(t)
	flooders := attesttest.Fresh(t, 4)
	keys := p2ptest.NewMemStore()
	keys.PutKey(trusted.Entity)
	sv := p2ptest.NewMemStore()
	ctx := context.Background()
	victim, err := New(ctx, Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, SyncInterval: -1, Subscribe: []string{"hello/o3"},
		Limits: Limits{GossipPerSecond: 20, GossipBurst: 50}}, Deps{Claims: sv, Keys: keys})
	require.NoError(t, err)
	t.Cleanup(func() { _ = victim.Close() })
	setVar(t, &overflowPenaltyEvery, 100)
	flooder := testNode(t, p2ptest.NewMemStore(), Config{Subscribe: []string{"hello/o3"}})
	honestNode := testNode(t, p2ptest.NewMemStore(), Config{Subscribe: []string{"hello/o3"}})
	for _, n := range []*Node{flooder, honestNode} {
		require.NoError(t, n.Connect(ctx, victim.AddrInfo()))
		attesttest.Eventually(t, 20*time.Second, "first heartbeat", func() bool { _, ok := n.PeerScore(victim.ID()); return ok })
	}

	const flood, honestN = 1500, 20
	var claims []*attest.Claim
	for i := range flood {
		claims = append(claims, testClaim(t, flooders[i%len(flooders)], "hello", "o3", i))
	}
	var honest []*attest.Claim
	for i := range honestN {
		honest = append(honest, testClaim(t, trusted, "hello", "o3", 100000+i))
	}
	every := flood / honestN
	for i, c := range claims {
		require.NoError(t, flooder.Publish(ctx, c))
		if i%every == 0 && i/every < honestN {
			require.NoError(t, honestNode.Publish(ctx, honest[i/every]))
		}
		if i%10 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	attesttest.Eventually(t, 20*time.Second, "every trusted claim stored", func() bool {
		for _, c := range honest {
			if ok, _ := sv.Has(c.ID); !ok {
				return false
			}
		}
		return true
	})
	stored := sv.Len() - honestN
	ignored := victim.Refusals()[RefuseGossipRate]
	t.Logf("flood: %d published, %d stored, %d ignored for rate", flood, stored, ignored)
	assert.Less(t, stored, flood/2, "most of the flood is ignored or never accepted")
	assert.NotZero(t, ignored)
	assert.Greater(t, victim.penaltyOf(t, flooder.Host()), 0.0, "the flooder is penalized")
	assert.Zero(t, victim.penaltyOf(t, honestNode.Host()), "the honest peer is not")
}

// A client refused by a server's blob rate waits and asks again: a cold
// node fetching a lock's files from one peer in a row is slowed, not
// failed.
func TestFetchBlobRetriesRefusals(t *testing.T) {
	sv := p2ptest.NewMemStore()
	var cids []string
	for i := range 12 {
		c, err := sv.PutBlob([]byte(fmt.Sprint("locked file ", i)))
		require.NoError(t, err)
		cids = append(cids, c)
	}
	server := testNode(t, sv, Config{Limits: Limits{BlobRequestsPerMinute: 60}}) // burst 10, then 1/s
	client := testNode(t, p2ptest.NewMemStore(), Config{})
	require.NoError(t, client.Connect(context.Background(), server.AddrInfo()))
	for _, c := range cids {
		_, from, err := client.FetchBlobAny(context.Background(), c, 1<<20, false)
		require.NoError(t, err, "blob %s", c)
		assert.Equal(t, server.ID(), from)
	}
	assert.NotZero(t, server.Refusals()[RefuseBlobRate], "the server did refuse some requests")
}

// Valid claims forwarded over the rate earn no standing: the flooder's
// first deliveries within its rate would make its score +20 (the cap);
// having gone over the rate cancels that (OverRateScore). Penalties are
// kept out of the way here (the flooder stays below overflowPenaltyEvery)
// so that only the reward is measured.
func TestOverRateEarnsNoReward(t *testing.T) {
	setVar(t, &overflowPenaltyEvery, 1<<30)
	ctx := context.Background()
	victim, err := New(ctx, Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, SyncInterval: -1, Subscribe: []string{"hello/o3"},
		Limits: Limits{GossipPerSecond: 20, GossipBurst: 40}}, Deps{Claims: p2ptest.NewMemStore(), Keys: p2ptest.NewMemStore()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = victim.Close() })
	flooder := testNode(t, p2ptest.NewMemStore(), Config{Subscribe: []string{"hello/o3"}})
	require.NoError(t, flooder.Connect(ctx, victim.AddrInfo()))
	attesttest.Eventually(t, 20*time.Second, "first heartbeat", func() bool { _, ok := victim.PeerScore(flooder.ID()); return ok })
	keys := attesttest.Fresh(t, 4)
	for i := range 200 {
		require.NoError(t, flooder.Publish(ctx, testClaim(t, keys[i%len(keys)], "hello", "o3", i)))
	}
	attesttest.Eventually(t, 20*time.Second, "the flood seen", func() bool { return victim.Refusals()[RefuseGossipRate] > 0 })
	time.Sleep(2 * time.Second) // scores are refreshed every DecayInterval (1 s)
	s, ok := victim.PeerScore(flooder.ID())
	require.True(t, ok)
	t.Logf("flooder's score at the victim after 200 valid claims over a rate of 20/s (burst 40): %.2f", s)
	assert.Less(t, s, 5.0, "first deliveries within the rate must not reward a peer that floods past it")
}
