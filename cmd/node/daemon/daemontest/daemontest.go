// Package daemontest is the harness of multi-node tests (integration/):
// it runs N in-process daemons (package daemon) on loopback, each with a
// temporary data directory, a fake builder (buildertest.Fake) and the
// repository's opinions, bootstrapping from the first node and trusting
// every other node's builder key; stops and restarts them; dials each
// node's local API (core/rpc); and waits for the network to connect and
// agree.
//
// Tests read a node through its API: Node.Client (the unix socket, as the
// CLI does) or Node.API (the core node in-process, Daemon.Node). The few
// internals a test may need are narrow exported accessors on
// *daemon.Daemon (Opinion, Reload, Network), documented there.
package daemontest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/builder/buildertest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/core/rpc"
	"github.com/lebowski-dist/lebowski/cmd/node/daemon"
)

// Settle is how long the harness's daemons wait for other builders'
// intents before they build (daemon.WithIntentSettle): loopback gossip
// delivers in milliseconds, and the fake builds take under a second.
const Settle = 300 * time.Millisecond

// Ready and Stop wait this long for a daemon.
const (
	ReadyTimeout = 20 * time.Second
	StopTimeout  = 20 * time.Second
)

// Options changes what Start runs; the zero value starts honest nodes.
type Options struct {
	// Evil marks the nodes (by index) whose fake builder is compromised
	// (buildertest.Fake.Evil).
	Evil map[int]bool
	// Config, when set, changes node i's config before it starts (and
	// again on Restart).
	Config func(i int, c *config.Config)
	// Builder, when set, changes node i's fake builder before it starts
	// (and again on Restart, on a fresh one).
	Builder func(i int, fb *buildertest.Fake)
}

// Node is one daemon run by the harness.
type Node struct {
	// Index is the node's place in Start's result.
	Index int
	// Daemon is the running daemon; Builder its fake builder; Dir its
	// data directory (keys, store, socket).
	Daemon  *daemon.Daemon
	Builder *buildertest.Fake
	Dir     string

	cfg     func() *config.Config
	fbMod   func(fb *buildertest.Fake)
	log     *slog.Logger
	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

// API is the node's core API in-process (the daemon's core node).
func (n *Node) API() *core.Node { return n.Daemon.Node() }

// Socket is the node's local API socket.
func (n *Node) Socket() string { return config.Layout{Dir: n.Dir}.Socket() }

// Client dials the node's local API socket.
func (n *Node) Client(t testing.TB) *rpc.Client {
	t.Helper()
	c, err := rpc.Dial(context.Background(), n.Socket())
	require.NoError(t, err)
	return c
}

// Identity is the node's builder key.
func (n *Node) Identity() *attest.Identity { return n.API().Identity() }

// Stop stops the daemon and returns what its Run returned (an error too
// when it does not stop within StopTimeout). Calling it again, or the
// test's cleanup after it, does nothing.
func (n *Node) Stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped || n.cancel == nil { // stopped, or never started
		return nil
	}
	n.stopped = true
	n.cancel()
	select {
	case err := <-n.done:
		return err
	case <-time.After(StopTimeout):
		return fmt.Errorf("daemon %s did not stop within %s; goroutines:\n%s", n.Dir, StopTimeout, Goroutines())
	}
}

// Restart stops the daemon if it runs and starts a new one on the same
// data directory (same keys, store and saved subscriptions), with the
// node's config made again and a fresh fake builder, which it returns in
// n.Builder. The node's listen port changes: other nodes bootstrapped
// from it do not find it again by themselves.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	n.RestartWith(t, nil)
}

// RestartWith is Restart with the config changed by mod (after the
// node's own config hook), e.g. to bootstrap from another node.
func (n *Node) RestartWith(t testing.TB, mod func(c *config.Config)) {
	t.Helper()
	require.NoError(t, n.Stop())
	cfg := n.cfg()
	if mod != nil {
		mod(cfg)
	}
	n.run(t, cfg)
}

func (n *Node) run(t testing.TB, cfg *config.Config) {
	t.Helper()
	fb := &buildertest.Fake{}
	if n.fbMod != nil {
		n.fbMod(fb)
	}
	d, err := daemon.New(context.Background(), cfg, n.log, daemon.WithBuilder(fb), daemon.WithIntentSettle(Settle))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	n.mu.Lock()
	n.Daemon, n.Builder, n.cancel, n.done, n.stopped = d, fb, cancel, done, false
	n.mu.Unlock()
	select {
	case <-d.Ready():
	case err := <-done:
		done <- err // for Stop
		t.Fatalf("daemon %s stopped: %v", n.Dir, err)
	case <-time.After(ReadyTimeout):
		t.Fatalf("daemon %s not ready after %s", n.Dir, ReadyTimeout)
	}
}

