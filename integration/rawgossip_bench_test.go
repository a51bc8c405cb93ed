package integration

import (
	"context"
	"encoding/binary"
	mrand "math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// rawPropagation is BenchmarkPropagation's baseline: the same number of
// libp2p hosts on loopback TCP, linked by the same sparse pattern (same
// seed), running plain gossipsub with its defaults (signed messages, no
// validator, no store), publishing payloads of the size of a claim on the
// wire. It returns one publish → received-by-all latency per message.
func rawPropagation(b *testing.B, n, size, msgs int) []time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hosts := make([]host.Host, n)
	topics := make([]*pubsub.Topic, n)
	var mu sync.Mutex
	count := map[uint64]int{}
	done := map[uint64]chan struct{}{}
	for i := range hosts {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { h.Close() })
		hosts[i] = h
		ps, err := pubsub.NewGossipSub(ctx, h)
		if err != nil {
			b.Fatal(err)
		}
		if topics[i], err = ps.Join("raw-bench"); err != nil {
			b.Fatal(err)
		}
		sub, err := topics[i].Subscribe(pubsub.WithBufferSize(1024))
		if err != nil {
			b.Fatal(err)
		}
		self := h.ID()
		go func() {
			for {
				m, err := sub.Next(ctx)
				if err != nil {
					return
				}
				if m.ReceivedFrom == self || len(m.Data) < 8 {
					continue
				}
				k := binary.BigEndian.Uint64(m.Data)
				mu.Lock()
				count[k]++
				if count[k] == n-1 && done[k] != nil {
					close(done[k])
				}
				mu.Unlock()
			}
		}()
	}
	link := func(a, c host.Host) {
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		defer ccancel()
		if err := a.Connect(cctx, peer.AddrInfo{ID: c.ID(), Addrs: c.Addrs()}); err != nil {
			b.Fatalf("connect: %v", err)
		}
	}
	rng := mrand.New(mrand.NewPCG(uint64(n), 7)) // sparseConnect's pattern
	for i := 1; i < n; i++ {
		link(hosts[i], hosts[i-1])
		for j := 1; j < 4; j++ {
			if o := rng.IntN(n); o != i {
				link(hosts[i], hosts[o])
			}
		}
	}
	send := func(k uint64, from int) chan struct{} {
		ch := make(chan struct{})
		mu.Lock()
		done[k] = ch
		mu.Unlock()
		data := make([]byte, size)
		binary.BigEndian.PutUint64(data, k)
		if err := topics[from].Publish(ctx, data); err != nil {
			b.Fatal(err)
		}
		return ch
	}
	// Meshes form within a few heartbeats: wait until a message reaches
	// every host, then two more heartbeats.
	for k := uint64(1 << 62); ; k++ {
		select {
		case <-send(k, 0):
		case <-time.After(2 * time.Second):
			continue
		}
		break
	}
	time.Sleep(2 * time.Second)
	lat := make([]time.Duration, 0, msgs)
	for i := range msgs {
		start := time.Now()
		select {
		case <-send(uint64(i), rng.IntN(n)):
		case <-time.After(30 * time.Second):
			b.Fatalf("raw message %d did not reach every host in 30 s", i)
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat
}

// reportLatency reports p50/p99 of sorted latencies with a prefix.
func reportLatency(b *testing.B, prefix string, lat []time.Duration) {
	b.ReportMetric(float64(pct(lat, 50).Microseconds())/1000, prefix+"p50-ms")
	b.ReportMetric(float64(pct(lat, 99).Microseconds())/1000, prefix+"p99-ms")
}
