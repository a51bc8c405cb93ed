package core

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/store"
)

// peerClaims signs, for each key, one agreeing claim per peer ID (each
// key under its own peer IDs, newest last).
func peerClaims(t *testing.T, ids []*attest.Identity, signers []int, peers int) []*attest.Claim {
	t.Helper()
	var out []*attest.Claim
	for _, i := range signers {
		for p := range peers {
			out = append(out, attesttest.Claim(t, ids[i], func(s *attest.Statement) {
				s.PeerID = fmt.Sprintf("12D3KooWSybil%dPeer%d", i, p)
				s.Timestamp = s.Timestamp.Add(time.Duration(p) * time.Second)
			}))
		}
	}
	return out
}

// forConsensus is what the node hands consensus.Evaluate.
func forConsensus(cs []*attest.Claim) []consensus.Claim {
	out := make([]consensus.Claim, len(cs))
	for i, c := range cs {
		out[i] = consensus.Claim{ID: c.ID, Statement: c.Statement}
	}
	return out
}

// Operator diversity comes from certification clusters (trustView.Operator):
// a directly trusted key is its own operator, a certified key belongs to
// the trusted key its certification path starts from, and peer IDs count
// for nothing. Each case builds a trust view from levels and
// certification edges (trustWorld), has the listed keys agree on one hash
// — every key under three peer IDs of its own — and checks each key's
// cluster and the consensus report `info` shows (the group's Operators,
// the score's diversity, the "N trusted builders agree (d operators)"
// reason).
func TestOperatorClusters(t *testing.T) {
	const (
		r1, r2     = 0, 1 // keys the operator trusts directly (or its own)
		b1, b2, b3 = 2, 3, 4
		c          = 5 // a certifier certified by r1
		x1, x2     = 6, 7
		none       = -1 // no cluster: the key does not vote
	)
	ids := attesttest.Fresh(t, 8)
	fpr := func(i int) string {
		if i == none {
			return ""
		}
		return ids[i].Fingerprint()
	}
	for _, tc := range []struct {
		name    string
		levels  map[int]attest.Trust // others: unvetted
		edges   [][2]int             // certifier → certified
		hops    int                  // 0: 1
		signers []int
		cluster map[int]int // signer → the key whose fingerprint is its cluster
		want    int         // operators in the consensus group
	}{{
		name:    "three builders certified by one trusted key are one operator",
		levels:  map[int]attest.Trust{r1: attest.TrustTrusted},
		edges:   [][2]int{{r1, b1}, {r1, b2}, {r1, b3}},
		signers: []int{b1, b2, b3},
		cluster: map[int]int{b1: r1, b2: r1, b3: r1},
		want:    1,
	}, {
		name:    "an operator key and the builders it certifies are one operator",
		levels:  map[int]attest.Trust{r1: attest.TrustTrusted},
		edges:   [][2]int{{r1, b1}, {r1, b2}, {r1, b3}},
		signers: []int{r1, b1, b2, b3},
		cluster: map[int]int{r1: r1, b1: r1, b2: r1, b3: r1},
		want:    1,
	}, {
		name:    "builders certified by two trusted keys are two operators",
		levels:  map[int]attest.Trust{r1: attest.TrustTrusted, r2: attest.TrustTrusted},
		edges:   [][2]int{{r1, b1}, {r1, b2}, {r2, b3}},
		signers: []int{b1, b2, b3},
		cluster: map[int]int{b1: r1, b2: r1, b3: r2},
		want:    2,
	}, {
		name:    "two directly trusted keys are two operators",
		levels:  map[int]attest.Trust{r1: attest.TrustTrusted, r2: attest.TrustTrusted},
		signers: []int{r1, r2},
		cluster: map[int]int{r1: r1, r2: r2},
		want:    2,
	}, {
		name:    "the own key and a trusted key are two operators",
		levels:  map[int]attest.Trust{r1: attest.TrustOwn, r2: attest.TrustTrusted},
		edges:   [][2]int{{r1, b1}},
		signers: []int{r1, r2, b1},
		cluster: map[int]int{r1: r1, r2: r2, b1: r1},
		want:    2,
	}, {
		name:    "hops 2: keys of a certified certifier are in its certifier's cluster, like it",
		levels:  map[int]attest.Trust{r1: attest.TrustTrusted},
		edges:   [][2]int{{r1, c}, {c, b1}, {c, b2}, {c, b3}},
		hops:    2,
		signers: []int{c, b1, b2, b3},
		cluster: map[int]int{c: r1, b1: r1, b2: r1, b3: r1},
		want:    1,
	}, {
		name:    "hops 3: certifiers minted by one certified key add no operator",
		levels:  map[int]attest.Trust{r1: attest.TrustTrusted},
		edges:   [][2]int{{r1, c}, {c, x1}, {c, x2}, {x1, b1}, {x2, b2}},
		hops:    3,
		signers: []int{c, x1, x2, b1, b2},
		cluster: map[int]int{c: r1, x1: r1, x2: r1, b1: r1, b2: r1},
		want:    1,
	}, {
		name:    "hops 2 under two trusted keys: two operators",
		levels:  map[int]attest.Trust{r1: attest.TrustTrusted, r2: attest.TrustTrusted},
		edges:   [][2]int{{r1, c}, {c, b1}, {r2, b2}},
		hops:    2,
		signers: []int{c, b1, b2},
		cluster: map[int]int{c: r1, b1: r1, b2: r2},
		want:    2,
	}, {
		name:    "unvetted keys have no cluster and add no operator",
		levels:  map[int]attest.Trust{r1: attest.TrustTrusted},
		edges:   [][2]int{{r1, b1}, {r1, b2}, {x1, x2}}, // x1 does not vote: x2 stays unvetted
		signers: []int{b1, b2, x1, x2},
		cluster: map[int]int{b1: r1, b2: r1, x1: none, x2: none},
		want:    1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			w := trustWorld{levels: make([]attest.Trust, len(ids)), revoked: make([]bool, len(ids)), edges: tc.edges, hops: max(tc.hops, 1)}
			for i := range w.levels {
				w.levels[i] = attest.TrustUnvetted
				if l, ok := tc.levels[i]; ok {
					w.levels[i] = l
				}
			}
			tv := w.build(t, filepath.Join(t.TempDir(), "s.db"), ids, nil)
			trusted := 0
			for _, i := range tc.signers {
				assert.Equal(t, fpr(tc.cluster[i]), tv.Operator(fpr(i)), "cluster of key %d", i)
				if tv.Level(fpr(i)).Votes() {
					trusted++
				}
			}

			claims := forConsensus(peerClaims(t, ids, tc.signers, 3))
			now := time.Now()
			rep := consensus.Evaluate(claims, tv, consensus.Options{Now: now})
			require.NotNil(t, rep.Consensus, "reasons: %v", rep.Reasons)
			g := rep.Consensus
			require.Len(t, g.Trusted, trusted)
			assert.Equal(t, tc.want, g.Operators, "operators of the agreeing group")
			assert.Equal(t, tc.want, rep.Components.Operators)
			for _, b := range g.Trusted {
				i := indexOf(ids, b.Fingerprint)
				assert.Equal(t, fpr(tc.cluster[i]), b.Operator, "report's operator of key %d", i)
			}
			agree := fmt.Sprintf("%d trusted builders agree (%d operator%s", trusted, tc.want, map[bool]string{true: "s"}[tc.want != 1])
			assert.Contains(t, strings.Join(rep.Reasons, "\n"), agree)
			if tc.want == 1 {
				assert.Zero(t, rep.Components.Diversity, "one operator has no diversity")
			} else {
				assert.Positive(t, rep.Components.Diversity)
			}

			// The same claims where operators are unknown (as before
			// certification clusters): every peer ID counted as an
			// operator. The clusters never count more.
			levels := map[string]attest.Trust{}
			for _, i := range tc.signers {
				levels[fpr(i)] = tv.Level(fpr(i))
			}
			byPeer := consensus.Evaluate(claims, consensus.StaticTrust{Levels: levels}, consensus.Options{Now: now})
			require.NotNil(t, byPeer.Consensus)
			assert.Equal(t, trusted, byPeer.Consensus.Operators, "peer IDs would count each key")
			assert.LessOrEqual(t, g.Operators, byPeer.Consensus.Operators)
		})
	}
}

