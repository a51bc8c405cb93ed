package aptrepo

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder/debfile/debfiletest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/core/coretest"
	"github.com/lebowski-dist/lebowski/store"
)

var ctx = context.Background()

// fakeNet records the topics followed and the syncs asked for; onSync
// plays what a sync brings (claims imported from peers).
type fakeNet struct {
	mu       sync.Mutex
	topics   []string
	syncs    int
	deadline time.Duration // how long the last sync was allowed
	onSync   func()
}

func (f *fakeNet) Subscribe(topic string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.topics = append(f.topics, topic)
	return nil
}

func (f *fakeNet) SyncSome(ctx context.Context) {
	f.mu.Lock()
	f.syncs++
	if d, ok := ctx.Deadline(); ok {
		f.deadline = time.Until(d)
	}
	on := f.onSync
	f.mu.Unlock()
	if on != nil {
		on()
	}
}

func (f *fakeNet) followed() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.topics...)
}

// node is an in-process core node over a temp store, with peers
// (coretest.FakeNetwork) that serve the blobs put in peers.
type node struct {
	api   *core.Node
	peers *coretest.FakeNetwork
	subs  *coretest.FakeSubscriber
	id    *attest.Identity // the node's key: signs the repository
	dir   string
}

func newNode(t *testing.T) *node {
	t.Helper()
	cfg := &config.Config{DataDir: t.TempDir()}
	cfg.Defaults()
	require.NoError(t, cfg.Validate())
	st, err := store.Open(filepath.Join(cfg.DataDir, "store.db"), core.StoreOptions(cfg)...)
	require.NoError(t, err)
	nd := &node{peers: &coretest.FakeNetwork{}, subs: &coretest.FakeSubscriber{}, id: attesttest.Identities(t, 4)[3], dir: cfg.DataDir}
	nd.api = core.New(st, core.WithIdentity(nd.id), core.WithConfig(cfg), core.WithNetwork(nd.peers), core.WithSubscriber(nd.subs))
	t.Cleanup(func() {
		nd.api.Close()
		require.NoError(t, st.Close())
	})
	return nd
}

// agree imports a claim by each of three trusted builders that hello/o3
// builds to a .deb with sha256 sum.
func (nd *node) agree(t *testing.T, sum string) {
	t.Helper()
	for _, b := range attesttest.Identities(t, 3) {
		res, err := nd.api.ImportClaims(ctx, [][]byte{attesttest.Wire(t, attesttest.Claim(t, b, attesttest.Artifact(sum)))})
		require.NoError(t, err)
		require.Equal(t, "new", res[0].Status, res[0].Error)
		require.NoError(t, nd.api.SetTrust(ctx, b.Fingerprint(), attest.TrustTrusted, "test"))
	}
}

// helloDeb is a real .deb named as attesttest's statements name it
// (version given: another one is a .deb whose control data names
// another file).
func helloDeb(t *testing.T, version string) []byte {
	t.Helper()
	b, err := os.ReadFile(debfiletest.Build(t, t.TempDir(), debfiletest.Package{Name: attesttest.Package, Version: version}))
	require.NoError(t, err)
	return b
}

