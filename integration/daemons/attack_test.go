package daemons

// Hardening drills (issue 6) that run in-process against real daemons
// (bbolt store, libp2p, local API) with the harness of package daemontest
// and its fake builder (buildertest.Fake).
// Each test is one line of docs/SECURITY.md.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/builder/buildertest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/core/rpc"
	"github.com/lebowski-dist/lebowski/cmd/node/daemon/daemontest"
	"github.com/lebowski-dist/lebowski/opinions"
	"github.com/lebowski-dist/lebowski/p2p"
)

func wireOf(t *testing.T, c *attest.Claim) []byte {
	t.Helper()
	w, err := c.Wire()
	require.NoError(t, err)
	return w
}

var sybilOnce struct {
	sync.Once
	ids []*attest.Identity
}

// sybilKeys returns 1,000 fresh builder keys, made once per test binary
// (≈ 9 ms each on the 2-core CI machine).
func sybilKeys(t *testing.T) []*attest.Identity {
	t.Helper()
	sybilOnce.Do(func() { sybilOnce.ids = attesttest.Fresh(t, 1000) })
	require.Len(t, sybilOnce.ids, 1000)
	return sybilOnce.ids
}

// TestAttackSybilFlood: 1,000 fresh keys sign a malicious hash for the
// recipe 3 trusted daemons agree on. The flood spreads by sync but never
// counts: the honest hash stays SAFE, the malicious one is DO NOT INSTALL.
func TestAttackSybilFlood(t *testing.T) {
	ds := daemontest.Start(t, 3, daemontest.Options{})
	daemontest.WaitConsensus(t, ds, "hello/o3", 3)
	ctx := context.Background()
	honest := honestResult(t).Artifacts[0].SHA256
	evil := buildertest.Hex64("backdoored hello")

	start := time.Now()
	sybils := sybilKeys(t)
	wires := make([][]byte, len(sybils))
	for i, id := range sybils {
		wires[i] = wireOf(t, signFor(t, id, "sybil-peer-"+strconv.Itoa(i), evil, time.Now(), nil))
	}
	t.Logf("1000 sybil keys generated and signed in %s", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	res, err := ds[0].Client(t).ImportClaims(ctx, wires)
	require.NoError(t, err)
	for _, r := range res {
		require.Equal(t, "new", r.Status, r.Error)
	}
	t.Logf("1000 sybil claims imported at node 0 in %s", time.Since(start).Round(time.Millisecond))

	// The flood reaches every node (sync) ...
	start = time.Now()
	for i, td := range ds {
		c := td.Client(t)
		require.Eventually(t, func() bool {
			st, err := c.Status(ctx)
			return err == nil && st.Claims == 1003
		}, 60*time.Second, 100*time.Millisecond, "node %d holds the 1003 claims", i)
	}
	t.Logf("flood synced to all 3 nodes within %s", time.Since(start).Round(time.Millisecond))

	// ... and changes no verdict anywhere.
	for i, td := range ds {
		c := td.Client(t)
		vr := verify(t, c, honest)
		require.Equal(t, consensus.Safe, vr.Verdict, "node %d, honest hash: %v", i, vr.Reasons)
		vr = verify(t, c, evil)
		require.Contains(t, []consensus.Verdict{consensus.DoNotInstall, consensus.Unverified}, vr.Verdict, "node %d, malicious hash: %v", i, vr.Reasons)
		t.Logf("node %d: honest %s, malicious %s", i, consensus.Safe, vr.Verdict)

		info, err := c.Info(ctx, core.InfoQuery{Package: "hello", Opinion: "o3"})
		require.NoError(t, err)
		rep := info.Recipes[0].Report
		require.Len(t, rep.Consensus.Trusted, 3)
		require.Equal(t, honest, rep.Consensus.Artifacts[0].SHA256)
		require.False(t, rep.Conflict, "unvetted dissent is not a conflict")
		unvetted := 0
		for _, g := range rep.Groups {
			unvetted += len(g.Unvetted)
		}
		require.Equal(t, 1000, unvetted, "node %d lists the flood as unvetted", i)
		require.GreaterOrEqual(t, rep.Score, consensus.DefaultThreshold)
	}
}

// TestAttackSybilFloodOtherRecipe: the same 1,000 keys sign claims that
// name opinion o3 but another recipe (a tampered opinion CID, or another
// build image). A separate recipe must not displace the one the trusted
// builders agree on when `info`/`verify` pick the recipe to evaluate.
func TestAttackSybilFloodOtherRecipe(t *testing.T) {
	ds := daemontest.Start(t, 3, daemontest.Options{})
	daemontest.WaitConsensus(t, ds, "hello/o3", 3)
	ctx := context.Background()
	honest := honestResult(t).Artifacts[0].SHA256
	evil := buildertest.Hex64("backdoored hello")
	sybils := sybilKeys(t)
	wires := make([][]byte, len(sybils))
	for i, id := range sybils {
		wires[i] = wireOf(t, signFor(t, id, "sybil-peer-"+strconv.Itoa(i), evil, time.Now(), func(r *builder.Result, o *opinions.Opinion) {
			r.Recipe.ImageDigest = "sha256:" + buildertest.Hex64("evil image")
		}))
	}
	c := ds[0].Client(t)
	_, err := c.ImportClaims(ctx, wires)
	require.NoError(t, err)
	vr := verify(t, c, honest)
	require.Equal(t, consensus.Safe, vr.Verdict, "honest hash after a flood for another recipe: %v", vr.Reasons)
	vr = verify(t, c, evil)
	require.NotEqual(t, consensus.Safe, vr.Verdict, vr.Reasons)
	info, err := c.Info(ctx, core.InfoQuery{Package: "hello", Opinion: "o3"})
	require.NoError(t, err)
	require.NotNil(t, info.Recipes[0].Report.Consensus, "info shows the trusted recipe, not the flood's")
	require.Len(t, info.Recipes[0].Report.Consensus.Trusted, 3)
}

// TestAttackEquivocation: a trusted key signs two hashes for one recipe
// and hands them to different nodes. Every node ends up with both claims
// (the proof spreads by sync), keeps the proof, flags the key and counts
// it for nothing.
func TestAttackEquivocation(t *testing.T) {
	ds := daemontest.Start(t, 3, daemontest.Options{})
	daemontest.WaitConsensus(t, ds, "hello/o3", 3)
	ctx := context.Background()
	honest := honestResult(t).Artifacts[0].SHA256
	ids := attesttest.Fresh(t, 1)
	x := ids[0]
	for _, td := range ds {
		_, err := td.Client(t).ImportKey(ctx, x.PublicKey(), attest.TrustTrusted, "drill")
		require.NoError(t, err)
	}
	a := signFor(t, x, "equivocator", honest, time.Now(), nil)
	b := signFor(t, x, "equivocator", buildertest.Hex64("the other hash"), time.Now(), nil)
	r, err := ds[0].Client(t).ImportClaims(ctx, [][]byte{wireOf(t, a)})
	require.NoError(t, err)
	require.Equal(t, "new", r[0].Status)
	r, err = ds[2].Client(t).ImportClaims(ctx, [][]byte{wireOf(t, b)})
	require.NoError(t, err)
	require.Equal(t, "new", r[0].Status)

	for i, td := range ds {
		require.Eventually(t, func() bool {
			ha, _ := td.API().Store().Has(a.ID)
			hb, _ := td.API().Store().Has(b.ID)
			return ha && hb
		}, 60*time.Second, 100*time.Millisecond, "node %d holds both claims", i)
		proofs, err := td.API().Store().Equivocations(x.Fingerprint())
		require.NoError(t, err)
		require.NotEmpty(t, proofs, "node %d keeps the proof", i)
		keys, err := td.Client(t).Keys(ctx)
		require.NoError(t, err)
		flagged := false
		for _, k := range keys {
			if k.Fingerprint == x.Fingerprint() {
				flagged = k.Equivocating
			}
		}
		require.True(t, flagged, "node %d flags the key in its key list", i)
		info, err := td.Client(t).Info(ctx, core.InfoQuery{Package: "hello", Opinion: "o3"})
		require.NoError(t, err)
		rep := info.Recipes[0].Report
		require.Contains(t, rep.Equivocators, x.Fingerprint(), "node %d", i)
		require.Len(t, rep.Consensus.Trusted, 3, "node %d: the equivocator's agreeing claim counts zero", i)
		require.False(t, rep.Conflict, "node %d: its other hash is no dissent", i)
		for _, g := range rep.Groups {
			for _, bc := range append(g.Trusted, g.Unvetted...) {
				require.NotEqual(t, x.Fingerprint(), bc.Fingerprint, "node %d lists the equivocator in a group", i)
			}
		}
	}
}

// TestAttackReplayFutureAndTamperedOpinion: future timestamps are refused
// and never stored; an exact replay is a no-op; a claim naming a tampered
// opinion CID is stored as its own recipe and does not touch the real
// recipe's consensus.
func TestAttackReplayFutureAndTamperedOpinion(t *testing.T) {
	ds := daemontest.Start(t, 3, daemontest.Options{})
	daemontest.WaitConsensus(t, ds, "hello/o3", 3)
	ctx := context.Background()
	c := ds[0].Client(t)
	honest := honestResult(t).Artifacts[0].SHA256
	before, err := c.Status(ctx)
	require.NoError(t, err)
	ids := attesttest.Fresh(t, 1)
	for _, td := range ds {
		_, err := td.Client(t).ImportKey(ctx, ids[0].PublicKey(), attest.TrustTrusted, "drill")
		require.NoError(t, err)
	}

	for _, tc := range []struct {
		desc string
		skew time.Duration
		ok   bool
	}{
		{"one hour ahead", time.Hour, false},
		{"one year ahead", 365 * 24 * time.Hour, false},
		{"11 minutes ahead (skew is 10)", 11 * time.Minute, false},
		{"5 minutes ahead (within skew)", 5 * time.Minute, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			sha := buildertest.Hex64("future " + tc.desc)
			if tc.ok {
				sha = honest // agrees: the real recipe then has 4 trusted builders
			}
			cl := signFor(t, ids[0], "p", sha, time.Now().Add(tc.skew), nil)
			res, err := c.ImportClaims(ctx, [][]byte{wireOf(t, cl)})
			require.NoError(t, err)
			has, err := ds[0].API().Store().Has(cl.ID)
			require.NoError(t, err)
			if tc.ok {
				require.Equal(t, "new", res[0].Status, res[0].Error)
				require.True(t, has)
				return
			}
			require.Equal(t, "rejected", res[0].Status)
			require.Contains(t, res[0].Error, "future")
			require.False(t, has, "a rejected claim is not stored")
		})
	}
	// Replay: the exact bytes of a stored claim, from another node.
	own, err := ds[1].API().Store().ByBuilder(ds[1].Identity().Fingerprint())
	require.NoError(t, err)
	require.Len(t, own, 1)
	w, ok, err := ds[1].API().Store().GetWire(own[0].ID)
	require.NoError(t, err)
	require.True(t, ok)
	mid, err := c.Status(ctx)
	require.NoError(t, err)
	for range 3 {
		res, err := c.ImportClaims(ctx, [][]byte{w})
		require.NoError(t, err)
		require.Equal(t, "duplicate", res[0].Status)
	}
	after, err := c.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, mid.Claims, after.Claims, "replays add nothing")
	require.Equal(t, before.Claims+1, after.Claims, "only the within-skew claim was added")

	// Tampered opinion: name o3, but another CID (e.g. a modified o3.yaml).
	tampered := make([]*attest.Claim, 0, 5)
	fakeIDs := attesttest.Fresh(t, 5)
	for i, id := range fakeIDs {
		_, err := c.ImportKey(ctx, id.PublicKey(), attest.TrustTrusted, "drill")
		require.NoError(t, err)
		tampered = append(tampered, signFor(t, id, "tp"+strconv.Itoa(i), buildertest.Hex64("tampered o3"), time.Now(), func(r *builder.Result, o *opinions.Opinion) {
			o.Build.CFlags.Append = []string{"-O3", "-fno-stack-protector"}
			r.Recipe.OpinionCID = o.CID()
		}))
	}
	require.NotEqual(t, helloO3(t).CID(), tampered[0].Statement.Opinion.CID)
	for _, cl := range tampered {
		res, err := c.ImportClaims(ctx, [][]byte{wireOf(t, cl)})
		require.NoError(t, err)
		require.Equal(t, "new", res[0].Status, "a tampered opinion CID is a valid claim about another recipe")
	}
	info, err := c.Info(ctx, core.InfoQuery{Package: "hello", Opinion: "o3", All: true})
	require.NoError(t, err)
	var real, other *core.RecipeInfo
	for i := range info.Recipes {
		switch info.Recipes[i].Recipe.Opinion.CID {
		case helloO3(t).CID():
			real = &info.Recipes[i]
		case tampered[0].Statement.Opinion.CID:
			other = &info.Recipes[i]
		}
	}
	require.NotNil(t, real)
	require.NotNil(t, other, "stored as a separate recipe")
	require.Len(t, real.Report.Consensus.Trusted, 4, "the real recipe: 3 daemons + the drill key's 5-min-ahead claim, none of the tampered ones")
	require.Equal(t, honest, real.Report.Consensus.Artifacts[0].SHA256)
	require.Len(t, other.Report.Consensus.Trusted, 5)
	// verify (no recipe ID given) evaluates the recipe with the most
	// trusted builders: here the tampered one (5 > 4), whose CID is not the
	// opinion this node holds. Record what happens.
	vr := verify(t, c, honest)
	t.Logf("verify of the honest hash with a 5-key tampered-CID recipe present: %s (recipe %s, opinion cid %s; local o3 cid %s)",
		vr.Verdict, vr.Recipe.Recipe.RecipeID[:12], vr.Recipe.Recipe.Opinion.CID, helloO3(t).CID())
	vr = verify(t, c, buildertest.Hex64("tampered o3"))
	t.Logf("verify of the tampered recipe's hash: %s", vr.Verdict)

	// What `lebowski verify` sends: the local opinion's CID pins the recipe,
	// so the tampered claims cannot decide, however many trusted keys sign.
	name := honestResult(t).Artifacts[0].Name
	pinned := func(sha string) *core.VerifyResult {
		vr, err := c.Verify(ctx, core.VerifyRequest{Package: "hello", DebianVersion: "2.10-3", Opinion: "o3", OpinionCID: helloO3(t).CID(), FileName: name, SHA256: sha})
		require.NoError(t, err)
		return vr
	}
	vr = pinned(honest)
	require.Equal(t, consensus.Safe, vr.Verdict, vr.Reasons)
	require.Equal(t, helloO3(t).CID(), vr.Recipe.Recipe.Opinion.CID)
	vr = pinned(buildertest.Hex64("tampered o3"))
	require.Equal(t, consensus.DoNotInstall, vr.Verdict, vr.Reasons)
}

