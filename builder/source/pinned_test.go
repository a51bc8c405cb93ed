package source

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// fakePeers serves blobs by CID (or lies, with wrong).
type fakePeers struct {
	mu       sync.Mutex
	blobs    map[string][]byte
	wrong    bool
	truncate bool
	asked    int
}

func (p *fakePeers) FetchBlob(_ context.Context, cid string, max int64) ([]byte, string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked++
	b, ok := p.blobs[cid]
	if !ok {
		return nil, "", fmt.Errorf("no peer has %s (2 asked)", cid)
	}
	if p.wrong {
		return []byte("lies"), "12D3KooWliar", nil
	}
	if p.truncate {
		return b[:len(b)-1], "12D3KooWtruncated", nil
	}
	return b, "12D3KooWhonest", nil
}

// snapshotServer serves the archive's files under /archive/debian/<ts>/.
func snapshotServer(t *testing.T, ts string, files map[string][]byte) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := strings.CutPrefix(r.URL.Path, "/archive/debian/"+ts+"/")
		b, has := files[p]
		if !ok || !has {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestFetchPinnedThreeWays(t *testing.T) {
	env := newTestEnv(t, mirrorConfig{})
	hello := env.mirror.pkgs[0]
	name := "hello_1.0.orig.tar.gz"
	data := hello.files[name]
	pin := Pinned{Name: name, Path: hello.dir() + "/" + name, Size: int64(len(data)), SHA256: sha(data)}
	const ts = "20260702T110000Z"
	snap := snapshotServer(t, ts, map[string][]byte{pin.Path: data})
	peers := &fakePeers{blobs: map[string][]byte{vocab.CID(data): data}}
	ctx := context.Background()

	tests := []struct {
		desc     string
		onMirror []byte // nil: removed from the pool (a point release)
		snapshot bool
		peers    *fakePeers
		origin   string
	}{
		{"from the mirror's pool", data, true, peers, OriginMirror},
		{"removed from the pool: from the snapshot archive", nil, true, peers, OriginSnapshot},
		{"mirror serves other bytes: from the snapshot archive", []byte("tampered"), true, peers, OriginSnapshot},
		{"neither mirror nor snapshot: from a peer", nil, false, peers, OriginPeer + " 12D3KooWhonest"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if tc.onMirror == nil {
				env.mirror.set(pin.Path, nil)
				delete(env.mirror.files, pin.Path)
			} else {
				env.mirror.set(pin.Path, tc.onMirror)
			}
			opts := []Option{WithPeers(tc.peers)}
			if tc.snapshot {
				opts = append(opts, WithSnapshot(snap.URL))
			}
			f, err := New(t.TempDir(), append([]Option{WithMirror(env.mirror.url()), WithKeyring(env.keyring)}, opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			p, origin, err := f.FetchPinned(ctx, pin, ts, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if origin != tc.origin {
				t.Fatalf("origin %q, want %q", origin, tc.origin)
			}
			got, _ := os.ReadFile(p)
			if string(got) != string(data) {
				t.Fatal("wrong bytes in the cache")
			}
			if _, origin, _ := f.FetchPinned(ctx, pin, ts, 1<<20); origin != OriginCache {
				t.Fatalf("second fetch from %s, want the cache", origin)
			}
			if cp, ok := f.CachedBySHA256(pin.SHA256); !ok || cp != p {
				t.Fatal("a fetched file is served by sha256")
			}
		})
	}
}

func TestFetchPinnedUnavailable(t *testing.T) {
	env := newTestEnv(t, mirrorConfig{})
	data := []byte("a file nobody has")
	pin := Pinned{Name: "gone_1.0_amd64.deb", Path: "pool/main/g/gone/gone_1.0_amd64.deb", Size: int64(len(data)), SHA256: sha(data)}
	snap := snapshotServer(t, "20260702T110000Z", map[string][]byte{})
	liar := &fakePeers{blobs: map[string][]byte{vocab.CID(data): data}, wrong: true}
	cache := t.TempDir()
	f, err := New(cache, WithMirror(env.mirror.url()), WithKeyring(env.keyring), WithSnapshot(snap.URL), WithPeers(liar))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = f.FetchPinned(context.Background(), pin, "20260702T110000Z", 1<<20)
	var ue *UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want UnavailableError", err)
	}
	msg := err.Error()
	for _, want := range []string{pin.Name, pin.SHA256, "mirror " + env.mirror.url(), "snapshot " + snap.URL, "peer 12D3KooWliar", "sha256 mismatch"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not name %q:\n%s", want, msg)
		}
	}
	if _, ok := f.CachedBySHA256(pin.SHA256); ok {
		t.Fatal("a refused file entered the cache")
	}
	if entries, _ := os.ReadDir(cache + "/tmp"); len(entries) != 0 {
		t.Fatalf("half-written files left in tmp: %d", len(entries))
	}
	// A truncated file from a peer is refused too.
	short := &fakePeers{blobs: map[string][]byte{vocab.CID(data): data}, truncate: true}
	f2, err := New(t.TempDir(), WithMirror(env.mirror.url()), WithKeyring(env.keyring), WithPeers(short))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f2.FetchPinned(context.Background(), pin, "", 1<<20); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "12D3KooWtruncated") {
		t.Fatalf("truncated file from a peer: err = %v", err)
	}
	if _, ok := f2.CachedBySHA256(pin.SHA256); ok {
		t.Fatal("a truncated file entered the cache")
	}
	if _, _, err := f.FetchPinned(context.Background(), Pinned{Name: "x.deb", Size: 10, SHA256: sha(data)}, "", 5); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: err = %v", err)
	}
}

