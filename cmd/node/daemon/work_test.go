package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/opinions"
	"github.com/lebowski-dist/lebowski/p2p"
)

func init() {
	// Loopback gossip delivers in milliseconds; the tests' builds take
	// under a second, so waiting 2 s before each would dominate them.
	intentSettle = 300 * time.Millisecond
}

// shareOpinions writes n opinions for hello (s01…), each with its own
// CFLAGS, and returns the opinions directory and their refs.
func shareOpinions(t testing.TB, n int) (string, []vocab.Ref) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoOpinions(t), "hello", "o3.yaml"))
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "hello"), 0o755))
	var refs []vocab.Ref
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("s%02d", i)
		y := strings.Replace(string(src), "name: o3", "name: "+name, 1)
		y = strings.Replace(y, `cflags: {append: ["-O3"]}`, fmt.Sprintf(`cflags: {append: ["-O3", "-DSHARE=%d"]}`, i), 1)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "hello", name+".yaml"), []byte(y), 0o644))
		refs = append(refs, vocab.Ref{Package: "hello", Opinion: name})
	}
	return dir, refs
}

// TestSharedRebuildWork: 10 nodes that trust each other follow 20 recipes
// with a target of 3 builders each. Every recipe reaches 3 builders, with
// fewer than 1.5× the 60 builds needed, and a node that announced a build
// and died is replaced once its intent's TTL ran out.
func TestSharedRebuildWork(t *testing.T) {
	r := runSharedWork(t, sharedWork{dying: true})
	// The issue asks for < 1.5× the minimal builds; claims alone, without
	// intents, gave 1.45× and 8 builders on one recipe here (1.52–1.63× in
	// BenchmarkSharedRebuildWork), so the bound is tighter: intents gave
	// 1.02× (61, the dead node's hung build included).
	require.Less(t, r.total, r.needed*5/4, "builds run")
	require.LessOrEqual(t, r.most, shareTarget+1, "builders on one recipe")
	require.GreaterOrEqual(t, r.doomedDone, shareTTL/2,
		"the dead node's recipe waited for its intent to expire (renewed every ttl/3, so it ends ≥ 2/3 ttl after death)")
}

// BenchmarkSharedRebuildWork: builds run per build needed for the scenario
// of TestSharedRebuildWork (no node dies), with the scheduler counting
// other builders' intents, and the raw baseline ignoring them (claims
// only), in the same run.
func BenchmarkSharedRebuildWork(b *testing.B) {
	for _, c := range []struct {
		name string
		opt  sharedWork
	}{{"intents", sharedWork{}}, {"claims-only", sharedWork{ignoreIntents: true}}} {
		b.Run(c.name, func(b *testing.B) {
			var builds, most float64
			for range b.N {
				r := runSharedWork(b, c.opt)
				builds += float64(r.total) / float64(r.needed)
				most += float64(r.most)
			}
			b.ReportMetric(builds/float64(b.N), "builds/needed")
			b.ReportMetric(most/float64(b.N), "max-builders/recipe")
		})
	}
}

const (
	shareNodes, shareRecipes, shareTarget = 10, 20, 3
	shareTTL                              = 5 * time.Second
)

// sharedWork varies the scenario: dying makes the last node announce a
// build, hang and disappear; ignoreIntents makes every node ignore the
// others' intents (the baseline).
type sharedWork struct{ dying, ignoreIntents bool }

type sharedResult struct {
	needed, total, most int
	backoffs            float64
	doomedDone          time.Duration // dying: when the dead node's recipe had target live builders
}

