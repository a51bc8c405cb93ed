package store

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
)

// presign signs n distinct claims over the key pool using all cores.
func presign(b testing.TB, n int, keys []*attest.Identity) []*attest.Claim {
	out := make([]*attest.Claim, n)
	var wg sync.WaitGroup
	workers := runtime.NumCPU()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				c, err := attest.Sign(keys[i%len(keys)], statement(spec{pkg: fmt.Sprintf("pkg%d", i%50), recipe: i % 500, ts: i}))
				if err != nil {
					panic(err)
				}
				out[i] = c
			}
		}(w)
	}
	wg.Wait()
	return out
}

// BenchmarkVerifiedIngest: attest.Verify of wire bytes + Ingest with fsync,
// one claim per call from many goroutines (like gossipsub validators), the
// builder keys already in the store (steady state). Run with -cpu 1 for the
// one-core number.
func BenchmarkVerifiedIngest(b *testing.B) {
	for _, d := range []time.Duration{0, 2 * time.Millisecond} {
		b.Run("MaxDelay="+d.String(), func(b *testing.B) { benchVerifiedIngest(b, d) })
	}
}

func benchVerifiedIngest(b *testing.B, delay time.Duration) {
	keys := testKeys(b, 16)
	claims := presign(b, b.N, keys)
	wires := make([][]byte, b.N)
	for i, c := range claims {
		wires[i], _ = c.Wire()
	}
	s := mustOpenStore(b, WithMaxDelay(delay))
	for _, k := range keys {
		if _, err := s.PutKey(k.PublicKey(), attest.TrustUnvetted, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	var next sync.Mutex
	i := 0
	b.SetParallelism(32)
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			next.Lock()
			w := wires[i]
			i++
			next.Unlock()
			c, err := attest.Verify(w, s, attest.VerifyOptions{})
			if err != nil {
				b.Error(err)
				return
			}
			res, err := s.Ingest(context.Background(), c)
			if err != nil || res[0].Status != StatusNew {
				b.Errorf("ingest: %v %v", err, res)
				return
			}
		}
	})
	reportRates(b, start, cpu0)
}

// reportRates reports wall-clock claims/s and CPU time per claim. The
// latter, inverted, is the rate one otherwise idle core would reach: this
// machine is shared with other jobs, so wall time alone understates it.
func reportRates(b *testing.B, start time.Time, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "claims/s")
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/claim")
}

