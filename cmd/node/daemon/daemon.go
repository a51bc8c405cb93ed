// Package daemon is lebowskid: it composes the store, the core node, the
// builder, the libp2p node, the local API and the opt-in status page
// (package statuspage), and runs them under one errgroup until it is told
// to stop.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/cmd/internal/aptrepo"
	"github.com/lebowski-dist/lebowski/cmd/internal/builds"
	"github.com/lebowski-dist/lebowski/cmd/internal/subs"
	"github.com/lebowski-dist/lebowski/cmd/internal/version"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/opinions"
	"github.com/lebowski-dist/lebowski/p2p"
	"github.com/lebowski-dist/lebowski/store"
)

// Daemon is one running lebowskid.
type Daemon struct {
	cfg     *config.Config
	log     *slog.Logger
	id      *attest.Identity
	st      *store.Store
	node    *core.Node
	net     *p2p.Node
	metrics *metrics

	// builds runs the rebuilds, sharing the work with other builders
	// through their intents; subs follows the subscribed opinion topics.
	builds *builds.Service
	subs   *subs.Service
	// builder, when set, replaces the real podman builder (tests);
	// factory, when set, makes the builder from the node's build
	// environment (tests that keep real input fetching).
	builder builder.Builder
	factory func(ctx context.Context, env builder.Env) (builder.Builder, error)
	// settle, when set, replaces intentSettle (WithIntentSettle).
	settle time.Duration
	// ignoreIntents makes the scheduler count claims only (the baseline
	// of BenchmarkSharedRebuildWork).
	ignoreIntents atomic.Bool

	ready  chan struct{} // closed when the network and the API are up
	notify *notifier     // systemd readiness (sd_notify); nil outside Main

	apt *aptrepo.Service // the apt repository (off when repo.addr is unset); made by Run
}

// Option configures a Daemon.
type Option func(*Daemon)

// WithBuilder replaces the podman builder (tests, fake builds).
func WithBuilder(b builder.Builder) Option { return func(d *Daemon) { d.builder = b } }

// WithBuilderFactory makes the builder from the daemon's build environment
// (mirror, snapshot archive, peers) instead of builder.Open.
func WithBuilderFactory(f func(ctx context.Context, env builder.Env) (builder.Builder, error)) Option {
	return func(d *Daemon) { d.factory = f }
}

// WithIntentSettle makes the build service wait d (instead of
// builds.DefaultSettle) for other builders' intents after announcing its
// own, before it builds: loopback test networks gossip in milliseconds.
func WithIntentSettle(d time.Duration) Option { return func(dm *Daemon) { dm.settle = d } }

// withNotifier sends systemd the daemon's readiness and shutdown.
func withNotifier(n *notifier) Option { return func(d *Daemon) { d.notify = n } }

// New checks the config, opens the identity and the store; Run starts
// the daemon.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) (*Daemon, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log, ready: make(chan struct{})}
	for _, o := range opts {
		o(d)
	}
	l := cfg.Layout()
	if err := l.Ensure(); err != nil {
		return nil, err
	}
	id, created, err := core.LoadIdentity(l, true, "Lebowski builder")
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("generated builder key", "fingerprint", id.Fingerprint(), "path", l.BuilderKey())
	}
	d.id = id
	d.metrics = newMetrics()
	// The build service rebuilds with locked inputs from the mirror, the
	// snapshot archive, then peers; it reads claims and trust from the
	// store and gossips intents on the network, the daemon's once open.
	settle := intentSettle
	if d.settle > 0 {
		settle = d.settle
	}
	env := builder.Env{WorkDir: l.BuildDir(), CacheDir: cfg.CacheDir, Mirror: cfg.Mirror, Snapshot: cfg.SnapshotURL,
		Peers: peerInputs{d}, PodmanURL: cfg.Builds.PodmanURL, Timeout: cfg.Builds.Timeout, Log: log.With("sub", "builder")}
	d.builds = builds.New(builds.Config{Builds: cfg.Builds, Twice: cfg.Rebuild == "twice", Settle: settle,
		Env: env, Builder: d.builder, Factory: d.factory},
		builds.Deps{Identity: id, Intents: intentNet{d}, Metrics: d.metrics, Log: log,
			Claims: func(key string) (map[string]time.Time, error) { return recipeClaims(d.st, key) },
			Votes:  func(fpr string) bool { return d.st.Votes(fpr) }})
	d.subs = subs.New(subs.Config{Subscribe: cfg.Subscribe, OpinionsDir: cfg.OpinionsDir, FetchedDir: l.FetchedOpinions(), SavePath: l.Subscriptions()},
		subs.Deps{Topics: topics{d}, Builds: d.builds, Log: log})
	// The core node is the one door for what enters the store: the
	// network hands it what peers deliver (its Inlet, in Run), and it
	// tells the build service (observer) and the event stream.
	d.node, err = core.Open(cfg, core.ReadWrite, log, core.WithIdentity(id), core.WithObserver(observer{d}),
		core.WithSubscriber(d.subs), core.WithBuildQueue(d.builds), core.WithVersion(version.String()), core.WithMirror(d))
	if err != nil {
		return nil, err
	}
	d.st = d.node.Store()
	d.builds.Connect(d.node)
	d.subs.Connect(d.node)
	return d, nil
}

