package integration

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/p2p"
)

// arrivals counts, per claim ID, the nodes that stored it from the network.
type arrivals struct {
	mu    sync.Mutex
	want  int
	count map[string]int
	done  map[string]chan struct{}
}

func (a *arrivals) expect(id string) chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := make(chan struct{})
	a.done[id] = ch
	return ch
}

func (a *arrivals) onClaim(c *attest.Claim, _ peer.ID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.count[c.ID]++
	if a.count[c.ID] == a.want {
		if ch := a.done[c.ID]; ch != nil {
			close(ch)
		}
	}
}

// BenchmarkPropagation measures publish → stored at every other node for
// sparse networks (each node linked to 4 others) of N in-process nodes,
// and in the same run the baseline of plain gossipsub on the same links
// (rawPropagation): raw-p50-ms, raw-p99-ms and the ratio p99/raw.
// Run with: go test ./integration -run '^$' -bench Propagation -benchtime 100x
func BenchmarkPropagation(b *testing.B) {
	for _, n := range []int{10, 25, 50} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			arr := &arrivals{want: n - 1, count: map[string]int{}, done: map[string]chan struct{}{}}
			nodes := newNodes(b, n, nil, p2p.WithOnClaim(arr.onClaim))
			rng := mrand.New(mrand.NewPCG(uint64(n), 7))
			sparseConnect(b, nodes, 4, rng)
			waitReady(b, nodes)
			bs := builders(b)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				c := newClaim(b, bs[i%len(bs)], "hello", "o3")
				pub := nodes[rng.IntN(n)]
				done := arr.expect(c.ID)
				b.StartTimer()
				start := time.Now()
				publish(b, pub, c)
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					arr.mu.Lock()
					got := arr.count[c.ID]
					arr.mu.Unlock()
					b.Fatalf("claim %d reached %d of %d nodes in 30s", i, got, n-1)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			reportLatency(b, "", lat)
			// The baseline in the same run: plain gossipsub, same hosts
			// count, same links, messages of a claim's wire size.
			for _, nd := range nodes {
				nd.Close() // free the CPU for the baseline
			}
			wire, err := newClaim(b, bs[0], "hello", "o3").Wire()
			if err != nil {
				b.Fatal(err)
			}
			raw := rawPropagation(b, n, len(wire), max(b.N, 30))
			reportLatency(b, "raw-", raw)
			b.ReportMetric(float64(pct(lat, 99))/float64(max(pct(raw, 99), 1)), "p99/raw")
		})
	}
}

func pct(s []time.Duration, p int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

var catchup struct {
	once   sync.Once
	claims []*attest.Claim
}

// catchupClaims signs n claims over 100 packages with 4 builders, in
// parallel, once per test binary.
func catchupClaims(b *testing.B, n int) []*attest.Claim {
	catchup.once.Do(func() {
		bs := builders(b)
		out := make([]*attest.Claim, n)
		var wg sync.WaitGroup
		w := runtime.GOMAXPROCS(0)
		errs := make(chan error, w)
		for k := 0; k < w; k++ {
			wg.Add(1)
			go func(k int) {
				defer wg.Done()
				for i := k; i < n; i += w {
					c, err := attest.Sign(bs[i%len(bs)], statement(fmt.Sprintf("pkg%03d", i%100), "o3", 1_000_000+i))
					if err != nil {
						errs <- err
						return
					}
					out[i] = c
				}
			}(k)
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		catchup.claims = out
	})
	return catchup.claims
}

// BenchmarkCatchUp100k measures a new, empty node catching up on 100,000
// claims (100 packages) from one peer over /lebowski/sync/1: connect →
// all claims verified and stored.
// Run with: go test ./integration -run '^$' -bench CatchUp -benchtime 3x
func BenchmarkCatchUp100k(b *testing.B) {
	const total = 100_000
	claims := catchupClaims(b, total)
	src := newNodes(b, 1, nil)[0]
	ctx := context.Background()
	for i := 0; i < total; i += 1000 {
		if _, err := src.store.Ingest(ctx, claims[i:min(i+1000, total)]...); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dst := newNodes(b, 1, func(c *p2p.Config) { c.SyncAll = true }, catchupOpts...)[0]
		b.StartTimer()
		start, cpu0 := time.Now(), cpuTime()
		connect(b, dst, src)
		deadline := start.Add(2 * time.Minute)
		for dst.store.Len() < total {
			if time.Now().After(deadline) {
				b.Fatalf("caught up %d of %d claims in 2 min", dst.store.Len(), total)
			}
			time.Sleep(5 * time.Millisecond)
		}
		el := time.Since(start)
		cpu := cpuTime() - cpu0
		b.StopTimer()
		b.ReportMetric(cpu.Seconds(), "cpu-s/catchup")
		b.ReportMetric(el.Seconds(), "s/catchup")
		b.ReportMetric(float64(total)/el.Seconds(), "claims/s")
		_ = dst.Close()
	}
	b.StopTimer()
	b.ReportMetric(verifyOnly(b, claims).Seconds(), "verify-only-s")
}

// verifyOnly is the raw baseline of a catch-up, measured in the same run:
// attest.Verify of every claim, keys in a keyring, on every core, with no
// network, no serving peer and no store. A catch-up cannot be faster on
// this machine.
func verifyOnly(b *testing.B, claims []*attest.Claim) time.Duration {
	var es []*openpgp.Entity
	for _, id := range builders(b) {
		es = append(es, id.Entity)
	}
	keys := attest.NewKeyring(es...)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(claims)); i = next.Add(1) - 1 {
				if _, err := attest.Verify(claims[i].Raw, keys, attest.VerifyOptions{}); err != nil {
					panic(err)
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

var catchupOpts []p2p.Option

// cpuTime is the process's user+system CPU time (both nodes are in this
// process, so it is the cost of serving and of catching up together).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
