package p2p

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/p2p/p2ptest"
)

func testIdentity(t testing.TB) *attest.Identity {
	t.Helper()
	return attesttest.Fresh(t, 1)[0]
}

func testClaim(t testing.TB, id *attest.Identity, pkg, opinion string, i int) *attest.Claim {
	t.Helper()
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%s/%d", pkg, opinion, i)))
	s := &attest.Statement{
		Type: attest.TypeRebuildV1, Package: pkg, Version: "1.0-1", DebianVersion: "1.0-1", Suite: "bookworm", Arch: "amd64",
		Opinion:            attest.OpinionRef{Name: opinion, CID: "bafkreitest", Purity: vocab.PurityPureCompilation},
		DebianSourceSHA256: "0000000000000000000000000000000000000000000000000000000000000001",
		ContainerDigest:    "sha256:0000000000000000000000000000000000000000000000000000000000000002",
		Result:             attest.ResultSuccess,
		Artifacts:          []attest.Artifact{{Name: pkg + "_1.0-1_amd64.deb", SHA256: hex.EncodeToString(sum[:])}},
		Timestamp:          time.Date(2026, 1, 15, 10, 30, 0, 0, time.UTC),
	}
	c, err := attest.Sign(id, s)
	require.NoError(t, err)
	return c
}

func testNode(t testing.TB, st *p2ptest.MemStore, cfg Config, opts ...Option) *Node {
	t.Helper()
	if cfg.ListenAddrs == nil {
		cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = -1
	}
	ctx := context.Background() // the node's lifetime: Close (at cleanup) ends it
	n, err := New(ctx, cfg, Deps{Claims: st, Blobs: st}, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	return n
}
