package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	mrand "math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/p2p"
	"github.com/lebowski-dist/lebowski/p2p/p2ptest"
)

// Claims published by a few nodes of a sparse 12-node network reach every
// node through gossip alone (periodic sync is off and stores are empty at
// connect time, so on-connect sync moves nothing).
func TestGossipReachesEveryNode(t *testing.T) {
	nodes := newNodes(t, 12, nil)
	sparseConnect(t, nodes, 3, mrand.New(mrand.NewPCG(1, 2)))
	waitReady(t, nodes)
	bs := builders(t)
	var claims []*attest.Claim
	for i, pub := range []*tnode{nodes[0], nodes[5], nodes[11]} {
		for j, topic := range [][2]string{{"hello", "o3"}, {"hello", ""}, {"nginx", "http3"}} {
			c := newClaim(t, bs[(i+j)%len(bs)], topic[0], topic[1])
			publish(t, pub, c)
			claims = append(claims, c)
		}
	}
	waitStored(t, nodes, claims, 60*time.Second)
	for _, n := range nodes {
		assert.Equal(t, len(claims), n.store.Len(), "node %s stores exactly the published claims", n.ID())
	}
}

// A node started after the claims were published catches up through
// /lebowski/sync/1 when it connects to any one node.
func TestLateNodeCatchesUp(t *testing.T) {
	nodes := newNodes(t, 4, nil)
	connectAll(t, nodes)
	waitReady(t, nodes)
	bs := builders(t)
	var claims []*attest.Claim
	for i := 0; i < 60; i++ {
		c := newClaim(t, bs[i%len(bs)], []string{"hello", "nginx"}[i%2], []string{"o3", "http3"}[i%2])
		publish(t, nodes[i%len(nodes)], c)
		claims = append(claims, c)
	}
	waitStored(t, nodes, claims, 60*time.Second)

	late := newNodes(t, 1, nil)[0]
	connect(t, late, nodes[2])
	waitStored(t, []*tnode{late}, claims, 60*time.Second)
	assert.Equal(t, nodes[0].store.AllIDs(), late.store.AllIDs())
}

// Two halves cut apart keep publishing; after the partition heals (only
// two links come back) every node converges to the union through the
// on-connect and periodic (here every second) catch-up sync.
func TestPartitionHeals(t *testing.T) {
	nodes := newNodes(t, 8, func(c *p2p.Config) { c.SyncInterval = time.Second })
	connectAll(t, nodes)
	waitReady(t, nodes)
	left, right := nodes[:4], nodes[4:]
	for _, a := range left {
		for _, b := range right {
			a.Block(b.ID())
			b.Block(a.ID())
		}
	}
	for _, a := range left {
		attesttest.Eventually(t, 20*time.Second, "partition", func() bool {
			for _, b := range right {
				if len(a.Host().Network().ConnsToPeer(b.ID())) > 0 {
					return false
				}
			}
			return true
		})
	}
	bs := builders(t)
	var lc, rc []*attest.Claim
	for i := 0; i < 5; i++ {
		c := newClaim(t, bs[0], "hello", "o3")
		publish(t, left[i%len(left)], c)
		lc = append(lc, c)
		c = newClaim(t, bs[1], "hello", "o3")
		publish(t, right[i%len(right)], c)
		rc = append(rc, c)
	}
	waitStored(t, left, lc, 30*time.Second)
	waitStored(t, right, rc, 30*time.Second)
	for _, n := range left {
		for _, c := range rc {
			assert.False(t, n.has(c.ID), "claim crossed the partition")
		}
	}

	for _, a := range left {
		for _, b := range right {
			a.Unblock(b.ID())
			b.Unblock(a.ID())
		}
	}
	connect(t, left[0], right[0])
	connect(t, left[1], right[1])
	all := append(append([]*attest.Claim{}, lc...), rc...)
	waitStored(t, nodes, all, 60*time.Second)
	want := nodes[0].store.AllIDs()
	for _, n := range nodes {
		assert.Equal(t, want, n.store.AllIDs())
	}
}