func indexOf(ids []*attest.Identity, fpr string) int {
	for i, id := range ids {
		if id.Fingerprint() == fpr {
			return i
		}
	}
	return -1
}

// A key certified by two trusted keys is in one cluster, the same on every
// rebuild of the trust view: each hop takes its certifiers in fingerprint
// order, so the path goes through the smaller fingerprint.
func TestOperatorClusterDeterministic(t *testing.T) {
	ids := attesttest.Fresh(t, 3)
	w := trustWorld{levels: []attest.Trust{attest.TrustTrusted, attest.TrustTrusted, attest.TrustUnvetted},
		revoked: make([]bool, 3), edges: [][2]int{{0, 2}, {1, 2}}, hops: 1}
	want := min(ids[0].Fingerprint(), ids[1].Fingerprint())
	for i := range 10 {
		tv := w.build(t, filepath.Join(t.TempDir(), fmt.Sprintf("%d.db", i)), ids, nil)
		require.Equal(t, want, tv.Operator(ids[2].Fingerprint()), "rebuild %d", i)
	}
}

// Through the node, as `lebowski info` shows it: the node's own key
// certifies two builder keys (`key certify`); the three agree, under
// six peer IDs: one operator, "including your own build". A key the
// operator trusts directly adds the second operator.
func TestInfoOperatorsFromCertification(t *testing.T) {
	ctx := context.Background()
	ids := attesttest.Fresh(t, 4)
	own, b1, b2, other := ids[0], ids[1], ids[2], ids[3]
	cfg := &config.Config{DataDir: t.TempDir()}
	cfg.Defaults()
	st, err := store.Open(filepath.Join(cfg.DataDir, "store.db"), store.WithNoSync())
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	n := New(st, WithConfig(cfg), WithIdentity(own))
	for _, id := range []*attest.Identity{b1, b2} {
		_, err := n.ImportKey(ctx, id.PublicKey(), attest.TrustUnvetted, "test")
		require.NoError(t, err)
		res, err := n.CertifyKey(ctx, id.Fingerprint())
		require.NoError(t, err)
		require.Equal(t, attest.TrustCertified, res.Trust)
	}
	var wires [][]byte
	for _, c := range peerClaims(t, ids, []int{0, 1, 2}, 2) {
		wires = append(wires, attesttest.Wire(t, c))
	}
	res, err := n.ImportClaims(ctx, wires)
	require.NoError(t, err)
	for _, r := range res {
		require.Equal(t, "new", r.Status, r.Error)
	}
	operators := func() (*consensus.Group, []string) {
		t.Helper()
		info, err := n.Info(ctx, InfoQuery{Package: attesttest.Package})
		require.NoError(t, err)
		rep := info.Recipes[0].Report
		require.NotNil(t, rep.Consensus, "reasons: %v", rep.Reasons)
		return rep.Consensus, rep.Reasons
	}
	g, reasons := operators()
	assert.Len(t, g.Trusted, 3)
	assert.Equal(t, 1, g.Operators)
	assert.Contains(t, reasons, "3 trusted builders agree (1 operator, including your own build)")
	for _, b := range g.Trusted {
		assert.Equal(t, own.Fingerprint(), b.Operator, "%s", b.Fingerprint)
	}

	_, err = n.ImportKey(ctx, other.PublicKey(), attest.TrustTrusted, "test")
	require.NoError(t, err)
	res, err = n.ImportClaims(ctx, [][]byte{attesttest.Wire(t, attesttest.Claim(t, other, func(s *attest.Statement) { s.PeerID = "12D3KooWOther" }))})
	require.NoError(t, err)
	require.Equal(t, "new", res[0].Status, res[0].Error)
	g, reasons = operators()
	assert.Equal(t, 2, g.Operators)
	assert.Contains(t, strings.Join(reasons, "\n"), "4 trusted builders agree (2 operators, including your own build)")
}