func TestFetchPinnedSource(t *testing.T) {
	env := newTestEnv(t, mirrorConfig{})
	hello := env.mirror.pkgs[0]
	ps := PinnedSource{Suite: testSuite, Package: "hello", Version: hello.version, Directory: hello.dir(),
		Dsc: File{Name: hello.dscName(), Size: int64(len(hello.dsc)), SHA256: sha(hello.dsc)}}
	for _, n := range sortedKeys(hello.files) {
		ps.Files = append(ps.Files, File{Name: n, Size: int64(len(hello.files[n])), SHA256: sha(hello.files[n])})
	}
	src, err := env.fetcher.FetchPinnedSource(context.Background(), ps, "")
	if err != nil {
		t.Fatal(err)
	}
	if src.DscSHA256 != ps.Dsc.SHA256 || src.Directory != hello.dir() || len(src.Files) != 2 {
		t.Fatalf("source %+v", src)
	}
	if env.mirror.hitCount(isInRelease) != 0 {
		t.Fatal("a pinned source needs no InRelease")
	}
	// A lock whose file list disagrees with the .dsc is refused.
	bad := ps
	bad.Files = bad.Files[:1]
	if _, err := env.newFetcher(t).FetchPinnedSource(context.Background(), bad, ""); err == nil || !strings.Contains(err.Error(), "disagree") {
		t.Fatalf("err = %v", err)
	}
}

func TestResolveBinaries(t *testing.T) {
	env := newTestEnv(t, mirrorConfig{})
	env.mirror.debs = []fakeDeb{
		{"libc6", "2.36-9", "amd64", []byte("libc6 deb")},
		{"adduser", "3.134", "all", []byte("adduser deb")},
		{"libc6", "2.36-8", "amd64", []byte("old libc6")},
	}
	env.mirror.build()
	r, err := env.fetcher.ResolveBinaries(context.Background(), testSuite, "amd64", []Installed{{"adduser", "3.134", "all"}, {"libc6", "2.36-9", "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Packages) != 2 || r.Packages[1].SHA256 != sha([]byte("libc6 deb")) || r.Packages[0].Filename != "pool/main/a/adduser/adduser_3.134_all.deb" {
		t.Fatalf("resolved %+v", r.Packages)
	}
	if !r.MirrorDate.Equal(env.mirror.cfg.date.Truncate(1e9)) {
		t.Fatalf("mirror date %s, want %s", r.MirrorDate, env.mirror.cfg.date)
	}
	_, err = env.fetcher.ResolveBinaries(context.Background(), testSuite, "amd64", []Installed{{"libc6", "2.36-7", "amd64"}, {"nosuch", "1", "amd64"}})
	var me *MissingBinariesError
	if !errors.As(err, &me) || len(me.Missing) != 2 || !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
}
