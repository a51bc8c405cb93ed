package core

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/store"
)

// trustWorld is a random certification graph: levels the operator set,
// certification edges (certifier → certified, cycles allowed) and
// revoked keys.
type trustWorld struct {
	levels  []attest.Trust
	edges   [][2]int
	revoked []bool
	hops    int
}

func randomWorld(rng *rand.Rand, n int, voters bool) trustWorld {
	w := trustWorld{levels: make([]attest.Trust, n), revoked: make([]bool, n), hops: 1 + rng.IntN(config.MaxTrustHops)}
	for i := range n {
		switch r := rng.IntN(10); {
		case voters && r < 2:
			w.levels[i] = attest.TrustTrusted
		case r < 3:
			w.levels[i] = attest.TrustDistrusted
		case r < 6:
			w.levels[i] = attest.TrustUnknown
		default:
			w.levels[i] = attest.TrustUnvetted
		}
		w.revoked[i] = rng.IntN(5) == 0
	}
	for range 2 * n {
		a, b := rng.IntN(n), rng.IntN(n)
		if a != b {
			w.edges = append(w.edges, [2]int{a, b})
		}
	}
	return w
}

// oracle is what the trust view must derive: breadth-first from the
// operator's trusted, unrevoked keys, up to hops, never into a revoked or
// distrusted key.
func (w trustWorld) oracle() map[int]bool {
	votes := map[int]bool{}
	for i, l := range w.levels {
		if l == attest.TrustTrusted && !w.revoked[i] {
			votes[i] = true
		}
	}
	certified := map[int]bool{}
	frontier := votes
	for hop := 1; hop <= w.hops && len(frontier) > 0; hop++ {
		next := map[int]bool{}
		for _, e := range w.edges {
			c, t := e[0], e[1]
			if !frontier[c] || votes[t] || certified[t] || w.revoked[t] || w.levels[t] == attest.TrustDistrusted {
				continue
			}
			certified[t] = true
			next[t] = true
		}
		frontier = next
	}
	return certified
}

// build stores the world's keys (certified and revoked as it says) and
// returns the node's trust view.
func (w trustWorld) build(t *testing.T, path string, ids []*attest.Identity, revs [][]byte) *trustView {
	t.Helper()
	st, err := store.Open(path, store.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for j, id := range ids {
		src := id.PublicKey()
		if w.revoked[j] {
			src = revs[j]
		}
		e, err := attest.ParsePublicKey(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, ed := range w.edges {
			if ed[1] == j {
				if err := attest.Certify(ids[ed[0]], e); err != nil {
					t.Fatal(err)
				}
			}
		}
		b, err := attest.SerializeKey(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.PutKey(b, w.levels[j], "property"); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &config.Config{TrustHops: &w.hops}
	tv, err := New(st, WithConfig(cfg)).trust()
	if err != nil {
		t.Fatal(err)
	}
	return tv
}

// Properties of the trust view over random certification graphs (seeded;
// the failing seed is in the message):
//
//  1. the certified keys are exactly the oracle's: reachable from an
//     unrevoked trusted key within trust_hops through voting keys, never
//     into a revoked or distrusted key (so cycles terminate and
//     certifications by revoked keys do not count);
//  2. a revocation always wins: a revoked key is distrusted whatever its
//     level and certifications, and appears on no certification path;
//  3. certifications made only by keys that do not vote never create
//     trust: with no trusted key, nothing votes.
func TestTrustViewProperties(t *testing.T) {
	const nkeys, rounds = 8, 200
	ids := attesttest.Fresh(t, nkeys)
	revs := make([][]byte, nkeys)
	for i, id := range ids {
		var err error
		if revs[i], err = attest.Revoke(id, "", "property test", false, time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	idx := map[string]int{}
	for i, id := range ids {
		idx[id.Fingerprint()] = i
	}
	dir := t.TempDir()
	deadline := time.Now().Add(2 * time.Minute)
	for round := range rounds {
		seed := uint64(round)*7919 + 17
		rng := rand.New(rand.NewPCG(seed, 42))
		voters := round%3 != 0 // every third world has no trusted key at all
		w := randomWorld(rng, nkeys, voters)
		tv := w.build(t, filepath.Join(dir, fmt.Sprintf("%d.db", round)), ids, revs)
		if time.Now().After(deadline) {
			t.Fatalf("seed %d: too slow (cycles must terminate)", seed)
		}
		want := w.oracle()
		var got, exp []int
		for i, id := range ids {
			l := tv.Level(id.Fingerprint())
			if l == attest.TrustCertified {
				got = append(got, i)
			}
			if want[i] {
				exp = append(exp, i)
			}
			if w.revoked[i] && l != attest.TrustDistrusted {
				t.Fatalf("seed %d: revoked key %d is %s (world %+v)", seed, i, l, w)
			}
			if !voters && l.Votes() {
				t.Fatalf("seed %d: key %d votes (%s) though no key is trusted: certifications by keys that do not vote created trust (world %+v)", seed, i, l, w)
			}
			for _, f := range tv.via[id.Fingerprint()] {
				if w.revoked[idx[f]] {
					t.Fatalf("seed %d: key %d certified through revoked key %d", seed, i, idx[f])
				}
			}
		}
		sort.Ints(got)
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Fatalf("seed %d: certified %v, oracle %v (world %+v)", seed, got, exp, w)
		}
	}
}

// A complete certification graph among unvetted keys (every key certifies
// every other: cycles everywhere) with the maximum hops: the view is
// built, quickly, and certifies nobody.
func TestTrustViewCyclesTerminate(t *testing.T) {
	const n = 6
	ids := attesttest.Fresh(t, n)
	w := trustWorld{levels: make([]attest.Trust, n), revoked: make([]bool, n), hops: config.MaxTrustHops}
	for i := range n {
		w.levels[i] = attest.TrustUnvetted
		for j := range n {
			if i != j {
				w.edges = append(w.edges, [2]int{i, j})
			}
		}
	}
	start := time.Now()
	tv := w.build(t, filepath.Join(t.TempDir(), "s.db"), ids, nil)
	for _, id := range ids {
		if l := tv.Level(id.Fingerprint()); l.Votes() {
			t.Fatalf("%s votes (%s)", id.Fingerprint(), l)
		}
	}
	// One trusted key: everyone else is certified at one hop, once.
	w.levels[0] = attest.TrustTrusted
	tv = w.build(t, filepath.Join(t.TempDir(), "t.db"), ids, nil)
	for _, id := range ids[1:] {
		if l := tv.Level(id.Fingerprint()); l != attest.TrustCertified || len(tv.via[id.Fingerprint()]) != 1 {
			t.Fatalf("%s: %s via %v", id.Fingerprint(), l, tv.via[id.Fingerprint()])
		}
	}
	t.Logf("two views over a complete %d-key graph in %s", n, time.Since(start).Round(time.Millisecond))
}
