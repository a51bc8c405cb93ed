package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/p2p"
	"github.com/lebowski-dist/lebowski/store"
)

// bboltClaims is a p2p.Inlet into the bbolt store alone (the node's real
// inlet, the core's, adds events and the scheduler's observer): claims
// are stored with their origin; keys and intents are not kept.
type bboltClaims struct{ *store.Store }

func (s bboltClaims) IngestClaims(ctx context.Context, via, peer string, claims ...*attest.Claim) ([]bool, error) {
	res, err := s.Store.Ingest(store.WithOrigin(ctx, store.Origin{Via: via, Peer: peer}), claims...)
	if err != nil {
		return nil, err
	}
	return store.Added(res), nil
}

func (s bboltClaims) Votes(string) bool                                      { return false }
func (s bboltClaims) MergeKey(context.Context, []byte, string) (bool, error) { return false, nil }
func (s bboltClaims) AnnounceKeys() [][]byte                                 { return nil }
func (s bboltClaims) Intent(*attest.Intent, string, time.Time)               {}

// BenchmarkGossipIngest measures the gossip path into a node backed by the
// real store (fsync on): 8 peers publish 20,000 distinct claims (16 keys,
// one recipe per claim, one claim per message) on one topic at an offered
// rate; reported: the rate offered, the rate stored at the receiver (first
// publish → last claim stored) and the claims never stored (dropped by
// gossip; sync would fetch them later).
// Everything runs in this process, publishers included (each publisher
// verifies its own messages too), so the figure is a lower bound for one
// receiving node. The receiver's per-peer gossip rate is raised so the
// benchmark measures the path, not the limiter.
// Run with: go test ./integration -run '^$' -bench GossipIngest -benchtime 1x
func BenchmarkGossipIngest(b *testing.B) {
	const total, publishers = 20_000, 8
	keys := attesttest.Identities(b, 16)
	claims := make([]*attest.Claim, total)
	var wg sync.WaitGroup
	for w := range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += runtime.GOMAXPROCS(0) {
				st := statement("hello", "o3", 2_000_000+i)
				sum := sha256.Sum256([]byte(fmt.Sprint("gossip bench image ", i)))
				st.ContainerDigest = "sha256:" + hex.EncodeToString(sum[:])
				st.RecipeID = st.Recipe().ID()
				c, err := attest.Sign(keys[i%len(keys)], st)
				if err != nil {
					panic(err)
				}
				claims[i] = c
			}
		}()
	}
	wg.Wait()
	for _, rate := range []int{2000, 4000, 8000} {
		b.Run(fmt.Sprintf("offered=%d/s", rate), func(b *testing.B) {
			for range b.N {
				gossipIngestOnce(b, claims, publishers, rate)
			}
		})
	}
}

// gossipIngestOnce offers the claims at rate claims/s in total, spread
// over the publishers, and reports what the receiver stored and how fast.
func gossipIngestOnce(b *testing.B, claims []*attest.Claim, publishers, rate int) {
	total := len(claims)
	st, err := store.Open(filepath.Join(b.TempDir(), "recv.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	cfg := nodeConfig()
	cfg.Subscribe = []string{"hello/o3"}
	cfg.Limits.GossipPerSecond, cfg.Limits.GossipBurst = 1e6, 1e6
	recv, err := p2p.New(context.Background(), cfg, p2p.Deps{Claims: bboltClaims{st}})
	if err != nil {
		b.Fatal(err)
	}
	defer recv.Close()
	// Publishers join the topic without subscribing: they send through
	// gossipsub's fanout and receive nothing back, so the CPU measured is
	// the receiver's plus the publishers' own signing and validation.
	pubs := newNodes(b, publishers, func(c *p2p.Config) { c.Subscribe = nil })
	for _, p := range pubs {
		if err := p.Connect(context.Background(), recv.AddrInfo()); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range pubs {
		for {
			if _, ok := p.PeerScore(recv.ID()); ok {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("no heartbeat with the receiver")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	var pw sync.WaitGroup
	per := time.Duration(float64(time.Second) * float64(publishers) / float64(rate)) // interval per publisher
	for k, p := range pubs {
		pw.Add(1)
		go func() {
			defer pw.Done()
			next := time.Now()
			for i := k; i < total; i += publishers {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				next = next.Add(per)
				_ = p.Publish(context.Background(), claims[i])
			}
		}()
	}
	pw.Wait()
	offered := time.Since(start)
	var stored uint64
	quiet := time.Now()
	for time.Since(quiet) < 3*time.Second { // until nothing arrives for 3 s
		s, err := st.Stats()
		if err != nil {
			b.Fatal(err)
		}
		if s.Claims != stored {
			stored, quiet = s.Claims, time.Now()
		}
		if s.Claims >= uint64(total) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	el := quiet.Sub(start)
	if stored >= uint64(total) {
		el = time.Since(start)
	}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(total)/offered.Seconds(), "offered/s")
	b.ReportMetric(float64(stored)/el.Seconds(), "stored/s")
	b.ReportMetric(float64(uint64(total)-stored), "dropped")
	b.ReportMetric(cpu.Seconds(), "cpu-s")
	for _, p := range pubs {
		_ = p.Close()
	}
}
