// Package daemon is lebowskid: it composes the store, the builder, the
// libp2p node and the local API, and runs them until it is told to stop.
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
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/cmd/internal/node"
	"github.com/lebowski-dist/lebowski/opinions"
	"github.com/lebowski-dist/lebowski/p2p"
	"github.com/lebowski-dist/lebowski/store"
)

// Daemon is one running lebowskid.
type Daemon struct {
	cfg     *Config
	layout  node.Layout
	log     *slog.Logger
	id      *attest.Identity
	st      *store.Store
	svc     *node.Service
	net     *p2p.Node
	events  *broker
	metrics *metrics
	started time.Time

	// BuildEnv is how rebuilds run; Builder, when set, replaces the real
	// podman builder (tests).
	buildEnv node.BuildEnv
	builder  builder.Builder
	rbOnce   sync.Once
	rbErr    error
	rb       *node.Rebuilder

	ready chan struct{} // closed when the network and the API are up

	mu      sync.Mutex
	subs    map[string]*opinions.Opinion // "pkg/name" → opinion
	queue   chan buildJob
	pending map[string]bool // dedupe key: pkg/opinion-cid
	running map[string]time.Time
}

type buildJob struct {
	key    string
	op     *opinions.Opinion
	reason string
}

// Option configures a Daemon.
type Option func(*Daemon)

// WithBuilder replaces the podman builder (tests, fake builds).
func WithBuilder(b builder.Builder) Option { return func(d *Daemon) { d.builder = b } }

// New opens the store and identity and prepares the daemon; Run starts it.
func New(ctx context.Context, cfg *Config, log *slog.Logger, opts ...Option) (*Daemon, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = node.DefaultDataDir()
	}
	if cfg.OpinionsDir == "" {
		cfg.OpinionsDir = node.DefaultOpinionsDir()
	}
	d := &Daemon{cfg: cfg, layout: node.Layout{Dir: cfg.DataDir}, log: log, events: newBroker(), ready: make(chan struct{}),
		subs: map[string]*opinions.Opinion{}, pending: map[string]bool{}, running: map[string]time.Time{}}
	for _, o := range opts {
		o(d)
	}
	if err := d.layout.Ensure(); err != nil {
		return nil, err
	}
	id, created, err := d.layout.LoadIdentity(true, "Lebowski builder")
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("generated builder key", "fingerprint", id.Fingerprint(), "path", d.layout.BuilderKey())
	}
	d.id = id
	st, err := store.Open(d.layout.StoreDB(), store.WithLogger(log.With("sub", "store")))
	if err != nil {
		return nil, err
	}
	d.st = st
	if _, err := st.PutKey(id.PublicKey(), attest.TrustOwn, "own key"); err != nil {
		st.Close()
		return nil, err
	}
	d.svc = &node.Service{Store: st, Own: id.Fingerprint(), Trusted: cfg.TrustedKeys, Threshold: cfg.Threshold, Log: log}
	d.buildEnv = node.BuildEnv{Layout: d.layout, CacheDir: cfg.CacheDir, Mirror: cfg.Mirror, PodmanURL: cfg.Builds.PodmanURL, Timeout: cfg.Builds.Timeout, Log: log.With("sub", "builder")}
	d.queue = make(chan buildJob, cfg.Builds.Queue)
	d.metrics = newMetrics()
	return d, nil
}