// A misbehaving node publishes forged, oversize, garbage and off-topic
// messages straight through gossipsub (it runs no validator). Honest nodes
// reject them: nothing is stored or forwarded, and the sender's score
// drops below zero at the node it is connected to.
func TestMisbehavingPeerIsRejected(t *testing.T) {
	honest := newNodes(t, 4, nil)
	connectAll(t, honest)
	waitReady(t, honest)

	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	evil, err := pubsub.NewGossipSub(ctx, h) // default options: signs, no validators
	require.NoError(t, err)
	topicName, err := p2p.TopicFromSpec("hello/o3")
	require.NoError(t, err)
	topic, err := evil.Join(topicName)
	require.NoError(t, err)
	_, err = topic.Subscribe()
	require.NoError(t, err)
	otherName, _ := p2p.TopicFromSpec("nginx/http3")
	other, err := evil.Join(otherName)
	require.NoError(t, err)
	_, err = other.Subscribe()
	require.NoError(t, err)
	require.NoError(t, h.Connect(ctx, honest[0].AddrInfo()))
	attesttest.Eventually(t, 30*time.Second, "evil peer scored", func() bool { _, ok := honest[0].PeerScore(h.ID()); return ok })

	bs := builders(t)
	good := newClaim(t, bs[0], "hello", "o3")
	goodWire, err := good.Wire()
	require.NoError(t, err)
	forged := bytes.Replace(goodWire, []byte(`"payload":"`), []byte(`"payload":"eyJ0`), 1) // payload no longer matches the signature
	forgedSig := forgeSignature(t, good)
	oversize := append(append([]byte(`{"payload_type":"x","pad":"`), bytes.Repeat([]byte("a"), attest.MaxEnvelopeSize+10)...), '"', '}')
	garbage := make([]byte, 512)
	_, _ = rand.Read(garbage)

	// Publish bad messages until the honest node has penalised the sender
	// (the first ones may be dropped by the evil node's own router before
	// its first heartbeat).
	bad := [][]byte{forged, forgedSig, oversize, garbage}
	attesttest.Eventually(t, 30*time.Second, "evil score below zero", func() bool {
		for i, m := range bad {
			m = append(m, byte(' '), byte('0'+i)) // new message ID each round
			_ = topic.Publish(ctx, m)
		}
		// A valid claim on the wrong topic is rejected too.
		_ = other.Publish(ctx, goodWire)
		s, ok := honest[0].PeerScore(h.ID())
		return ok && s < 0
	})
	// Ordering barrier: an honest claim published after the bad ones
	// reaches everyone; by then the bad ones would have too.
	barrier := newClaim(t, bs[1], "hello", "o3")
	publish(t, honest[0], barrier)
	waitStored(t, honest, []*attest.Claim{barrier}, 30*time.Second)
	for _, n := range honest {
		assert.Equal(t, []string{barrier.ID}, n.store.AllIDs(), "node %s stored only the honest claim", n.ID())
	}
	s, _ := honest[0].PeerScore(h.ID())
	t.Logf("evil peer score at its honest neighbour: %.1f", s)
	for _, n := range honest[1:] {
		assert.Empty(t, n.Host().Network().ConnsToPeer(h.ID()), "evil node is only connected to node 0")
	}
}

// forgeSignature returns the wire form of c with its statement changed but
// its original signature kept.
func forgeSignature(t *testing.T, c *attest.Claim) []byte {
	t.Helper()
	st := *c.Statement
	st.Artifacts = []attest.Artifact{{Name: st.Artifacts[0].Name, SHA256: strings.Repeat("e", 64)}}
	payload, err := st.Canonical()
	require.NoError(t, err)
	env := *c.Envelope
	env.Payload = payload
	b, err := env.Encode()
	require.NoError(t, err)
	_, err = attest.Verify(b, nil, attest.VerifyOptions{})
	require.ErrorIs(t, err, attest.ErrInvalidSignature, "the forgery must fail only on its signature")
	return b
}

// A node restarted with the same peer key and store keeps its claims and
// peer ID, reconnects to its bootstrap peer and catches up on what it
// missed while down.
func TestRestartKeepsStateAndReconnects(t *testing.T) {
	hub := newNodes(t, 2, nil)
	connectAll(t, hub)
	waitReady(t, hub)
	keyPath := filepath.Join(t.TempDir(), "peer.key")
	cfg := nodeConfig()
	cfg.IdentityPath = keyPath
	cfg.BootstrapPeers = []string{hub[0].Addrs()[0].String()}
	cfg.ReconnectInterval = 200 * time.Millisecond
	st := p2ptest.NewMemStore()
	n1 := startNode(t, st, nil, cfg)
	id := n1.ID()
	attesttest.Eventually(t, 30*time.Second, "bootstrap connection", func() bool { return len(n1.Peers()) > 0 })
	waitReady(t, append(hub, n1))

	bs := builders(t)
	before := newClaim(t, bs[0], "hello", "o3")
	publish(t, hub[1], before)
	waitStored(t, []*tnode{n1}, []*attest.Claim{before}, 30*time.Second)
	require.NoError(t, n1.Close())

	missed := newClaim(t, bs[1], "hello", "o3")
	publish(t, hub[1], missed)
	waitStored(t, hub, []*attest.Claim{missed}, 30*time.Second)

	n2 := startNode(t, st, nil, cfg)
	assert.Equal(t, id, n2.ID(), "same identity file, same peer ID")
	assert.True(t, n2.has(before.ID), "state kept across restart")
	attesttest.Eventually(t, 30*time.Second, "reconnect", func() bool { return len(n2.Peers()) > 0 })
	waitStored(t, []*tnode{n2}, []*attest.Claim{missed}, 30*time.Second)

	// And it receives new gossip again.
	waitReady(t, append(hub, n2))
	after := newClaim(t, bs[2], "hello", "o3")
	publish(t, hub[1], after)
	waitStored(t, []*tnode{n2}, []*attest.Claim{after}, 30*time.Second)
}

// Blobs referenced by claims can be fetched from any peer holding them.
func TestBlobAcrossNodes(t *testing.T) {
	nodes := newNodes(t, 2, nil)
	connectAll(t, nodes)
	log := bytes.Repeat([]byte("dpkg-buildpackage: info: binary-only upload\n"), 5000)
	c, err := nodes[0].store.PutBlob(log)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := nodes[1].FetchBlob(ctx, nodes[0].ID(), c)
	require.NoError(t, err)
	assert.Equal(t, log, got)
}
