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
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/cmd/internal/builds"
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

	// builds runs the rebuilds, sharing the work with other builders
	// through their intents (package builds).
	builds *builds.Service
	// builder, when set, replaces the real podman builder (tests);
	// factory, when set, makes the builder from the node's build
	// environment (tests that keep real input fetching).
	builder builder.Builder
	factory func(ctx context.Context, env builder.Env) (builder.Builder, error)
	// ignoreIntents makes the scheduler count claims only (the baseline
	// of BenchmarkSharedRebuildWork).
	ignoreIntents atomic.Bool

	ready  chan struct{} // closed when the network and the API are up
	notify *notifier     // systemd readiness (sd_notify); nil outside Main

	mirror *mirror    // the apt repository; nil when repo.addr is unset
	repoMu sync.Mutex // one refresh at a time

	mu   sync.Mutex
	subs map[string]*subscription // by "pkg/name"
}

// subscription is one followed topic. op is nil for a vanilla build, and
// while the opinion of a ref is not known yet (waiting: no local file and
// no claim naming its content, or not fetched yet).
type subscription struct {
	ref     vocab.Ref
	op      *opinions.Opinion
	waiting bool
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

// withNotifier sends systemd the daemon's readiness and shutdown.
func withNotifier(n *notifier) Option { return func(d *Daemon) { d.notify = n } }

// New checks the config, opens the identity and the store; Run starts
// the daemon.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) (*Daemon, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log, ready: make(chan struct{}), subs: map[string]*subscription{}}
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
	// The build service reads claims and trust from the store and gossips
	// intents on the network, both the daemon's once they are open.
	// It rebuilds with locked inputs from the mirror, the snapshot
	// archive, then peers.
	env := builder.Env{WorkDir: l.BuildDir(), CacheDir: cfg.CacheDir, Mirror: cfg.Mirror, Snapshot: cfg.SnapshotURL,
		Peers: peerInputs{d}, PodmanURL: cfg.Builds.PodmanURL, Timeout: cfg.Builds.Timeout, Log: log.With("sub", "builder")}
	d.builds = builds.New(builds.Config{Builds: cfg.Builds, Twice: cfg.Rebuild == "twice", Settle: intentSettle,
		Env: env, Builder: d.builder, Factory: d.factory},
		builds.Deps{Identity: id, Intents: intentNet{d}, Metrics: d.metrics, Log: log,
			Claims: func(key string) (map[string]time.Time, error) { return recipeClaims(d.st, key) },
			Votes:  func(fpr string) bool { return d.st.Votes(fpr) }})
	// The core node is the one door for what enters the store: the
	// network hands it what peers deliver (its Inlet, in Run), and it
	// tells the build service (observer) and the event stream.
	d.node, err = core.Open(cfg, core.ReadWrite, log, core.WithIdentity(id), core.WithObserver(observer{d}),
		core.WithSubscriber(d), core.WithBuildQueue(d.builds), core.WithVersion(version.String()), core.WithMirror(d))
	if err != nil {
		return nil, err
	}
	d.st = d.node.Store()
	d.builds.Connect(d.node)
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

	for _, s := range d.startSubscriptions() {
		if err := d.subscribe(ctx, s, false); err != nil {
			d.log.Error("subscription", "topic", s, "err", err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	if d.cfg.Repo.Addr != "" {
		if d.mirror, err = newMirror(d); err != nil {
			return err
		}
		rsrv, rln, err := d.listenRepo()
		if err != nil {
			return err
		}
		serve(g, gctx, "repo", rsrv, rln)
		g.Go(func() error { d.runMirror(gctx); return nil })
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
	// Imports upload up to a few MiB; the event stream writes forever.
	return newHTTPServer(rpc.Handler(d.node), 5*time.Minute, 0), limitListener(ln), nil
}

// listenPublic opens the read-only socket for the members of
// public_socket_group: owned root:<group>, mode 0660. Its directory is
// created 0755 when missing (systemd's RuntimeDirectory makes it for the
// unit).
func (d *Daemon) listenPublic() (*http.Server, net.Listener, error) {
	sock, group := d.cfg.PublicSocket, d.cfg.PublicSocketGroup
	gid, err := lookupGID(group)
	if err != nil {
		return nil, nil, fmt.Errorf("public api: %w", err)
	}
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		return nil, nil, fmt.Errorf("public api: another lebowskid answers on %s", sock)
	}
	_ = os.Remove(sock)
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		return nil, nil, fmt.Errorf("public api: %w", err)
	}
	old := umask(0o177) // no window in which others could connect
	ln, err := net.Listen("unix", sock)
	umask(old)
	if err != nil {
		return nil, nil, fmt.Errorf("public api: listen %s: %w", sock, err)
	}
	if err := os.Chown(sock, -1, gid); err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("public api: give %s to group %s: %w", sock, group, err)
	}
	if err := os.Chmod(sock, 0o660); err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("public api: %w", err)
	}
	d.log.Info("public read-only api", "socket", sock, "group", group)
	return newHTTPServer(rpc.ReadOnly(rpc.Handler(d.node)), time.Minute, 0), limitListener(ln), nil
}