func (nd *node) service(t *testing.T, fn *fakeNet, mod func(*Options)) *Service {
	t.Helper()
	o := Options{Addr: "127.0.0.1:0", DataDir: nd.dir, ConfigPath: filepath.Join(nd.dir, "config.yaml"), Identity: nd.id}
	if mod != nil {
		mod(&o)
	}
	s, err := New(o, nd.api, fn, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	return s
}

// serve listens and serves the repository until the test ends.
func serve(t *testing.T, s *Service) string {
	t.Helper()
	ln, err := s.Listen()
	require.NoError(t, err)
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestMirrorServesVerifiedPackage: asked to mirror hello/o3, the service
// follows its topic, catches up with peers (which bring the claims: three
// trusted builders agree on a real .deb), fetches the .deb from a peer by
// hash (core keeps it), checks it against the consensus and serves it
// with a signed InRelease; the ref is saved in mirror.json. Asked again,
// it neither follows nor syncs again.
func TestMirrorServesVerifiedPackage(t *testing.T) {
	nd := newNode(t)
	deb := helloDeb(t, attesttest.BinaryVersion)
	sum := vocab.SHA256Hex(deb)
	cid := nd.peers.SetBlob(deb)
	fn := &fakeNet{onSync: func() { nd.agree(t, sum) }}
	s := nd.service(t, fn, nil)
	url := serve(t, s)

	res, err := s.Mirror(ctx, vocab.Ref{Package: "hello", Opinion: "o3"})
	require.NoError(t, err)
	require.Len(t, res.Packages, 1, res.Reason)
	assert.Empty(t, res.Reason)
	assert.Equal(t, "hello/o3", res.Ref)
	assert.Equal(t, url, res.URL)
	p := res.Packages[0]
	assert.Equal(t, core.RepoPackage{Name: attesttest.DebName, SHA256: sum, Size: int64(len(deb)), RecipeID: attesttest.Statement().RecipeID}, p)
	assert.Equal(t, []string{"hello/o3"}, fn.followed())
	assert.Equal(t, 1, fn.syncs)
	assert.InDelta(t, syncBound.Seconds(), fn.deadline.Seconds(), 5, "the catch-up is bounded")
	held, err := nd.api.GetBlob(ctx, cid)
	require.NoError(t, err, "fetched from a peer and kept")
	assert.Equal(t, deb, held)
	saved, err := os.ReadFile(filepath.Join(nd.dir, "mirror.json"))
	require.NoError(t, err)
	assert.Equal(t, "[\n  \"hello/o3\"\n]\n", string(saved))

	code, body := get(t, url+"/dists/lebowski/InRelease")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "BEGIN PGP SIGNED MESSAGE")
	code, pk := get(t, url+"/dists/lebowski/main/binary-amd64/Packages")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, pk, "Package: hello\n")
	assert.Contains(t, pk, "SHA256: "+sum)
	var pool string
	for _, l := range strings.Split(pk, "\n") {
		if f, ok := strings.CutPrefix(l, "Filename: "); ok {
			pool = f
		}
	}
	code, file := get(t, url+"/"+pool)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, sum, vocab.SHA256Hex([]byte(file)))
	arm, err := nd.id.ArmoredPublicKey()
	require.NoError(t, err)
	_, key := get(t, url+"/lebowski.asc")
	assert.Equal(t, arm, key)

	again, err := s.Mirror(ctx, vocab.Ref{Package: "hello", Opinion: "o3"})
	require.NoError(t, err)
	assert.Equal(t, res.Packages, again.Packages)
	assert.Equal(t, []string{"hello/o3"}, fn.followed(), "followed once")
	assert.Equal(t, 1, fn.syncs, "synced once")
}

// TestMirrorReasons: what is not served says why.
func TestMirrorReasons(t *testing.T) {
	hello := vocab.Ref{Package: "hello", Opinion: "o3"}
	t.Run("no claims", func(t *testing.T) {
		nd := newNode(t)
		s := nd.service(t, &fakeNet{}, nil)
		res, err := s.Mirror(ctx, vocab.Ref{Package: "nano"})
		require.NoError(t, err)
		assert.Empty(t, res.Packages)
		assert.Contains(t, res.Reason, "no claims for nano")
	})
	t.Run("no trusted consensus", func(t *testing.T) {
		nd := newNode(t)
		for _, b := range attesttest.Identities(t, 3) { // unvetted keys
			_, err := nd.api.ImportClaims(ctx, [][]byte{attesttest.Wire(t, attesttest.Claim(t, b))})
			require.NoError(t, err)
		}
		s := nd.service(t, &fakeNet{}, nil)
		res, err := s.Mirror(ctx, hello)
		require.NoError(t, err)
		assert.Empty(t, res.Packages)
		assert.Contains(t, res.Reason, "no trusted consensus yet")
	})
	t.Run("not held by anyone", func(t *testing.T) {
		nd := newNode(t)
		nd.agree(t, vocab.SHA256Hex(helloDeb(t, attesttest.BinaryVersion)))
		s := nd.service(t, &fakeNet{}, nil)
		res, err := s.Mirror(ctx, hello)
		require.NoError(t, err)
		assert.Empty(t, res.Packages)
		assert.Contains(t, res.Reason, attesttest.DebName+": not available from this node or its peers")
	})
	t.Run("control data names another file", func(t *testing.T) {
		nd := newNode(t)
		deb := helloDeb(t, "9.9")
		nd.peers.SetBlob(deb)
		nd.agree(t, vocab.SHA256Hex(deb))
		s := nd.service(t, &fakeNet{}, nil)
		res, err := s.Mirror(ctx, hello)
		require.NoError(t, err)
		assert.Empty(t, res.Packages)
		assert.Contains(t, res.Reason, "the attested file is hello_9.9_amd64.deb by its control data")
		code, pk := get(t, serve(t, s)+"/dists/lebowski/main/binary-amd64/Packages")
		require.Equal(t, http.StatusOK, code)
		assert.Empty(t, pk, "nothing served")
	})
}