// TestAttackTwoCompromisedOfFive: two of five trusted builders publish a
// backdoored hash. The majority keeps the consensus, but trusted dissent
// caps the score: neither hash is SAFE (the attack blocks, never installs).
func TestAttackTwoCompromisedOfFive(t *testing.T) {
	ds := daemontest.Start(t, 5, daemontest.Options{Evil: map[int]bool{1: true, 3: true}})
	ctx := context.Background()
	c := ds[0].Client(t)
	var info *core.InfoResult
	require.Eventually(t, func() bool {
		var err error
		info, err = c.Info(ctx, core.InfoQuery{Package: "hello", Opinion: "o3"})
		return err == nil && info.Recipes[0].Recipe.Builders == 5
	}, 60*time.Second, 100*time.Millisecond)
	rep := info.Recipes[0].Report
	require.NotNil(t, rep.Consensus)
	require.Len(t, rep.Consensus.Trusted, 3, "the honest majority")
	require.Len(t, rep.Dissenters, 2)
	require.True(t, rep.Conflict)
	require.LessOrEqual(t, rep.Score, consensus.DissentCap)
	honest := honestResult(t).Artifacts[0].SHA256
	evilRes, _ := (&buildertest.Fake{Evil: true}).Build(ctx, builder.Request{Package: "hello", Opinion: helloO3(t)})
	require.Equal(t, consensus.DoNotInstall, verify(t, c, evilRes.Artifacts[0].SHA256).Verdict)
	require.Equal(t, consensus.DoNotInstall, verify(t, c, honest).Verdict, "trusted dissent blocks even the majority hash")
}