// Run starts every subsystem under one errgroup and blocks until ctx ends
// or one fails, then shuts down within a deadline.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.node.Close() // and its store
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The network outlives ctx until Run returns (n.Close below), so that
	// stopping build workers can still withdraw their intents.
	n, err := p2p.New(context.WithoutCancel(ctx), p2p.Config{
		IdentityPath:        d.cfg.Layout().PeerKey(),
		ListenAddrs:         d.cfg.Listen,
		BootstrapPeers:      d.cfg.Bootstrap,
		MDNS:                *d.cfg.MDNS,
		DHT:                 d.cfg.DHT,
		SyncInterval:        d.cfg.SyncEvery,
		KeyAnnounceInterval: d.cfg.KeyAnnounceInterval,
		Limits:              p2pLimits(d.cfg.Limits),
	}, p2p.Deps{Claims: d.st, Inlet: d.node.Inlet(), Blobs: blobSource{st: d.st, sourceCache: filepath.Join(d.cfg.CacheDir, "sources")}},
		p2p.WithLogger(d.log.With("sub", "p2p")))
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	d.net = n
	defer n.Close()
	d.node.Connect(network{n})
	d.log.Info("lebowskid started", "version", version.String(), "peer", n.ID().String(), "builder", d.id.Fingerprint(), "addrs", addrStrings(n), "data_dir", d.cfg.DataDir)

	d.subs.Start(ctx)

	g, gctx := errgroup.WithContext(ctx)
	if d.apt, err = aptrepo.New(aptrepo.Options{Addr: d.cfg.Repo.Addr, Packages: d.cfg.Repo.Packages, DataDir: d.cfg.DataDir,
		ConfigPath: d.cfg.Layout().Config(), Identity: d.id}, d.node, aptNetwork{n, d.log}, d.log); err != nil {
		return err
	}
	if d.cfg.Repo.Addr != "" {
		rln, err := d.apt.Listen()
		if err != nil {
			return err
		}
		serve(g, gctx, "repo", newHTTPServer(d.apt.Handler(), 30*time.Second, 10*time.Minute), limitListener(rln))
		g.Go(func() error { d.apt.Run(gctx); return nil })
	}
	srv, ln, err := d.listenAPI()
	if err != nil {
		return err
	}
	serve(g, gctx, "api", srv, ln)
	if d.cfg.PublicSocket != "" {
		psrv, pln, err := d.listenPublic()
		if err != nil {
			return err
		}
		serve(g, gctx, "public api", psrv, pln)
	}
	if d.cfg.MetricsAddr != "" {
		msrv, mln, err := d.metrics.listen(d.cfg.MetricsAddr, d)
		if err != nil {
			return err
		}
		serve(g, gctx, "metrics", msrv, mln)
	}
	if d.cfg.StatusAddr != "" {
		ssrv, sln, err := d.listenStatus(gctx)
		if err != nil {
			return err
		}
		serve(g, gctx, "status page", ssrv, sln)
	}
	close(d.ready)
	d.notify.send(sdReady, "STATUS=ready: peer "+n.ID().String()+", api "+d.cfg.Socket())
	g.Go(func() error { d.builds.Run(gctx); return nil })
	g.Go(func() error { d.refreshTrust(gctx); return nil })
	g.Go(func() error {
		<-gctx.Done()
		d.log.Info("shutting down")
		d.notify.send(sdStopping, "STATUS=shutting down")
		d.node.EndEvents() // so the API server can stop
		return nil
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// refreshTrust keeps the trust view current (core.Node.RefreshTrust):
// keys certified within trust_hops vote, so the store must not hold their
// claims to the budget of unvetted keys.
func (d *Daemon) refreshTrust(ctx context.Context) {
	t := time.NewTicker(trustRefresh)
	defer t.Stop()
	for {
		if err := d.node.RefreshTrust(); err != nil && ctx.Err() == nil {
			d.log.Warn("refresh trust view", "err", err)
		}
		d.builds.Changed("") // a key that votes now may cover a recipe
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// trustRefresh is how often the daemon rebuilds the trust view (only
// when keys changed: the view is cached by the store's keys version).
const trustRefresh = 10 * time.Second

// serve runs srv on ln in g and shuts it down (10 s deadline) when ctx ends.
func serve(g *errgroup.Group, ctx context.Context, name string, srv *http.Server, ln net.Listener) {
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		return srv.Shutdown(sctx)
	})
}

func addrStrings(n *p2p.Node) []string {
	var out []string
	for _, a := range n.Addrs() {
		s := a.String()
		if !strings.Contains(s, "/p2p/") {
			s += "/p2p/" + n.ID().String()
		}
		out = append(out, s)
	}
	return out
}

// Ready is closed once the network and the local API are up; after it,
// Node may be used.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Node is the daemon's core node (after Ready).
func (d *Daemon) Node() *core.Node { return d.node }

// Opinion is the subscribed opinion topic ref ("package/opinion") as the
// daemon builds it now (its file, or fetched from a peer), nil when it is
// not known. For the harness's tests (package daemontest); the API's
// Opinion answers with the bundle that travels instead.
func (d *Daemon) Opinion(ref string) *opinions.Opinion { return d.subs.Opinion(ref) }

// Reload looks the subscribed opinions up again: what SIGHUP does.
func (d *Daemon) Reload(ctx context.Context) { d.subs.Reload(ctx) }

// Network is the daemon's libp2p node (after Ready, until Run returns).
// For tests that watch the network itself (peer scores, topic peers);
// everything else reads the API (Node).
func (d *Daemon) Network() *p2p.Node { return d.net }
