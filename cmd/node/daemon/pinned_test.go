package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/builder/source"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/opinions"
	"github.com/lebowski-dist/lebowski/p2p"
	"github.com/lebowski-dist/lebowski/p2p/p2ptest"
)

// These tests run the real input path of a locked recipe — the lock, the
// source and every image .deb fetched by hash through source.Fetcher from
// an httptest mirror, an httptest snapshot archive or peers over
// /lebowski/blob/1 — with two stand-ins: the image is the sha256 of the
// fetched .debs (hashImages) and the build's output is a function of the
// recipe (recipeRunner). Equal image digests therefore prove equal input
// bytes; the real mmdebstrap/podman path is covered by the e2e tests.

// archive is a fake Debian mirror whose files can change (a point
// release), with a hit log.
type archive struct {
	mu    sync.Mutex
	files map[string][]byte // path below /debian/
	hits  map[string]int
	srv   *httptest.Server
}

func newArchive(t *testing.T, files map[string][]byte) *archive {
	a := &archive{files: map[string][]byte{}, hits: map[string]int{}}
	for k, v := range files {
		a.files[k] = v
	}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/debian/")
		a.mu.Lock()
		a.hits[p]++
		b, ok := a.files[p]
		a.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *archive) url() string { return a.srv.URL + "/debian" }
func (a *archive) set(p string, b []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if b == nil {
		delete(a.files, p)
	} else {
		a.files[p] = b
	}
}
func (a *archive) hitCount(p string) int { a.mu.Lock(); defer a.mu.Unlock(); return a.hits[p] }

// snapshotArchive serves files under /archive/debian/<ts>/.
type snapshotArchive struct {
	archive
	ts string
}

