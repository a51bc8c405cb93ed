package p2p

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/lebowski-dist/lebowski/attest"
)

// Defaults.
const (
	DefaultSyncInterval      = 30 * time.Second
	DefaultReconnectInterval = 30 * time.Second
	DefaultSyncTimeout       = 5 * time.Minute
	DefaultMaxBlobSize       = 64 << 20
	DefaultSyncBatch         = 500
	// DefaultKeyAnnounceInterval is how often a node re-announces its own
	// key on KeysTopic.
	DefaultKeyAnnounceInterval = 10 * time.Minute
	// MaxGossipMessageSize is gossipsub's message size limit: well above
	// attest.MaxEnvelopeSize so that oversize claims reach the validator
	// (and cost their sender score) instead of being dropped silently.
	MaxGossipMessageSize = 256 << 10
)

// DefaultListenAddrs are used when Config.ListenAddrs is empty.
var DefaultListenAddrs = []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"}

// Config is the node's configuration (the `p2p:` part of the daemon's
// config file). Zero values take the defaults above.
type Config struct {
	// IdentityPath is the libp2p private key file (created on first use,
	// mode 0600). Empty: a fresh key per run unless WithPrivateKey is used.
	IdentityPath string `yaml:"identity_path"`
	// ListenAddrs are multiaddrs, e.g. /ip4/0.0.0.0/tcp/4001 and
	// /ip4/0.0.0.0/udp/4001/quic-v1.
	ListenAddrs []string `yaml:"listen"`
	// BootstrapPeers are multiaddrs ending in /p2p/<peer id>; the node
	// connects at start and reconnects every ReconnectInterval.
	BootstrapPeers []string `yaml:"bootstrap"`
	// Subscribe lists topics as "<package>/<opinion>" ("hello" = vanilla).
	Subscribe []string `yaml:"subscribe"`
	// MDNS enables LAN discovery.
	MDNS bool `yaml:"mdns"`
	// DHT enables a Kademlia DHT (protocol prefix /lebowski) used to find
	// peers of subscribed topics.
	DHT bool `yaml:"dht"`
	// SyncAll catches up on every package peers have; otherwise only the
	// packages of subscribed topics and packages already in the store.
	SyncAll bool `yaml:"sync_all"`
	// SyncInterval between periodic catch-ups with every connected peer
	// (jittered ±25%). Negative disables periodic sync (on-connect sync stays).
	SyncInterval time.Duration `yaml:"sync_interval"`
	// ReconnectInterval between attempts to reach bootstrap peers.
	ReconnectInterval time.Duration `yaml:"reconnect_interval"`
	// KeyAnnounceInterval between re-announcements of the node's own key
	// on KeysTopic (jittered ±25 %; default 10 min). Negative disables
	// them (the announcement after a new peer connects stays).
	KeyAnnounceInterval time.Duration `yaml:"key_announce_interval"`
	// MaxBlobSize bounds blobs served and fetched.
	MaxBlobSize int64 `yaml:"max_blob_size"`
	// Limits bound what one peer can make the node do (limits.go).
	Limits Limits `yaml:"limits"`
}

func (c *Config) fill() {
	if len(c.ListenAddrs) == 0 {
		c.ListenAddrs = append([]string(nil), DefaultListenAddrs...)
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.ReconnectInterval <= 0 {
		c.ReconnectInterval = DefaultReconnectInterval
	}
	if c.KeyAnnounceInterval == 0 {
		c.KeyAnnounceInterval = DefaultKeyAnnounceInterval
	}
	if c.MaxBlobSize <= 0 {
		c.MaxBlobSize = DefaultMaxBlobSize
	}
	c.Limits.fill()
}

// bootstrapInfos parses the bootstrap multiaddrs.
func (c *Config) bootstrapInfos() ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, s := range c.BootstrapPeers {
		ma, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: bootstrap peer %q: %w", ErrConfig, s, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(ma)
		if err != nil {
			return nil, fmt.Errorf("%w: bootstrap peer %q must end in /p2p/<peer id>: %w", ErrConfig, s, err)
		}
		out = append(out, *ai)
	}
	return out, nil
}

// Deps are the node's collaborators.
type Deps struct {
	// Claims is required: what sync serves.
	Claims ClaimStore
	// Inlet receives what peers deliver. When nil, Claims must implement
	// it (p2ptest.MemStore does).
	Inlet Inlet
	// Blobs is optional: without it the node serves no blobs and FetchBlob
	// does not keep what it fetches.
	Blobs BlobStore
	// Keys, optional, is consulted before Claims for builder keys (e.g. the
	// operator's trusted keyring).
	Keys attest.KeyLookup
}

type options struct {
	log           *slog.Logger
	sk            crypto.PrivKey
	onClaim       []func(*attest.Claim, peer.ID)
	verify        attest.VerifyOptions
	scorePeriod   time.Duration
	psOpts        []pubsub.Option
	gater         connmgr.ConnectionGater
	syncBatch     int
	verifyWorkers int
	syncTimeout   time.Duration
}

func defaultOptions() options {
	return options{
		log:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		scorePeriod:   time.Second,
		syncBatch:     DefaultSyncBatch,
		verifyWorkers: runtime.GOMAXPROCS(0),
		syncTimeout:   DefaultSyncTimeout,
	}
}

// Option configures a Node.
type Option func(*options)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithPrivateKey uses sk as the peer identity (overrides IdentityPath).
func WithPrivateKey(sk crypto.PrivKey) Option { return func(o *options) { o.sk = sk } }

// WithOnClaim registers a callback for every claim newly stored from the
// network (gossip or sync), with the peer it came from. Callbacks run on
// the network goroutines: keep them short (queue work).
func WithOnClaim(fn func(*attest.Claim, peer.ID)) Option {
	return func(o *options) { o.onClaim = append(o.onClaim, fn) }
}

// WithVerifyOptions sets the options passed to attest.Verify.
func WithVerifyOptions(v attest.VerifyOptions) Option { return func(o *options) { o.verify = v } }

// WithScoreInspectPeriod sets how often peer scores are refreshed for Peers().
func WithScoreInspectPeriod(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.scorePeriod = d
		}
	}
}

// WithPubsubOptions appends raw gossipsub options (tests: faster heartbeats).
func WithPubsubOptions(opts ...pubsub.Option) Option {
	return func(o *options) { o.psOpts = append(o.psOpts, opts...) }
}

// WithConnectionGater adds a gater consulted in addition to Block/Unblock.
func WithConnectionGater(g connmgr.ConnectionGater) Option { return func(o *options) { o.gater = g } }

// WithSyncBatch sets how many claims are requested per sync round trip.
func WithSyncBatch(n int) Option {
	return func(o *options) {
		if n > 0 && n <= MaxGetIDs {
			o.syncBatch = n
		}
	}
}

// WithVerifyWorkers sets the number of goroutines verifying synced claims.
func WithVerifyWorkers(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.verifyWorkers = n
		}
	}
}

// WithSyncTimeout bounds one catch-up session with one peer.
func WithSyncTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.syncTimeout = d
		}
	}
}
