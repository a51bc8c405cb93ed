// Package config is a node's configuration: the Config struct read from
// YAML and flags, its defaults (each written once, here), its validation
// and the layout of the data directory. The daemon and the CLI both load
// it; every other package receives values, never reads files or flags
// itself (kubo's config/ package plays this part). It holds plain values
// and imports no p2p, store or consensus package: the daemon converts its
// sections to their types (daemon/convert.go, core.StoreOptions), and the
// CLI, which loads it too, links no transport through it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder/source"
)

// Defaults that are not another package's (the mirror comes from
// builder/source, which owns it). The config imports no transport, store
// or consensus package, so the defaults of those it shows are copies
// here: a test of the daemon, which converts the config for them, checks
// each equals its owner's.
const (
	// DefaultSyncInterval is p2p.DefaultSyncInterval: periodic catch-up
	// with every connected peer.
	DefaultSyncInterval = 30 * time.Second
	// DefaultKeyAnnounceInterval is p2p.DefaultKeyAnnounceInterval: how
	// often the node re-announces its key on the keys topic.
	DefaultKeyAnnounceInterval = 10 * time.Minute
	// DefaultThreshold is consensus.DefaultThreshold: the SAFE TO INSTALL
	// score threshold.
	DefaultThreshold = 6.0
	// DefaultMinTrusted is consensus.DefaultMinTrusted: the fewest
	// agreeing trusted builders for SAFE TO INSTALL.
	DefaultMinTrusted   = 2
	DefaultTrustHops    = 1
	DefaultBuildTimeout = time.Hour
	DefaultConcurrency  = 1
	DefaultQueue        = 64
	// DefaultTarget is how many independent trusted builders each
	// subscribed recipe should reach before this node skips it.
	DefaultTarget = 5
	// DefaultReverifyAfter: claims older than this no longer count toward
	// the target, so old recipes are rebuilt again (re-verification).
	DefaultReverifyAfter = 30 * 24 * time.Hour
	// DefaultIntentTTL is how long others count this node's build intent
	// without a renewal (renewed every third of it while building).
	DefaultIntentTTL = 10 * time.Minute
	DefaultLogLevel  = "info"
	DefaultLogFormat = "text"
	MaxTrustHops     = 5
	// MinIntentTTL is the shortest builds.intent_ttl: shorter would flood
	// the intents topic with renewals.
	MinIntentTTL = time.Second
)

// DefaultListenAddrs is p2p.DefaultListenAddrs: the libp2p multiaddrs
// listened on when listen is empty.
var DefaultListenAddrs = []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"}

// ErrInvalid wraps every configuration problem (exit 2).
var ErrInvalid = errors.New("invalid configuration")