// lookupGID resolves a group name or numeric GID.
func lookupGID(group string) (int, error) {
	if n, err := strconv.Atoi(group); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w (create it with `groupadd --system %s`, or set public_socket_group)", group, err, group)
	}
	return strconv.Atoi(g.Gid)
}

// Subscribe implements core.Subscriber: it joins the topic of ref, finds
// the opinion (the opinions directory, then the ones fetched before, else
// from peers by the CID the best-attested claims name) and queues a
// rebuild if this node has no own claim for the opinion's content; off
// leaves the topic. Runtime changes persist across restarts.
func (d *Daemon) Subscribe(ctx context.Context, ref vocab.Ref, on bool) error {
	if !on {
		spec := ref.String()
		d.mu.Lock()
		sub, ok := d.subs[spec]
		var op *opinions.Opinion
		waiting := true
		if ok {
			op, waiting = sub.op, sub.waiting
		}
		delete(d.subs, spec)
		d.mu.Unlock()
		if !ok {
			return core.Invalid(fmt.Errorf("not subscribed to %s", spec))
		}
		if !waiting {
			d.builds.Drop(ref.Package, op) // no longer wanted here
		}
		if err := d.net.Unsubscribe(spec); err != nil {
			return err
		}
		return d.saveSubscriptions()
	}
	if err := d.subscribe(ctx, ref, true); err != nil {
		return err
	}
	return d.saveSubscriptions()
}

func (d *Daemon) subscribe(ctx context.Context, ref vocab.Ref, strict bool) error {
	spec := ref.String()
	sub := &subscription{ref: ref}
	if ref.Opinion != "" {
		o, err := opinions.FindIn(d.opinionRoots(), spec)
		switch {
		case err == nil:
			sub.op = o
			d.keepBundle(o)
		case errors.Is(err, opinions.ErrNotFound):
			sub.waiting = true
		case strict:
			return core.Invalid(fmt.Errorf("subscription %s: %w", spec, err))
		default:
			return fmt.Errorf("subscription %s: %w", spec, err)
		}
	}
	if err := d.net.Subscribe(spec); err != nil {
		return err
	}
	d.mu.Lock()
	d.subs[spec] = sub
	d.mu.Unlock()
	if sub.waiting {
		d.log.Info("subscribed; no local opinion file, fetching it from peers when claims name it", "topic", spec)
		go d.fetchOpinion(ctx, spec)
		return nil
	}
	d.builds.Want(ref.Package, sub.op, "subscribed")
	return nil
}

// opinionRoots are where opinions are looked up: the operator's opinions
// directory, then the bundles fetched from peers.
func (d *Daemon) opinionRoots() []string {
	return []string{d.cfg.OpinionsDir, d.cfg.Layout().FetchedOpinions()}
}

// keepBundle stores an opinion's bundle as a blob, so peers can fetch it
// by the CID this node's claims name.
func (d *Daemon) keepBundle(o *opinions.Opinion) {
	if _, err := d.st.PutBlob(o.Canonical()); err != nil {
		d.log.Warn("keeping the opinion bundle", "opinion", o.Package+"/"+o.Name, "err", err)
	}
}

// fetchOpinion gets the opinion of a waiting subscription from peers: the
// content the best-attested claims name, checked against its CID and kept
// under the data dir's opinions/. It is retried when a claim arrives.
func (d *Daemon) fetchOpinion(ctx context.Context, spec string) {
	d.mu.Lock()
	sub, ok := d.subs[spec]
	if !ok || !sub.waiting {
		d.mu.Unlock()
		return
	}
	ref := sub.ref
	d.mu.Unlock()
	b, err := d.node.Opinion(ctx, core.OpinionQuery{Package: ref.Package, Name: ref.Opinion})
	if err != nil {
		d.log.Info("opinion not available yet", "topic", spec, "err", err)
		return
	}
	o, err := opinions.WriteBundle(d.cfg.Layout().FetchedOpinions(), b.CID, b.Data)
	if err != nil {
		d.log.Warn("refused an opinion bundle from peers", "topic", spec, "cid", b.CID, "err", err)
		return
	}
	d.log.Info("fetched opinion from peers", "topic", spec, "cid", o.CID(), "path", o.Path)
	d.mu.Lock()
	if cur, ok := d.subs[spec]; ok && cur.waiting {
		cur.op, cur.waiting = o, false
	}
	d.mu.Unlock()
	d.builds.Want(ref.Package, o, "opinion fetched from peers")
}

