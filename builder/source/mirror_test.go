package source

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/ulikunitz/xz"
)

// A fake Debian mirror for tests: a throwaway archive key, a signed
// InRelease, Sources(.gz) and a few tiny source packages, served by
// httptest with a per-path hit counter.

const testSuite = "testsuite"

// baseTime is the fake "now" of the tests.
var baseTime = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

func keyConfig(created time.Time, lifetime time.Duration) *packet.Config {
	return &packet.Config{
		Algorithm:       packet.PubKeyAlgoEdDSA,
		Time:            func() time.Time { return created },
		KeyLifetimeSecs: uint32(lifetime / time.Second),
	}
}

// newKey makes a throwaway signing key created at created (zero lifetime =
// never expires).
func newKey(t testing.TB, name string, created time.Time, lifetime time.Duration) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "test", name+"@example.invalid", keyConfig(created, lifetime))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// writeKeyring writes the public parts of ents as a binary keyring.
func writeKeyring(t testing.TB, ents ...*openpgp.Entity) string {
	t.Helper()
	var buf bytes.Buffer
	for _, e := range ents {
		if err := e.Serialize(&buf); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "keyring.gpg")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// clearsignWith clear-signs text with every key, in order, at signTime.
func clearsignWith(t testing.TB, text []byte, signTime time.Time, keys ...*openpgp.Entity) []byte {
	t.Helper()
	var privs []*packet.PrivateKey
	for _, k := range keys {
		privs = append(privs, k.PrivateKey)
	}
	var buf bytes.Buffer
	w, err := clearsign.EncodeMulti(&buf, privs, &packet.Config{Time: func() time.Time { return signTime }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(text); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type fakePkg struct {
	name, version   string
	extraSourceOnly bool
	files           map[string][]byte // orig/debian tarballs
	dsc             []byte            // filled by build
	fixedDsc        []byte            // if set, served and listed instead of a generated .dsc
}

func (p *fakePkg) dir() string { return "pool/main/" + p.name[:1] + "/" + p.name }
func (p *fakePkg) dscName() string {
	v := p.version
	if i := strings.Index(v, ":"); i >= 0 {
		v = v[i+1:]
	}
	return p.name + "_" + v + ".dsc"
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func checksumLines(names []string, files map[string][]byte) string {
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "\n %s %d %s", sha(files[n]), len(files[n]), n)
	}
	return b.String()
}

func sortedKeys(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

type mirrorConfig struct {
	signers    []*openpgp.Entity // InRelease signers, in order
	signTime   time.Time
	date       time.Time
	validUntil time.Time // zero = no Valid-Until
	codename   string    // default testSuite
	noGzip     bool      // only the uncompressed Sources
	byHash     bool
	xzOnly     bool // like bookworm-updates: Release lists Sources and Sources.xz, only .xz is served
}

type fakeMirror struct {
	t      testing.TB
	srv    *httptest.Server
	mu     sync.Mutex
	files  map[string][]byte // URL path (without leading /) → body
	hits   map[string]int
	pkgs   []*fakePkg
	debs   []fakeDeb // binary packages: main/binary-amd64/Packages.xz and pool files
	cfg    mirrorConfig
	upload *openpgp.Entity // signs .dsc files (not in any keyring)
}

func defaultPkgs() []*fakePkg {
	return []*fakePkg{
		{name: "hello", version: "1.0-1", files: map[string][]byte{
			"hello_1.0.orig.tar.gz":     []byte("fake orig tarball of hello 1.0\n"),
			"hello_1.0-1.debian.tar.xz": []byte("fake debian tarball 1.0-1\n"),
		}},
		{name: "hello", version: "1.0-2", files: map[string][]byte{
			"hello_1.0.orig.tar.gz":     []byte("fake orig tarball of hello 1.0\n"),
			"hello_1.0-2.debian.tar.xz": []byte("fake debian tarball 1.0-2\n"),
		}},
		// Higher, but only kept for Built-Using: not the suite's version.
		{name: "hello", version: "9.0-1", extraSourceOnly: true, files: map[string][]byte{
			"hello_9.0.orig.tar.gz":     []byte("old\n"),
			"hello_9.0-1.debian.tar.xz": []byte("old debian\n"),
		}},
		{name: "other", version: "1:2.0+dfsg-3", files: map[string][]byte{
			"other_2.0+dfsg.orig.tar.xz":     []byte("other orig\n"),
			"other_2.0+dfsg-3.debian.tar.xz": []byte("other debian\n"),
		}},
	}
}

func newFakeMirror(t testing.TB, cfg mirrorConfig) *fakeMirror {
	t.Helper()
	if cfg.signTime.IsZero() {
		cfg.signTime = baseTime.Add(-time.Hour)
	}
	if cfg.date.IsZero() {
		cfg.date = baseTime.Add(-time.Hour)
	}
	if cfg.codename == "" {
		cfg.codename = testSuite
	}
	m := &fakeMirror{t: t, files: map[string][]byte{}, hits: map[string]int{}, pkgs: defaultPkgs(), cfg: cfg,
		upload: newKey(t, "uploader", baseTime.AddDate(-1, 0, 0), 0)}
	m.build()
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *fakeMirror) url() string { return m.srv.URL + "/debian" }

func (m *fakeMirror) serve(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/debian/")
	m.mu.Lock()
	m.hits[p]++
	b, ok := m.files[p]
	m.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write(b)
}

// build (re)generates every file of the archive from pkgs and cfg.
func (m *fakeMirror) build() {
	t := m.t
	var sources strings.Builder
	for _, p := range m.pkgs {
		names := sortedKeys(p.files)
		dsc := fmt.Sprintf("Format: 3.0 (quilt)\nSource: %s\nBinary: %s\nArchitecture: any\nVersion: %s\n"+
			"Maintainer: Test <test@example.invalid>\nStandards-Version: 4.6.2\n"+
			"Build-Depends: debhelper-compat (= 13),\n gettext\nBuild-Depends-Indep: texinfo\n"+
			"Checksums-Sha256:%s\n", p.name, p.name, p.version, checksumLines(names, p.files))
		p.dsc = clearsignWith(t, []byte(dsc), baseTime.AddDate(0, -1, 0), m.upload)
		if p.fixedDsc != nil {
			p.dsc = p.fixedDsc
		}
		for n, b := range p.files {
			m.files[p.dir()+"/"+n] = b
		}
		m.files[p.dir()+"/"+p.dscName()] = p.dsc
		all := map[string][]byte{p.dscName(): p.dsc}
		for n, b := range p.files {
			all[n] = b
		}
		fmt.Fprintf(&sources, "Package: %s\nBinary: %s\nVersion: %s\nMaintainer: Test <test@example.invalid>\n"+
			"Build-Depends: debhelper-compat (= 13)\nArchitecture: any\nFormat: 3.0 (quilt)\nDirectory: %s\n",
			p.name, p.name, p.version, p.dir())
		if p.extraSourceOnly {
			sources.WriteString("Extra-Source-Only: yes\n")
		}
		fmt.Fprintf(&sources, "Checksums-Sha256:%s\nPriority: optional\nSection: misc\n\n", checksumLines(sortedKeys(all), all))
	}
	src := []byte(sources.String())
	idx := map[string][]byte{"main/source/Sources": src}
	if m.cfg.xzOnly {
		var xb bytes.Buffer
		xw, err := xz.NewWriter(&xb)
		if err != nil {
			panic(err)
		}
		xw.Write(src)
		xw.Close()
		idx["main/source/Sources.xz"] = xb.Bytes()
	} else if !m.cfg.noGzip {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(src)
		zw.Close()
		idx["main/source/Sources.gz"] = gz.Bytes()
	}
	if len(m.debs) > 0 {
		var pk strings.Builder
		for _, d := range m.debs {
			m.files[d.filename()] = d.data
			fmt.Fprintf(&pk, "Package: %s\nVersion: %s\nArchitecture: %s\nFilename: %s\nSize: %d\nSHA256: %s\nDescription: fake\n\n",
				d.name, d.version, d.arch, d.filename(), len(d.data), sha(d.data))
		}
		var xb bytes.Buffer
		xw, err := xz.NewWriter(&xb)
		if err != nil {
			panic(err)
		}
		xw.Write([]byte(pk.String()))
		xw.Close()
		idx["main/binary-amd64/Packages.xz"] = xb.Bytes()
	}
	dists := "dists/" + testSuite + "/"
	for n, b := range idx {
		m.files[dists+n] = b
		if m.cfg.byHash {
			m.files[dists+"main/source/by-hash/SHA256/"+sha(b)] = b
			delete(m.files, dists+n) // prove by-hash is used
		}
	}
	if m.cfg.xzOnly {
		delete(m.files, dists+"main/source/Sources")
	}
	var rel strings.Builder
	fmt.Fprintf(&rel, "Origin: Test\nLabel: Test\nSuite: stable\nCodename: %s\nDate: %s\n", m.cfg.codename, m.cfg.date.Format(time.RFC1123))
	if !m.cfg.validUntil.IsZero() {
		fmt.Fprintf(&rel, "Valid-Until: %s\n", m.cfg.validUntil.Format(time.RFC1123))
	}
	if m.cfg.byHash {
		rel.WriteString("Acquire-By-Hash: yes\n")
	}
	rel.WriteString("Architectures: amd64\nComponents: main\nDescription: fake\nMD5Sum:\n 00000000000000000000000000000000 0 ignored\nSHA256:")
	rel.WriteString(checksumLines(sortedKeys(idx), idx))
	rel.WriteString("\n")
	m.files[dists+"Release"] = []byte(rel.String())
	m.files[dists+"InRelease"] = clearsignWith(t, []byte(rel.String()), m.cfg.signTime, m.cfg.signers...)
}

func (m *fakeMirror) set(path string, b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[path] = b
}

func (m *fakeMirror) get(path string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.files[path]
}

// hitCount returns how many requests paths matching pred got.
func (m *fakeMirror) hitCount(pred func(string) bool) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for p, c := range m.hits {
		if pred(p) {
			n += c
		}
	}
	return n
}

func (m *fakeMirror) resetHits() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hits = map[string]int{}
}

func isPool(p string) bool      { return strings.HasPrefix(p, "pool/") }
func isInRelease(p string) bool { return strings.HasSuffix(p, "/InRelease") }
func isSources(p string) bool   { return strings.Contains(p, "/source/") }
func anyPath(string) bool       { return true }

// testEnv is a trusted archive key, a mirror signed with it and a Fetcher
// trusting it, all on the fake clock.
type testEnv struct {
	key     *openpgp.Entity
	keyring string
	mirror  *fakeMirror
	fetcher *Fetcher
	now     time.Time
	cache   string
}

var (
	archiveKeyOnce sync.Once
	archiveKey     *openpgp.Entity
)

// sharedArchiveKey returns one archive key for all tests (key generation
// is the slow part).
func sharedArchiveKey(t testing.TB) *openpgp.Entity {
	archiveKeyOnce.Do(func() { archiveKey = newKey(t, "archive", baseTime.AddDate(-2, 0, 0), 0) })
	return archiveKey
}

func newTestEnv(t testing.TB, cfg mirrorConfig, opts ...Option) *testEnv {
	t.Helper()
	env := &testEnv{key: sharedArchiveKey(t), now: baseTime, cache: t.TempDir()}
	env.keyring = writeKeyring(t, env.key)
	if cfg.signers == nil {
		cfg.signers = []*openpgp.Entity{env.key}
	}
	env.mirror = newFakeMirror(t, cfg)
	env.fetcher = env.newFetcher(t, opts...)
	return env
}

func (env *testEnv) newFetcher(t testing.TB, opts ...Option) *Fetcher {
	t.Helper()
	base := []Option{WithMirror(env.mirror.url()), WithKeyring(env.keyring), WithNow(func() time.Time { return env.now })}
	f, err := New(env.cache, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// fakeDeb is a binary package of the fake archive (its "deb" is any bytes).
type fakeDeb struct {
	name, version, arch string
	data                []byte
}

func (d fakeDeb) filename() string {
	return "pool/main/" + d.name[:1] + "/" + d.name + "/" + d.name + "_" + d.version + "_" + d.arch + ".deb"
}
