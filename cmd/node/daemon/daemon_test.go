package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/builder/buildertest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

// fakeBuilder "builds" deterministically from the recipe (buildertest.Fake).
type fakeBuilder = buildertest.Fake

func hex64(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

type testDaemon struct {
	d      *Daemon
	fb     *fakeBuilder
	cancel context.CancelFunc
	done   chan error
	dir    string
}

// runDaemon runs d (built with fake builder fb on data dir dir) until
// the test ends: it returns once d is ready (every listener open) and
// stops it in the test's cleanup.
func runDaemon(t testing.TB, d *Daemon, fb *fakeBuilder, dir string) *testDaemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	td := &testDaemon{d: d, fb: fb, cancel: cancel, done: make(chan error, 1), dir: dir}
	go func() { td.done <- d.Run(ctx) }()
	select {
	case <-d.Ready():
	case err := <-td.done:
		t.Fatalf("daemon %s stopped: %v", dir, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("daemon %s not ready after 20s", dir)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-td.done:
			if err != nil {
				t.Errorf("daemon %s: %v", dir, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("daemon %s did not stop within 20s; goroutines:\n%s", dir, goroutines())
		}
	})
	return td
}

// goroutines is a dump of every goroutine's stack, for a daemon that does
// not stop (what it waits on).
func goroutines() string {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	return b.String()
}

func repoOpinions(t testing.TB) string { return buildertest.RepoOpinions(t) }

// startDaemonsWith starts n daemons on loopback, each bootstrapping from
// the first, trusting all the others' keys, with each config and fake
// builder changed by mod and fbMod (either may be nil). The tests that
// need no daemon internals use package daemontest in integration/.
func startDaemonsWith(t testing.TB, n int, evil map[int]bool, mod func(i int, c *config.Config), fbMod func(i int, fb *fakeBuilder)) []*testDaemon {
	t.Helper()
	ids := make([]*attest.Identity, n)
	dirs := make([]string, n)
	for i := range n {
		dirs[i] = t.TempDir()
		id, _, err := core.LoadIdentity(config.Layout{Dir: dirs[i]}, true, fmt.Sprintf("node %d", i))
		require.NoError(t, err)
		ids[i] = id
	}
	var out []*testDaemon
	var boot []string
	for i := range n {
		cfg := &config.Config{DataDir: dirs[i], OpinionsDir: repoOpinions(t), Listen: []string{"/ip4/127.0.0.1/tcp/0"},
			Subscribe: []string{"hello/o3"}, Bootstrap: boot, SyncEvery: 2 * time.Second}
		f := false
		cfg.MDNS = &f
		for j := range n {
			if j != i {
				cfg.TrustedKeys = append(cfg.TrustedKeys, ids[j].Fingerprint())
			}
		}
		if mod != nil {
			mod(i, cfg)
		}
		fb := &fakeBuilder{Evil: evil[i]}
		if fbMod != nil {
			fbMod(i, fb)
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		d, err := New(context.Background(), cfg, log.With("node", i), WithBuilder(fb))
		require.NoError(t, err)
		td := runDaemon(t, d, fb, dirs[i])
		if i == 0 {
			st, err := d.Node().Status(context.Background())
			require.NoError(t, err)
			boot = st.Addrs[:1]
		}
		out = append(out, td)
	}
	return out
}

func TestMainExitCodes(t *testing.T) {
	for _, tc := range []struct {
		desc string
		args []string
		code int
	}{
		{"version", []string{"--version"}, 0},
		{"unknown flag", []string{"--bogus"}, 2},
		{"stray argument", []string{"extra"}, 2},
		{"bad config value", []string{"--data-dir", t.TempDir(), "--log-level", "loud"}, 2},
		{"bad subscription", []string{"--data-dir", t.TempDir(), "--subscribe", "pv/no-nls"}, 2},
		{"missing config file", []string{"--config", "/nonexistent/lebowski.yaml"}, 2},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			require.Equal(t, tc.code, Main(tc.args))
		})
	}
}
