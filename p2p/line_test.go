package p2p

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLineForwarding(t *testing.T) {
	bid := testIdentity(t)
	var nodes []*Node
	var stores []*MemStore
	for i := 0; i < 4; i++ {
		st := NewMemStore()
		var opts []Option
		if i == 1 {
			opts = append(opts, WithLogger(debugLog))
		}
		nodes = append(nodes, testNode(t, st, Config{Subscribe: []string{"hello/o3"}}, opts...))
		stores = append(stores, st)
	}
	ctx := context.Background()
	for i := 1; i < len(nodes); i++ {
		require.NoError(t, nodes[i].Connect(ctx, nodes[i-1].AddrInfo()))
	}
	eventually(t, 20*time.Second, "heartbeats", func() bool {
		for i, n := range nodes {
			for _, p := range n.Host().Network().Peers() {
				if _, ok := n.PeerScore(p); !ok {
					return false
				}
			}
			_ = i
		}
		return true
	})
	// no sleep
	c := testClaim(t, bid, "hello", "o3", 1)
	require.NoError(t, nodes[0].Publish(ctx, c))
	eventually(t, 10*time.Second, "claim at the end of the line", func() bool {
		ok, _ := stores[len(stores)-1].Has(c.ID)
		return ok
	})
}
