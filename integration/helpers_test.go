// Package integration runs many in-process Lebowski nodes on loopback.
package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/p2p"
	"github.com/lebowski-dist/lebowski/p2p/p2ptest"
)

// Topics every test node subscribes to.
var testTopics = []string{"hello/o3", "hello", "nginx/http3"}

// tnode is one in-process node with its store and peer key, so that it
// can be restarted with the same identity and state.
type tnode struct {
	*p2p.Node
	store *p2ptest.MemStore
	sk    crypto.PrivKey
	cfg   p2p.Config
	opts  []p2p.Option
}

func (n *tnode) has(id string) bool { ok, _ := n.store.Has(id); return ok }

// nodeConfig is the config of test nodes: loopback TCP, no mDNS, periodic
// sync off unless a test turns it on (on-connect sync stays on).
func nodeConfig() p2p.Config {
	return p2p.Config{
		ListenAddrs:  []string{"/ip4/127.0.0.1/tcp/0"},
		Subscribe:    testTopics,
		SyncInterval: -1,
	}
}

func startNode(tb testing.TB, st *p2ptest.MemStore, sk crypto.PrivKey, cfg p2p.Config, opts ...p2p.Option) *tnode {
	tb.Helper()
	if sk == nil && cfg.IdentityPath == "" {
		var err error
		sk, _, err = crypto.GenerateEd25519Key(nil)
		if err != nil {
			tb.Fatal(err)
		}
	}
	if st == nil {
		st = p2ptest.NewMemStore()
	}
	ctx := context.Background() // the node's lifetime: Close (at cleanup) ends it
	all := []p2p.Option{p2p.WithScoreInspectPeriod(200 * time.Millisecond)}
	if sk != nil {
		all = append(all, p2p.WithPrivateKey(sk))
	}
	all = append(all, opts...)
	n, err := p2p.New(ctx, cfg, p2p.Deps{Claims: st, Blobs: st}, all...)
	if err != nil {
		tb.Fatalf("start node: %v", err)
	}
	tn := &tnode{Node: n, store: st, sk: sk, cfg: cfg, opts: opts}
	tb.Cleanup(func() { _ = n.Close() })
	return tn
}

// newNodes starts n nodes with nodeConfig, modified by mod if not nil.
func newNodes(tb testing.TB, n int, mod func(*p2p.Config), opts ...p2p.Option) []*tnode {
	tb.Helper()
	out := make([]*tnode, n)
	for i := range out {
		cfg := nodeConfig()
		if mod != nil {
			mod(&cfg)
		}
		o := opts
		if os.Getenv("P2P_DEBUG_NODE") == strconv.Itoa(i) {
			o = append(o, p2p.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
		}
		out[i] = startNode(tb, nil, nil, cfg, o...)
	}
	return out
}

func connect(tb testing.TB, a, b *tnode) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Connect(ctx, b.AddrInfo()); err != nil {
		tb.Fatalf("connect %s → %s: %v", a.ID(), b.ID(), err)
	}
}

func connectAll(tb testing.TB, nodes []*tnode) {
	tb.Helper()
	for i := range nodes {
		for j := i + 1; j < len(nodes); j++ {
			connect(tb, nodes[i], nodes[j])
		}
	}
}

// sparseConnect links each node to its predecessor (so the graph is
// connected) and to k-1 other random nodes.
func sparseConnect(tb testing.TB, nodes []*tnode, k int, rng *rand.Rand) {
	tb.Helper()
	for i := 1; i < len(nodes); i++ {
		connect(tb, nodes[i], nodes[i-1])
		for j := 1; j < k; j++ {
			o := rng.IntN(len(nodes))
			if o != i {
				connect(tb, nodes[i], nodes[o])
			}
		}
	}
}

// waitReady waits until every node's gossipsub mesh holds, for every test
// topic, at least min(topic peers, 4) peers. Gossipsub forwards a message
// only to the mesh it has when the message arrives (later mesh members
// get it from the catch-up sync, which most tests keep off), so publishing
// before the meshes form would make delivery depend on timing.
func waitReady(tb testing.TB, nodes []*tnode) {
	tb.Helper()
	attesttest.Eventually(tb, 60*time.Second, "gossipsub meshes", func() bool {
		for _, n := range nodes {
			for _, topic := range testTopics {
				tp := len(n.TopicPeers(topic))
				if tp == 0 || len(n.MeshPeers(topic)) < min(tp, 4) {
					return false
				}
			}
		}
		return true
	})
}

// waitStored waits until every node stores every claim.
func waitStored(tb testing.TB, nodes []*tnode, claims []*attest.Claim, d time.Duration) {
	tb.Helper()
	defer func() {
		if tb.Failed() {
			for i, n := range nodes {
				var miss []int
				for j, c := range claims {
					if !n.has(c.ID) {
						miss = append(miss, j)
					}
				}
				var scores []string
				for _, pi := range n.Peers() {
					scores = append(scores, fmt.Sprintf("%.1f/%d", pi.Score, len(pi.Topics)))
				}
				tb.Logf("node %d (%s): missing claims %v; peers' score/topics %v", i, n.ID(), miss, scores)
			}
		}
	}()
	attesttest.Eventually(tb, d, fmt.Sprintf("%d claims at %d nodes", len(claims), len(nodes)), func() bool {
		for _, n := range nodes {
			for _, c := range claims {
				if !n.has(c.ID) {
					return false
				}
			}
		}
		return true
	})
}

// builders returns a few builder identities shared by all tests.
func builders(tb testing.TB) []*attest.Identity { return attesttest.Identities(tb, 4) }

var claimSeq struct {
	sync.Mutex
	n int
}

// newClaim signs a fresh, unique claim about pkg/opinion.
func newClaim(tb testing.TB, id *attest.Identity, pkg, opinion string) *attest.Claim {
	tb.Helper()
	claimSeq.Lock()
	claimSeq.n++
	seq := claimSeq.n
	claimSeq.Unlock()
	c, err := attest.Sign(id, statement(pkg, opinion, seq))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func statement(pkg, opinion string, seq int) *attest.Statement {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%s/%d", pkg, opinion, seq)))
	return &attest.Statement{
		Type: attest.TypeRebuildV1, Package: pkg, Version: "1.0-1", DebianVersion: "1.0-1", Suite: "bookworm", Arch: "amd64",
		Opinion:            attest.OpinionRef{Name: opinion, CID: "bafkreitest", Purity: vocab.PurityPureCompilation},
		DebianSourceSHA256: "0000000000000000000000000000000000000000000000000000000000000001",
		ContainerDigest:    "sha256:0000000000000000000000000000000000000000000000000000000000000002",
		Result:             attest.ResultSuccess,
		Artifacts:          []attest.Artifact{{Name: pkg + "_1.0-1_amd64.deb", SHA256: hex.EncodeToString(sum[:])}},
		Timestamp:          time.Date(2026, 1, 15, 10, 30, 0, 0, time.UTC).Add(time.Duration(seq) * time.Second),
	}
}

func publish(tb testing.TB, n *tnode, c *attest.Claim) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A node stores its claim once, then gossips it (as core.RecordBuild does).
	if _, err := n.store.Ingest(ctx, c); err != nil {
		tb.Fatalf("store before publish: %v", err)
	}
	if err := n.Publish(ctx, c); err != nil {
		tb.Fatalf("publish: %v", err)
	}
}

func ids(nodes []*tnode) []peer.ID {
	out := make([]peer.ID, len(nodes))
	for i, n := range nodes {
		out[i] = n.ID()
	}
	return out
}
