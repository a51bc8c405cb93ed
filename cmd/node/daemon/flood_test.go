package daemon

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/p2p"
	"github.com/lebowski-dist/lebowski/p2p/p2ptest"
	"github.com/lebowski-dist/lebowski/store"
)

// floodClaims signs perKey valid claims for hello/o3 with every key:
// each claim another build image (another recipe) and another hash.
func floodClaims(t *testing.T, keys []*attest.Identity, perKey int) []*attest.Claim {
	t.Helper()
	base := signFor(t, keys[0], "", hex64("x"), time.Now(), nil).Statement
	out := make([]*attest.Claim, len(keys)*perKey)
	var wg sync.WaitGroup
	errs := make([]error, runtime.GOMAXPROCS(0))
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(out); i += len(errs) {
				st := *base
				st.ContainerDigest = "sha256:" + hex64(fmt.Sprint("flood image ", i%50))
				st.Artifacts = []attest.Artifact{{Name: base.Artifacts[0].Name, SHA256: hex64(fmt.Sprint("flood ", i))}}
				st.Timestamp = base.Timestamp.Add(-time.Duration(i) * time.Millisecond).Truncate(time.Millisecond)
				st.RecipeID = st.Recipe().ID()
				if out[i], errs[w] = attest.Sign(keys[i%len(keys)], &st); errs[w] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	return out
}

// TestAttackFloodWithinBudget: 100,000 valid claims from 1,000 fresh keys
// reach a node by sync and by gossip at once, while a trusted builder
// publishes claims through an honest peer. The store keeps at most its
// budget of the flood, every trusted claim is stored, the heap stays
// bounded, and `info` of the trusted package answers fast.
func TestAttackFloodWithinBudget(t *testing.T) {
	const perKey, budget, gossiped, honestN = 100, 20, 20000, 30
	keys := sybilKeys(t)
	start := time.Now()
	flood := floodClaims(t, keys, perKey)
	t.Logf("%d flood claims from %d keys signed in %s", len(flood), len(keys), time.Since(start).Round(time.Millisecond))

	trusted := attesttest.Fresh(t, 1)[0]
	st, err := store.Open(filepath.Join(t.TempDir(), "victim.db"), store.WithBudget(store.Budget{ClaimsPerKey: budget}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	_, err = st.PutKey(trusted.PublicKey(), attest.TrustTrusted, "test")
	require.NoError(t, err)
	ctx := context.Background()
	cfg := func() p2p.Config {
		return p2p.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, SyncInterval: -1, Subscribe: []string{"hello/o3"}}
	}
	newNode := func(claims p2p.ClaimStore, inlet p2p.Inlet, blobs p2p.BlobStore) *p2p.Node {
		n, err := p2p.New(ctx, cfg(), p2p.Deps{Claims: claims, Inlet: inlet, Blobs: blobs})
		require.NoError(t, err)
		t.Cleanup(func() { _ = n.Close() })
		return n
	}
	victim := newNode(st, core.New(st).Inlet(), blobSource{st: st})

	attackerStore := p2ptest.NewMemStore()
	_, err = attackerStore.Ingest(ctx, flood...)
	require.NoError(t, err)
	attacker := newNode(attackerStore, nil, attackerStore)
	honestNode := newNode(p2ptest.NewMemStore(), nil, nil)
	for _, n := range []*p2p.Node{attacker, honestNode} {
		require.NoError(t, n.Connect(ctx, victim.AddrInfo()))
		require.Eventually(t, func() bool { _, ok := n.PeerScore(victim.ID()); return ok }, 20*time.Second, 50*time.Millisecond)
	}
	runtimeGC()
	heap0 := heapInUse()

	// Gossip flood and honest claims at once; the victim's on-connect sync
	// pulls the 100,000 at the same time.
	var honest []*attest.Claim
	for i := range honestN {
		honest = append(honest, signFor(t, trusted, "honest", hex64(fmt.Sprint("honest ", i)), time.Now(), nil))
	}
	start = time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, c := range flood[:gossiped] {
			_ = attacker.Publish(ctx, c)
			if i%20 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	sent := make(map[string]time.Time, honestN)
	for _, c := range honest {
		sent[c.ID] = time.Now()
		require.NoError(t, honestNode.Publish(ctx, c))
		time.Sleep(20 * time.Millisecond)
	}
	var slowest time.Duration
	require.Eventually(t, func() bool {
		n := 0
		for _, c := range honest {
			if ok, _ := st.Has(c.ID); ok {
				n++
				if _, ok := sent[c.ID]; ok {
					slowest = max(slowest, time.Since(sent[c.ID]))
					delete(sent, c.ID)
				}
			}
		}
		return n == len(honest)
	}, time.Minute, 20*time.Millisecond, "every trusted claim sent during the flood is stored")
	t.Logf("every honest claim stored during the flood; slowest %s after its publish (±20 ms polling)", slowest.Round(time.Millisecond))
	<-done

	// Let the sync finish (it may be refused while the on-connect one runs).
	require.Eventually(t, func() bool {
		s, err := victim.SyncWith(ctx, attacker.ID())
		return err == nil && s.Missing == 0 || err == nil && s.Added == 0
	}, 3*time.Minute, 500*time.Millisecond)
	t.Logf("flood offered by gossip and sync, done %s after it began", time.Since(start).Round(time.Millisecond))

	stats, err := st.Stats()
	require.NoError(t, err)
	counts := st.IngestCounts()
	t.Logf("victim store: %d claims, %d bytes; ingest outcomes %v; refusals %v", stats.Claims, stats.FileSize, counts, victim.Refusals())
	assert.LessOrEqual(t, stats.Claims, uint64(len(keys)*budget+honestN), "the flood stays within its budget")
	assert.GreaterOrEqual(t, stats.Claims, uint64(len(keys)*budget/2), "the budget is used, not a blanket refusal")
	assert.NotZero(t, counts["over_budget"])

	runtimeGC()
	heap1 := heapInUse()
	t.Logf("heap in use: %d MiB before the flood, %d MiB after (attacker's in-memory store included)", heap0>>20, heap1>>20)
	assert.Less(t, int64(heap1)-int64(heap0), int64(512<<20), "heap growth bounded")

	node := core.New(st)
	took := make([]time.Duration, 20)
	for i := range took {
		t0 := time.Now()
		info, err := node.Info(ctx, core.InfoQuery{Package: "hello", Opinion: "o3"})
		require.NoError(t, err)
		require.NotEmpty(t, info.Recipes)
		took[i] = time.Since(t0)
	}
	slices.Sort(took)
	t.Logf("info hello/o3 over %d claims: median of 20 %s, worst %s", stats.Claims, took[len(took)/2], took[len(took)-1])
	// The figure is logged for BENCHMARKS.md (worst 34–56 ms here); the
	// assertion only catches a read that grows with the flood (seconds),
	// on the median, which one GC pause or stall does not move.
	assert.Less(t, took[len(took)/2], 2*time.Second, "info does not scan the flood")
}

// TestAttackLargeBlobFanOut: 16 streams from 8 peers ask for one 48 MiB
// blob at once. The server streams it from disk (hashed first, in constant
// memory), so the heap grows by buffers, not by a copy per request.
func TestAttackLargeBlobFanOut(t *testing.T) {
	const size = 48 << 20
	st, err := store.Open(filepath.Join(t.TempDir(), "s.db"), store.WithNoSync())
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	cid, err := st.PutBlob(data)
	require.NoError(t, err)
	data = nil
	ctx := context.Background()
	server, err := p2p.New(ctx, p2p.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, SyncInterval: -1},
		p2p.Deps{Claims: st, Inlet: core.New(st).Inlet(), Blobs: blobSource{st: st}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = server.Close() })

	runtimeGC()
	base := heapInUse()
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if h := heapInUse(); h > peak.Load() {
				peak.Store(h)
			}
		}
	}()
	var wg sync.WaitGroup
	var served atomic.Int64
	for range 8 {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		require.NoError(t, err)
		t.Cleanup(func() { _ = h.Close() })
		require.NoError(t, h.Connect(ctx, server.AddrInfo()))
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := h.NewStream(ctx, server.ID(), p2p.BlobProtocol)
				if err != nil {
					return
				}
				defer s.Close()
				req, _ := json.Marshal(p2p.BlobRequest{CID: cid})
				_, _ = s.Write(append(binary.AppendUvarint(nil, uint64(len(req))), req...))
				_ = s.CloseWrite()
				n, _ := io.Copy(io.Discard, s)
				if n > size {
					served.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	close(stop)
	t.Logf("%d of 16 streams (8 peers × 2) got the %d MiB blob; heap in use %d MiB before, peak %d MiB during",
		served.Load(), size>>20, base>>20, peak.Load()>>20)
	// 16 serving slots, 4 of them kept for valued peers (docs/NETWORK.md):
	// these 8 bare hosts score nothing, so 12 are served at once.
	assert.Equal(t, int64(12), served.Load(), "every stream a slot is open to is served (16 global less 4 kept for valued peers, 2 per peer)")
	assert.Less(t, int64(peak.Load())-int64(base), int64(2*size), "not a copy of the blob per request")
}
