// Package daemon is lebowskid: it composes the store, the core node, the
// builder, the libp2p node and the local API, and runs them under one
// errgroup until it is told to stop.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/sync/errgroup"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/cmd/internal/config"
	"github.com/lebowski-dist/lebowski/cmd/internal/core"
	"github.com/lebowski-dist/lebowski/cmd/internal/core/rpc"
	"github.com/lebowski-dist/lebowski/cmd/internal/version"
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

	// builder, when set, replaces the real podman builder (tests).
	builder builder.Builder
	rbOnce  sync.Once
	rbErr   error
	rb      *builder.Rebuilder

	ready chan struct{} // closed when the network and the API are up

	mu      sync.Mutex
	subs    map[string]*opinions.Opinion // "pkg/name" → opinion (nil for vanilla)
	queue   chan buildJob
	pending map[string]bool // dedupe key: pkg/opinion-cid
	running map[string]time.Time
}

type buildJob struct {
	key    string
	pkg    string
	op     *opinions.Opinion // nil: vanilla
	reason string
}

// Option configures a Daemon.
type Option func(*Daemon)

// WithBuilder replaces the podman builder (tests, fake builds).
func WithBuilder(b builder.Builder) Option { return func(d *Daemon) { d.builder = b } }

// New checks the config, opens the identity and the store; Run starts
// the daemon.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) (*Daemon, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log, ready: make(chan struct{}),
		subs: map[string]*opinions.Opinion{}, pending: map[string]bool{}, running: map[string]time.Time{}}
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
	st, err := store.Open(l.StoreDB(), store.WithLogger(log.With("sub", "store")))
	if err != nil {
		return nil, err
	}
	d.st = st
	d.queue = make(chan buildJob, cfg.Builds.Queue)
	d.metrics = newMetrics()
	return d, nil
}