// BenchmarkIngest is the store alone (claims pre-verified), fsync on.
func BenchmarkIngest(b *testing.B) {
	for _, tc := range []struct {
		desc     string
		parallel int // goroutines calling Ingest with one claim each; 0 = batches of 1000 from one caller
		delay    time.Duration
	}{
		{"one caller, one claim per call", 1, 0},
		{"64 callers, one claim per call", 64, 0},
		{"64 callers, one claim per call, MaxDelay 2ms", 64, 2 * time.Millisecond},
		{"one caller, 1000 claims per call", 0, 0},
		{"one caller, 1000 claims per call, NoSync", 0, -1},
	} {
		b.Run(tc.desc, func(b *testing.B) {
			claims := presign(b, b.N, testKeys(b, 16))
			opts := []Option{WithMaxDelay(tc.delay)}
			if tc.delay < 0 {
				opts = []Option{WithNoSync()}
			}
			s := mustOpenStore(b, opts...)
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			if tc.parallel == 0 {
				for i := 0; i < len(claims); i += 1000 {
					if _, err := s.Ingest(context.Background(), claims[i:min(i+1000, len(claims))]...); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				var wg sync.WaitGroup
				for g := 0; g < tc.parallel; g++ {
					wg.Add(1)
					go func(g int) {
						defer wg.Done()
						for i := g; i < len(claims); i += tc.parallel {
							if _, err := s.Ingest(context.Background(), claims[i]); err != nil {
								b.Error(err)
								return
							}
						}
					}(g)
				}
				wg.Wait()
			}
			reportRates(b, start, cpu0)
		})
	}
}

// Shape of the big store (docs/STORE.md): 48 builder keys; "hello" is the
// busiest package with 2 Debian versions × 100 recipes × 100 claims
// (every key about twice per recipe, 3 keys always dissent); the rest are
// packages pkgNNNN with 10 recipes × 50 claims each.
const (
	helloRecipes        = 200
	helloClaimsPerRecip = 100
	otherRecipes        = 10
	otherClaimsPerRecip = 50
)

func bigSpec(i int) spec {
	if i < helloRecipes*helloClaimsPerRecip {
		r, j := i/helloClaimsPerRecip, i%helloClaimsPerRecip
		ver := "2.10-3"
		if r >= helloRecipes/2 {
			ver = "2.10-4"
		}
		return spec{pkg: "hello", debver: ver, recipe: r, variant: dissent(j % 48), ts: i}
	}
	i -= helloRecipes * helloClaimsPerRecip
	per := otherRecipes * otherClaimsPerRecip
	p, r, j := i/per, (i%per)/otherClaimsPerRecip, i%otherClaimsPerRecip
	return spec{pkg: fmt.Sprintf("pkg%04d", p), recipe: r, variant: dissent(j % 48), ts: i}
}

func bigKey(i int) int {
	if i < helloRecipes*helloClaimsPerRecip {
		return (i % helloClaimsPerRecip) % 48
	}
	return (i % otherClaimsPerRecip) % 48
}

func dissent(key int) int {
	if key%16 == 15 {
		return 1
	}
	return 0
}

// bigStore returns the path of a store filled with n real signed claims,
// built once and kept in os.TempDir() across benchmark runs (signing a
// million claims takes minutes). LEBOWSKI_BENCH_CLAIMS overrides n.
func bigStore(b *testing.B) (string, int) {
	n := 1_000_000
	if v := os.Getenv("LEBOWSKI_BENCH_CLAIMS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("lebowski-store-bench-v%d-f4-%d", SchemaVersion(), n))
	path := filepath.Join(dir, "store.db")
	if _, err := os.Stat(path); err == nil {
		return path, n
	}
	b.Logf("building %s with %d signed claims (once; reused by later runs)", path, n)
	start := time.Now()
	keys := testKeys(b, 48)
	tmp := filepath.Join(dir, "building.db")
	os.RemoveAll(dir)
	// 48 keys hold a million claims: far past the budget of keys that do
	// not vote, which is not what this store measures.
	s, err := Open(tmp, WithNoSync(), WithBudget(Budget{ClaimsPerKey: -1, RecipesPerKey: -1, BytesPerKey: -1, StoreBytes: -1}))
	if err != nil {
		b.Fatal(err)
	}
	const chunk = 1000
	batches := make(chan []*attest.Claim, 4)
	go func() {
		defer close(batches)
		for lo := 0; lo < n; lo += chunk {
			hi := min(lo+chunk, n)
			batch := make([]*attest.Claim, hi-lo)
			var wg sync.WaitGroup
			workers := runtime.NumCPU()
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := lo + w; i < hi; i += workers {
						c, err := attest.Sign(keys[bigKey(i)], statement(bigSpec(i)))
						if err != nil {
							panic(err)
						}
						batch[i-lo] = c
					}
				}(w)
			}
			wg.Wait()
			batches <- batch
		}
	}()
	done := 0
	for batch := range batches {
		res, err := s.Ingest(context.Background(), batch...)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			if r.Status != StatusNew {
				b.Fatalf("fill: %s %v", r.Status, r.Err)
			}
		}
		done += len(batch)
		if done%100_000 == 0 {
			b.Logf("  %d claims after %s", done, time.Since(start).Round(time.Second))
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	b.Logf("built in %s", time.Since(start).Round(time.Second))
	return path, n
}

// BenchmarkInfo1M measures what `lebowski info hello` needs on a store with
// a million claims, two ways in the same run:
//   - voters (what core.Info does since schema 5): the recipes' voter
//     lists (Voters), consensus.Rank on them, then the claim summaries
//     (ByRecipe) and statements (Statements) of the best recipe;
//   - claims (before): every claim summary of the package (ByPackage),
//     then the full claims (GetMany) of the busiest recipe.
//
// Reports p50/p99 per query, and bytes per claim of the file.
func BenchmarkInfo1M(b *testing.B) {
	path, n := bigStore(b)
	s, err := Open(path, WithReadOnly())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	version := os.Getenv("LEBOWSKI_BENCH_VERSION") // "" = all Debian versions
	full := func(claims []StoredClaim, read func([]string) ([]*attest.Claim, error)) int {
		ids := make([]string, 0, len(claims))
		for _, sc := range claims {
			ids = append(ids, sc.ID)
		}
		got, err := read(ids)
		if err != nil || len(got) != len(ids) {
			b.Fatalf("read claims: %v (%d of %d)", err, len(got), len(ids))
		}
		return len(got)
	}
	b.Run("path=voters", func(b *testing.B) {
		benchInfo(b, s, n, func(pkg string) (int, int) {
			total, claims := infoVoters(b, s, pkg, version)
			return total, full(claims, s.Statements)
		})
	})
	b.Run("path=claims", func(b *testing.B) {
		benchInfo(b, s, n, func(pkg string) (int, int) {
			rcs, err := s.ByPackage(pkg, version)
			if err != nil {
				b.Fatal(err)
			}
			if len(rcs) == 0 {
				return 0, 0
			}
			busiest, total := 0, 0
			for i, rc := range rcs {
				total += len(rc.Claims)
				if len(rc.Claims) > len(rcs[busiest].Claims) {
					busiest = i
				}
			}
			return total, full(rcs[busiest].Claims, s.GetMany)
		})
	})
	st, err := s.Stats()
	if err != nil {
		b.Fatal(err)
	}
	if st.Claims != uint64(n) {
		b.Fatalf("store holds %d claims, want %d", st.Claims, n)
	}
	b.Logf("file: %d bytes for %d claims, %.0f bytes/claim", st.FileSize, st.Claims, float64(st.FileSize)/float64(st.Claims))
	_ = s.DB().View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			bs := bk.Stats()
			b.Logf("bucket %-13s keys %8d  leaf in use %6.1f MiB of %6.1f MiB allocated, branch %5.1f MiB",
				name, bs.KeyN, float64(bs.LeafInuse)/(1<<20), float64(bs.LeafAlloc)/(1<<20), float64(bs.BranchAlloc)/(1<<20))
			return nil
		})
	})
}