// Config is a node's configuration (YAML file + flags). Every field is
// optional; Defaults fills in what is missing.
type Config struct {
	DataDir     string   `yaml:"data_dir"`
	OpinionsDir string   `yaml:"opinions_dir"`
	CacheDir    string   `yaml:"cache_dir"` // sources + images; nodes on one machine may share it
	Listen      []string `yaml:"listen"`    // libp2p multiaddrs
	Bootstrap   []string `yaml:"bootstrap"` // /ip4/…/tcp/…/p2p/<id>
	MDNS        *bool    `yaml:"mdns"`
	DHT         bool     `yaml:"dht"`
	Subscribe   []string `yaml:"subscribe"`    // package/opinion
	TrustedKeys []string `yaml:"trusted_keys"` // OpenPGP fingerprints
	// TrustHops is how many OpenPGP certification hops from a trusted key
	// still make a key trusted (0: only keys trusted directly).
	TrustHops  *int    `yaml:"trust_hops"`
	Threshold  float64 `yaml:"threshold"`   // SAFE TO INSTALL score threshold (0 = DefaultThreshold)
	MinTrusted int     `yaml:"min_trusted"` // fewest agreeing trusted keys for SAFE (0 = DefaultMinTrusted)
	APISocket  string  `yaml:"api_socket"`
	// PublicSocket, when set, is a second API socket serving only the
	// read part of the API (info, verify, claims, keys, blobs, status) to
	// the members of PublicSocketGroup (mode 0660): the system daemon's
	// /run/lebowski/lebowskid.sock, so ordinary users need no root.
	PublicSocket      string `yaml:"public_socket"`
	PublicSocketGroup string `yaml:"public_socket_group"` // name or GID; default "lebowski"
	MetricsAddr       string `yaml:"metrics_addr"`        // opt-in, e.g. 127.0.0.1:9464
	// StatusAddr serves the status page (HTML, /status.json, /events) over
	// HTTP; opt-in, e.g. 127.0.0.1:9466. It shows what the read API shows,
	// to anyone who can reach the address: keep it on loopback.
	StatusAddr string `yaml:"status_addr"`
	Mirror     string `yaml:"mirror"`
	// SnapshotURL is a Debian snapshot archive (the directory holding
	// archive/debian/<timestamp>/), the second place locked inputs are
	// fetched from after the mirror; "" = none.
	SnapshotURL string        `yaml:"snapshot_url"`
	SyncEvery   time.Duration `yaml:"sync_interval"`
	// KeyAnnounceInterval is how often the node re-announces its key (with
	// the certifications it holds) on the keys topic: default 10m,
	// jittered ±25 %; negative: only when new peers arrive.
	KeyAnnounceInterval time.Duration `yaml:"key_announce_interval"`
	Builds              BuildConfig   `yaml:"builds"`
	// Rebuild is "once" (default) or "twice": build every recipe two
	// times and sign "unreproducible" (both hash sets, the diffoscope
	// report) when they differ.
	Rebuild   string `yaml:"rebuild"`
	LogLevel  string `yaml:"log_level"`  // debug|info|warn|error
	LogFormat string `yaml:"log_format"` // text|json
	// Apt is the policy of `lebowski apt-check`, apt's hook (docs/APT.md).
	Apt AptPolicy `yaml:"apt"`
	// Repo serves the .debs of SAFE recipes as an apt repository.
	Repo RepoConfig `yaml:"repo"`
	// Limits bound what one peer can make the node do: gossip, sync and
	// blob rates, streams per peer, session deadlines (docs/SECURITY.md).
	Limits Limits `yaml:"limits"`
	// Budget bounds what keys that do not vote (unknown, unvetted) can
	// make the store hold, each (claims_per_key, recipes_per_key,
	// bytes_per_key) and all together (pool_bytes, pool_keys,
	// store_bytes); trusted and own claims are never refused.
	Budget Budget `yaml:"budget"`
}

// AptPolicy decides which packages apt may unpack.
type AptPolicy struct {
	// Lebowski is what happens to Lebowski builds (versions with
	// ~<opinion>+N) that are not SAFE TO INSTALL: "refuse" (default),
	// "warn" (install, print the verdict) or "off" (do not ask).
	Lebowski string `yaml:"lebowski"`
	// Require lists other binary packages that must be SAFE by consensus
	// too, e.g. Debian packages the operator wants rebuilt by others
	// before installing. Matched against the package apt installs, never
	// the Source field a .deb declares (docs/APT.md).
	Require []string `yaml:"require"`
	// Allow lists binary packages installed whatever their verdict
	// (printed), matched the same way.
	Allow []string `yaml:"allow"`
}

// RepoConfig is the node's apt repository of verified packages.
type RepoConfig struct {
	// Addr serves the repository over HTTP (e.g. 127.0.0.1:9465); off
	// when empty.
	Addr string `yaml:"addr"`
	// Packages are mirrored besides the subscriptions ("pkg" or
	// "pkg/opinion"); `lebowski fetch` adds to them at run time.
	Packages []string `yaml:"packages"`
}

// Apt policy values.
const (
	AptRefuse = "refuse"
	AptWarn   = "warn"
	AptOff    = "off"
)

// BuildConfig bounds rebuilds.
type BuildConfig struct {
	Enabled     *bool         `yaml:"enabled"`     // default true
	Concurrency int           `yaml:"concurrency"` // default 1
	Queue       int           `yaml:"queue"`       // default 64
	Timeout     time.Duration `yaml:"timeout"`     // default 1h; a timeout is signed as a failed build
	PodmanURL   string        `yaml:"podman_url"`  // default: start a private podman service
	// Target is how many independent trusted builders (own included) each
	// subscribed recipe should reach: the node builds the recipes furthest
	// from it and skips those that reached it, by claims or by others'
	// build intents (docs/SCHEDULER.md). Default 5.
	Target int `yaml:"target"`
	// ReverifyAfter: claims older than this do not count toward Target,
	// so recipes are rebuilt again once their newest claims are that old
	// (default 720h; negative: claims never get too old).
	ReverifyAfter time.Duration `yaml:"reverify_after"`
	// IntentTTL is how long peers count this node's build intent without a
	// renewal: a node that dies mid-build is replaced after at most this
	// long (default 10m, whole seconds, 1s..6h).
	IntentTTL time.Duration `yaml:"intent_ttl"`
}