// --- gossip garbage -------------------------------------------------------

// TestAttackGossipGarbage: a libp2p peer publishes 5,000 bad messages in
// ≤ 10 s on the daemon's topic: random bytes, truncated claims, oversize
// envelopes and well-formed claims with forged signatures. The daemon
// stays up, stores none, keeps its heap bounded and scores the sender
// negative.
func TestAttackGossipGarbage(t *testing.T) {
	ds := daemontest.Start(t, 1, daemontest.Options{})
	d := ds[0].Daemon
	ctx := context.Background()
	c := ds[0].Client(t)
	require.Eventually(t, func() bool { st, err := c.Status(ctx); return err == nil && st.Claims == 1 }, 30*time.Second, 50*time.Millisecond)

	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	pctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	evil, err := pubsub.NewGossipSub(pctx, h, pubsub.WithPeerOutboundQueueSize(8192), pubsub.WithMaxMessageSize(1<<20))
	require.NoError(t, err)
	name, err := p2p.TopicFromSpec("hello/o3")
	require.NoError(t, err)
	topic, err := evil.Join(name)
	require.NoError(t, err)
	_, err = topic.Subscribe()
	require.NoError(t, err)
	// The daemon's address and, below, its scores come through the API
	// (reading d.net from the test goroutine would race with Run).
	st0, err := c.Status(ctx)
	require.NoError(t, err)
	ai, err := peer.AddrInfoFromString(st0.Addrs[0])
	require.NoError(t, err)
	require.NoError(t, h.Connect(ctx, *ai))
	require.Eventually(t, func() bool {
		for _, p := range topic.ListPeers() {
			if p == ai.ID {
				return true
			}
		}
		return false
	}, 20*time.Second, 50*time.Millisecond, "evil peer sees the daemon on the topic")
	time.Sleep(1500 * time.Millisecond) // a gossipsub heartbeat: the daemon is in the evil mesh

	// Templates: one valid claim to truncate and forge.
	ids := attesttest.Fresh(t, 1)
	valid := signFor(t, ids[0], "evil", buildertest.Hex64("x"), time.Now(), nil)
	vw := wireOf(t, valid)
	forge := func() []byte {
		st := *valid.Statement
		st.Artifacts = []attest.Artifact{{Name: st.Artifacts[0].Name, SHA256: buildertest.Hex64(randString(16))}}
		payload, err := st.Canonical()
		require.NoError(t, err)
		env := *valid.Envelope
		env.Payload = payload
		b, err := env.Encode()
		require.NoError(t, err)
		return b
	}
	_, err = attest.Verify(forge(), nil, attest.VerifyOptions{})
	require.ErrorIs(t, err, attest.ErrInvalidSignature, "the forgery fails only on its signature")

	runtimeGC()
	heapBefore := heapInUse()
	const total = 5000
	kinds := map[string]int{}
	start := time.Now()
	for i := range total {
		var m []byte
		switch i % 4 {
		case 0:
			m = make([]byte, 1+i%2048)
			_, _ = rand.Read(m)
			kinds["random"]++
		case 1:
			m = append(append([]byte(nil), vw[:1+i%(len(vw)-1)]...), []byte(randString(4))...)
			kinds["truncated"]++
		case 2:
			m = []byte(`{"key":"","payload":"` + base64.StdEncoding.EncodeToString([]byte(randString(80<<10))) + `","payload_type":"application/vnd.lebowski.rebuild.v1+json","signature":"x"}`)
			kinds["oversize"]++
		case 3:
			m = forge()
			kinds["bad signature"]++
		}
		if err := topic.Publish(pctx, m); err != nil {
			t.Fatalf("evil publish %d: %v", i, err)
		}
		if i%50 == 49 { // ≈ 5,000 messages in ≤ 10 s
			time.Sleep(60 * time.Millisecond)
		}
	}
	sent := time.Since(start)
	var score float64
	require.Eventually(t, func() bool {
		var ok bool
		score, ok = apiScore(t, c, h.ID())
		return ok && score < 0
	}, 20*time.Second, 100*time.Millisecond, "the sender's score goes negative")
	time.Sleep(2 * time.Second) // let queued validations finish
	runtimeGC()
	heapAfter := heapInUse()
	st, err := c.Status(ctx)
	require.NoError(t, err, "the daemon still answers")
	require.Equal(t, 1, st.Claims, "none of the garbage was stored")
	stats, err := d.Node().Store().Stats()
	require.NoError(t, err)
	require.Equal(t, uint64(1), stats.Claims)
	require.Equal(t, 1, stats.Keys, "no key from the garbage was stored")
	grow := int64(heapAfter) - int64(heapBefore)
	final, _ := apiScore(t, c, h.ID())
	t.Logf("sent %d messages (%v) in %s; sender score at the daemon %.1f when first negative, %.1f at the end; heap in use %d → %d MiB (%+d MiB)",
		total, kinds, sent.Round(time.Millisecond), score, final, heapBefore>>20, heapAfter>>20, grow>>20)
	require.Less(t, grow, int64(128<<20), "heap growth bounded")
	// The daemon keeps working for honest input afterwards.
	honestClaim := signFor(t, attesttest.Fresh(t, 1)[0], "late", buildertest.Hex64("y"), time.Now(), nil)
	r, err := c.ImportClaims(ctx, [][]byte{wireOf(t, honestClaim)})
	require.NoError(t, err)
	require.Equal(t, "new", r[0].Status)
}

