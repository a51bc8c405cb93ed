package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/builder/source"
)

func TestValidate(t *testing.T) {
	hops := func(n int) *int { return &n }
	for _, tc := range []struct {
		desc string
		cfg  Config
		ok   bool
		want string
	}{
		{"defaults", Config{}, true, ""},
		{"vanilla subscription", Config{Subscribe: []string{"hello"}}, true, ""},
		{"upper-case subscription", Config{Subscribe: []string{"Hello/o3"}}, false, "subscribe"},
		{"hyphenated opinion", Config{Subscribe: []string{"pv/no-nls"}}, false, "subscribe"},
		{"shell in subscription", Config{Subscribe: []string{"hello/$(x)"}}, false, "subscribe"},
		{"bad fingerprint", Config{TrustedKeys: []string{"abc"}}, false, "trusted_keys"},
		{"lower-case fingerprint is normalised", Config{TrustedKeys: []string{strings.Repeat("ab", 20)}}, true, ""},
		{"threshold out of range", Config{Threshold: 11}, false, "threshold"},
		{"trust hops out of range", Config{TrustHops: hops(9)}, false, "trust_hops"},
		{"zero trust hops", Config{TrustHops: hops(0)}, true, ""},
		{"negative timeout", Config{Builds: BuildConfig{Timeout: -time.Second}}, false, "builds.timeout"},
		{"bad log level", Config{LogLevel: "loud"}, false, "log_level"},
		{"bad log format", Config{LogFormat: "xml"}, false, "log_format"},
		{"relative public socket", Config{PublicSocket: "run/l.sock"}, false, "public_socket"},
		{"public socket is the private one", Config{APISocket: "/run/l.sock", PublicSocket: "/run/l.sock"}, false, "public_socket"},
		{"system public socket", Config{PublicSocket: SystemSocket}, true, ""},
		{"status page", Config{StatusAddr: "127.0.0.1:9466", MetricsAddr: "127.0.0.1:9464"}, true, ""},
		{"status page on ipv6 loopback", Config{StatusAddr: "[::1]:9466"}, true, ""},
		{"status page on any free port", Config{StatusAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0"}, true, ""},
		{"status page without a port", Config{StatusAddr: "127.0.0.1"}, false, "status_addr"},
		{"status page, named port", Config{StatusAddr: "localhost:http"}, false, "status_addr"},
		{"status page, port out of range", Config{StatusAddr: "127.0.0.1:70000"}, false, "status_addr"},
		{"status page on the metrics port", Config{StatusAddr: "127.0.0.1:9464", MetricsAddr: "127.0.0.1:9464"}, false, "status_addr"},
		{"status page on the repo port", Config{StatusAddr: "127.0.0.1:9465", Repo: RepoConfig{Addr: "127.0.0.1:9465"}}, false, "status_addr"},
		{"bad metrics address", Config{MetricsAddr: "9464"}, false, "metrics_addr"},
		{"apt policy", Config{Apt: AptPolicy{Lebowski: "warn", Require: []string{"openssl"}, Allow: []string{"hello"}}}, true, ""},
		{"rebuild twice", Config{Rebuild: "twice"}, true, ""},
		{"rebuild thrice", Config{Rebuild: "thrice"}, false, "rebuild"},
		{"bad apt policy", Config{Apt: AptPolicy{Lebowski: "maybe"}}, false, "apt.lebowski"},
		{"bad apt package", Config{Apt: AptPolicy{Require: []string{"Open SSL"}}}, false, "apt"},
		{"bad repo package", Config{Repo: RepoConfig{Packages: []string{"hello/O3"}}}, false, "repo.packages"},
		{"limits", Config{Limits: Limits{GossipPerSecond: 50, BlobsPerPeer: 1}}, true, ""},
		{"negative limit", Config{Limits: Limits{SyncSessionTimeout: -time.Second}}, false, "limits"},
		{"budget, a limit disabled", Config{Budget: Budget{ClaimsPerKey: 100, StoreBytes: -1}}, true, ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := tc.cfg
			c.DataDir = t.TempDir()
			c.Defaults()
			err := c.Validate()
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrInvalid))
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestDefaultsWrittenOnce(t *testing.T) {
	c := Config{DataDir: t.TempDir()}
	c.Defaults()
	assert.Equal(t, source.DefaultMirror, c.Mirror)
	// The copies of p2p's and consensus's defaults (the daemon's
	// TestConfigDefaultsAreTheOwners checks they equal the owners').
	assert.Equal(t, DefaultListenAddrs, c.Listen)
	assert.Equal(t, DefaultSyncInterval, c.SyncEvery)
	assert.Equal(t, DefaultKeyAnnounceInterval, c.KeyAnnounceInterval)
	assert.Equal(t, DefaultThreshold, c.Threshold)
	assert.Equal(t, DefaultMinTrusted, c.MinTrusted)
	assert.Equal(t, DefaultTrustHops, c.Hops())
	assert.Equal(t, filepath.Join(c.DataDir, "cache"), c.CacheDir)
	assert.Equal(t, filepath.Join(c.DataDir, "lebowskid.sock"), c.Socket())
	c.APISocket = "/run/x.sock"
	assert.Equal(t, "/run/x.sock", c.Socket())
	// Defaults never overwrite what is set.
	zero := 0
	d := Config{DataDir: "/d", Mirror: "http://m", TrustHops: &zero, Threshold: 7}
	d.Defaults()
	assert.Equal(t, "http://m", d.Mirror)
	assert.Equal(t, 0, d.Hops())
	assert.Equal(t, 7.0, d.Threshold)
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	require.NoError(t, os.WriteFile(p, []byte("subscribe: [hello/o3]\nunknown_key: 1\n"), 0o600))
	_, err := Load(dir, p)
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, "unknown_key")

	// The data dir's config.yaml is optional; an explicit --config is not.
	c, err := Load(dir, "")
	require.NoError(t, err)
	assert.Equal(t, dir, c.DataDir)
	_, err = Load(dir, filepath.Join(dir, "missing.yaml"))
	require.ErrorIs(t, err, ErrInvalid)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("trust_hops: 0\nmirror: http://mirror.example/debian\n"), 0o600))
	c, err = Load(dir, "")
	require.NoError(t, err)
	c.Defaults()
	assert.Equal(t, 0, c.Hops())
	assert.Equal(t, "http://mirror.example/debian", c.Mirror)
}