// Run starts every subsystem and blocks until ctx ends or one fails, then
// shuts down within a deadline.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.st.Close()
	d.started = time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	topics := append([]string(nil), d.cfg.Subscribe...)
	n, err := p2p.New(ctx, p2p.Config{
		IdentityPath:   d.layout.PeerKey(),
		ListenAddrs:    d.cfg.Listen,
		BootstrapPeers: d.cfg.Bootstrap,
		Subscribe:      topics,
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
	d.svc.Log.Info("lebowskid started", "peer", n.ID().String(), "builder", d.id.Fingerprint(), "addrs", addrStrings(n), "data_dir", d.cfg.DataDir)

	for _, s := range d.cfg.Subscribe {
		if err := d.addSubscription(s, false); err != nil {
			d.log.Error("subscription", "topic", s, "err", err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	srv, ln, err := d.listenAPI()
	if err != nil {
		return err
	}
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("api: %w", err)
		}
		return nil
	})
	if d.cfg.MetricsAddr != "" {
		msrv, mln, err := d.metrics.listen(d.cfg.MetricsAddr, d)
		if err != nil {
			return err
		}
		g.Go(func() error {
			if err := msrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
			defer c()
			return msrv.Shutdown(sctx)
		})
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
		sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		d.events.close()
		return srv.Shutdown(sctx)
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
	sock := d.cfg.APISocket
	if sock == "" {
		sock = d.layout.Socket()
	}
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
	srv := &http.Server{Handler: node.NewHandler(node.Local{Service: d.svc}, d), ReadHeaderTimeout: 10 * time.Second}
	return srv, ln, nil
}

// addSubscription loads the opinion of "pkg/name", subscribes the topic
// and queues a rebuild if this node has no own claim for it.
func (d *Daemon) addSubscription(spec string, joinTopic bool) error {
	if !reSub.MatchString(spec) {
		return &node.InputError{Err: fmt.Errorf("subscription %q is not <package>/<opinion>", spec)}
	}
	o, err := opinions.Find(d.cfg.OpinionsDir, spec)
	if err != nil {
		return &node.InputError{Err: fmt.Errorf("subscription %s: %w", spec, err)}
	}
	if joinTopic {
		if err := d.net.Subscribe(spec); err != nil {
			return err
		}
	}
	d.mu.Lock()
	d.subs[spec] = o
	d.mu.Unlock()
	d.maybeQueue(o, "subscribed")
	return nil
}

// hasOwn reports whether this node already signed a claim for the
// opinion's current content (any recipe: rebuilding would give our recipe
// again).
func (d *Daemon) hasOwn(o *opinions.Opinion) bool {
	rcs, err := d.st.ByPackage(o.Package, o.Debian.Version)
	if err != nil {
		d.log.Warn("reading own claims", "package", o.Package, "err", err)
		return false
	}
	own, cid := d.id.Fingerprint(), o.CID()
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

func (d *Daemon) maybeQueue(o *opinions.Opinion, reason string) {
	if !*d.cfg.Builds.Enabled || d.hasOwn(o) {
		return
	}
	key := o.Package + "/" + o.CID()
	d.mu.Lock()
	if d.pending[key] {
		d.mu.Unlock()
		return
	}
	d.pending[key] = true
	d.mu.Unlock()
	select {
	case d.queue <- buildJob{key: key, op: o, reason: reason}:
		d.metrics.queue.Inc()
		d.log.Info("rebuild queued", "package", o.Package, "opinion", o.Name, "reason", reason)
	default:
		d.mu.Lock()
		delete(d.pending, key)
		d.mu.Unlock()
		d.log.Warn("rebuild queue full; dropping", "package", o.Package, "opinion", o.Name)
	}
}

// onClaim is called for every verified claim received from a peer.
func (d *Daemon) onClaim(c *attest.Claim, from peer.ID) {
	st := c.Statement
	d.metrics.claims.WithLabelValues(string(st.Result)).Inc()
	d.events.publish(node.Event{Time: time.Now(), Type: "claim", Package: st.Package, Opinion: st.Opinion.Name, ClaimID: c.ID, From: from.String()})
	spec := st.Package + "/" + st.Opinion.Name
	d.mu.Lock()
	o := d.subs[spec]
	d.mu.Unlock()
	if o != nil && o.CID() == st.Opinion.CID {
		d.maybeQueue(o, "peer claim "+c.ID)
	}
}

func (d *Daemon) rebuilder(ctx context.Context) (builder.Builder, error) {
	if d.builder != nil {
		return d.builder, nil
	}
	d.rbOnce.Do(func() {
		d.rb, d.rbErr = d.buildEnv.OpenBuilder(ctx)
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
	log := d.log.With("package", o.Package, "opinion", o.Name)
	d.events.publish(node.Event{Time: time.Now(), Type: "build-started", Package: o.Package, Opinion: o.Name})
	b, err := d.rebuilder(ctx)
	if err != nil {
		log.Error("cannot build: builder unavailable", "err", err)
		d.metrics.builds.WithLabelValues("error").Inc()
		return
	}
	start := time.Now()
	log.Info("rebuilding", "reason", job.reason)
	res, err := b.Build(ctx, builder.Request{Package: o.Package, Opinion: o})
	if err != nil {
		log.Error("rebuild refused or environment error", "err", err)
		d.metrics.builds.WithLabelValues("error").Inc()
		return
	}
	d.metrics.builds.WithLabelValues(string(res.Status)).Inc()
	d.metrics.buildSeconds.Observe(time.Since(start).Seconds())
	claim, err := node.Attest(ctx, d.st, d.id, d.net.ID().String(), o, res, time.Now())
	if err != nil {
		log.Error("signing the build result", "err", err)
		return
	}
	if err := d.net.Publish(ctx, claim); err != nil {
		log.Warn("publish", "claim", claim.ID, "err", err)
	}
	log.Info("rebuilt and published", "status", res.Status, "claim", claim.ID, "seconds", int(time.Since(start).Seconds()), "artifacts", len(res.Artifacts))
	data, _ := json.Marshal(map[string]any{"status": res.Status, "artifacts": res.Artifacts})
	d.events.publish(node.Event{Time: time.Now(), Type: "build-finished", Package: o.Package, Opinion: o.Name, ClaimID: claim.ID, Data: data})
}

// Ready is closed once the network and the local API are up; after it,
// Status, Peers and the API may be used.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Status implements node.DaemonOps.
func (d *Daemon) Status(context.Context) (*node.Status, error) {
	st := &node.Status{PeerID: d.net.ID().String(), Builder: d.id.Fingerprint(), Addrs: addrStrings(d.net), Started: d.started, Peers: len(d.net.Peers())}
	d.mu.Lock()
	for s := range d.subs {
		st.Subscriptions = append(st.Subscriptions, s)
	}
	for k := range d.running {
		st.RunningBuilds = append(st.RunningBuilds, k)
	}
	d.mu.Unlock()
	sort.Strings(st.Subscriptions)
	st.QueuedBuilds = len(d.queue)
	if s, err := d.st.Stats(); err == nil {
		st.Claims = int(s.Claims)
	}
	return st, nil
}

// Peers implements node.DaemonOps.
func (d *Daemon) Peers(context.Context) ([]node.PeerInfo, error) {
	var out []node.PeerInfo
	for _, p := range d.net.Peers() {
		pi := node.PeerInfo{ID: p.ID.String(), Topics: p.Topics, Score: p.Score, Connected: p.ConnectedSince}
		for _, a := range p.Addrs {
			pi.Addrs = append(pi.Addrs, a.String())
		}
		out = append(out, pi)
	}
	return out, nil
}

// Subscribe implements node.DaemonOps.
func (d *Daemon) Subscribe(ctx context.Context, spec string, on bool) ([]string, error) {
	if on {
		if err := d.addSubscription(spec, true); err != nil {
			return nil, err
		}
	} else {
		d.mu.Lock()
		delete(d.subs, spec)
		d.mu.Unlock()
		if err := d.net.Unsubscribe(spec); err != nil {
			return nil, &node.InputError{Err: err}
		}
	}
	st, _ := d.Status(ctx)
	return st.Subscriptions, nil
}

// Events implements node.DaemonOps.
func (d *Daemon) Events(ctx context.Context) (<-chan node.Event, func()) { return d.events.subscribe() }

// broker fans events out to API subscribers; slow ones miss events.
type broker struct {
	mu     sync.Mutex
	subs   map[chan node.Event]bool
	closed bool
}

func newBroker() *broker { return &broker{subs: map[chan node.Event]bool{}} }

func (b *broker) subscribe() (<-chan node.Event, func()) {
	ch := make(chan node.Event, 64)
	b.mu.Lock()
	if b.closed {
		close(ch)
	} else {
		b.subs[ch] = true
	}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		if b.subs[ch] {
			delete(b.subs, ch)
			close(ch)
		}
		b.mu.Unlock()
	}
}

func (b *broker) publish(ev node.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (b *broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for ch := range b.subs {
		close(ch)
		delete(b.subs, ch)
	}
}