// MaxAge is ReverifyAfter for the scheduler: 0 when claims never get too
// old.
func (b BuildConfig) MaxAge() time.Duration {
	if b.ReverifyAfter < 0 {
		return 0
	}
	return b.ReverifyAfter
}

// Load reads the configuration of the node at dataDir ("" = DefaultDataDir):
// the file at path, or <data-dir>/config.yaml when path is "" (which may
// be missing). Unknown keys are errors. Flags are applied by the caller,
// then Defaults and Validate.
func Load(dataDir, path string) (*Config, error) {
	if dataDir == "" {
		dataDir = DefaultDataDir()
	}
	optional := path == ""
	if optional {
		path = Layout{Dir: dataDir}.Config()
	}
	c := &Config{}
	b, err := os.ReadFile(path)
	switch {
	case err != nil && optional && errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	default:
		d := yaml.NewDecoder(bytes.NewReader(b))
		d.KnownFields(true)
		if err := d.Decode(c); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, path, err)
		}
	}
	if c.DataDir == "" || !optional {
		c.DataDir = dataDir
	}
	return c, nil
}

// Defaults fills in unset fields.
func (c *Config) Defaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir()
	}
	if c.OpinionsDir == "" {
		c.OpinionsDir = DefaultOpinionsDir()
	}
	if c.CacheDir == "" {
		c.CacheDir = c.Layout().DefaultCache()
	}
	if c.PublicSocket != "" && c.PublicSocketGroup == "" {
		c.PublicSocketGroup = DefaultPublicSocketGroup
	}
	if c.Rebuild == "" {
		c.Rebuild = "once"
	}
	if c.Apt.Lebowski == "" {
		c.Apt.Lebowski = AptRefuse
	}
	if len(c.Listen) == 0 {
		c.Listen = append([]string(nil), DefaultListenAddrs...)
	}
	if c.MDNS == nil {
		c.MDNS = ptr(true)
	}
	if c.TrustHops == nil {
		c.TrustHops = ptr(DefaultTrustHops)
	}
	if c.Threshold == 0 {
		c.Threshold = DefaultThreshold
	}
	if c.MinTrusted == 0 {
		c.MinTrusted = DefaultMinTrusted
	}
	if c.Mirror == "" {
		c.Mirror = source.DefaultMirror
	}
	if c.SyncEvery == 0 {
		c.SyncEvery = DefaultSyncInterval
	}
	if c.KeyAnnounceInterval == 0 {
		c.KeyAnnounceInterval = DefaultKeyAnnounceInterval
	}
	if c.Builds.Enabled == nil {
		c.Builds.Enabled = ptr(true)
	}
	if c.Builds.Concurrency == 0 {
		c.Builds.Concurrency = DefaultConcurrency
	}
	if c.Builds.Queue == 0 {
		c.Builds.Queue = DefaultQueue
	}
	if c.Builds.Timeout == 0 {
		c.Builds.Timeout = DefaultBuildTimeout
	}
	if c.Builds.Target == 0 {
		c.Builds.Target = DefaultTarget
	}
	if c.Builds.ReverifyAfter == 0 {
		c.Builds.ReverifyAfter = DefaultReverifyAfter
	}
	if c.Builds.IntentTTL == 0 {
		c.Builds.IntentTTL = DefaultIntentTTL
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.LogFormat == "" {
		c.LogFormat = DefaultLogFormat
	}
	for i, k := range c.TrustedKeys {
		c.TrustedKeys[i] = vocab.NormalizeFingerprint(k)
	}
}

func ptr[T any](v T) *T { return &v }

