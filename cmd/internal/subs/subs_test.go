package subs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/opinions"
)

// fakes records what the service asks of the core, the network and the
// build service.
type fakes struct {
	mu      sync.Mutex
	bundles map[string]*core.OpinionBundle // peers' opinions by "pkg/name"
	blobs   map[string]bool
	topics  map[string]bool
	calls   []string // "want pkg cid reason", "drop pkg cid"
}

func (f *fakes) Opinion(_ context.Context, q core.OpinionQuery) (*core.OpinionBundle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := f.bundles[q.Package+"/"+q.Name]; ok {
		return b, nil
	}
	return nil, errors.New("no claim names it")
}

func (f *fakes) PutBlob(_ context.Context, data []byte) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blobs[vocab.CID(data)] = true
	return vocab.CID(data), nil
}

func (f *fakes) Subscribe(t string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.topics[t] = true
	return nil
}

func (f *fakes) Unsubscribe(t string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.topics, t)
	return nil
}

func cidOf(o *opinions.Opinion) string {
	if o == nil {
		return "vanilla"
	}
	return o.CID()
}

func (f *fakes) Want(pkg string, op *opinions.Opinion, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "want "+pkg+" "+cidOf(op)+" "+reason)
}

func (f *fakes) Drop(pkg string, op *opinions.Opinion) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "drop "+pkg+" "+cidOf(op))
}

func (f *fakes) took() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.calls
	f.calls = nil
	return out
}

func o3(t *testing.T) *opinions.Opinion {
	t.Helper()
	o, err := opinions.FindIn([]string{"../../../opinions"}, "hello/o3")
	require.NoError(t, err)
	return o
}

func newService(t *testing.T, opinionsDir string, configured ...string) (*Service, *fakes, Config) {
	t.Helper()
	dir := t.TempDir()
	f := &fakes{bundles: map[string]*core.OpinionBundle{}, blobs: map[string]bool{}, topics: map[string]bool{}}
	cfg := Config{Subscribe: configured, OpinionsDir: opinionsDir, FetchedDir: filepath.Join(dir, "opinions"), SavePath: filepath.Join(dir, "subscriptions.json")}
	s := New(cfg, Deps{Topics: f, Builds: f, Log: slog.New(slog.DiscardHandler)})
	s.Connect(f)
	return s, f, cfg
}

// TestSubscribeWantsAndSaves: a subscription joins its topic, keeps the
// opinion's bundle, wants its recipe and is saved; leaving drops the
// recipe, leaves the topic and saves again.
func TestSubscribeWantsAndSaves(t *testing.T) {
	s, f, cfg := newService(t, "../../../opinions")
	ctx := context.Background()
	o := o3(t)
	ref := vocab.Ref{Package: "hello", Opinion: "o3"}
	require.NoError(t, s.Subscribe(ctx, ref, true))
	require.True(t, f.topics["hello/o3"])
	require.True(t, f.blobs[o.CID()], "bundle kept for peers")
	require.Equal(t, []string{"want hello " + o.CID() + " subscribed"}, f.took())
	require.Equal(t, o.CID(), s.Opinion("hello/o3").CID())
	var saved []string
	b, err := os.ReadFile(cfg.SavePath)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &saved))
	require.Equal(t, []string{"hello/o3"}, saved)

	require.NoError(t, s.Subscribe(ctx, ref, false))
	require.False(t, f.topics["hello/o3"])
	require.Equal(t, []string{"drop hello " + o.CID()}, f.took())
	require.Empty(t, s.Subscriptions())
	err = s.Subscribe(ctx, ref, false)
	require.ErrorIs(t, err, core.ErrInvalid, "not subscribed")
}