// Run starts every subsystem under one errgroup and blocks until ctx ends
// or one fails, then shuts down within a deadline.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.st.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	n, err := p2p.New(ctx, p2p.Config{
		IdentityPath:   d.cfg.Layout().PeerKey(),
		ListenAddrs:    d.cfg.Listen,
		BootstrapPeers: d.cfg.Bootstrap,
		MDNS:           *d.cfg.MDNS,
		DHT:            d.cfg.DHT,
		SyncInterval:   d.cfg.SyncEvery,
	}, p2p.Deps{Claims: storeAdapter{d.st}, Blobs: storeAdapter{d.st}},
		p2p.WithLogger(d.log.With("sub", "p2p")),
		p2p.WithOnClaim(d.onClaim))
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	d.net = n
	defer n.Close()
	d.node = core.New(d.st, core.WithIdentity(d.id), core.WithConfig(d.cfg), core.WithLogger(d.log),
		core.WithNetwork(network{n}), core.WithSubscriber(d), core.WithBuildQueue(d), core.WithVersion(version.String()))
	defer d.node.Close()
	d.log.Info("lebowskid started", "version", version.String(), "peer", n.ID().String(), "builder", d.id.Fingerprint(), "addrs", addrStrings(n), "data_dir", d.cfg.DataDir)

	for _, s := range d.cfg.Subscribe {
		r, _ := vocab.ParseRef(s) // Validate checked it
		if err := d.Subscribe(ctx, r, true); err != nil {
			d.log.Error("subscription", "topic", s, "err", err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	srv, ln, err := d.listenAPI()
	if err != nil {
		return err
	}
	serve(g, gctx, "api", srv, ln)
	if d.cfg.MetricsAddr != "" {
		msrv, mln, err := d.metrics.listen(d.cfg.MetricsAddr, d)
		if err != nil {
			return err
		}
		serve(g, gctx, "metrics", msrv, mln)
	}
	close(d.ready)
	if *d.cfg.Builds.Enabled {
		for i := 0; i < d.cfg.Builds.Concurrency; i++ {
			g.Go(func() error { d.buildWorker(gctx); return nil })
		}
	}
	g.Go(func() error {
		<-gctx.Done()
		d.log.Info("shutting down")
		d.node.Close() // ends event streams so the API server can stop
		return nil
	})
	err = g.Wait()
	if d.rb != nil {
		_ = d.rb.Close()
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

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

func (d *Daemon) listenAPI() (*http.Server, net.Listener, error) {
	sock := d.cfg.Socket()
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		return nil, nil, fmt.Errorf("api: another lebowskid answers on %s", sock)
	}
	_ = os.Remove(sock)
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		return nil, nil, fmt.Errorf("api: %w", err)
	}
	old := umask(0o177)
	ln, err := net.Listen("unix", sock)
	umask(old)
	if err != nil {
		return nil, nil, fmt.Errorf("api: listen %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("api: %w", err)
	}
	srv := &http.Server{Handler: rpc.Handler(d.node), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	return srv, ln, nil
}

// Subscribe implements core.Subscriber: it loads the opinion of ref,
// joins its topic and queues a rebuild if this node has no own claim for
// the opinion's current content; off leaves the topic.
func (d *Daemon) Subscribe(ctx context.Context, ref vocab.Ref, on bool) error {
	spec := ref.String()
	if !on {
		d.mu.Lock()
		_, ok := d.subs[spec]
		delete(d.subs, spec)
		d.mu.Unlock()
		if !ok {
			return core.Invalid(fmt.Errorf("not subscribed to %s", spec))
		}
		return d.net.Unsubscribe(spec)
	}
	var o *opinions.Opinion
	if ref.Opinion != "" {
		var err error
		if o, err = opinions.Find(d.cfg.OpinionsDir, spec); err != nil {
			return core.Invalid(fmt.Errorf("subscription %s: %w", spec, err))
		}
	}
	if err := d.net.Subscribe(spec); err != nil {
		return err
	}
	d.mu.Lock()
	d.subs[spec] = o
	d.mu.Unlock()
	d.maybeQueue(ref.Package, o, "subscribed")
	return nil
}

// Subscriptions implements core.Subscriber.
func (d *Daemon) Subscriptions() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.subs))
	for s := range d.subs {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Queued implements core.BuildQueue.
func (d *Daemon) Queued() int { return len(d.queue) }

// Running implements core.BuildQueue.
func (d *Daemon) Running() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.running))
	for k := range d.running {
		out = append(out, k)
	}
	return out
}

// hasOwn reports whether this node already signed a claim for the
// opinion's current content (any recipe: rebuilding would give our recipe
// again); for a vanilla build, any own vanilla claim of the package.
func (d *Daemon) hasOwn(pkg string, o *opinions.Opinion) bool {
	ver, cid := "", ""
	if o != nil {
		ver, cid = o.Debian.Version, o.CID()
	}
	rcs, err := d.st.ByPackage(pkg, ver)
	if err != nil {
		d.log.Warn("reading own claims", "package", pkg, "err", err)
		return false
	}
	own := d.id.Fingerprint()
	for _, rc := range rcs {
		if rc.Recipe.Opinion.CID != cid {
			continue
		}
		for _, c := range rc.Claims {
			if c.Builder == own {
				return true
			}
		}
	}
	return false
}

func jobKey(pkg string, o *opinions.Opinion) string {
	if o == nil {
		return pkg + "/" + vocab.Vanilla
	}
	return pkg + "/" + o.CID()
}

func (d *Daemon) maybeQueue(pkg string, o *opinions.Opinion, reason string) {
	if !*d.cfg.Builds.Enabled || d.hasOwn(pkg, o) {
		return
	}
	key := jobKey(pkg, o)
	d.mu.Lock()
	if d.pending[key] {
		d.mu.Unlock()
		return
	}
	d.pending[key] = true
	d.mu.Unlock()
	select {
	case d.queue <- buildJob{key: key, pkg: pkg, op: o, reason: reason}:
		d.metrics.queue.Inc()
		d.log.Info("rebuild queued", "package", pkg, "opinion", opinionName(o), "reason", reason)
	default:
		d.mu.Lock()
		delete(d.pending, key)
		d.mu.Unlock()
		d.log.Warn("rebuild queue full; dropping", "package", pkg, "opinion", opinionName(o))
	}
}