func TestLayoutCheckExists(t *testing.T) {
	l := Layout{Dir: filepath.Join(t.TempDir(), "typo")}
	err := l.CheckExists()
	require.ErrorIs(t, err, ErrNoNode)
	assert.Contains(t, err.Error(), "lebowski key gen")
	_, statErr := os.Stat(l.Dir)
	assert.True(t, os.IsNotExist(statErr), "checking creates nothing")
	require.NoError(t, l.Ensure())
	require.NoError(t, os.WriteFile(l.StoreDB(), nil, 0o600))
	require.NoError(t, l.CheckExists())
}

// The limits and budget of docs/DAEMON.md load as written there.
func TestLoadLimitsAndBudget(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	doc := "limits:\n  gossip_per_second: 50\n  gossip_burst: 100\n  sync_sessions_per_minute: 10\n  sync_session_timeout: 2m\n" +
		"  sync_requests_per_session: 100\n  blobs_per_peer: 1\n  blob_requests_per_minute: 60\n" +
		"budget:\n  claims_per_key: 100\n  recipes_per_key: 10\n  bytes_per_key: 1048576\n  store_bytes: -1\n"
	require.NoError(t, os.WriteFile(p, []byte(doc), 0o600))
	c, err := Load(dir, p)
	require.NoError(t, err)
	c.Defaults()
	require.NoError(t, c.Validate())
	assert.Equal(t, Limits{GossipPerSecond: 50, GossipBurst: 100, SyncSessionsPerMinute: 10, SyncSessionTimeout: 2 * time.Minute,
		SyncRequestsPerSession: 100, BlobsPerPeer: 1, BlobRequestsPerMinute: 60}, c.Limits)
	assert.Equal(t, Budget{ClaimsPerKey: 100, RecipesPerKey: 10, BytesPerKey: 1 << 20, StoreBytes: -1}, c.Budget)
}
