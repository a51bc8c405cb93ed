package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder/source"
	"github.com/lebowski-dist/lebowski/opinions"
)

// The end-to-end tests use real podman, mmdebstrap and the Debian mirror.
// They run when LEBOWSKI_E2E is set (CI sets it). Images, sources and
// outputs are cached in LEBOWSKI_DEV_DIR (default /var/lib/lebowski-dev),
// so a second run reuses the images.

var e2e struct {
	once sync.Once
	pm   *Podman
	src  *source.Fetcher
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if e2e.pm != nil {
		e2e.pm.Close()
	}
	os.Exit(code)
}

func needE2E(t testing.TB) (*Podman, *source.Fetcher, string) {
	t.Helper()
	if os.Getenv("LEBOWSKI_E2E") == "" {
		t.Skip("set LEBOWSKI_E2E=1 to run the real podman end-to-end tests")
	}
	e2e.once.Do(func() {
		e2e.dir = os.Getenv("LEBOWSKI_DEV_DIR")
		if e2e.dir == "" {
			e2e.dir = "/var/lib/lebowski-dev"
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e2e.pm, e2e.err = Connect(ctx, "", WithServiceDir(filepath.Join(e2e.dir, "podman")), WithConnectLogger(testLogger()))
		if e2e.err != nil {
			return
		}
		e2e.src, e2e.err = source.New(filepath.Join(e2e.dir, "sources"))
	})
	require.NoError(t, e2e.err)
	return e2e.pm, e2e.src, e2e.dir
}

func testLogger() *slog.Logger {
	if os.Getenv("LEBOWSKI_E2E_VERBOSE") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newE2EBuilder(t testing.TB, opts ...Option) *PodmanBuilder {
	t.Helper()
	pm, src, dir := needE2E(t)
	b, err := New(dir, src, pm, append([]Option{WithLogger(testLogger()), WithTimeout(20 * time.Minute)}, opts...)...)
	require.NoError(t, err)
	return b
}

func mustBuild(t *testing.T, b *PodmanBuilder, req Request) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	res, err := b.Build(ctx, req)
	require.NoError(t, err)
	require.Equal(t, attest.ResultSuccess, res.Status, "fail reason: %s\nlog tail:\n%s", res.FailReason, logTail(res.Log))
	require.NotEmpty(t, res.Artifacts)
	return res
}

func logTail(b []byte) string {
	lines := strings.Split(string(b), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

func artifactKey(res *Result) string {
	var b strings.Builder
	for _, a := range res.Artifacts {
		b.WriteString(a.Name + "=" + a.SHA256 + "\n")
	}
	return b.String()
}

func helloOpinion(t *testing.T, name string, mut func(o *opinions.Opinion)) *opinions.Opinion {
	o := &opinions.Opinion{
		Name: name, Package: "hello", Summary: "test opinion " + name, Purity: vocab.PurityPureCompilation,
		Debian: opinions.Debian{Suite: "bookworm", Version: "2.10-3"}, Revision: 1, Dir: t.TempDir(),
	}
	if mut != nil {
		mut(o)
	}
	return o
}

// vanillaHello builds vanilla hello 2.10-3 once per test binary: the
// vanilla and o3 tests share it (each real build costs a minute or more;
// reproducibility itself is checked by `lebowski build --twice` in
// cmd/internal/cli and by three nodes agreeing in the demo).
func vanillaHello(t *testing.T) *Result {
	t.Helper()
	needE2E(t) // skip here, not inside once.Do, which a skip would mark done
	vanilla.once.Do(func() {
		vanilla.res = mustBuild(t, newE2EBuilder(t), Request{Package: "hello", Version: "2.10-3", Suite: "bookworm"})
	})
	require.NotNil(t, vanilla.res, "the vanilla build failed in an earlier test")
	return vanilla.res
}

var vanilla struct {
	once sync.Once
	res  *Result
}

func TestE2EHelloVanilla(t *testing.T) {
	r1 := vanillaHello(t)
	require.Equal(t, "2.10-3", r1.BinaryVersion)
	require.Contains(t, string(r1.Buildinfo), "\nX-Lebowski-Image: "+r1.Recipe.ImageDigest+"\n")
	require.NotContains(t, string(r1.Buildinfo), "X-Lebowski-Opinion")
	require.Contains(t, r1.Installed, func() string {
		for _, s := range r1.Installed {
			if strings.HasPrefix(s, "texinfo (= ") {
				return s
			}
		}
		return "texinfo (= ?)"
	}())
	for _, a := range r1.Artifacts {
		data, err := os.ReadFile(a.Path)
		require.NoError(t, err)
		sum := sha256.Sum256(data)
		require.Equal(t, a.SHA256, hex.EncodeToString(sum[:]))
	}
	t.Logf("vanilla: %s", artifactKey(r1))
}

func TestE2EHelloO3(t *testing.T) {
	b := newE2EBuilder(t)
	o3 := helloOpinion(t, "o3", func(o *opinions.Opinion) { o.Build.CFlags.Append = []string{"-O3"} })
	r1 := mustBuild(t, b, Request{Package: "hello", Opinion: o3})
	require.Equal(t, "2.10-3~o3+1", r1.BinaryVersion)
	require.Equal(t, o3.CID(), r1.Recipe.OpinionCID)
	require.Contains(t, string(r1.Buildinfo), "\nX-Lebowski-Opinion: o3 "+o3.CID()+"\n")
	require.Contains(t, string(r1.Log), "DEB_CFLAGS_APPEND=-O3")

	vanilla := vanillaHello(t)
	require.NotEqual(t, artifactKey(vanilla), artifactKey(r1))
	require.NotEqual(t, vanilla.Recipe.ID(), r1.Recipe.ID())
	require.Equal(t, vanilla.Recipe.ImageDigest, r1.Recipe.ImageDigest, "same package, same image")
	for _, a := range r1.Artifacts {
		require.Contains(t, a.Name, "2.10-3~o3+1")
	}
}

func TestE2EHelloPatch(t *testing.T) {
	b := newE2EBuilder(t)
	patch, err := os.ReadFile("../opinions/hello/greeting/greeting.patch")
	require.NoError(t, err)
	o := helloOpinion(t, "greeting", func(o *opinions.Opinion) { o.Purity = vocab.PurityPatches })
	require.NoError(t, os.WriteFile(filepath.Join(o.Dir, "greeting.patch"), patch, 0o644))
	sum := sha256.Sum256(patch)
	o.Patches = []opinions.Patch{{Path: "greeting.patch", SHA256: hex.EncodeToString(sum[:])}}
	res := mustBuild(t, b, Request{Package: "hello", Opinion: o})
	var deb string
	for _, a := range res.Artifacts {
		if strings.HasPrefix(a.Name, "hello_") {
			deb = a.Path
		}
	}
	require.NotEmpty(t, deb)
	x := t.TempDir()
	out, err := exec.Command("dpkg-deb", "-x", deb, x).CombinedOutput()
	require.NoError(t, err, string(out))
	bin, err := os.ReadFile(filepath.Join(x, "usr/bin/hello"))
	require.NoError(t, err)
	require.True(t, bytes.Contains(bin, []byte("Hello, Lebowski!")), "patched greeting not in the binary")
	require.False(t, bytes.Contains(bin, []byte("Hello, world!")), "old greeting still in the binary")
	require.Contains(t, string(res.Log), "applied opinion patch lebowski-01-greeting.patch")

	// A patch that does not apply is a clear refusal with the log.
	bad := helloOpinion(t, "bad", func(o *opinions.Opinion) { o.Purity = vocab.PurityPatches })
	badPatch := bytes.ReplaceAll(patch, []byte("Hello, world!"), []byte("Hello, nobody!"))
	require.NoError(t, os.WriteFile(filepath.Join(bad.Dir, "bad.patch"), badPatch, 0o644))
	bs := sha256.Sum256(badPatch)
	bad.Patches = []opinions.Patch{{Path: "bad.patch", SHA256: hex.EncodeToString(bs[:])}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err = b.Build(ctx, Request{Package: "hello", Opinion: bad})
	require.ErrorIs(t, err, ErrNotApplicable)
	require.NotNil(t, res)
	require.Equal(t, attest.ResultFailed, res.Status)
	require.Contains(t, res.FailReason, "lebowski-01-bad.patch does not apply")
}

func TestE2EUnsafeOpinionStartsNoContainer(t *testing.T) {
	pm, _, _ := needE2E(t)
	b := newE2EBuilder(t)
	ctx := context.Background()
	before, err := pm.CountContainers(ctx)
	require.NoError(t, err)
	for _, flag := range []string{"-O2 $(touch /tmp/pwned)", "-O2;reboot", "`id`"} {
		o := helloOpinion(t, "evil", func(o *opinions.Opinion) { o.Build.CFlags.Append = []string{flag} })
		res, err := b.Build(ctx, Request{Package: "hello", Opinion: o})
		require.ErrorIs(t, err, ErrUnsafeOpinion, flag)
		require.Nil(t, res)
	}
	after, err := pm.CountContainers(ctx)
	require.NoError(t, err)
	require.Equal(t, before, after, "a container was created for a refused opinion")
}

func TestE2ENoNetwork(t *testing.T) {
	pm, _, _ := needE2E(t)
	b := newE2EBuilder(t)
	// The hello image (made by the other tests or now).
	img := helloImage(t, b)
	dir := t.TempDir()
	// Try TCP to the Debian mirror's address family and to a literal IP;
	// print what happened so the assertion can say why.
	script := `for a in 151.101.2.132 1.1.1.1; do if timeout 5 bash -c "exec 3<>/dev/tcp/$a/80"; then echo "CONNECTED $a"; exit 0; fi; done; echo NO-NETWORK; ip -o link 2>/dev/null || cat /proc/net/dev; exit 7`
	rr, err := pm.Run(context.Background(), RunSpec{Image: img.Ref, Command: []string{"/bin/bash", "-c", "{ " + script + "; } >/build/net.log 2>&1"},
		HostDir: dir, Timeout: time.Minute, Memory: 256 << 20, Pids: 64})
	require.NoError(t, err)
	log, _ := os.ReadFile(filepath.Join(dir, "net.log"))
	require.Equal(t, int32(7), rr.ExitCode, "container reached the network:\n%s", log)
	require.Contains(t, string(log), "NO-NETWORK")
	require.NotContains(t, string(log), "eth0")
}

func TestE2ETimeoutKills(t *testing.T) {
	pm, _, _ := needE2E(t)
	b := newE2EBuilder(t)
	img := helloImage(t, b)
	start := time.Now()
	rr, err := pm.Run(context.Background(), RunSpec{Image: img.Ref, Command: []string{"sleep", "600"}, Timeout: 3 * time.Second})
	require.NoError(t, err)
	require.True(t, rr.TimedOut)
	require.Less(t, time.Since(start), 60*time.Second)
}

// TestE2ELockedImageIndependent: two nodes with their own caches (no
// shared source or image cache) make the image of one lock from the .debs
// each fetched itself, and get the same digest; the image holds exactly
// the locked packages.
func TestE2ELockedImageIndependent(t *testing.T) {
	pm, _, _ := needE2E(t)
	b := newE2EBuilder(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	lock, err := b.Resolve(ctx, Request{Package: "hello", Version: "2.10-3"})
	require.NoError(t, err)
	// The shared test cache's image (made by the other tests, or now) and
	// one made in a fresh cache from .debs fetched anew.
	shared, err := b.images.EnsureLocked(ctx, lock, b.fetchDeb(lock))
	require.NoError(t, err)
	dir := t.TempDir()
	src, err := source.New(filepath.Join(dir, "sources"))
	require.NoError(t, err)
	nb, err := New(dir, src, pm, WithLogger(testLogger()))
	require.NoError(t, err)
	img, err := nb.images.EnsureLocked(ctx, lock, nb.fetchDeb(lock))
	require.NoError(t, err)
	require.Len(t, img.Installed, len(lock.Image))
	digests := []string{shared.Digest, img.Digest}
	require.Equal(t, digests[0], digests[1], "two independent caches made different images from one lock")
}

func TestE2EConfigureOnlyPV(t *testing.T) {
	b := newE2EBuilder(t)
	o := &opinions.Opinion{
		Name: "nonls", Package: "pv", Summary: "pv without NLS", Purity: vocab.PurityConfigureOnly,
		Debian: opinions.Debian{Suite: "bookworm", Version: "1.6.20-1"}, Revision: 1, Dir: t.TempDir(),
		Build: opinions.Build{ConfigureArgs: []string{"--disable-nls"}},
	}
	r1 := mustBuild(t, b, Request{Package: "pv", Opinion: o})
	require.Contains(t, string(r1.Log), "--disable-nls")
	r2 := mustBuild(t, b, Request{Package: "pv", Opinion: o})
	require.Equal(t, artifactKey(r1), artifactKey(r2), "pv --disable-nls is not reproducible")
	van := mustBuild(t, b, Request{Package: "pv", Version: "1.6.20-1"})
	require.NotEqual(t, artifactKey(van), artifactKey(r1))
	// --disable-nls: no message catalogues in the package.
	var deb string
	for _, a := range r1.Artifacts {
		if strings.HasPrefix(a.Name, "pv_") {
			deb = a.Path
		}
	}
	out, err := exec.Command("dpkg-deb", "-c", deb).CombinedOutput()
	require.NoError(t, err, string(out))
	require.NotContains(t, string(out), "/locale/", "NLS files still packaged")
	var vdeb string
	for _, a := range van.Artifacts {
		if strings.HasPrefix(a.Name, "pv_") {
			vdeb = a.Path
		}
	}
	vout, err := exec.Command("dpkg-deb", "-c", vdeb).CombinedOutput()
	require.NoError(t, err, string(vout))
	require.Contains(t, string(vout), "/locale/", "vanilla pv should ship message catalogues")
}

// BenchmarkRebuildHello measures one vanilla hello rebuild in the container
// (image cached; the first iteration may make it). Run with
// LEBOWSKI_E2E=1 go test -run '^$' -bench RebuildHello -benchtime 3x.
func BenchmarkRebuildHello(b *testing.B) {
	bld := newE2EBuilder(b)
	ctx := context.Background()
	// Warm: image and source.
	if _, err := bld.Build(ctx, Request{Package: "hello", Version: "2.10-3"}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := bld.Build(ctx, Request{Package: "hello", Version: "2.10-3"})
		if err != nil || res.Status != attest.ResultSuccess {
			b.Fatalf("build: %v %s", err, res.FailReason)
		}
		if i == 0 {
			for _, a := range res.Artifacts {
				b.Logf("%s %s", a.SHA256, a.Name)
			}
		}
	}
}

// helloImage is the build image of hello 2.10-3 (made by the other tests
// or now), from a lock resolved against the mirror.
func helloImage(t *testing.T, b *PodmanBuilder) *Image {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	lock, err := b.Resolve(ctx, Request{Package: "hello", Version: "2.10-3"})
	require.NoError(t, err)
	img, err := b.images.EnsureLocked(ctx, lock, b.fetchDeb(lock))
	require.NoError(t, err)
	return img
}