// apiScore is the gossipsub score the daemon reports for p (GET /v1/peers).
func apiScore(t *testing.T, c *rpc.Client, p peer.ID) (float64, bool) {
	t.Helper()
	peers, err := c.Peers(context.Background())
	require.NoError(t, err)
	for _, pi := range peers {
		if pi.ID == p.String() {
			return pi.Score, pi.Score != 0
		}
	}
	return 0, false
}

func randString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

// --- local API and metrics ------------------------------------------------

const apiChildEnv = "LEBOWSKI_DRILL_API_CHILD"

// TestHelperAPIChild is not a test: TestAttackAPISocketRefusesOtherUsers
// runs the test binary as another user with this test selected. It tries
// GET /v1/status on the socket and prints the outcome.
func TestHelperAPIChild(t *testing.T) {
	sock := os.Getenv(apiChildEnv)
	if sock == "" {
		t.Skip("helper process for TestAttackAPISocketRefusesOtherUsers")
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Printf("uid=%d DIAL-ERROR %v\n", os.Getuid(), err)
		return
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/status HTTP/1.0\r\nHost: x\r\n\r\n")
	line, err := bufio.NewReader(conn).ReadString('\n')
	fmt.Printf("uid=%d CONNECTED %q %v\n", os.Getuid(), strings.TrimSpace(line), err)
}

// TestAttackAPISocketRefusesOtherUsers runs an API client as user nobody
// (65534) against the default socket (inside the 0700 data dir) and
// against a socket placed in a world-searchable directory (so only the
// socket's own 0600 mode protects it). Root's client is the control.
func TestAttackAPISocketRefusesOtherUsers(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	// The test binary must be executable by nobody: copy it to a 0755 dir.
	exe, err := os.Executable()
	require.NoError(t, err)
	pub, err := os.MkdirTemp("", "lebowski-drill-api-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(pub) })
	require.NoError(t, os.Chmod(pub, 0o755))
	child := filepath.Join(pub, "daemon.test")
	copyFile(t, exe, child, 0o755)

	run := func(sock string, asNobody bool) string {
		cmd := exec.Command(child, "-test.run=^TestHelperAPIChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), apiChildEnv+"="+sock)
		cmd.Dir = pub
		if asNobody {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}

	def := daemontest.StartOne(t, nil)
	defSock := config.Layout{Dir: def.Dir}.Socket()
	open := filepath.Join(pub, "api")
	require.NoError(t, os.Mkdir(open, 0o755))
	openSock := filepath.Join(open, "lebowskid.sock")
	daemontest.StartOne(t, func(c *config.Config) { c.APISocket = openSock })
	fi, err := os.Stat(openSock)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	for _, tc := range []struct {
		desc, sock string
	}{{"default socket in the data dir", defSock}, {"socket in a world-searchable dir", openSock}} {
		t.Run(tc.desc, func(t *testing.T) {
			out := run(tc.sock, false)
			require.Contains(t, out, "uid=0 CONNECTED \"HTTP/1.0 200 OK\"", "control: the owner connects")
			out = run(tc.sock, true)
			require.Contains(t, out, "uid=65534 DIAL-ERROR", out)
			require.Contains(t, out, "permission denied", out)
			t.Logf("as nobody: %s", strings.TrimSpace(firstLine(out)))
		})
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}

// tcpListeners returns the local addresses of this process's listening
// TCP sockets (from /proc/net/tcp{,6}, matched by socket inode).
func tcpListeners(t *testing.T) map[string]bool {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	out := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" || !inodes[fs[9]] {
				continue
			}
			out[procAddr(fs[1])] = true
		}
	}
	return out
}

// procAddr turns /proc/net/tcp's "0100007F:1F90" into "127.0.0.1:8080"
// (IPv4; IPv6 addresses are kept in hex).
func procAddr(s string) string {
	hexIP, hexPort, _ := strings.Cut(s, ":")
	port, _ := strconv.ParseUint(hexPort, 16, 16)
	if len(hexIP) == 8 {
		v, _ := strconv.ParseUint(hexIP, 16, 32)
		return fmt.Sprintf("%d.%d.%d.%d:%d", byte(v), byte(v>>8), byte(v>>16), byte(v>>24), port)
	}
	return fmt.Sprintf("[%s]:%d", hexIP, port)
}

func libp2pTCP(t *testing.T, td *daemontest.Node) map[string]bool {
	t.Helper()
	st, err := td.Client(t).Status(context.Background())
	require.NoError(t, err)
	out := map[string]bool{}
	for _, s := range st.Addrs { // /ip4/127.0.0.1/tcp/PORT/p2p/ID
		parts := strings.Split(s, "/")
		if len(parts) >= 5 && parts[1] == "ip4" && parts[3] == "tcp" {
			out[parts[2]+":"+parts[4]] = true
		}
	}
	return out
}

// TestAttackMetricsPortOptIn: without metrics_addr the daemon listens on
// no TCP port but libp2p's; with it, exactly on the configured address.
func TestAttackMetricsPortOptIn(t *testing.T) {
	base := tcpListeners(t)
	newSince := func() map[string]bool {
		out := map[string]bool{}
		for a := range tcpListeners(t) {
			if !base[a] {
				out[a] = true
			}
		}
		return out
	}
	td := daemontest.StartOne(t, nil)
	require.Equal(t, libp2pTCP(t, td), newSince(), "only libp2p listens when metrics_addr is empty")
	if c, err := net.DialTimeout("tcp", "127.0.0.1:9464", 200*time.Millisecond); err == nil {
		c.Close()
		t.Logf("note: something else listens on 127.0.0.1:9464 (not this process)")
	}
	// Pick a free port, then configure it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	base = tcpListeners(t)
	td2 := daemontest.StartOne(t, func(c *config.Config) { c.MetricsAddr = addr })
	want := libp2pTCP(t, td2)
	want[addr] = true
	require.Equal(t, want, newSince(), "libp2p plus exactly the configured metrics address")
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "lebowski_stored_claims")
	require.Contains(t, string(body), `lebowski_refused_total{kind="gossip_rate"}`)
	require.Contains(t, string(body), `lebowski_refused_total{kind="store_budget"}`)
	require.Contains(t, string(body), `lebowski_ingested_total{status="over_budget"}`)
	_ = td
}

func runtimeGC() {
	runtime.GC()
	runtime.GC()
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