// TestStartFollowsConfigAndSaved: Start follows the config's
// subscriptions and the saved ones, each once.
func TestStartFollowsConfigAndSaved(t *testing.T) {
	s, f, cfg := newService(t, "../../../opinions", "hello/o3", "hello")
	require.NoError(t, os.WriteFile(cfg.SavePath, []byte(`["hello/o3", "hello/greeting"]`), 0o600))
	s.Start(context.Background())
	require.Equal(t, []string{"hello/greeting", "hello/o3", "hello/vanilla"}, s.Subscriptions())
	require.Len(t, f.took(), 3)
}

// TestWaitingOpinionFetchedFromPeers: an opinion with no local file is
// fetched from peers once a claim names it, then wanted; a claim for a
// followed recipe offers it again.
func TestWaitingOpinionFetchedFromPeers(t *testing.T) {
	s, f, cfg := newService(t, t.TempDir())
	ctx := context.Background()
	o := o3(t)
	require.NoError(t, s.Subscribe(ctx, vocab.Ref{Package: "hello", Opinion: "o3"}, true))
	time.Sleep(50 * time.Millisecond) // the first fetch finds nothing
	require.Nil(t, s.Opinion("hello/o3"), "waiting")
	require.Empty(t, f.took())

	f.mu.Lock()
	f.bundles["hello/o3"] = &core.OpinionBundle{CID: o.CID(), Data: o.Canonical()}
	f.mu.Unlock()
	claim := &attest.Claim{ID: "claim-1", Statement: &attest.Statement{Package: "hello", Opinion: attest.OpinionRef{Name: "o3", CID: o.CID()}}}
	s.ClaimArrived(claim)
	require.Eventually(t, func() bool { return s.Opinion("hello/o3") != nil }, 5*time.Second, 10*time.Millisecond, "fetched")
	require.Equal(t, o.CID(), s.Opinion("hello/o3").CID())
	require.Equal(t, []string{"want hello " + o.CID() + " opinion fetched from peers"}, f.took())
	_, err := os.Stat(cfg.FetchedDir)
	require.NoError(t, err, "kept under the fetched-opinions directory")

	s.ClaimArrived(claim)
	require.Empty(t, f.took(), "a claim moments after the last one that made the subscription act")
	s.gap = 0
	s.ClaimArrived(claim)
	require.Equal(t, []string{"want hello " + o.CID() + " peer claim claim-1"}, f.took())
	s.ClaimArrived(&attest.Claim{ID: "other", Statement: &attest.Statement{Package: "hello", Opinion: attest.OpinionRef{Name: "o3", CID: "bafyother"}}})
	require.Empty(t, f.took(), "another content of the opinion is not followed")
}

// TestClaimFloodActsOncePerGap: a flood of peers' claims naming a
// followed recipe offers it to the build service once per claimGap, not
// once per claim (each offer reads every claim of the recipe).
func TestClaimFloodActsOncePerGap(t *testing.T) {
	s, f, _ := newService(t, "../../../opinions")
	ctx := context.Background()
	require.NoError(t, s.Subscribe(ctx, vocab.Ref{Package: "hello", Opinion: "o3"}, true))
	o := s.Opinion("hello/o3")
	require.NotNil(t, o)
	f.took() // the subscription's own offer
	cid := o.CID()
	s.gap = time.Hour
	start := time.Now()
	for i := range 10000 {
		s.ClaimArrived(&attest.Claim{ID: fmt.Sprint("flood-", i), Statement: &attest.Statement{Package: "hello", Opinion: attest.OpinionRef{Name: "o3", CID: cid}}})
	}
	require.Equal(t, []string{"want hello " + cid + " peer claim flood-0"}, f.took(), "one offer for the burst")
	t.Logf("10,000 claims of a followed recipe heard in %s", time.Since(start))
	s.gap = 50 * time.Millisecond
	time.Sleep(60 * time.Millisecond)
	s.ClaimArrived(&attest.Claim{ID: "later", Statement: &attest.Statement{Package: "hello", Opinion: attest.OpinionRef{Name: "o3", CID: cid}}})
	require.Equal(t, []string{"want hello " + cid + " peer claim later"}, f.took(), "after the gap, the next claim acts")
}
