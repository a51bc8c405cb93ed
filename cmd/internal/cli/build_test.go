package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/daemon"
	"github.com/lebowski-dist/lebowski/opinions"
)

// fakeRebuilder "builds" hello under its opinion deterministically, with
// a buildinfo and a log, so claims can be compared across nodes.
type fakeRebuilder struct{ builds int }

func (f *fakeRebuilder) Build(_ context.Context, req builder.Request) (*builder.Result, error) {
	f.builds++
	o := req.Opinion
	r := attest.Recipe{Source: req.Package, DebianVersion: o.Debian.Version, Suite: o.Debian.Suite, Arch: "amd64", OpinionCID: o.CID(),
		SourceSHA256: sum("src"), ImageDigest: "sha256:" + sum("img")}
	name := "hello_" + o.BinaryVersion().String() + "_amd64.deb"
	dir, err := os.MkdirTemp("", "fakebuild-")
	if err != nil {
		return nil, err
	}
	p := filepath.Join(dir, name)
	content := "deb of " + r.ID()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		return nil, err
	}
	return &builder.Result{Recipe: r, BinaryVersion: o.BinaryVersion().String(), Status: attest.ResultSuccess,
		Artifacts: []builder.Output{{Name: name, SHA256: sum(content), Path: p, Size: int64(len(content))}},
		Buildinfo: []byte("Format: 1.0\nSource: hello\nX-Lebowski-Opinion: " + o.CID() + "\n"), Log: []byte("fake build log\n")}, nil
}

func (f *fakeRebuilder) PrepareImage(context.Context, builder.Request) (*builder.Image, error) {
	return &builder.Image{Digest: "sha256:" + sum("img")}, nil
}
func (f *fakeRebuilder) Close() error { return nil }
func (f *fakeRebuilder) Resolve(context.Context, builder.Request) (*opinions.Lock, error) {
	return nil, errors.New("fake rebuilder resolves no locks")
}

// runBuild runs `lebowski --json build hello --opinion o3` with the fake
// builder against dataDir and returns the signed statement.
func runBuild(t *testing.T, dataDir string) *attest.Claim {
	t.Helper()
	var out, errOut bytes.Buffer
	fb := &fakeRebuilder{}
	g := &globals{out: &out, errOut: &errOut, openBuilder: func(context.Context, *buildFlags, func(string)) (rebuilder, error) { return fb, nil }}
	root := newRoot(g)
	root.SetArgs([]string{"--data-dir", dataDir, "--opinions", "../../../opinions", "--json", "build", "hello", "--opinion", "o3"})
	err := root.ExecuteContext(context.Background())
	require.NoError(t, err, "stderr: %s", errOut.String())
	var bo buildOutput
	require.NoError(t, json.Unmarshal([]byte(out.String()), &bo))
	c, err := attest.Verify([]byte(bo.Claim), nil, attest.VerifyOptions{})
	require.NoError(t, err)
	require.Equal(t, bo.ClaimID, c.ID)
	return c
}

// TestBuildClaimSameWithAndWithoutDaemon: `lebowski build` signs the same
// claim whether it records into the local store or through a running
// lebowskid (buildinfo and log CIDs in both), and the daemon ingests the
// node's own claim exactly once.
func TestBuildClaimSameWithAndWithoutDaemon(t *testing.T) {
	alone := runBuild(t, t.TempDir())

	dir := t.TempDir()
	f := false
	cfg := &config.Config{DataDir: dir, OpinionsDir: "../../../opinions", Listen: []string{"/ip4/127.0.0.1/tcp/0"}, MDNS: &f,
		Builds: config.BuildConfig{Enabled: &f}}
	d, err := daemon.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("daemon stopped: %v", err)
	}
	viaDaemon := runBuild(t, dir)

	for _, c := range []*attest.Claim{alone, viaDaemon} {
		assert.NotEmpty(t, c.Statement.BuildinfoCID, "buildinfo CID")
		assert.NotEmpty(t, c.Statement.LogCID, "log CID")
	}
	a, b := *alone.Statement, *viaDaemon.Statement
	assert.NotEqual(t, a.Builder, b.Builder, "two nodes, two keys")
	assert.Empty(t, a.PeerID, "offline build: no peer ID")
	st, err := d.Node().Status(context.Background())
	require.NoError(t, err)
	assert.Equal(t, st.PeerID, b.PeerID, "the daemon's claim names its peer")
	assert.Equal(t, st.Builder, b.Builder, "signed with the daemon's key")
	a.Builder, b.Builder, a.PeerID, b.PeerID, a.Timestamp, b.Timestamp = "", "", "", "", time.Time{}, time.Time{}
	assert.Equal(t, a, b, "every other field is the same")

	counts := d.Node().Store().IngestCounts()
	assert.Equal(t, uint64(1), counts["new"], "own claim stored")
	assert.Equal(t, uint64(0), counts["duplicate"], "and never ingested a second time")
	blob, err := d.Node().GetBlob(context.Background(), b.LogCID)
	require.NoError(t, err)
	assert.Equal(t, "fake build log\n", string(blob), "the daemon keeps the log the claim names")
}
