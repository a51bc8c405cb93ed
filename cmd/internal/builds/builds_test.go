package builds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/opinions"
	"github.com/lebowski-dist/lebowski/store"
)

// fakeBuilder "builds" one placeholder .deb from the recipe.
type fakeBuilder struct {
	dir    string
	mu     sync.Mutex
	builds int
}

func (f *fakeBuilder) Build(ctx context.Context, req builder.Request) (*builder.Result, error) {
	f.mu.Lock()
	f.builds++
	f.mu.Unlock()
	req.Progress("building " + req.Package)
	o := req.Opinion
	r := attest.Recipe{Source: req.Package, DebianVersion: o.Debian.Version, Suite: o.Debian.Suite, Arch: "amd64", OpinionCID: o.CID(),
		SourceSHA256: hex64("src"), ImageDigest: "sha256:" + hex64("img")}
	content := "deb of " + r.ID()
	path := filepath.Join(f.dir, "hello.deb")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return nil, err
	}
	return &builder.Result{Recipe: r, BinaryVersion: o.BinaryVersion().String(), Status: attest.ResultSuccess,
		Artifacts: []builder.Output{{Name: "hello.deb", SHA256: hex64(content), Path: path}}, Log: []byte("fake build log")}, nil
}

func (f *fakeBuilder) count() int { f.mu.Lock(); defer f.mu.Unlock(); return f.builds }

func hex64(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// fakeNet records the published intents.
type fakeNet struct {
	mu      sync.Mutex
	intents []attest.Intent
}

func (n *fakeNet) PublishIntent(_ context.Context, signed []byte) error {
	var w struct{ Payload []byte }
	var in attest.Intent
	if err := json.Unmarshal(signed, &w); err != nil {
		return err
	}
	if err := json.Unmarshal(w.Payload, &in); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.intents = append(n.intents, in)
	return nil
}

func (n *fakeNet) HasPeers() bool { return false }

func (n *fakeNet) states() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, in := range n.intents {
		out = append(out, string(in.State))
	}
	return out
}

type fakeMetrics struct {
	mu     sync.Mutex
	builds map[string]int
}

func (m *fakeMetrics) Build(status string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.builds[status]++
}
func (m *fakeMetrics) BuildTime(time.Duration) {}
func (m *fakeMetrics) Queue(int)               {}
func (m *fakeMetrics) Backoff()                {}

func (m *fakeMetrics) count(status string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.builds[status]
}

type fixture struct {
	s   *Service
	n   *core.Node
	st  *store.Store
	fb  *fakeBuilder
	net *fakeNet
	m   *fakeMetrics
	op  *opinions.Opinion
}

func newFixture(t *testing.T, mod func(*config.Config)) *fixture {
	t.Helper()
	cfg := &config.Config{DataDir: t.TempDir()}
	cfg.Defaults()
	if mod != nil {
		mod(cfg)
	}
	require.NoError(t, cfg.Validate())
	require.NoError(t, cfg.Layout().Ensure())
	st, err := store.Open(cfg.Layout().StoreDB(), core.StoreOptions(cfg)...)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	id := attesttest.Fresh(t, 1)[0]
	f := &fixture{st: st, fb: &fakeBuilder{dir: t.TempDir()}, net: &fakeNet{}, m: &fakeMetrics{builds: map[string]int{}}}
	f.n = core.New(st, core.WithIdentity(id), core.WithConfig(cfg))
	f.s = New(Config{Builds: cfg.Builds, Settle: 10 * time.Millisecond, Builder: f.fb},
		Deps{Identity: id, Intents: f.net, Metrics: f.m, Log: slog.New(slog.DiscardHandler),
			Claims: func(string) (map[string]time.Time, error) { return map[string]time.Time{}, nil },
			Votes:  func(string) bool { return true }})
	f.s.Connect(f.n)
	f.op, err = opinions.FindIn([]string{"../../../opinions"}, "hello/o3")
	require.NoError(t, err)
	return f
}

// TestWantBuildsAndRecords: a wanted recipe is built once by a worker,
// announced by an intent, recorded as the node's claim, with the build
// started and finished events; it stays followed until Drop.
func TestWantBuildsAndRecords(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	events, err := f.n.Events(ctx)
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { f.s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	f.s.Want("hello", f.op, "test")
	require.Eventually(t, func() bool { return f.m.count(string(attest.ResultSuccess)) == 1 && len(f.s.Running()) == 0 },
		10*time.Second, 10*time.Millisecond, "built and recorded")
	require.Equal(t, 1, f.fb.count())
	rcs, err := f.st.ByPackage("hello", "")
	require.NoError(t, err)
	require.Len(t, rcs, 1)
	require.Len(t, rcs[0].Claims, 1)
	require.Equal(t, []string{string(attest.IntentBuilding)}, f.net.states(), "announced, not withdrawn: a claim was signed")

	var types []string
	for len(types) < 2 {
		select {
		case ev := <-events:
			if ev.Type == core.EventBuildStarted || ev.Type == core.EventBuildFinished {
				types = append(types, ev.Type)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("events so far: %v", types)
		}
	}
	require.Equal(t, []string{core.EventBuildStarted, core.EventBuildFinished}, types)

	key := attest.RecipeKey("hello", f.op.CID())
	f.s.mu.Lock()
	_, followed := f.s.wanted[key]
	f.s.mu.Unlock()
	require.True(t, followed, "followed: re-verified later")
	f.s.Drop("hello", f.op)
	f.s.mu.Lock()
	_, followed = f.s.wanted[key]
	f.s.mu.Unlock()
	require.False(t, followed)
}

// TestDisabledBuildsNothing: with builds.enabled false nothing is queued
// or run.
func TestDisabledBuildsNothing(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { off := false; c.Builds.Enabled = &off })
	f.s.Want("hello", f.op, "test")
	require.Zero(t, f.s.Queued())
	f.s.Run(context.Background()) // returns at once
	require.Zero(t, f.fb.count())
}