func newSnapshot(t *testing.T, ts string, files map[string][]byte) *snapshotArchive {
	s := &snapshotArchive{archive: archive{files: files, hits: map[string]int{}}, ts: ts}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := strings.CutPrefix(r.URL.Path, "/archive/debian/"+ts+"/")
		s.mu.Lock()
		s.hits[p]++
		b, has := s.files[p]
		s.mu.Unlock()
		if !ok || !has {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// hashImages stands in for mmdebstrap: the image digest is the sha256 of
// the locked .debs as fetched (every one checked against the lock).
type hashImages struct{}

func (hashImages) EnsureLocked(ctx context.Context, l *opinions.Lock, fetch builder.FetchDeb) (*builder.Image, error) {
	h := sha256.New()
	var installed []string
	for _, d := range l.Image {
		p, err := fetch(ctx, d)
		if err != nil {
			return nil, fmt.Errorf("image: locked package %s: %w", d.Name, err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(h, "%s %d\n", d.Name, len(b))
		h.Write(b)
		installed = append(installed, d.Name+" (= "+d.Version+")")
	}
	digest := "sha256:" + hex.EncodeToString(h.Sum(nil))
	return &builder.Image{Digest: digest, LockKey: l.ImageKey(), Ref: "localhost/lebowski/fake:" + digest[7:19], Installed: installed}, nil
}

func (hashImages) Discover(context.Context, builder.Manifest, bool) ([]source.Installed, error) {
	return nil, fmt.Errorf("test recipes are locked")
}

// recipeRunner stands in for podman: the .deb it "builds" is a function of
// the recipe (source hash, image digest, opinion CID) and the flags.
type recipeRunner struct{ runs int }

func (r *recipeRunner) Run(ctx context.Context, rs builder.RunSpec) (builder.RunResult, error) {
	r.runs++
	out := filepath.Join(rs.HostDir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return builder.RunResult{}, err
	}
	deb := "deb of recipe " + rs.Labels["org.lebowski.recipe"] + " with CFLAGS " + rs.Env["DEB_CFLAGS_APPEND"]
	for name, body := range map[string]string{
		"out/hello_2.10-3~o3+1_amd64.deb":       deb,
		"out/hello_2.10-3~o3+1_amd64.buildinfo": "Format: 1.0\nSource: hello\nVersion: 2.10-3~o3+1\n",
		"build.log":                             "fake build of " + rs.Image + "\n",
		"stage":                                 "done\n",
	} {
		if err := os.WriteFile(filepath.Join(rs.HostDir, name), []byte(body), 0o644); err != nil {
			return builder.RunResult{}, err
		}
	}
	return builder.RunResult{}, nil
}

// pinnedFixture is a hello 2.10-3 source and a two-package image in an
// archive's state 1, hello/o3 locked to it, and what a point release
// changes (state 2).
type pinnedFixture struct {
	state1, state2 map[string][]byte
	lock           *opinions.Lock
	opinionsDir    string
	removed        []string // paths state 2 drops from the pool
}

func newPinnedFixture(t *testing.T) *pinnedFixture {
	f := &pinnedFixture{state1: map[string][]byte{}}
	dir := "pool/main/h/hello"
	orig, deb := []byte("hello 2.10 upstream tarball\n"), []byte("hello 2.10-3 debian tarball\n")
	dsc := fmt.Sprintf("Format: 3.0 (quilt)\nSource: hello\nBinary: hello\nArchitecture: any\nVersion: 2.10-3\nBuild-Depends: libfoo-dev\n"+
		"Checksums-Sha256:\n %s %d hello_2.10-3.debian.tar.xz\n %s %d hello_2.10.orig.tar.gz\n",
		sum256(deb), len(deb), sum256(orig), len(orig))
	f.state1[dir+"/hello_2.10-3.dsc"] = []byte(dsc)
	f.state1[dir+"/hello_2.10.orig.tar.gz"] = orig
	f.state1[dir+"/hello_2.10-3.debian.tar.xz"] = deb
	debs := []opinions.LockDeb{
		{Name: "libc6", Version: "2.36-9", Arch: "amd64", Filename: "pool/main/g/glibc/libc6_2.36-9_amd64.deb"},
		{Name: "libfoo-dev", Version: "1.0-1", Arch: "amd64", Filename: "pool/main/f/foo/libfoo-dev_1.0-1_amd64.deb"},
	}
	for i := range debs {
		body := []byte("binary package " + debs[i].Name + " " + debs[i].Version)
		debs[i].Size, debs[i].SHA256 = int64(len(body)), sum256(body)
		f.state1[debs[i].Filename] = body
	}
	f.lock = &opinions.Lock{Package: "hello", Opinion: "o3", Suite: "bookworm", Arch: "amd64",
		MirrorDate: time.Date(2026, 7, 11, 10, 16, 37, 0, time.UTC), ImageEpoch: builder.DefaultImageEpoch,
		Source: opinions.LockSource{Version: "2.10-3", Directory: dir,
			Dsc: opinions.LockFile{Name: "hello_2.10-3.dsc", Size: int64(len(dsc)), SHA256: sum256([]byte(dsc))},
			Files: []opinions.LockFile{
				{Name: "hello_2.10-3.debian.tar.xz", Size: int64(len(deb)), SHA256: sum256(deb)},
				{Name: "hello_2.10.orig.tar.gz", Size: int64(len(orig)), SHA256: sum256(orig)},
			}},
		Image: debs}
	f.lock.Normalize()
	require.NoError(t, f.lock.Validate())

	// State 2, a point release: libfoo-dev 1.0-2 replaces 1.0-1 and a
	// security upload replaces the source; the old files leave the pool.
	f.state2 = map[string][]byte{}
	for k, v := range f.state1 {
		f.state2[k] = v
	}
	f.removed = []string{debs[1].Filename, dir + "/hello_2.10-3.dsc", dir + "/hello_2.10-3.debian.tar.xz"}
	for _, p := range f.removed {
		delete(f.state2, p)
	}
	f.state2["pool/main/f/foo/libfoo-dev_1.0-2_amd64.deb"] = []byte("binary package libfoo-dev 1.0-2")
	f.state2[dir+"/hello_2.10-3+deb12u1.dsc"] = []byte("Source: hello\nVersion: 2.10-3+deb12u1\n")

	// hello/o3 (the shipped file) with this lock.
	f.opinionsDir = t.TempDir()
	src, err := os.ReadFile(filepath.Join(repoOpinions(t), "hello", "o3.yaml"))
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(f.opinionsDir, "hello"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(f.opinionsDir, "hello", "o3.yaml"), src, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(f.opinionsDir, "hello", "o3.lock"), f.lock.Encode(), 0o644))
	return f
}

func sum256(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// pinnedNode is a daemon whose builder fetches locked inputs for real.
type pinnedNode struct {
	*testDaemon
	runner *recipeRunner
}

type nodeSpec struct {
	mirror, snapshot, opinionsDir string
	bootstrap                     []string
	trusted                       []string
	id                            *attest.Identity
}

func startPinnedNode(t *testing.T, spec nodeSpec) *pinnedNode {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, spec.id.Save(config.Layout{Dir: dir}.BuilderKey(), false))
	f := false
	cfg := &config.Config{DataDir: dir, OpinionsDir: spec.opinionsDir, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, MDNS: &f,
		Subscribe: []string{"hello/o3"}, Bootstrap: spec.bootstrap, TrustedKeys: spec.trusted, Mirror: spec.mirror,
		SnapshotURL: spec.snapshot, SyncEvery: 2 * time.Second}
	runner := &recipeRunner{}
	factory := func(ctx context.Context, env builder.Env) (builder.Builder, error) {
		opts := []source.Option{source.WithMirror(env.Mirror), source.WithPeers(env.Peers), source.WithLogger(env.Log)}
		if env.Snapshot != "" {
			opts = append(opts, source.WithSnapshot(env.Snapshot))
		}
		src, err := source.New(filepath.Join(env.CacheDir, "sources"), opts...)
		if err != nil {
			return nil, err
		}
		return builder.New(env.WorkDir, src, nil, builder.WithImages(hashImages{}), builder.WithRunner(runner), builder.WithLogger(env.Log))
	}
	level := slog.LevelWarn
	if os.Getenv("LEBOWSKI_TEST_VERBOSE") != "" {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	d, err := New(context.Background(), cfg, log.With("node", spec.id.Fingerprint()[:8]), WithBuilderFactory(factory))
	require.NoError(t, err)
	td := runDaemon(t, d, nil, dir)
	return &pinnedNode{testDaemon: td, runner: runner}
}

func (n *pinnedNode) addr(t *testing.T) string {
	st, err := n.d.Node().Status(context.Background())
	require.NoError(t, err)
	return st.Addrs[0]
}

// ownClaim waits for the node's own hello/o3 claim.
func (n *pinnedNode) ownClaim(t *testing.T) *attest.Statement {
	t.Helper()
	var st *attest.Statement
	fpr := n.d.id.Fingerprint()
	attesttest.Eventually(t, 60*time.Second, "own claim of "+fpr[:8], func() bool {
		cs, err := n.d.st.ByBuilder(fpr)
		if err != nil || len(cs) == 0 {
			return false
		}
		c, ok, err := n.d.st.Get(cs[0].ID)
		if err != nil || !ok {
			return false
		}
		st = c.Statement
		return true
	})
	require.Equal(t, attest.ResultSuccess, st.Result)
	return st
}

func (n *pinnedNode) waitConsensus(t *testing.T, want int) {
	t.Helper()
	attesttest.Eventually(t, 60*time.Second, fmt.Sprintf("%d trusted builders agree", want), func() bool {
		info, err := n.d.Node().Info(context.Background(), core.InfoQuery{Package: "hello", Opinion: "o3"})
		return err == nil && info.Recipes[0].Report.Consensus != nil && len(info.Recipes[0].Report.Consensus.Trusted) == want
	})
}

// TestPinnedRecipeSurvivesPointRelease: node A locks hello/o3 in mirror
// state 1 and builds; a point release removes a build dependency's old
// .deb and the old source from the pool; node B, with an empty cache,
// rebuilds the same lock in state 2 — from A over the blob protocol, or
// from a snapshot archive — and both agree: same image, same artifacts.
func TestPinnedRecipeSurvivesPointRelease(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		snapshot bool
	}{
		{"missing inputs from a peer", false},
		{"missing inputs from the snapshot archive", true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			fx := newPinnedFixture(t)
			mirror := newArchive(t, fx.state1)
			ids := attesttest.Fresh(t, 2)
			a := startPinnedNode(t, nodeSpec{mirror: mirror.url(), opinionsDir: fx.opinionsDir, id: ids[0], trusted: []string{ids[1].Fingerprint()}})
			stA := a.ownClaim(t)

			for p := range fx.state1 {
				mirror.set(p, nil)
			}
			for p, b := range fx.state2 {
				mirror.set(p, b)
			}
			spec := nodeSpec{mirror: mirror.url(), opinionsDir: fx.opinionsDir, id: ids[1], trusted: []string{ids[0].Fingerprint()}, bootstrap: []string{a.addr(t)}}
			var snap *snapshotArchive
			if tc.snapshot {
				snap = newSnapshot(t, fx.lock.Snapshot(), fx.state1)
				srv := snap.srv.URL
				spec.snapshot = srv
			}
			b := startPinnedNode(t, spec)
			stB := b.ownClaim(t)

			assert.Equal(t, stA.ContainerDigest, stB.ContainerDigest, "same image from the same locked bytes")
			assert.Equal(t, stA.RecipeID, stB.RecipeID)
			assert.Equal(t, stA.Artifacts, stB.Artifacts)
			for _, p := range fx.removed {
				assert.Positive(t, mirror.hitCount(p), "B asked the mirror first for %s", p)
				if tc.snapshot {
					assert.Positive(t, snap.hitCount(p), "B got %s from the snapshot archive", p)
				}
			}
			a.waitConsensus(t, 2)
			b.waitConsensus(t, 2)
		})
	}
}

// TestPinnedRecipeUnavailable: a lock input nobody has fails the build
// with an error naming the file and the places tried, before any
// container starts, and leaves nothing in the cache.
func TestPinnedRecipeUnavailable(t *testing.T) {
	fx := newPinnedFixture(t)
	mirror := newArchive(t, fx.state2) // the old .deb is gone and nobody else has it
	id := attesttest.Fresh(t, 1)[0]
	n := startPinnedNode(t, nodeSpec{mirror: mirror.url(), opinionsDir: fx.opinionsDir, id: id})
	attesttest.Eventually(t, 30*time.Second, "the build attempt", func() bool {
		return testutil.ToFloat64(n.d.metrics.builds.WithLabelValues("error")) > 0
	})
	assert.Zero(t, n.runner.runs, "no container for a recipe whose inputs are missing")
	cs, err := n.d.st.ByBuilder(id.Fingerprint())
	require.NoError(t, err)
	assert.Empty(t, cs, "no claim signed")
	_, ok := source.CachedFile(filepath.Join(n.d.cfg.CacheDir, "sources"), fx.lock.Image[1].SHA256)
	assert.False(t, ok)
}

// TestOpinionTravels: a node with no opinion files, subscribed to
// hello/o3, learns the opinion's CID from a claim, refuses a bundle whose
// bytes do not match it (the lying peer is scored down), then fetches the
// real bundle from the builder, keeps it, builds and agrees.
func TestOpinionTravels(t *testing.T) {
	fx := newPinnedFixture(t)
	mirror := newArchive(t, fx.state1)
	ids := attesttest.Fresh(t, 2)
	a := startPinnedNode(t, nodeSpec{mirror: mirror.url(), opinionsDir: fx.opinionsDir, id: ids[0], trusted: []string{ids[1].Fingerprint()}})
	stA := a.ownClaim(t)
	cid := stA.Opinion.CID

	// A liar: holds A's claim (so it can tell others about it) and serves
	// wrong bytes under the opinion's CID.
	liarStore := p2ptest.NewMemStore()
	cs, err := a.d.st.ByBuilder(ids[0].Fingerprint())
	require.NoError(t, err)
	w, ok, err := a.d.st.GetWire(cs[0].ID)
	require.NoError(t, err)
	require.True(t, ok)
	c, err := attest.Verify(w, nil, attest.VerifyOptions{})
	require.NoError(t, err)
	_, err = liarStore.Ingest(context.Background(), c)
	require.NoError(t, err)
	liarStore.SetBlobUnchecked(cid, []byte(`{"type":"lebowski.opinion/v2","name":"o3","package":"hello","summary":"evil"}`))
	liar, err := p2p.New(context.Background(), p2p.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Subscribe: []string{"hello/o3"}, SyncInterval: -1},
		p2p.Deps{Claims: liarStore, Blobs: liarStore})
	require.NoError(t, err)
	t.Cleanup(func() { liar.Close() })
	liarAddr := liar.Addrs()[0].String() + "/p2p/" + liar.ID().String()

	empty := t.TempDir()
	b := startPinnedNode(t, nodeSpec{mirror: mirror.url(), opinionsDir: empty, id: ids[1], trusted: []string{ids[0].Fingerprint()}, bootstrap: []string{liarAddr}})
	attesttest.Eventually(t, 30*time.Second, "the liar scored down", func() bool {
		sc, ok := b.d.net.PeerScore(liar.ID())
		return ok && sc < 0
	})
	fetched := b.d.cfg.Layout().FetchedOpinions()
	entries, _ := os.ReadDir(filepath.Join(fetched, "hello"))
	assert.Empty(t, entries, "nothing kept from the lying peer")
	st, err := b.d.Node().Status(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []string{"hello/o3"}, st.Subscriptions)

	// Reach the builder, then look again (as SIGHUP does).
	ai, err := peer.AddrInfoFromString(a.addr(t))
	require.NoError(t, err)
	require.NoError(t, b.d.net.Connect(context.Background(), *ai))
	b.d.subs.Reload(context.Background())
	stB := b.ownClaim(t)
	assert.Equal(t, cid, stB.Opinion.CID, "built from exactly the opinion content A built")
	assert.Equal(t, stA.Artifacts, stB.Artifacts)
	o, err := opinions.Find(fetched, "hello/o3")
	require.NoError(t, err, "the fetched opinion is kept and auditable")
	assert.Equal(t, cid, o.CID())
	require.NotNil(t, o.Lock)
	b.waitConsensus(t, 2)

	// Subscriptions made at runtime survive a restart.
	_, err = b.d.Node().Subscribe(context.Background(), "hello/greeting", true)
	require.NoError(t, err)
	saved, err := os.ReadFile(b.d.cfg.Layout().Subscriptions())
	require.NoError(t, err)
	var list []string
	require.NoError(t, json.Unmarshal(saved, &list))
	sort.Strings(list)
	assert.Equal(t, []string{"hello/greeting", "hello/o3"}, list)
}