func runSharedWork(t testing.TB, opt sharedWork) sharedResult {
	// Ten daemons share the test machine's cores: intents take longer to
	// be verified and gossiped than on loopback alone, and 300 ms let a
	// fifth builder start on one recipe now and then (1 run in 6 on 2
	// vCPUs). 1 s is still half the default.
	was := intentSettle
	intentSettle = time.Second
	t.Cleanup(func() { intentSettle = was }) // daemons read it only in New
	dir, refs := shareOpinions(t, shareRecipes)
	dead := -1
	if opt.dying {
		dead = shareNodes - 1
	}
	ds := startDaemonsWith(t, shareNodes, nil, func(_ int, c *config.Config) {
		c.OpinionsDir = dir
		c.Subscribe = nil
		c.Builds.Target = shareTarget
		c.Builds.IntentTTL = shareTTL
	}, func(i int, fb *fakeBuilder) {
		fb.Delay = 300 * time.Millisecond
		fb.Hang = i == dead
	})
	for _, td := range ds {
		td.d.ignoreIntents.Store(opt.ignoreIntents)
	}
	ctx := context.Background()
	// A running network: every node has the others' keys (intents are
	// verified against them) and sees the intents topic.
	for i, a := range ds {
		c := dial(t, a)
		for j, b := range ds {
			if i != j {
				_, err := c.ImportKey(ctx, b.d.id.PublicKey(), attest.TrustTrusted, "test network")
				require.NoError(t, err)
			}
		}
	}
	require.Eventually(t, func() bool { return len(ds[0].d.net.TopicPeers(p2p.IntentsTopic)) == shareNodes-1 },
		20*time.Second, 20*time.Millisecond, "node 0 sees every node on the intents topic")
	subscribe := func(td *testDaemon) {
		for _, r := range refs {
			require.NoError(t, td.d.subs.Subscribe(ctx, r, true))
		}
	}

	live := ds
	var doomed, deadFpr string
	var died time.Time
	if opt.dying {
		// The node that dies: it starts a build, announces it, and hangs.
		live = ds[:dead]
		subscribe(ds[dead])
		require.Eventually(t, func() bool {
			if r := ds[dead].d.builds.Running(); len(r) == 1 {
				doomed = r[0]
				return true
			}
			return false
		}, 10*time.Second, 10*time.Millisecond, "the doomed node builds")
		deadFpr = ds[dead].d.id.Fingerprint()
		require.Eventually(t, func() bool {
			for _, td := range live {
				counted := false
				for _, in := range td.d.builds.BuildIntents() {
					counted = counted || (in.Builder == deadFpr && in.Recipe == doomed)
				}
				if !counted {
					return false
				}
			}
			return true
		}, 10*time.Second, 10*time.Millisecond, "every node counts the doomed node's intent")
		for _, td := range live {
			td.d.net.Block(ds[dead].d.net.ID()) // from now on it is gone for everyone
		}
		ds[dead].cancel()
		died = time.Now()
	}

	var wg sync.WaitGroup
	for _, td := range live {
		wg.Add(1)
		go func() { defer wg.Done(); subscribe(td) }()
	}
	wg.Wait()

	keys := make([]string, len(refs))
	for i, r := range refs {
		o, err := opinions.FindIn([]string{dir}, r.String())
		require.NoError(t, err)
		keys[i] = attest.RecipeKey("hello", o.CID())
	}
	builders := func(key string) int {
		cl, err := recipeClaims(ds[0].d.st, key)
		require.NoError(t, err)
		delete(cl, deadFpr)
		return len(cl)
	}
	res := sharedResult{needed: shareRecipes * shareTarget}
	require.Eventually(t, func() bool {
		if opt.dying && res.doomedDone == 0 && builders(doomed) >= shareTarget {
			res.doomedDone = time.Since(died)
		}
		for _, k := range keys {
			if builders(k) < shareTarget {
				return false
			}
		}
		return true
	}, 90*time.Second, 50*time.Millisecond, "every recipe reaches %d live builders at node 0", shareTarget)
	time.Sleep(2 * intentSettle) // builds that were about to start
	for _, td := range ds {
		res.total += int(td.fb.Builds.Load())
	}
	for _, k := range keys {
		res.most = max(res.most, builders(k))
	}
	for _, td := range live {
		res.backoffs += testutil.ToFloat64(td.d.metrics.backoffs)
	}
	t.Logf("%d recipes × target %d = %d builds needed; %d run (%.2f×%s), most builders on one recipe %d, %v back-offs",
		shareRecipes, shareTarget, res.needed, res.total, float64(res.total)/float64(res.needed), map[bool]string{true: ", the dead node's hung build included"}[opt.dying], res.most, res.backoffs)
	if opt.dying {
		require.Contains(t, keys, doomed)
		t.Logf("the dead node's recipe reached %d live builders %s after it died (intent ttl %s)", shareTarget, res.doomedDone.Round(time.Millisecond), shareTTL)
	}
	return res
}

// TestConcurrentBuilds: builds.concurrency 2 runs two recipes at once.
func TestConcurrentBuilds(t *testing.T) {
	dir, refs := shareOpinions(t, 3)
	release := make(chan struct{})
	ds := startDaemonsWith(t, 1, nil, func(_ int, c *config.Config) {
		c.OpinionsDir = dir
		c.Subscribe = nil
		c.Builds.Concurrency = 2
	}, func(_ int, fb *fakeBuilder) { fb.Release = release })
	ctx := context.Background()
	for _, r := range refs {
		require.NoError(t, ds[0].d.subs.Subscribe(ctx, r, true))
	}
	require.Eventually(t, func() bool { return len(ds[0].d.builds.Running()) == 2 }, 10*time.Second, 10*time.Millisecond, "two builds at once")
	time.Sleep(200 * time.Millisecond)
	require.Len(t, ds[0].d.builds.Running(), 2, "not more than builds.concurrency")
	require.Equal(t, 1, ds[0].d.builds.Queued(), "the third waits")
	close(release)
	require.Eventually(t, func() bool { return ds[0].fb.Builds.Load() == 3 && len(ds[0].d.builds.Running()) == 0 }, 10*time.Second, 10*time.Millisecond, "all three built")
}

// TestStopWithdrawsIntent: a daemon stopped in the middle of a build
// withdraws its intent on the way out, so peers do not wait for its TTL.
func TestStopWithdrawsIntent(t *testing.T) {
	ds := startDaemonsWith(t, 2, nil, func(i int, c *config.Config) {
		c.Builds.Enabled = ptrTo(i == 1) // only node 1 builds
	}, func(i int, fb *fakeBuilder) { fb.Hang = true })
	ctx := context.Background()
	for i, a := range ds {
		_, err := dial(t, a).ImportKey(ctx, ds[1-i].d.id.PublicKey(), attest.TrustTrusted, "test")
		require.NoError(t, err)
	}
	fpr := ds[1].d.id.Fingerprint()
	counted := func() bool {
		for _, in := range ds[0].d.builds.BuildIntents() {
			if in.Builder == fpr {
				return true
			}
		}
		return false
	}
	// Node 1's first intent may go out before node 0 has its key: the
	// renewal on the new peer (~2 s) brings it.
	require.Eventually(t, counted, 20*time.Second, 20*time.Millisecond, "node 0 counts node 1's intent")
	start := time.Now()
	ds[1].cancel()
	require.Eventually(t, func() bool { return !counted() }, 10*time.Second, 20*time.Millisecond, "node 1's intent withdrawn when it stopped")
	t.Logf("node 1's intent gone at node 0 %s after the stop (ttl %s)", time.Since(start).Round(time.Millisecond), ds[1].d.cfg.Builds.IntentTTL)
}

func ptrTo[T any](v T) *T { return &v }