func opinionName(o *opinions.Opinion) string {
	if o == nil {
		return vocab.Vanilla
	}
	return o.Name
}

// onClaim is called for every verified claim a peer sent that was new to
// the store.
func (d *Daemon) onClaim(c *attest.Claim, from peer.ID) {
	st := c.Statement
	d.metrics.claims.WithLabelValues(string(st.Result)).Inc()
	d.node.Emit(core.Event{Type: core.EventClaim, Package: st.Package, Opinion: st.Opinion.Name, ClaimID: c.ID, From: from.String()})
	spec := vocab.Ref{Package: st.Package, Opinion: st.Opinion.Name}.String()
	d.mu.Lock()
	o, ok := d.subs[spec]
	d.mu.Unlock()
	if ok && (o == nil && st.Opinion.CID == "" || o != nil && o.CID() == st.Opinion.CID) {
		d.maybeQueue(st.Package, o, "peer claim "+c.ID)
	}
}

func (d *Daemon) rebuilder(ctx context.Context) (builder.Builder, error) {
	if d.builder != nil {
		return d.builder, nil
	}
	d.rbOnce.Do(func() {
		l := d.cfg.Layout()
		d.rb, d.rbErr = builder.Open(ctx, builder.Env{WorkDir: l.BuildDir(), CacheDir: d.cfg.CacheDir, Mirror: d.cfg.Mirror,
			PodmanURL: d.cfg.Builds.PodmanURL, Timeout: d.cfg.Builds.Timeout, Log: d.log.With("sub", "builder")})
	})
	return d.rb, d.rbErr
}

func (d *Daemon) buildWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-d.queue:
			d.metrics.queue.Dec()
			d.runJob(ctx, job)
		}
	}
}

func (d *Daemon) runJob(ctx context.Context, job buildJob) {
	o := job.op
	defer func() {
		d.mu.Lock()
		delete(d.pending, job.key)
		delete(d.running, job.key)
		d.mu.Unlock()
	}()
	d.mu.Lock()
	d.running[job.key] = time.Now()
	d.mu.Unlock()
	log := d.log.With("package", job.pkg, "opinion", opinionName(o))
	d.node.Emit(core.Event{Type: core.EventBuildStarted, Package: job.pkg, Opinion: opinionName(o)})
	b, err := d.rebuilder(ctx)
	if err != nil {
		log.Error("cannot build: builder unavailable", "err", err)
		d.metrics.builds.WithLabelValues("error").Inc()
		return
	}
	start := time.Now()
	log.Info("rebuilding", "reason", job.reason)
	res, err := b.Build(ctx, builder.Request{Package: job.pkg, Opinion: o})
	if err != nil {
		log.Error("rebuild refused or environment error", "err", err)
		d.metrics.builds.WithLabelValues("error").Inc()
		return
	}
	d.metrics.builds.WithLabelValues(string(res.Status)).Inc()
	d.metrics.buildSeconds.Observe(time.Since(start).Seconds())
	rec, err := core.Record(ctx, d.node, res, o)
	if err != nil {
		log.Error("recording the build result", "err", err)
		return
	}
	log.Info("rebuilt and published", "status", res.Status, "claim", rec.ID, "published", rec.Published, "seconds", int(time.Since(start).Seconds()), "artifacts", len(res.Artifacts))
	data, _ := json.Marshal(map[string]any{"status": res.Status, "artifacts": res.Artifacts})
	d.node.Emit(core.Event{Type: core.EventBuildFinished, Package: job.pkg, Opinion: opinionName(o), ClaimID: rec.ID, Data: data})
}

// Ready is closed once the network and the local API are up; after it,
// Node may be used.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Node is the daemon's core node (after Ready).
func (d *Daemon) Node() *core.Node { return d.node }