// Validate reports every problem in the config at once; each wraps
// ErrInvalid.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...))
	}
	for _, s := range c.Subscribe {
		if _, err := vocab.ParseRef(s); err != nil {
			add("subscribe: %v", err)
		}
	}
	for _, k := range c.TrustedKeys {
		if err := vocab.CheckFingerprint(k); err != nil {
			add("trusted_keys: %v", err)
		}
	}
	if c.Builds.Concurrency < 0 || c.Builds.Concurrency > 16 {
		add("builds.concurrency: %d not in 1..16", c.Builds.Concurrency)
	}
	if c.Builds.Queue < 0 || c.Builds.Queue > 10000 {
		add("builds.queue: %d not in 1..10000", c.Builds.Queue)
	}
	if c.Builds.Timeout < 0 {
		add("builds.timeout: %s is negative", c.Builds.Timeout)
	}
	if c.Builds.Target < 0 || c.Builds.Target > 100 {
		add("builds.target: %d not in 1..100", c.Builds.Target)
	}
	if ttl := c.Builds.IntentTTL; ttl != 0 && (ttl < MinIntentTTL || ttl > attest.MaxIntentTTL || ttl%time.Second != 0) {
		add("builds.intent_ttl: %s not whole seconds in %s..%s", ttl, MinIntentTTL, attest.MaxIntentTTL)
	}
	if c.Threshold < 0 || c.Threshold > 10 {
		add("threshold: %v not in 0..10", c.Threshold)
	}
	if c.MinTrusted < 0 {
		add("min_trusted: %d is negative", c.MinTrusted)
	}
	if c.SnapshotURL != "" && !strings.HasPrefix(c.SnapshotURL, "http://") && !strings.HasPrefix(c.SnapshotURL, "https://") {
		add("snapshot_url: %q is not an http(s) URL", c.SnapshotURL)
	}
	if c.PublicSocket != "" && !filepath.IsAbs(c.PublicSocket) {
		add("public_socket: %q is not an absolute path", c.PublicSocket)
	}
	if c.PublicSocket != "" && c.PublicSocket == c.Socket() {
		add("public_socket: %q is also the private api socket", c.PublicSocket)
	}
	for _, a := range []struct{ key, addr string }{{"metrics_addr", c.MetricsAddr}, {"status_addr", c.StatusAddr}} {
		if err := checkAddr(a.addr); err != nil {
			add("%s: %v", a.key, err)
		}
	}
	if c.StatusAddr != "" && !strings.HasSuffix(c.StatusAddr, ":0") && (c.StatusAddr == c.MetricsAddr || c.StatusAddr == c.Repo.Addr) {
		add("status_addr: %q is also metrics_addr or repo.addr: give the status page a port of its own", c.StatusAddr)
	}
	if l := c.Limits; l.GossipPerSecond < 0 || l.GossipBurst < 0 || l.SyncSessionsPerMinute < 0 || l.SyncSessionTimeout < 0 ||
		l.SyncRequestsPerSession < 0 || l.BlobsPerPeer < 0 || l.BlobRequestsPerMinute < 0 {
		add("limits: negative values are not allowed (leave a field out or 0 for its default)")
	}
	if c.TrustHops != nil && (*c.TrustHops < 0 || *c.TrustHops > MaxTrustHops) {
		add("trust_hops: %d not in 0..%d", *c.TrustHops, MaxTrustHops)
	}
	switch c.Rebuild {
	case "", "once", "twice":
	default:
		add("rebuild: %q is not once|twice", c.Rebuild)
	}
	switch c.Apt.Lebowski {
	case "", AptRefuse, AptWarn, AptOff:
	default:
		add("apt.lebowski: %q is not refuse|warn|off", c.Apt.Lebowski)
	}
	for _, p := range append(append([]string(nil), c.Apt.Require...), c.Apt.Allow...) {
		if err := vocab.CheckPackage(p); err != nil {
			add("apt: %v", err)
		}
	}
	for _, p := range c.Repo.Packages {
		if _, err := vocab.ParseRef(p); err != nil {
			add("repo.packages: %v", err)
		}
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		add("log_level: %q is not debug|info|warn|error", c.LogLevel)
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		add("log_format: %q is not text|json", c.LogFormat)
	}
	return errors.Join(errs...)
}

// checkAddr accepts "" (off) or a TCP listen address host:port with a
// numeric port (0: any free port; the host may be empty: every
// interface).
func checkAddr(addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:9466, [::1]:9466): %v", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number in 0..65535", addr, port)
	}
	return nil
}

// Layout is the data directory of this configuration.
func (c *Config) Layout() Layout { return Layout{Dir: c.DataDir} }

// Socket is the local API socket: api_socket, or <data-dir>/lebowskid.sock.
func (c *Config) Socket() string {
	if c.APISocket != "" {
		return c.APISocket
	}
	return c.Layout().Socket()
}

// SystemSocket is where the system daemon (the systemd unit) serves its
// public, read-only socket; $LEBOWSKI_SYSTEM_SOCKET overrides it.
const SystemSocket = "/run/lebowski/lebowskid.sock"

// DefaultPublicSocketGroup owns the public socket unless configured.
const DefaultPublicSocketGroup = "lebowski"

// SystemSocketPath is SystemSocket or $LEBOWSKI_SYSTEM_SOCKET.
func SystemSocketPath() string {
	if s := os.Getenv("LEBOWSKI_SYSTEM_SOCKET"); s != "" {
		return s
	}
	return SystemSocket
}

// Hops is TrustHops with its default.
func (c *Config) Hops() int {
	if c.TrustHops == nil {
		return DefaultTrustHops
	}
	return *c.TrustHops
}