// Reload looks the subscribed opinions up again (SIGHUP): an opinion whose
// content changed gets its new CID (and a rebuild); waiting ones are
// fetched again.
func (d *Daemon) Reload(ctx context.Context) {
	d.mu.Lock()
	subs := make([]*subscription, 0, len(d.subs))
	for _, s := range d.subs {
		subs = append(subs, s)
	}
	d.mu.Unlock()
	for _, s := range subs {
		if s.ref.Opinion == "" {
			continue
		}
		spec := s.ref.String()
		o, err := opinions.FindIn(d.opinionRoots(), spec)
		if err != nil {
			if s.waiting {
				go d.fetchOpinion(ctx, spec)
			} else {
				d.log.Warn("reload: keeping the loaded opinion", "topic", spec, "err", err)
			}
			continue
		}
		d.mu.Lock()
		old := s.op
		changed := old == nil || old.CID() != o.CID()
		s.op, s.waiting = o, false
		d.mu.Unlock()
		if changed && old != nil {
			d.builds.Drop(s.ref.Package, old) // the old content is not what we follow any more
		}
		if changed {
			d.log.Info("opinion reloaded", "topic", spec, "cid", o.CID())
			d.keepBundle(o)
			d.builds.Want(s.ref.Package, o, "opinion changed")
		}
	}
}

// startSubscriptions are the config's subscriptions and the ones saved at
// runtime.
func (d *Daemon) startSubscriptions() []vocab.Ref {
	seen := map[string]bool{}
	var out []vocab.Ref
	add := func(s string) {
		r, err := vocab.ParseRef(s)
		if err != nil {
			d.log.Warn("ignoring a saved subscription", "topic", s, "err", err)
			return
		}
		if !seen[r.String()] {
			seen[r.String()] = true
			out = append(out, r)
		}
	}
	for _, s := range d.cfg.Subscribe {
		add(s)
	}
	if b, err := os.ReadFile(d.cfg.Layout().Subscriptions()); err == nil {
		var saved []string
		if err := json.Unmarshal(b, &saved); err != nil {
			d.log.Warn("ignoring an unreadable subscriptions file", "path", d.cfg.Layout().Subscriptions(), "err", err)
		}
		for _, s := range saved {
			add(s)
		}
	}
	return out
}

// saveSubscriptions writes the current subscriptions (atomically).
func (d *Daemon) saveSubscriptions() error {
	b, _ := json.MarshalIndent(d.Subscriptions(), "", "  ")
	p := d.cfg.Layout().Subscriptions()
	if err := os.WriteFile(p+".tmp", append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save subscriptions: %w", err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return fmt.Errorf("save subscriptions: %w", err)
	}
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

// claimArrived is called for every claim of another builder that was new
// to the store (from peers or imported).
func (d *Daemon) claimArrived(c *attest.Claim, via string) {
	st := c.Statement
	if via == store.ViaGossip || via == store.ViaSync {
		d.metrics.claims.WithLabelValues(string(st.Result)).Inc()
	}
	d.builds.Changed(attest.RecipeKey(st.Package, st.Opinion.CID)) // the claim may cover a waiting recipe
	spec := vocab.Ref{Package: st.Package, Opinion: st.Opinion.Name}.String()
	d.mu.Lock()
	sub, ok := d.subs[spec]
	var o *opinions.Opinion
	waiting := false
	if ok {
		o, waiting = sub.op, sub.waiting
	}
	d.mu.Unlock()
	switch {
	case !ok:
	case waiting:
		go d.fetchOpinion(context.Background(), spec)
	case o == nil && st.Opinion.CID == "", o != nil && o.CID() == st.Opinion.CID:
		d.builds.Want(st.Package, o, "peer claim "+c.ID)
	}
}

// Ready is closed once the network and the local API are up; after it,
// Node may be used.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Node is the daemon's core node (after Ready).
func (d *Daemon) Node() *core.Node { return d.node }
