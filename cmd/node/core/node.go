package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/store"
)

// Network is what the node needs from the peer-to-peer layer. A node
// without one (the CLI on its own) is offline.
type Network interface {
	PeerID() string
	Addrs() []string
	Peers() []PeerInfo
	// Publish gossips a claim the node has already stored.
	Publish(ctx context.Context, c *attest.Claim) error
	// FetchBlob gets a blob from some peer (checked against the CID,
	// kept by the node) and says which peer answered.
	FetchBlob(ctx context.Context, cid string, maxSize int64) ([]byte, string, error)
	// PublishKey announces a stored public key (binary) on the keys topic.
	PublishKey(ctx context.Context, pub []byte) error
}

// Subscriber follows opinion topics (the daemon: load the opinion, join
// the topic, queue a rebuild, remember the choice).
type Subscriber interface {
	Subscribe(ctx context.Context, ref vocab.Ref, on bool) error
	Subscriptions() []string
}

// Mirrorer keeps the .debs of SAFE recipes and serves them as an apt
// repository (the daemon).
type Mirrorer interface {
	Mirror(ctx context.Context, ref vocab.Ref) (*MirrorResult, error)
}

// BuildQueue reports the daemon's rebuild queue.
type BuildQueue interface {
	Queued() int
	Running() []string
}

// BuildDetails is optionally implemented by a BuildQueue: the running
// builds with their log tails, and the intents of other builders counted.
type BuildDetails interface {
	RunningBuilds() []RunningBuild
	BuildIntents() []BuildIntent
}

// Node implements API over the node's store: in the CLI when no daemon
// runs, and inside lebowskid, which serves it on its socket.
type Node struct {
	st      *store.Store
	id      *attest.Identity
	trusted []string
	hops    int
	policy  consensus.Options
	log     *slog.Logger
	now     func() time.Time
	net     Network
	subs    Subscriber
	builds  BuildQueue
	mirror  Mirrorer
	obs     Observer
	events  *broker
	// ownsStore: the node was opened by Open and closes its store.
	ownsStore bool
	closeOnce sync.Once
	started   time.Time
	version   string
	ownReady  sync.Once
	ownErr    error

	// The trust view (trust.go): the last complete one, swapped in when
	// a rebuild ends; trustMu serialises rebuilds, kickMu guards the
	// running background rebuild's done channel.
	trustCur  atomic.Pointer[trustState]
	trustMu   sync.Mutex
	kickMu    sync.Mutex
	kickDone  chan struct{}
	certMemo  certMemo // guarded by trustMu
	trustWait time.Duration
	// lastRebuild is how long the last rebuild took (ns); nextKick when
	// the next background rebuild may start (unix ns).
	lastRebuild, nextKick atomic.Int64
}

var _ API = (*Node)(nil)

// Option configures a Node.
type Option func(*Node)

// WithIdentity sets the node's builder key (needed to record builds).
func WithIdentity(id *attest.Identity) Option { return func(n *Node) { n.id = id } }

// WithConfig takes the trust settings from the configuration: trusted
// keys, certification hops, threshold and minimum of trusted builders.
func WithConfig(c *config.Config) Option {
	return func(n *Node) {
		n.trusted = append([]string(nil), c.TrustedKeys...)
		n.hops = c.Hops()
		n.policy.Threshold, n.policy.MinTrusted = c.Threshold, c.MinTrusted
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(n *Node) { n.log = l } }

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(n *Node) { n.now = now } }

// WithNetwork connects the node to the peer-to-peer layer.
func WithNetwork(net Network) Option { return func(n *Node) { n.net = net } }

// Connect connects the node to the peer-to-peer layer after New: the
// network layer needs the node's Inlet to start, the node needs the
// network to publish. Call it before the node serves its API or records
// builds.
func (n *Node) Connect(net Network) { n.net = net }

// WithSubscriber lets the node follow opinion topics.
func WithSubscriber(s Subscriber) Option { return func(n *Node) { n.subs = s } }

// WithMirror lets the node mirror verified packages (Mirror).
func WithMirror(m Mirrorer) Option { return func(n *Node) { n.mirror = m } }

// WithBuildQueue reports the daemon's rebuild queue in Status.
func WithBuildQueue(q BuildQueue) Option { return func(n *Node) { n.builds = q } }

// WithVersion sets the version string Status reports.
func WithVersion(v string) Option { return func(n *Node) { n.version = v } }

// New returns a node over an open store. The caller keeps ownership of
// the store (and closes it after the node is done).
func New(st *store.Store, opts ...Option) *Node {
	n := &Node{st: st, hops: config.DefaultTrustHops, log: slog.New(slog.DiscardHandler), now: time.Now, events: newBroker(), trustWait: DefaultTrustWait}
	for _, o := range opts {
		o(n)
	}
	n.started = n.now()
	return n
}

// Store is the node's store.
func (n *Node) Store() *store.Store { return n.st }

// Identity is the node's builder key, or nil.
func (n *Node) Identity() *attest.Identity { return n.id }

// Emit sends an event to Events subscribers (the daemon's builds and
// peers' claims).
func (n *Node) Emit(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = n.now()
	}
	n.events.publish(ev)
}

// EndEvents ends the event streams (the daemon, as it stops, so that
// its API server can).
func (n *Node) EndEvents() { n.events.close() }

// Close ends the event streams and, for a node made by Open, closes its
// store.
func (n *Node) Close() {
	n.EndEvents()
	if n.ownsStore {
		n.closeOnce.Do(func() {
			if err := n.st.Close(); err != nil {
				n.log.Warn("close store", "err", err)
			}
		})
	}
}

func (n *Node) options() consensus.Options {
	o := n.policy
	o.Now = n.now()
	return o
}

// LoadIdentity loads the builder key of the node at l; with create it
// generates one (named name) on first use. created says it did.
func LoadIdentity(l config.Layout, create bool, name string) (id *attest.Identity, created bool, err error) {
	id, err = attest.LoadIdentity(l.BuilderKey())
	if err == nil {
		return id, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	if !create {
		return nil, false, fmt.Errorf("%w in %s: run `lebowski key gen`", ErrNoIdentity, l.Dir)
	}
	if err := l.Ensure(); err != nil {
		return nil, false, err
	}
	if name == "" {
		name = "Lebowski builder"
	}
	if id, err = attest.GenerateIdentity(name, ""); err != nil {
		return nil, false, err
	}
	if err := id.Save(l.BuilderKey(), false); err != nil {
		return nil, false, err
	}
	return id, true, nil
}

// EnsureOwnKey stores the node's own public key as TrustOwn (once per
// node; RecordBuild calls it too).
func (n *Node) EnsureOwnKey() error {
	if n.id == nil {
		return ErrNoIdentity
	}
	return n.ensureOwnKey()
}

func (n *Node) ensureOwnKey() error {
	n.ownReady.Do(func() {
		ki, err := n.st.GetKey(n.id.Fingerprint())
		if err == nil && ki.Trust == attest.TrustOwn {
			return
		}
		if _, err := n.st.PutKey(n.id.PublicKey(), attest.TrustOwn, "own key"); err != nil {
			n.ownErr = fmt.Errorf("store own key: %w", err)
		}
	})
	return n.ownErr
}