// infoVoters is what core.Info reads to choose a recipe: the voter lists,
// consensus.Rank, then the chosen recipe's claim summaries.
func infoVoters(b *testing.B, s *Store, pkg, version string) (entries int, best []StoredClaim) {
	rvs, err := s.Voters(pkg, version)
	if err != nil {
		b.Fatal(err)
	}
	if len(rvs) == 0 {
		return 0, nil
	}
	votes := make([]consensus.RecipeVotes, len(rvs))
	for i, rv := range rvs {
		v := consensus.RecipeVotes{RecipeID: rv.Recipe.RecipeID, Newest: rv.Recipe.Newest, Builders: make([]string, len(rv.Voters))}
		for j, vt := range rv.Voters {
			v.Builders[j] = vt.Builder
		}
		votes[i] = v
		entries += len(rv.Voters)
	}
	consensus.Rank(votes, nil)
	claims, err := s.ByRecipe(votes[0].RecipeID)
	if err != nil {
		b.Fatal(err)
	}
	return entries, claims
}

func benchInfo(b *testing.B, s *Store, n int, info func(pkg string) (read, full int)) {
	total, full := info("hello") // warm the page cache
	b.Logf("info hello: %d entries read for ranking, %d full claims decoded", total, full)
	lat := make([]time.Duration, 0, b.N)
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		info("hello")
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportLatency(b, lat, cpu0)
}

// BenchmarkSmallPackage1M: what `info` reads (voter lists, rank, the
// chosen recipe's summaries and full claims) for random ordinary packages
// in the 1M store (cold-ish pages).
func BenchmarkSmallPackage1M(b *testing.B) {
	path, n := bigStore(b)
	s, err := Open(path, WithReadOnly())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	pkgs := (n - helloRecipes*helloClaimsPerRecip) / (otherRecipes * otherClaimsPerRecip)
	if pkgs < 1 {
		b.Skip("store too small")
	}
	lat := make([]time.Duration, 0, b.N)
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pkg := fmt.Sprintf("pkg%04d", (i*7919)%pkgs)
		t0 := time.Now()
		_, claims := infoVoters(b, s, pkg, "")
		if len(claims) == 0 {
			b.Fatalf("%s: no claims", pkg)
		}
		ids := []string{}
		for _, sc := range claims {
			ids = append(ids, sc.ID)
		}
		if _, err := s.Statements(ids); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportLatency(b, lat, cpu0)
}

// reportLatency reports CPU time per query since cpu0 and the p50/p99 of
// the query latencies.
func reportLatency(b *testing.B, lat []time.Duration, cpu0 time.Duration) {
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// cpuTime is the process's user+system CPU time: on a shared, loaded
// machine it shows the work per query where wall time shows the wait.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkVerifiedIngestBatch: the import path — VerifyAndIngest of 5,000
// wire envelopes per call (`claims import` of a bundle passes the whole
// file), keys known, fsync on. VerifyAndIngest verifies chunks of 512 while
// the previous chunk commits.
func BenchmarkVerifiedIngestBatch(b *testing.B) {
	keys := testKeys(b, 16)
	claims := presign(b, b.N, keys)
	wires := make([][]byte, b.N)
	for i, c := range claims {
		wires[i], _ = c.Wire()
	}
	s := mustOpenStore(b)
	for _, k := range keys {
		if _, err := s.PutKey(k.PublicKey(), attest.TrustUnvetted, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	// One call per 5,000 envelopes, as `claims import` of a bundle does:
	// VerifyAndIngest verifies the next 512 while the last are committed.
	for lo := 0; lo < b.N; lo += 5000 {
		hi := min(lo+5000, b.N)
		res, err := s.VerifyAndIngest(context.Background(), attest.VerifyOptions{}, wires[lo:hi]...)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			if r.Status != StatusNew {
				b.Fatalf("ingest: %+v", r)
			}
		}
	}
	reportRates(b, start, cpu0)
}

// BenchmarkCompact1M runs store.Compact (`lebowski store compact`) on a
// copy of the 1M-claim store and reports bytes per claim before and after.
func BenchmarkCompact1M(b *testing.B) {
	path, n := bigStore(b)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		cp := filepath.Join(b.TempDir(), "store.db")
		if err := copyFile(path, cp); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := Compact(cp, WithNoSync())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(res.BytesBefore)/float64(n), "bytes/claim-before")
		b.ReportMetric(float64(res.BytesAfter)/float64(n), "bytes/claim-after")
		b.ReportMetric(res.Took.Seconds(), "s/compact")
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