// Start starts n daemons on loopback that follow hello/o3, each
// bootstrapping from the first and trusting all the others' builder keys
// (mDNS off, sync every 2 s, warnings logged to stderr), and returns once
// each is ready (every listener open). They stop in the test's cleanup.
func Start(t testing.TB, n int, opts Options) []*Node {
	t.Helper()
	ids := make([]*attest.Identity, n)
	dirs := make([]string, n)
	for i := range n {
		dirs[i] = t.TempDir()
		id, _, err := core.LoadIdentity(config.Layout{Dir: dirs[i]}, true, fmt.Sprintf("node %d", i))
		require.NoError(t, err)
		ids[i] = id
	}
	ops := Opinions(t)
	var out []*Node
	var boot []string
	for i := range n {
		bootstrap := boot
		mkcfg := func() *config.Config {
			cfg := &config.Config{DataDir: dirs[i], OpinionsDir: ops, Listen: []string{"/ip4/127.0.0.1/tcp/0"},
				Subscribe: []string{"hello/o3"}, Bootstrap: bootstrap, SyncEvery: 2 * time.Second}
			f := false
			cfg.MDNS = &f
			for j := range n {
				if j != i {
					cfg.TrustedKeys = append(cfg.TrustedKeys, ids[j].Fingerprint())
				}
			}
			if opts.Config != nil {
				opts.Config(i, cfg)
			}
			return cfg
		}
		evil := opts.Evil[i]
		fbMod := func(fb *buildertest.Fake) {
			fb.Evil = evil
			if opts.Builder != nil {
				opts.Builder(i, fb)
			}
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", i)
		nd := newNode(t, i, dirs[i], mkcfg, fbMod, log)
		if i == 0 {
			st, err := nd.API().Status(context.Background())
			require.NoError(t, err)
			boot = st.Addrs[:1]
		}
		out = append(out, nd)
	}
	return out
}

// StartOne starts a single daemon that follows hello/o3 (mDNS off, the
// default sync interval, logs discarded) whose config mod may change.
func StartOne(t testing.TB, mod func(*config.Config)) *Node {
	t.Helper()
	dir := t.TempDir()
	ops := Opinions(t)
	mkcfg := func() *config.Config {
		cfg := &config.Config{DataDir: dir, OpinionsDir: ops, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Subscribe: []string{"hello/o3"}}
		f := false
		cfg.MDNS = &f
		if mod != nil {
			mod(cfg)
		}
		return cfg
	}
	return newNode(t, 0, dir, mkcfg, nil, slog.New(slog.DiscardHandler))
}

func newNode(t testing.TB, i int, dir string, cfg func() *config.Config, fbMod func(*buildertest.Fake), log *slog.Logger) *Node {
	t.Helper()
	nd := &Node{Index: i, Dir: dir, cfg: cfg, fbMod: fbMod, log: log}
	t.Cleanup(func() {
		if err := nd.Stop(); err != nil {
			t.Errorf("daemon %s: %v", dir, err)
		}
	})
	nd.run(t, cfg())
	return nd
}

// Opinions is the repository's opinions directory (found from the test's
// working directory up to go.mod).
func Opinions(t testing.TB) string { return buildertest.RepoOpinions(t) }

// WaitConnected waits until every node has at least want peers.
func WaitConnected(t testing.TB, nodes []*Node, want int) {
	t.Helper()
	ctx := context.Background()
	for i, nd := range nodes {
		require.Eventually(t, func() bool {
			ps, err := nd.API().Peers(ctx)
			return err == nil && len(ps) >= want
		}, 30*time.Second, 100*time.Millisecond, "node %d has %d peers", i, want)
	}
}

// WaitConsensus waits until every node sees want trusted builders agree on
// the best recipe of ref ("package/opinion"), asking each node's socket.
func WaitConsensus(t testing.TB, nodes []*Node, ref string, want int) {
	t.Helper()
	pkg, op, _ := strings.Cut(ref, "/")
	ctx := context.Background()
	for i, nd := range nodes {
		c := nd.Client(t)
		require.Eventually(t, func() bool {
			info, err := c.Info(ctx, core.InfoQuery{Package: pkg, Opinion: op})
			return err == nil && len(info.Recipes) > 0 && info.Recipes[0].Report.Consensus != nil && len(info.Recipes[0].Report.Consensus.Trusted) == want
		}, 60*time.Second, 100*time.Millisecond, "%d/%d consensus at node %d", want, want, i)
	}
}

// Goroutines is a dump of every goroutine's stack, for a daemon that does
// not stop (what it waits on).
func Goroutines() string {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	return b.String()
}