// TestMirrorOff: without repo.addr the service says how to turn it on.
func TestMirrorOff(t *testing.T) {
	nd := newNode(t)
	fn := &fakeNet{}
	s := nd.service(t, fn, func(o *Options) { o.Addr = "" })
	_, err := s.Mirror(ctx, vocab.Ref{Package: "hello", Opinion: "o3"})
	require.ErrorContains(t, err, "set repo.addr in "+filepath.Join(nd.dir, "config.yaml"))
	assert.True(t, core.IsInvalid(err))
	_, err = s.Listen()
	assert.Error(t, err)
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run of an off repository did not return")
	}
	assert.Empty(t, fn.followed())
	_, err = os.Stat(filepath.Join(nd.dir, "mirror.json"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// TestRunRefreshesOnClaims: Run follows the topics of the saved refs and
// of repo.packages (not the subscriptions: the daemon joins those), builds
// the index at once, and rebuilds it shortly after claims arrive, well
// before the 30 s tick: here for a subscription, read through the API.
func TestRunRefreshesOnClaims(t *testing.T) {
	nd := newNode(t)
	require.NoError(t, os.WriteFile(filepath.Join(nd.dir, "mirror.json"), []byte(`["nano/o1", "not a ref!"]`), 0o600))
	_, err := nd.api.Subscribe(ctx, "hello/o3", true)
	require.NoError(t, err)
	fn := &fakeNet{}
	s := nd.service(t, fn, func(o *Options) { o.Packages = []string{"curl"} })
	url := serve(t, s)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { s.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	attesttest.Eventually(t, 10*time.Second, "the first index", func() bool {
		code, _ := get(t, url+"/dists/lebowski/InRelease")
		return code == http.StatusOK
	})
	assert.ElementsMatch(t, []string{"nano/o1", "curl"}, fn.followed())
	_, pk := get(t, url+"/dists/lebowski/main/binary-amd64/Packages")
	assert.Empty(t, pk)

	deb := helloDeb(t, attesttest.BinaryVersion)
	_, err = nd.api.PutBlob(ctx, deb) // built here
	require.NoError(t, err)
	start := time.Now()
	nd.agree(t, vocab.SHA256Hex(deb))
	attesttest.Eventually(t, 10*time.Second, "hello served after its claims", func() bool {
		_, pk := get(t, url+"/dists/lebowski/main/binary-amd64/Packages")
		return strings.Contains(pk, "SHA256: "+vocab.SHA256Hex(deb))
	})
	assert.Less(t, time.Since(start), refreshEvery, "refreshed on the claim events, not the tick")
}

// TestUnreadableMirrorList: a damaged mirror.json is ignored with a
// warning (the refs of repo.packages and subscriptions are still served).
func TestUnreadableMirrorList(t *testing.T) {
	nd := newNode(t)
	path := filepath.Join(nd.dir, "mirror.json")
	require.NoError(t, os.WriteFile(path, []byte("{not json"), 0o600))
	var logs bytes.Buffer
	s, err := New(Options{Addr: "127.0.0.1:0", DataDir: nd.dir, Identity: nd.id}, nd.api, &fakeNet{}, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	assert.Contains(t, logs.String(), "ignoring an unreadable mirror list")
	assert.Contains(t, logs.String(), path)
	res, err := s.Mirror(ctx, vocab.Ref{Package: "nano"})
	require.NoError(t, err)
	assert.Equal(t, "nano/vanilla", res.Ref)
	saved, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "[\n  \"nano/vanilla\"\n]\n", string(saved), "rewritten with the refs added since")
}
